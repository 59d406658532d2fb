"""Properties of the one tokenizer every component shares, in each of its versions."""

import json
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embeddings import tokenizer as tk
from embeddings.tokenizer import (
    _TOKEN,
    MAX_COMBINING_RUN,
    TOKENIZER_VERSION,
    TOKENIZERS,
    UnknownTokenizer,
    for_config,
    nfkc_rewriting,
    tokenize,
)
from embeddings.vocabulary import Vocabulary
from tests.fakes import tokenize_as_before_version_2

V1, V2 = TOKENIZERS[1], TOKENIZERS[2]


def test_imdb_markup_negation_and_punctuation():
    text = "This movie<br /><br />wasn't GOOD at all!! Why?  10/10… don’t"
    assert tokenize(text) == [
        "this",
        "movie",
        "wasn't",
        "good",
        "at",
        "all",
        "!",
        "!",
        "why",
        "?",
        "10",
        "10",
        "don't",
    ]


def test_html_tags_are_removed_but_words_around_them_kept():
    assert tokenize("<i>great</i> acting<br/>bad plot") == ["great", "acting", "bad", "plot"]
    assert tokenize('<A HREF="http://x.org/a?b=1">link</A> <BR />ok <p class=x>fine</p>') == [
        "link",
        "ok",
        "fine",
    ]


def test_unicode_is_normalised_and_lowercased():
    assert tokenize("ＧＯＯＤ Café ÉTÉ") == ["good", "café", "été"]


# -- version 2: only tag-shaped markup is markup ------------------------------------------------------
HEART = "I <3 this film, it is better than > 90% of films"


def test_angle_brackets_that_are_not_tags_keep_their_words():
    assert tokenize(HEART) == ["i", "3", "this", "film", "it", "is", "better", "than", "90", "of", "films"]
    assert tokenize("a < b and c > d, x<y") == ["a", "b", "and", "c", "d", "x", "y"]
    assert tokenize("<< great >> <3 <3 -> <-") == ["great", "3", "3"]


def test_tags_are_stripped_after_normalisation():
    assert tokenize("＜b＞great＜/b＞ film") == ["great", "film"]  # full-width brackets
    assert tokenize("﹤i﹥superb﹤/i﹥") == ["superb"]  # small form variants
    assert tokenize("<B>Loud</B><BR />") == ["loud"]  # upper-case tags


def test_version_1_keeps_its_own_behaviour():
    assert V1.tokenize(HEART) == ["i", "90", "of", "films"]  # what models trained with v1 saw
    assert V1.tokenize("＜b＞great＜/b＞") == ["b", "great", "b"]
    assert V1.tokenize("This movie<br /><br />wasn't") == ["this", "movie", "wasn't"]


def _no_long_mark_run(text: str) -> bool:
    run = 0
    for ch in unicodedata.normalize("NFKD", text):
        run = run + 1 if unicodedata.combining(ch) else 0
        if run > MAX_COMBINING_RUN:
            return False
    return True


MARKUP = st.sampled_from(
    ["<", ">", "<br />", "</b>", "<3", "> 9", "<a b='c'>", "＜", "＞", "<" * 3, " ", "x"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=8), MARKUP), max_size=60).map("".join))
def test_version_1_equals_the_old_implementation(text):
    """Old artifacts score exactly as before: v1 today == the code they were trained with."""
    if _no_long_mark_run(text):
        assert V1.tokenize(text) == tokenize_as_before_version_2(text)


def test_version_1_equals_the_old_implementation_on_long_angle_bracket_runs():
    for text in ["<" * 500 + ">", "<" * 150 + "a" * 40 + ">", "x<" * 300 + "y>" + "z" * 120 + ">", ">" * 300]:
        assert V1.tokenize(text) == tokenize_as_before_version_2(text)


