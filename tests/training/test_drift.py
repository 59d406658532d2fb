"""Drift statistics: PSI, profiles, the noise-aware threshold and the domain classifier."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from training import drift


def test_bins_are_right_closed_and_cover_everything():
    assert drift.bin_fractions([1, 2, 2, 3, 10], [2, 3]).tolist() == [0.6, 0.2, 0.2]
    assert drift.decile_edges(np.arange(1, 101)) == pytest.approx([1 + 99 * q for q in drift.DECILES])
    assert drift.decile_edges([5] * 50) == [5.0]  # ties merge bins


def test_psi_is_zero_for_identical_shares_and_matches_the_formula():
    assert drift.psi([0.5, 0.5], [0.5, 0.5]) == 0
    expected = (0.7 - 0.5) * math.log(0.7 / 0.5) + (0.3 - 0.5) * math.log(0.3 / 0.5)
    assert drift.psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(expected)
    assert math.isfinite(drift.psi([0.5, 0.5], [1.0, 0.0]))  # an empty bin is floored, not infinite
    with pytest.raises(ValueError):
        drift.psi([0.5, 0.5], [1.0])


def test_the_noise_estimate_matches_same_distribution_samples():
    rng = np.random.default_rng(0)
    values = []
    for _ in range(300):  # a new reference each time: its own sampling noise is part of the estimate
        reference = rng.normal(size=200)
        edges = drift.decile_edges(reference)
        values.append(
            drift.psi(drift.bin_fractions(reference, edges), drift.bin_fractions(rng.normal(size=500), edges))
        )
    assert np.mean(values) == pytest.approx(drift.psi_noise(10, 200, 500), rel=0.2)
    assert (
        np.mean(np.array(values) > 3 * drift.psi_noise(10, 200, 500)) < 0.03
    )  # the threshold's false alarms


def profile_of(rng, n, mean_len=230.0, oov=0.02, score_a=0.5):
    lengths = np.maximum(1, rng.poisson(mean_len, n))
    return lengths, rng.binomial(lengths, oov), rng.beta(score_a, score_a, n)


def test_a_window_like_the_reference_is_quiet_and_a_shifted_one_flagged():
    rng = np.random.default_rng(1)
    reference = drift.profile(*profile_of(rng, 2000))
    assert reference["texts"] == 2000 and len(reference["score"]["fractions"]) == 10
    assert reference["oov"]["token_rate"] == pytest.approx(0.02, abs=0.002)
    quiet = drift.compare(reference, *profile_of(rng, 500))
    assert not quiet["drift"] and quiet["reasons"] == []
    shorter = drift.compare(reference, *profile_of(rng, 500, mean_len=20))
    assert shorter["drift"] and shorter["checks"]["length_psi"]["drift"]
    unknown = drift.compare(reference, *profile_of(rng, 500, oov=0.08))
    assert unknown["checks"]["oov_rate"]["drift"] and not unknown["checks"]["length_psi"]["drift"]
    assert unknown["checks"]["oov_rate"]["value"] == pytest.approx(0.06, abs=0.01)
    unsure = drift.compare(reference, *profile_of(rng, 500, score_a=3.0))  # scores crowd around 0.5
    assert unsure["checks"]["score_psi"]["drift"] and unsure["drift"]
    assert drift.compare(reference, *profile_of(rng, 500), auc=0.9)["reasons"] == ["domain_auc 0.900 > 0.700"]


def test_the_psi_threshold_rises_for_small_samples():
    rng = np.random.default_rng(2)
    small = drift.profile(*profile_of(rng, 40))
    result = drift.compare(small, *profile_of(rng, 40))
    assert result["checks"]["score_psi"]["threshold"] == pytest.approx(3 * drift.psi_noise(10, 40, 40))
    assert not result["checks"]["score_psi"]["drift"]


def test_domain_auc_is_half_for_one_domain_and_near_one_for_two():
    rng = np.random.default_rng(3)
    same = drift.domain_auc(rng.normal(size=(300, 20)), rng.normal(size=(300, 20)))
    assert 0.4 < same < 0.6
    other = rng.normal(size=(300, 20))
    other[:, 0] += 2.0
    assert drift.domain_auc(rng.normal(size=(300, 20)), other) > 0.9


def test_mean_vectors_average_known_tokens_only():
    vectors = SimpleNamespace(key_to_index={"good": 0, "film": 1}, vectors=np.array([[1.0, 0.0], [0.0, 3.0]]))
    out = drift.mean_vectors([["good", "film", "zzz"], ["zzz"]], vectors)
    assert out.tolist() == [[0.5, 1.5], [0.0, 0.0]]
