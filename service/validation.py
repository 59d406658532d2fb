"""Turn a decoded request document into a list of texts, or refuse it with a precise 4xx.

Pure functions over plain Python values (no Flask request object), so hypothesis can fuzz them
directly and both the native and the TF-Serving-style endpoints share one set of rules.
"""

from __future__ import annotations

import orjson
from dataclasses import dataclass
from typing import Any

from embeddings.tokenizer import nfkc_rewriting
from service.refusals import InvalidRequest, PayloadTooLarge
from service.settings import Settings


@dataclass(frozen=True)
class Limits:
    """Size limits one request must respect (their meanings: service/settings.py)."""

    max_texts: int
    max_text_chars: int
    max_nfkc_rewritten_chars: int = Settings.max_nfkc_rewritten_chars


def decode_json(raw: bytes) -> Any:
    """Decode a UTF-8 JSON body; refuse invalid UTF-8, malformed JSON (NaN included) and absurd nesting.

    orjson parses the bytes directly (no decoded copy) and stops at 1,024 levels of nesting;
    only a refused body pays for finding out which rule it broke.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            message = f"the body is not valid UTF-8 (byte {bad.start})"
            raise InvalidRequest(message, code="invalid_utf8") from None
        if "depth limit" in str(exc):
            raise InvalidRequest("the JSON document is nested too deeply", code="invalid_json") from None
        raise InvalidRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None


def texts_from_predict(doc: Any, limits: Limits) -> list[str]:
    """Return the texts of a ``/v1/predict`` body: ``{"texts": [...]}`` or ``{"text": "..."}``."""
    _require_object(doc, allowed={"text", "texts"})
    if ("text" in doc) == ("texts" in doc):
        raise InvalidRequest('give exactly one of "text" (a string) or "texts" (a list of strings)')
    if "text" in doc:
        return check_texts([doc["text"]], limits, field="text", single=True)
    return check_texts(doc["texts"], limits, field="texts")


def text_from_explain(doc: Any, limits: Limits) -> str:
    """Return the text of a ``/v1/explain`` body: ``{"text": "..."}`` (one text per explanation)."""
    _require_object(doc, allowed={"text"})
    if "text" not in doc:
        raise InvalidRequest('the body needs "text": the string to explain')
    return check_texts([doc["text"]], limits, field="text", single=True)[0]


def texts_from_instances(doc: Any, limits: Limits) -> list[str]:
    """Return the texts of a TF-Serving ``:predict`` body: ``{"instances": [...]}``.

    An instance is a string or ``{"text": "..."}`` (TF Serving's row format with a named input).
    """
    _require_object(doc, allowed={"instances", "signature_name"})
    signature = doc.get("signature_name", "serving_default")
    if signature != "serving_default":
        raise InvalidRequest('"signature_name" must be "serving_default" (the only signature)')
    if "instances" not in doc:
        raise InvalidRequest('the body needs "instances": a list of strings or {"text": ...} objects')
    instances = doc["instances"]
    if not isinstance(instances, list):
        raise InvalidRequest('"instances" must be a list')
    texts = []
    for i, instance in enumerate(instances):
        if isinstance(instance, dict):
            if set(instance) != {"text"}:
                raise InvalidRequest(f'"instances[{i}]" must be a string or an object with only "text"')
            instance = instance["text"]
        texts.append(instance)
    return check_texts(texts, limits, field="instances")


#: What ``/v1/feedback`` accepts as a label, and the 0/1 stored for it (what training.data reads).
FEEDBACK_LABELS = {"positive": 1, "negative": 0}
FEEDBACK_FIELDS = frozenset({"text", "label", "id", "source"})
#: Longest ``id`` or ``source`` of a feedback item, in characters.
MAX_TAG_CHARS = 128


@dataclass(frozen=True)
class FeedbackItem:
    """One validated feedback item: the text, its 0/1 label, and the client's optional tags."""

    text: str
    label: int
    id: str | None = None
    source: str | None = None


def feedback_from_body(doc: Any, limits: Limits) -> list[FeedbackItem]:
    """Return the items of a ``/v1/feedback`` body: one item object, or a list of them.

    The texts are checked together, as one ``/v1/predict`` request's: the same per-text and
    per-request limits (a list's texts are named ``"text[i]"`` in messages).
    """
    single = not isinstance(doc, list)
    if single:
        items = [_feedback_item(doc, "")]
    else:
        if not doc:
            raise InvalidRequest("the list of feedback items must not be empty", code="empty_texts")
        if len(doc) > limits.max_texts:
            raise PayloadTooLarge(
                f"the body holds {len(doc)} feedback items; the limit is {limits.max_texts} per request",
                code="too_many_texts",
            )
        items = [_feedback_item(item, f"[{i}].") for i, item in enumerate(doc)]
    check_texts([item.text for item in items], limits, field="text", single=single)
    return items


def _feedback_item(doc: Any, where: str) -> FeedbackItem:
    """Check one item's shape, label and tags (its text is checked with the others); ``where``: ``[3].``"""
    if not isinstance(doc, dict):
        raise InvalidRequest(
            f"a feedback item{' ' + where[:-1] if where else ''} must be a JSON object with "
            f'"text" and "label", not {_json_type(doc)}'
        )
    unknown = sorted(set(doc) - FEEDBACK_FIELDS)
    if unknown:
        shown = [name[:40] for name in unknown[:3]]
        raise InvalidRequest(f"{where}unknown field(s) {shown}; allowed: {sorted(FEEDBACK_FIELDS)}")
    for name in ("text", "label"):
        if name not in doc:
            raise InvalidRequest(
                f'"{where}{name}" is required: a feedback item is {{"text": ..., "label": ...}}'
            )
    label = doc["label"]
    if type(label) is int and label in (0, 1):  # not bool, not 1.0: say exactly what the client meant
        value = label
    elif type(label) is str and label in FEEDBACK_LABELS:
        value = FEEDBACK_LABELS[label]
    else:
        plain = isinstance(label, (str, int, float)) and not isinstance(label, bool)
        shown = repr(label)[:40] if plain else _json_type(label)
        raise InvalidRequest(
            f'"{where}label" must be "positive", "negative", 1 or 0, not {shown}', code="invalid_label"
        )
    return FeedbackItem(doc["text"], value, _tag(doc, "id", where), _tag(doc, "source", where))


def _tag(doc: dict, name: str, where: str) -> str | None:
    """Return an optional short string field (``id``, ``source``) or refuse it."""
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f'"{where}{name}" must be a string, not {_json_type(value)}')
    if not value.strip() or len(value) > MAX_TAG_CHARS or not value.isprintable():  # also no surrogates
        raise InvalidRequest(
            f'"{where}{name}" must be 1 to {MAX_TAG_CHARS} printable characters, not only spaces'
        )
    return value