# -- artifacts record the version; unknown versions are refused -----------------------------------------
def test_new_vocabularies_record_the_current_version_and_old_ones_keep_theirs(tmp_path):
    new = Vocabulary.build([tokenize(HEART)], min_count=1)
    new.save(tmp_path / "new.json")
    assert TOKENIZER_VERSION == 2
    assert json.loads((tmp_path / "new.json").read_text())["tokenizer"] == {
        "name": "sentiment-regex",
        "version": 2,
    }
    old = Vocabulary.build([V1.tokenize(HEART)], min_count=1, tokenizer=V1)
    old.save(tmp_path / "old.json")
    assert json.loads((tmp_path / "old.json").read_text())["tokenizer"]["version"] == 1
    assert Vocabulary.load(tmp_path / "old.json").tokenize(HEART) == ["i", "90", "of", "films"]
    assert Vocabulary.load(tmp_path / "new.json").tokenize(HEART) == tokenize(HEART)
    assert Vocabulary.load(tmp_path / "new.json").encode(HEART).tolist() == new.encode(HEART).tolist()


@pytest.mark.parametrize(
    "config",
    [
        {"name": "sentiment-regex", "version": 3},
        {"name": "sentiment-regex"},
        {"name": "sentiment-regex", "version": True},
        {"name": "bpe", "version": 1},
        None,
        "sentiment-regex",
    ],
)
def test_unknown_tokenizers_are_refused_clearly(config):
    with pytest.raises(UnknownTokenizer, match="sentiment-regex"):
        for_config(config)
    assert for_config({"name": "sentiment-regex", "version": 1}) is V1


# -- the bounded tokenisation equals the whole -----------------------------------------------------------
NASTY = st.sampled_from(
    list("aAΣσ :.'`’!?<>/_-,\n1２اİ")
    + [
        "<br />",
        "<i>",
        "</b>",
        "<a href='x'>",
        "＜b＞",
        "\ufdfa",
        "\u3316",
        "\u0301",
        "\u0316",
        "\uff76\uff9e",
        "e\u0301",
        "\u1100\u1161\u11a8",
        "ⅷ",
        "ﬁ",
        "\u0345",
        "\u00a8",
        "\u200b",
        "\u00ad",
        "<3",
        "> 90",
        "don't",
        "\u0b47\u0b3e",
        "😀",
        "\u3000",
        "Σ:",
        ":Σ",
        "<" * 5,
        ">" * 5,
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(NASTY, max_size=300).map("".join), st.integers(1, 40), st.data(), st.sampled_from([1, 2, 3, 8])
)
def test_head_tail_tokens_equal_truncating_every_token(text, max_len, data, segment):
    head = data.draw(st.integers(0, max_len))
    for tokenizer in (V1, V2):
        full = tokenizer.tokenize(text)
        expected = (
            full
            if len(full) <= max_len
            else full[:head] + (full[len(full) - (max_len - head) :] if max_len > head else [])
        )
        assert tokenizer.head_tail_tokens(text, max_len, head, segment=segment) == expected


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=400), st.sampled_from([1, 4, 16]))
def test_head_tail_tokens_on_any_text(text, segment):
    for tokenizer in (V1, V2):
        full = tokenizer.tokenize(text)
        expected = full if len(full) <= 6 else full[:2] + full[-4:]
        assert tokenizer.head_tail_tokens(text, 6, 2, segment=segment) == expected


def test_encoding_reads_only_the_ends_of_a_long_text(monkeypatch):
    vocab = Vocabulary.build([["good", "bad"]], min_count=1, max_len=4, head=2)
    text = "good bad " * 5000 + "MIDDLE " + "bad good " * 5000
    seen = []
    real = tk._nfkc_lower_fold
    monkeypatch.setattr(tk, "_nfkc_lower_fold", lambda s: seen.append(len(s)) or real(s))
    ids = vocab.encode(text).tolist()
    assert 0 < sum(seen) < 2000 and len(text) > 90_000  # characters normalised, of the whole text
    assert ids == vocab.ids_for_tokens(tokenize(text))


