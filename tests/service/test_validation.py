"""Request documents → texts, as pure functions (the HTTP paths are covered in test_api)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from embeddings.tokenizer import nfkc_rewriting
from service.refusals import InvalidRequest, PayloadTooLarge
from service.validation import (
    Limits,
    decode_json,
    text_from_explain,
    texts_from_instances,
    texts_from_predict,
)

LIMITS = Limits(max_texts=5, max_text_chars=50)
valid_text = st.text(min_size=1, max_size=50).filter(
    lambda t: t.strip()
    and not any(0xD800 <= ord(c) <= 0xDFFF for c in t)
    and nfkc_rewriting(t).normalized_length(t) <= 50
)


@given(st.lists(valid_text, min_size=1, max_size=5))
def test_valid_texts_come_back_unchanged(texts):
    assert texts_from_predict({"texts": texts}, LIMITS) == texts
    assert texts_from_instances({"instances": [{"text": t} for t in texts]}, LIMITS) == texts


@given(valid_text)
def test_single_text_is_a_list_of_one(text):
    assert texts_from_predict({"text": text}, LIMITS) == [text]


def test_limits_are_inclusive():
    assert texts_from_predict({"texts": ["x" * 50] * 5}, LIMITS)
    with pytest.raises(PayloadTooLarge) as too_many:
        texts_from_predict({"texts": ["x"] * 6}, LIMITS)
    assert too_many.value.code == "too_many_texts"
    with pytest.raises(PayloadTooLarge) as too_long:
        texts_from_predict({"texts": ["x" * 51]}, LIMITS)
    assert too_long.value.code == "text_too_long"


def test_the_character_limit_holds_after_unicode_normalisation():
    limits = Limits(max_texts=10, max_text_chars=1000, max_nfkc_rewritten_chars=10_000)
    assert texts_from_predict({"text": "\ufdfa" * 55}, limits)  # 55 characters, 990 once normalised
    with pytest.raises(PayloadTooLarge) as err:
        texts_from_predict({"texts": ["fine", "\ufdfa" * 56]}, limits)  # 56 characters, 1008 normalised
    assert err.value.code == "text_too_long"
    assert '"texts[1]" has 56 characters but 1008' in err.value.message and "NFKC" in err.value.message


def test_the_characters_nfkc_rewrites_in_a_request_are_bounded():
    texts = ["\ufdfa" * 5, "\ufdfa" * 5, "ｶﾞ", "plain " * 100, "…"]  # NFKC makes 90 + 90 + 2 + 0 + 3
    assert texts_from_predict({"texts": texts}, Limits(10, 1000, max_nfkc_rewritten_chars=185)) == texts
    with pytest.raises(PayloadTooLarge) as err:
        texts_from_predict({"texts": texts}, Limits(10, 1000, max_nfkc_rewritten_chars=184))
    assert err.value.code == "normalization_too_large" and "184" in err.value.message


def test_decode_json_refuses_bad_bytes():
    assert decode_json(b'{"a": [1]}') == {"a": [1]}
    for raw, code in [(b"\xc3\x28", "invalid_utf8"), (b"{", "invalid_json"), (b"[" * 50_000, "invalid_json")]:
        with pytest.raises(InvalidRequest) as err:
            decode_json(raw)
        assert err.value.code == code


def test_unknown_field_names_are_truncated_in_the_message():
    with pytest.raises(InvalidRequest) as err:
        texts_from_predict({"texts": ["a"], "k" * 10_000: 1}, LIMITS)
    assert len(err.value.message) < 200


@given(valid_text)
def test_explain_takes_one_text(text):
    assert text_from_explain({"text": text}, LIMITS) == text


@pytest.mark.parametrize(
    "doc, error, code",
    [
        ({}, InvalidRequest, "invalid_request"),
        ({"texts": ["a"]}, InvalidRequest, "invalid_request"),
        ({"text": ["a"]}, InvalidRequest, "invalid_request"),
        ({"text": " "}, InvalidRequest, "empty_text"),
        ({"text": "x" * 51}, PayloadTooLarge, "text_too_long"),
        (["a"], InvalidRequest, "invalid_request"),
    ],
)
def test_explain_refuses_what_predict_refuses(doc, error, code):
    with pytest.raises(error) as err:
        text_from_explain(doc, LIMITS)
    assert err.value.code == code


def test_pure_request_rules_import_no_flask():
    """validation.py and v2_codec.py are pure: fuzzable without the HTTP layer (Flask, batcher)."""
    import subprocess
    import sys

    code = (
        "import sys, service.validation, service.v2_codec; "
        "bad = {'flask', 'werkzeug', 'service.errors', 'service.batcher'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
