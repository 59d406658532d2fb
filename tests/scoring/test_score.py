"""The per-chunk function: every row kept, bad texts reported, scores equal the Predictor's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inference.predictor import Predictor
from registry.store import Registry
from scoring import score
from scoring.score import ScoreSpec, score_chunk, text_error


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("fine film", None),
        ("!!", None),  # no word token: the vocabulary scores it as one unknown word
        (None, "null_text"),
        (float("nan"), "null_text"),
        (pd.NA, "null_text"),
        ("", "empty_text"),
        (" \t\n\u3000", "empty_text"),
        (42, "not_a_string"),
        (3.5, "not_a_string"),
        (b"bytes", "not_a_string"),
        (["a", "list"], "not_a_string"),
        ({"a": 1}, "not_a_string"),
        ("x" * 11, "text_too_long"),
        ("x" * 10, None),
    ],
)
def test_text_error(value: object, error: str | None) -> None:
    assert text_error(value, max_chars=10) == error


def _spec(registry: Registry, **changes) -> ScoreSpec:
    fields = dict(
        version_dir=str(registry.production_dir("sentiment")),
        model_version=1,
        text_column="text",
        carry=("id",),
        max_chars=100,
    )
    return ScoreSpec(**{**fields, **changes})


def test_score_chunk_keeps_every_row_in_order(registry: Registry) -> None:
    texts = ["a great film", None, "boring and awful " * 3, "   ", 7, "x" * 101, "loved it !"]
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(len(texts))], "text": pd.Series(texts, dtype=object)})
    out = score_chunk(frame, _spec(registry))

    assert out.columns.tolist() == ["id", "probability", "score", "label", "model_version", "error"]
    assert out["id"].tolist() == frame["id"].tolist()
    assert out["error"].tolist() == [
        None,
        "null_text",
        None,
        "empty_text",
        "not_a_string",
        "text_too_long",
        None,
    ]
    predictor = Predictor.load(registry.production_dir("sentiment"))
    ok = [0, 2, 6]
    expected = predictor.score_texts([texts[i] for i in ok])
    np.testing.assert_allclose(
        out["probability"].iloc[ok], expected, rtol=0, atol=1e-6
    )  # grouping may differ: parity bound
    assert out["score"].equals(out["probability"])
    assert out["label"].iloc[ok].tolist() == [predictor.label_for(p) for p in expected]
    assert out["probability"].drop(index=ok).isna().all() and out["label"].drop(index=ok).isna().all()
    assert (out["model_version"] == 1).all()


def test_bad_or_empty_chunks_never_load_the_model(registry: Registry) -> None:
    spec = _spec(registry, version_dir="/nonexistent/model/7")  # loading it would raise
    frame = pd.DataFrame({"id": ["a", "b"], "text": [None, " "]})
    assert score_chunk(frame, spec)["error"].tolist() == ["null_text", "empty_text"]
    assert len(score_chunk(frame.iloc[:0], spec)) == 0


def test_model_loaded_once_per_process(registry: Registry) -> None:
    spec = _spec(registry)
    frame = pd.DataFrame({"id": ["a"], "text": ["good"]})
    before = score.model_loads().get(spec.version_dir, 0)
    for _ in range(3):
        score_chunk(frame, spec)
    assert score.model_loads()[spec.version_dir] == max(before, 1)


def test_clashing_input_columns_are_renamed(registry: Registry) -> None:
    spec = _spec(registry, carry=("id", "label", "text"))
    assert spec.output_columns == [
        "id",
        "input_label",
        "text",
        "probability",
        "score",
        "label",
        "model_version",
        "error",
    ]
    out = score_chunk(pd.DataFrame({"id": [1], "label": [0], "text": ["good"]}), spec)
    assert out["input_label"].tolist() == [0] and out["label"].tolist()[0] in ("positive", "negative")