# -- bounded cost ----------------------------------------------------------------------------------------
def test_long_runs_of_combining_marks_are_capped():
    text = "a" + "\u0301\u0316" * 5000 + " b"
    normalized = V2.normalize(text)
    assert max(len(run) for run in re.findall(r"[\u0300-\u036f]+", normalized)) <= MAX_COMBINING_RUN
    assert tokenize(text) == ["á", "b"]
    short = "e\u0301\u0316 ok"  # ordinary text is untouched
    assert V1.normalize(short) == unicodedata.normalize("NFKC", short)


def test_nfkc_rewriting_counts_what_normalisation_changes():
    assert nfkc_rewriting("plain ascii text") == nfkc_rewriting("déjà vu, ещё") == tk.Rewriting(0, 0)
    assert (
        nfkc_rewriting("\ufdfa") == tk.Rewriting(1, 18) and len(unicodedata.normalize("NFKC", "\ufdfa")) == 18
    )
    assert nfkc_rewriting("Wait… ﬁne ½ ｶ") == tk.Rewriting(4, 3 + 2 + 3 + 1)
    assert nfkc_rewriting("\ufdfa" * 1000, limit=100).produced > 100
    for text in ["\u3316\u33af ｶﾞ …", "Ǆ ㍱ ⑴ ﷺ x", "😀 \U0001d400\U0001d7d8 \u2f800"]:
        rewriting = nfkc_rewriting(text)
        assert rewriting.normalized_length(text) >= len(unicodedata.normalize("NFKC", text))
        assert rewriting.characters == sum(unicodedata.normalize("NFKC", c) != c for c in text)


def test_the_unicode_tables_cover_every_plane():
    """The tables scan planes 0 and 1: above them nothing combines, decomposes into several or has case."""
    for cp in range(0x20000, 0x110000):
        ch = chr(cp)
        if unicodedata.combining(ch) or unicodedata.decomposition(ch).count(" ") or ch.lower() != ch:
            pytest.fail(f"U+{cp:04X} needs the tables to scan its plane")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_never_raises_and_is_deterministic(text):
    first = tokenize(text)
    assert first == tokenize(text)
    assert all(isinstance(t, str) and t for t in first)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_tokens_are_whole_tokens_without_whitespace(text):
    for token in tokenize(text):
        assert not any(ch.isspace() for ch in token)
        assert _TOKEN.fullmatch(token), token


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["good", "bad", "don't", "!", "?", "film", "10", "<br />", " ", "\n", "Été"]))
)
def test_tokenizing_joined_tokens_is_stable(parts):
    tokens = tokenize(" ".join(parts))
    assert tokenize(" ".join(tokens)) == tokens


# The ASCII fast path must find exactly the regex's tokens: apostrophes at word edges, doubled,
# alone, next to "!"/"?", control characters, and non-ASCII text (which takes the regex itself).
APOSTROPHE_HEAVY = st.lists(
    st.sampled_from(
        ["a", "Z", "9", "'", "''", "!", "?", " ", "_", "-", ".", "\t", "\x00", "\x7f", "é", "don't"]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(APOSTROPHE_HEAVY, st.text(max_size=200), st.text(st.characters(max_codepoint=127))))
def test_the_fast_token_finder_equals_the_token_regex(text):
    assert tk.find_tokens(text) == _TOKEN.findall(text)


def test_the_fast_token_finder_equals_the_token_regex_on_reviews():
    text = (
        "I'd say 'rock'n'roll' isn't dead!!! Rating: 10/10... or is it?? ''quoted'' 'tis the "
        "season' -- o'clock, students' essays, ' lone ', end'"
    )
    normalized = V2.normalize(text)
    assert tk.find_tokens(normalized) == _TOKEN.findall(normalized)
    assert "rock'n'roll" in tk.find_tokens(normalized) and "students" in tk.find_tokens(normalized)
