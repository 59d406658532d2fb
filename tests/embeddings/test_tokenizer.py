"""Properties of the one tokenizer every component shares."""

from hypothesis import given, settings
from hypothesis import strategies as st

from embeddings.tokenizer import TOKENIZER_VERSION, _TOKEN, tokenize, tokenizer_config


def test_imdb_markup_negation_and_punctuation():
    text = "This movie<br /><br />wasn't GOOD at all!! Why?  10/10… don’t"
    assert tokenize(text) == ["this", "movie", "wasn't", "good", "at", "all", "!", "!", "why", "?", "10", "10",
                              "don't"]


def test_html_tags_are_removed_but_words_around_them_kept():
    assert tokenize("<i>great</i> acting<br/>bad plot") == ["great", "acting", "bad", "plot"]


def test_unicode_is_normalised_and_lowercased():
    assert tokenize("ＧＯＯＤ Café ÉTÉ") == ["good", "café", "été"]


def test_config_names_the_version():
    assert tokenizer_config() == {"name": "sentiment-regex", "version": TOKENIZER_VERSION}


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
@given(st.lists(st.sampled_from(["good", "bad", "don't", "!", "?", "film", "10", "<br />", " ", "\n", "Été"])))
def test_tokenizing_joined_tokens_is_stable(parts):
    tokens = tokenize(" ".join(parts))
    assert tokenize(" ".join(tokens)) == tokens
