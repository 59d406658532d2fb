"""The calibration maths: expected calibration error and temperature scaling, on constructed data."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import (
    classification_metrics,
    evaluate_logits,
    expected_calibration_error,
    fit_temperature,
    log_loss,
)


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
