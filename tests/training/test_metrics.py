"""Metrics: scikit-learn's numbers equal the hand-written ones they replaced; calibration on made-up data."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import (
    classification_metrics,
    evaluate_logits,
    expected_calibration_error,
    fit_temperature,
    log_loss,
    reliability_table,
)


# -- the former hand-written implementations, kept as the oracle ---------------------------------
def _old_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def _old_log_loss(labels, probs):
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _old_ece(labels, probs, bins=15):
    confidence = np.where(probs >= 0.5, probs, 1 - probs)
    correct = ((probs >= 0.5) == (labels == 1)).astype(np.float64)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def _old_reliability(labels, probs, bins=15):
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            rows.append(
                {
                    "predicted": float(probs[in_bin].mean()),
                    "observed": float(labels[in_bin].mean()),
                    "count": int(in_bin.sum()),
                }
            )
    return rows


def _old_classification(labels, probs):
    pred = (probs >= 0.5).astype(int)
    tp = int(((pred == 1) & (labels == 1)).sum())
    tn = int(((pred == 0) & (labels == 0)).sum())
    fp = int(((pred == 1) & (labels == 0)).sum())
    fn = int(((pred == 0) & (labels == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / len(labels),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def _cases():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 500)
    logits = rng.normal(0, 3, 500) + 2 * (labels - 0.5)
    yield "random", labels, _old_sigmoid(logits)
    edges = np.r_[np.linspace(0, 1, 16), np.linspace(0.5, 1, 16), [0.0, 1.0, 1 - 1e-9, 1e-9]]
    yield "bin edges and extremes", rng.integers(0, 2, len(edges)), edges
    yield "all predicted negative", np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4])
    yield "one class only", np.ones(6, dtype=int), np.array([0.2, 0.6, 0.7, 0.9, 0.99, 0.5])


@pytest.mark.parametrize("name,labels,probs", list(_cases()), ids=[c[0] for c in _cases()])
def test_library_metrics_equal_the_hand_written_ones(name, labels, probs):
    got = classification_metrics(labels, probs)
    old = _old_classification(labels, probs)
    assert got["confusion_matrix"] == old["confusion_matrix"]
    for key in ("accuracy", "precision", "recall", "f1"):
        assert got[key] == pytest.approx(old[key], rel=1e-12, abs=1e-15), key
    assert log_loss(labels, probs) == pytest.approx(_old_log_loss(labels, probs), rel=1e-12)
    assert expected_calibration_error(labels, probs) == pytest.approx(
        _old_ece(labels, probs), rel=1e-12, abs=1e-15
    )
    new_rows, old_rows = reliability_table(labels, probs), _old_reliability(labels, probs)
    assert [r["count"] for r in new_rows] == [r["count"] for r in old_rows]
    for new, ref in zip(new_rows, old_rows):
        assert new["predicted"] == pytest.approx(ref["predicted"], rel=1e-12)
        assert new["observed"] == pytest.approx(ref["observed"], rel=1e-12, abs=1e-15)


def test_temperature_matches_the_former_fit_and_improves_log_loss():
    from scipy.optimize import minimize_scalar

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 2000)
    logits = 4.0 * (rng.normal(0, 1, 2000) + (labels - 0.5))  # overconfident on purpose
    old = minimize_scalar(
        lambda t: _old_log_loss(labels, _old_sigmoid(logits / np.exp(t))),
        bounds=(-3.0, 3.0),
        method="bounded",
    )
    temperature = fit_temperature(labels, logits)
    assert temperature == pytest.approx(float(np.exp(old.x)), rel=1e-6)
    assert temperature > 1.5
    evaluation = evaluate_logits(labels, logits, temperature)
    assert evaluation["calibrated"]["log_loss"] < evaluation["uncalibrated"]["log_loss"]
    assert evaluation["calibrated"]["ece"] < evaluation["uncalibrated"]["ece"]


# -- calibration maths on constructed data -------------------------------------------------------


def calibrated_set() -> tuple[np.ndarray, np.ndarray]:
    """Return (labels, probabilities) where each confidence c is right exactly a fraction c of the time."""
    labels, probs = [], []
    for c in (0.6, 0.7, 0.8, 0.9, 1.0):
        right = round(c * 10)
        labels += [1] * right + [0] * (10 - right)  # "positive" with p = c: right when the label is 1
        probs += [c] * 10
        labels += [0] * right + [1] * (10 - right)  # "negative" with p = 1 - c: right when the label is 0
        probs += [1 - c] * 10
    return np.array(labels), np.array(probs)


def test_a_perfectly_calibrated_set_has_zero_ece():
    labels, probs = calibrated_set()
    assert expected_calibration_error(labels, probs) == pytest.approx(0.0, abs=1e-12)
    assert classification_metrics(labels, probs)["ece"] == pytest.approx(0.0, abs=1e-12)


def test_ece_is_the_weighted_gap_between_confidence_and_accuracy():
    # Half the texts at p = 0.9, right half the time: |0.5 - 0.9| = 0.4 on every text.
    assert expected_calibration_error(np.array([1, 0] * 50), np.full(100, 0.9)) == pytest.approx(0.4)
    # 10 texts at 0.8 right 6 times (gap 0.2) and 10 at 0.3, i.e. "negative" with confidence 0.7,
    # right 7 times (gap 0): ECE = 0.5 * 0.2 + 0.5 * 0 = 0.1.
    labels = np.array([1] * 6 + [0] * 4 + [1] * 3 + [0] * 7)
    probs = np.array([0.8] * 10 + [0.3] * 10)
    assert expected_calibration_error(labels, probs) == pytest.approx(0.1)


def synthetic(true_temperature: float, n: int = 100_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (labels, logits) drawn so that sigmoid(logit / T) is the true probability."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 4.0, n)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-logits / true_temperature))).astype(int)
    return labels, logits


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_temperature_fitting_recovers_a_known_temperature(true_temperature):
    labels, logits = synthetic(true_temperature)
    fitted = fit_temperature(labels, logits)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    scaled = 1.0 / (1.0 + np.exp(-logits / fitted))
    raw = 1.0 / (1.0 + np.exp(-logits))
    assert log_loss(labels, scaled) <= log_loss(labels, raw) + 1e-9  # it minimises the log loss
    assert expected_calibration_error(labels, scaled) < 0.01


def test_evaluation_reports_the_ece_before_and_after_the_fitted_temperature():
    labels, logits = synthetic(2.5, seed=1)
    report = evaluate_logits(labels, logits, fit_temperature(labels, logits))
    assert report["uncalibrated"]["ece"] > 0.05  # logits 2.5x too confident
    assert report["calibrated"]["ece"] < 0.01
    assert report["calibrated"]["accuracy"] == report["uncalibrated"]["accuracy"]  # T > 0 keeps every label
