"""Temperature scaling fitted on data model selection never saw, judged out of sample (no training)."""

import numpy as np
import pytest

from training.metrics import cross_fitted_probabilities, expected_calibration_error, fit_temperature


def synthetic_logits(n: int, temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (labels, logits) where P(positive) = sigmoid(logit / temperature) exactly."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-logits / temperature))).astype(int)
    return labels, logits


def test_cross_fitting_recovers_a_known_temperature():
    labels, logits = synthetic_logits(20_000, 2.5, 0)
    temperature, probs, fold_temperatures = cross_fitted_probabilities(labels, logits, folds=2, seed=0)
    assert temperature == pytest.approx(2.5, rel=0.05)
    assert all(t == pytest.approx(2.5, rel=0.08) for t in fold_temperatures)
    assert expected_calibration_error(labels, probs) < 0.02


def test_every_row_is_scored_with_a_temperature_fitted_without_it():
    labels, logits = synthetic_logits(200, 2.0, 1)
    _, probs, temps = cross_fitted_probabilities(labels, logits, folds=2, seed=3)
    scaled = [1 / (1 + np.exp(-logits / t)) for t in temps]
    for i, p in enumerate(probs):  # each row's probability comes from exactly one fold's temperature
        assert sum(np.isclose(p, s[i]) for s in scaled) >= 1
    fold = np.random.default_rng(3).permutation(len(labels))
    first = np.zeros(len(labels), dtype=bool)
    first[fold[::2]] = True
    assert temps[0] == pytest.approx(fit_temperature(labels[~first], logits[~first]))


def test_out_of_sample_ece_is_not_flattered_like_the_in_sample_one():
    # On small calibration sets the in-sample ECE (temperature fitted and judged on the same rows) is
    # optimistic; cross-fitted probabilities are judged on rows their temperature never saw.
    in_sample, out_of_sample = [], []
    for seed in range(60):
        labels, logits = synthetic_logits(80, 1.5, seed)
        t = fit_temperature(labels, logits)
        in_sample.append(expected_calibration_error(labels, 1 / (1 + np.exp(-logits / t))))
        out_of_sample.append(
            expected_calibration_error(labels, cross_fitted_probabilities(labels, logits)[1])
        )
    assert np.mean(out_of_sample) > np.mean(in_sample)


def test_calibration_split_is_disjoint_stratified_and_leaves_both_parts():
    from training.data import calibration_split

    labels = np.array([0] * 60 + [1] * 40)
    held_out = np.arange(20, 100, 2)  # 40 validation rows: 20 negative, 20 positive
    selection, calibration = calibration_split(labels, held_out, 0.5, seed=1)
    assert len(selection) == len(calibration) == 20
    assert set(selection) | set(calibration) == set(held_out) and not set(selection) & set(calibration)
    assert labels[calibration].sum() == 10  # same label ratio as the validation split
    tiny_selection, tiny_calibration = calibration_split(labels, np.array([3, 70]), 0.5, seed=1)
    assert len(tiny_selection) == len(tiny_calibration) == 1
    with pytest.raises(ValueError, match="calibration_fraction"):
        calibration_split(labels, held_out, 1.0, seed=1)
