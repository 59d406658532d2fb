"""Shadow evaluation: the feedback hold-out, agreement on sampled traffic, and the optional guard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training import shadow
from training.data import LabelledData


def frame(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [f"text number {i}" for i in range(start, start + n)],
            "label": (np.arange(start, start + n) % 2).astype(np.int8),
        }
    )


def test_only_feedback_files_are_split_and_the_split_is_reproducible():
    feedback = frame(1000).assign(file="feedback-20260101T000000000-h-1-000001.jsonl")
    manual = frame(300, start=5000).assign(file="extra.csv")
    rows = pd.concat([feedback, manual], ignore_index=True)
    train, held = shadow.split_feedback(rows, 0.2)
    assert (train["file"] == "extra.csv").sum() == 300  # a hand-made drop file is trained on whole
    assert len(held) + (train["file"] != "extra.csv").sum() == 1000 and 150 < len(held) < 250
    assert not set(held.texts) & set(train["text"])
    again_train, again_held = shadow.split_feedback(rows, 0.2)
    assert again_held.texts == held.texts and again_held.labels.tolist() == held.labels.tolist()
    unchanged, none = shadow.split_feedback(rows, 0.0)
    assert none is None and unchanged is rows
    assert shadow.split_feedback(manual, 0.2)[1] is None


class Fixed:
    """A stand-in Predictor whose score is a function of the text."""

    def __init__(self, version: int, score) -> None:
        self.version, self.score = version, score

    def score_texts(self, texts):
        return np.array([self.score(t) for t in texts], dtype=np.float64)


def test_agreement_score_shift_and_feedback_accuracy():
    texts = [f"t{i}" for i in range(100)]
    production = Fixed(1, lambda t: 0.9 if int(t[1:]) % 2 else 0.1)
    candidate = Fixed(2, lambda t: 0.9 if int(t[1:]) % 2 or int(t[1:]) < 10 else 0.1)  # flips 5 of 100
    feedback = LabelledData(texts[:20], np.array([i % 2 for i in range(20)], dtype=np.int8), "fb")
    result = shadow.compare(candidate, production, texts, feedback)
    assert result["traffic"]["agreement"] == pytest.approx(0.95)
    assert result["traffic"]["mean_abs_score_diff"] == pytest.approx(0.04)
    assert result["traffic"]["score_psi"] > 0
    assert result["feedback"] == {"rows": 20, "candidate": 0.75, "production": 1.0}
    same = shadow.compare(production, production, texts, None)
    assert same["traffic"]["agreement"] == 1.0 and same["traffic"]["score_psi"] == 0
    assert "skipped" in same["feedback"]
    lines = "\n".join(shadow.markdown(result))
    assert "95.0%" in lines and "20 held-out rows" in lines


def test_without_traffic_or_production_the_report_says_why():
    alone = shadow.compare(Fixed(1, lambda t: 0.7), None, ["x"], None)
    assert alone["traffic"] == {"skipped": "no production version"}
    blind = shadow.compare(Fixed(2, lambda t: 0.7), Fixed(1, lambda t: 0.7), None, None)
    assert "no sampled traffic" in blind["traffic"]["skipped"]


def test_the_guard_refuses_a_candidate_that_changes_too_many_labels():
    result = {"traffic": {"agreement": 0.9}}
    assert shadow.verdict(result, None) == (True, "")
    assert shadow.verdict(result, 0.2)[0] is True
    ok, reason = shadow.verdict(result, 0.05)
    assert not ok and "10.0%" in reason
    assert shadow.verdict({"traffic": {"skipped": "none"}}, 0.05)[0] is True  # nothing to judge by