def check_texts(texts: Any, limits: Limits, *, field: str, single: bool = False) -> list[str]:
    """Check a list of texts against the types and limits; return it unchanged."""
    if not isinstance(texts, list):
        raise InvalidRequest(f'"{field}" must be a list of strings')
    if not texts:
        raise InvalidRequest(f'"{field}" must not be empty', code="empty_texts")
    if len(texts) > limits.max_texts:
        raise PayloadTooLarge(
            f'"{field}" holds {len(texts)} texts; the limit is {limits.max_texts} per request',
            code="too_many_texts",
        )
    rewriting_left = limits.max_nfkc_rewritten_chars
    for i, text in enumerate(texts):
        where = f'"{field}"' if single else f'"{field}[{i}]"'
        if not isinstance(text, str):
            raise InvalidRequest(f"{where} must be a string, not {_json_type(text)}")
        if len(text) > limits.max_text_chars:
            raise PayloadTooLarge(
                f"{where} has {len(text)} characters; the limit is {limits.max_text_chars}",
                code="text_too_long",
            )
        # The tokenizer works on the NFKC-normalised text, which some characters multiply: bound
        # that work before doing any of it (cheap: one scan for the characters NFKC changes).
        rewriting = nfkc_rewriting(text, limit=max(limits.max_text_chars, rewriting_left))
        if rewriting.normalized_length(text) > limits.max_text_chars:
            raise PayloadTooLarge(
                f"{where} has {len(text)} characters but {rewriting.normalized_length(text)} or more once "
                f"Unicode NFKC normalisation expands it; the limit is {limits.max_text_chars}",
                code="text_too_long",
            )
        rewriting_left -= rewriting.produced
        if rewriting_left < 0:
            raise PayloadTooLarge(
                f"Unicode NFKC normalisation would rewrite this request's texts into more than "
                f"{limits.max_nfkc_rewritten_chars} characters (the limit per request): "
                "send them in several requests",
                code="normalization_too_large",
            )
        if not text.strip():
            raise InvalidRequest(f"{where} is empty or only whitespace", code="empty_text")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a "\\ud800" escape is not a character
            raise InvalidRequest(f"{where} contains an unpaired surrogate", code="invalid_text") from None
    return texts


def _require_object(doc: Any, *, allowed: set[str]) -> None:
    """Refuse a non-object body or one with unknown fields (typos should not pass silently)."""
    if not isinstance(doc, dict):
        raise InvalidRequest(f"the body must be a JSON object, not {_json_type(doc)}")
    unknown = sorted(set(doc) - allowed)
    if unknown:
        shown = [name[:40] for name in unknown[:3]]  # never echo a megabyte-long key back
        raise InvalidRequest(f"unknown field(s) {shown}; allowed: {sorted(allowed)}")


def _json_type(value: Any) -> str:
    """Name a decoded JSON value's type as JSON calls it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
