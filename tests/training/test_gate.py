"""The promotion gate's statistics and checks, on known tables and synthetic gold sets (no training)."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from training.gate import (
    FloorReference,
    GateInputs,
    Policy,
    decide,
    mcnemar,
    min_detectable_difference,
    paired_bootstrap,
    replaces_quick,
)


def test_mcnemar_exact_on_a_known_table():
    # 10 rows only the candidate gets right, 2 only production: P(X >= 10 or X <= 2 | n=12, 1/2) = 158/4096.
    cand = np.array([1] * 10 + [0] * 2 + [1] * 50 + [0] * 7, dtype=bool)
    prod = np.array([0] * 10 + [1] * 2 + [1] * 50 + [0] * 7, dtype=bool)
    test = mcnemar(cand, prod)
    assert (test["b"], test["c"]) == (10, 2)
    assert test["p_value"] == pytest.approx(158 / 4096)
    assert test["p_candidate_worse"] == pytest.approx(1 - 13 / 4096)  # the candidate is the better one
    assert mcnemar(prod, cand)["p_candidate_worse"] == pytest.approx(79 / 4096)
    assert mcnemar(cand, cand) == {"b": 0, "c": 0, "p_value": 1.0, "p_candidate_worse": 1.0}


def test_paired_bootstrap_interval_covers_a_known_difference():
    # Rows where the candidate alone is right (+1) with probability 0.09, production alone (-1) with
    # 0.04: the true accuracy difference is +0.05. A 90% interval must cover it about 90% of the time.
    rng = np.random.default_rng(1)
    covered = 0
    sims = 120
    for i in range(sims):
        u = rng.random(400)
        values = np.where(u < 0.09, 1.0, np.where(u < 0.13, -1.0, 0.0))
        ci = paired_bootstrap(values, resamples=400, confidence=0.9, seed=i)
        assert ci["low"] <= ci["diff"] <= ci["high"]
        covered += ci["low"] <= 0.05 <= ci["high"]
    assert 0.82 <= covered / sims <= 0.97


def test_min_detectable_difference_has_the_promised_power():
    n, p_d = 2000, 0.08
    mde = min_detectable_difference(n, p_d)
    assert mde == pytest.approx((1.959964 + 0.841621) * np.sqrt(p_d / n), rel=1e-4)  # ~1.8 points
    # Simulate gold sets where the candidate really is `mde` better: McNemar must see it ~80% of the time.
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        disagreements = rng.binomial(n, p_d)
        b = rng.binomial(disagreements, 0.5 + mde / (2 * p_d))
        hits += binomtest(b, disagreements, 0.5).pvalue < 0.05
    assert 0.72 <= hits / 400 <= 0.88
    assert min_detectable_difference(8000, p_d) == pytest.approx(mde / 2)  # 4x the rows, half the difference


def synthetic(n=2000, prod_acc=0.85, flip_to_wrong=0, flip_to_right=0, seed=0, flip_seed=None):
    """Return labels and production/candidate probabilities; the candidate differs on chosen rows."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    right = rng.random(n) < prod_acc
    confidence = rng.uniform(0.6, 0.95, n)
    prod = np.where(right == (labels == 1), confidence, 1 - confidence)
    cand = prod.copy()
    right_rows, wrong_rows = np.flatnonzero(right), np.flatnonzero(~right)
    if flip_seed is not None:  # which rows change: random, so two candidates disagree both ways
        pick = np.random.default_rng(flip_seed)
        right_rows, wrong_rows = pick.permutation(right_rows), pick.permutation(wrong_rows)
    cand[right_rows[:flip_to_wrong]] = 1 - cand[right_rows[:flip_to_wrong]]
    cand[wrong_rows[:flip_to_right]] = 1 - cand[wrong_rows[:flip_to_right]]
    return labels, prod, cand


def test_candidate_clearly_worse_is_refused_and_the_numbers_are_reported():
    labels, prod, cand = synthetic(flip_to_wrong=120, flip_to_right=20)  # 5 points worse
    result = decide(GateInputs(labels, cand, 2, prod, 1), Policy())
    assert not result.promote
    acc = result.check("accuracy_vs_production")
    assert not acc.passed and "worse by more than the tolerance" in acc.detail
    assert acc.numbers["accuracy_diff"]["diff"] == pytest.approx(-0.05)
    assert acc.numbers["accuracy_diff"]["high"] < 0
    assert (acc.numbers["mcnemar"]["b"], acc.numbers["mcnemar"]["c"]) == (20, 120)
    assert acc.numbers["mcnemar"]["p_value"] < 1e-10
    assert "smallest detectable difference" in acc.detail
    assert "accuracy_vs_production" in result.reason


def test_candidate_within_the_noise_passes_with_its_interval():
    labels, prod, cand = synthetic(flip_to_wrong=60, flip_to_right=52)  # 0.4 points worse: noise
    result = decide(GateInputs(labels, cand, 2, prod, 1), Policy())
    assert result.promote, result.reason
    d = result.check("accuracy_vs_production").numbers["accuracy_diff"]
    assert d["low"] < -0.004 < 0 < d["high"]
    assert [c.name for c in result.checks] == [
        "finite",
        "accuracy_vs_production",
        "log_loss_vs_production",
        "ece_vs_production",
        "floor",
        "behaviour",
    ]


def test_floor_stops_a_chain_of_candidates_each_within_the_noise():
    labels, prod, _ = synthetic(seed=3)
    policy = Policy(floor_margin=0.02)
    best = FloorReference(1, float(((prod >= 0.5) == (labels == 1)).mean()), len(labels))
    production, version, stopped_by = prod, 1, None
    for step in range(5):  # each candidate is 0.8 points worse than the one before it, on other rows
        _, _, cand = synthetic(flip_to_wrong=100 + 16 * (step + 1), flip_to_right=100, seed=3, flip_seed=step)
        result = decide(GateInputs(labels, cand, version + 1, production, version, floor=best), policy)
        assert result.check("accuracy_vs_production").passed  # never significantly worse than its parent
        if not result.promote:
            stopped_by = (step, [c.name for c in result.checks if not c.passed])
            break
        production, version = cand, version + 1
    assert stopped_by == (2, ["floor"])  # 2.4 points below the best: below the 2-point floor
    assert ((production >= 0.5) == (labels == 1)).mean() >= best.accuracy - 0.02


def test_no_production_promotes_and_unfair_production_cannot_be_compared():
    labels, prod, cand = synthetic()
    assert decide(GateInputs(labels, cand, 1), Policy()).promote
    seen = np.zeros(len(labels), dtype=bool)
    seen[: len(labels) - 10] = True  # production trained on all but 10 gold rows
    result = decide(GateInputs(labels, cand, 2, prod, 1, comparable=~seen), Policy())
    assert not result.promote
    assert "trained on 1990 of the 2000 gold reviews" in result.check("accuracy_vs_production").detail
    # Partly seen: compared on the unseen rows only.
    seen[: len(labels) // 2] = True
    seen[len(labels) // 2 :] = False
    result = decide(GateInputs(labels, cand, 2, prod, 1, comparable=~seen), Policy())
    assert result.check("accuracy_vs_production").numbers["rows"] == len(labels) // 2


def test_non_finite_candidate_is_refused_and_log_loss_check_sees_overconfidence():
    labels, prod, cand = synthetic()
    cand[3] = np.nan
    assert not decide(GateInputs(labels, cand, 2, prod, 1), Policy()).check("finite").passed
    _, _, cand = synthetic()
    overconfident = np.where(cand >= 0.5, 0.9999, 0.0001)  # same predictions, wild probabilities
    result = decide(GateInputs(labels, overconfident, 2, prod, 1), Policy())
    assert result.check("accuracy_vs_production").passed
    assert not result.check("log_loss_vs_production").passed


def test_extra_checks_are_appended():
    from training.gate import Check

    labels, prod, cand = synthetic()
    extra = lambda inputs, policy: Check("extra", False, "fails on negation", {"failures": 3})  # noqa: E731
    result = decide(GateInputs(labels, cand, 2, prod, 1), Policy(), extra_checks=[extra])
    assert not result.promote and result.checks[-1].name == "extra"
    assert result.to_dict()["checks"][-1] == {
        "name": "extra",
        "passed": False,
        "detail": "fails on negation",
        "numbers": {"failures": 3},
    }


def reads_negation(texts):
    """A 'model' that gets negation right on the suite's words: positive iff 'not' and praise disagree."""
    praise = ("good", "great", "superb", "loved", "wonderful", "excellent", "brilliant")
    return np.array(
        [0.2 if ("not" in t.lower().split()) == any(w in t.lower() for w in praise) else 0.8 for t in texts]
    )


def test_behaviour_check_refuses_a_capability_drop_and_reports_both_versions():
    from training.behaviour import run_suite

    labels, prod, cand = synthetic()
    good = run_suite(reads_negation)
    deaf = run_suite(lambda texts: np.full(len(texts), 0.9))  # everything positive: negation collapses

    def behaviour(candidate, tolerance):
        inputs = GateInputs(
            labels, cand, 2, prod, 1, candidate_behaviour=candidate, production_behaviour=good
        )
        return decide(inputs, Policy(behaviour_tolerance=tolerance)).check("behaviour")

    refused = behaviour(deaf, 0.05)
    assert not refused.passed and "behaviour pass rate on" in refused.detail
    assert refused.numbers["production"]["negation"] > refused.numbers["candidate"]["negation"] + 0.05
    assert refused.numbers["suite"].startswith("sentiment-behaviour v")
    assert behaviour(deaf, 1.0).passed  # a tolerance of 100 points lets anything through
    assert behaviour(good, 0.0).passed  # no drop at all passes even a zero tolerance
    # Without production, or without suite reports, there is nothing to compare.
    assert decide(GateInputs(labels, cand, 1, candidate_behaviour=deaf), Policy()).check("behaviour").passed
    assert decide(GateInputs(labels, cand, 2, prod, 1), Policy()).check("behaviour").passed


def manifest(*, quick: bool, accuracy: float = 0.8, ece: float = 0.03, parity: bool = True) -> dict:
    return {
        "quick": quick,
        "metrics": {"accuracy": accuracy, "ece": ece, "n": 200},
        "parity": {"passed": parity},
    }


# -- the first start's rule: a full model replaces the quick one ----------------------------------------
def test_a_full_model_replaces_a_quick_one_even_when_its_validation_number_is_lower():
    # Decided: a quick model is a placeholder; the splits differ, so the numbers are not compared.
    accepted, reason = replaces_quick(
        manifest(quick=False, accuracy=0.70), manifest(quick=True, accuracy=0.80)
    )
    assert accepted and "replaces the quick one" in reason and "0.7000" in reason and "0.8000" in reason


@pytest.mark.parametrize(
    "candidate, production, why",
    [
        (manifest(quick=True), manifest(quick=False), "never replaces"),
        (manifest(quick=True), manifest(quick=True), "never replaces"),
        (manifest(quick=False), manifest(quick=False), "retraining pipeline"),
        (manifest(quick=False, accuracy=math.nan), manifest(quick=True), "not finite"),
        (manifest(quick=False, parity=False), manifest(quick=True), "parity"),
        ({"quick": False, "parity": {"passed": True}}, manifest(quick=True), "missing or not finite"),
    ],
)
def test_what_the_gate_refuses(candidate, production, why):
    accepted, reason = replaces_quick(candidate, production)
    assert not accepted and why in reason


def test_anything_checked_may_fill_an_empty_production():
    assert replaces_quick(manifest(quick=True), None) == (True, "no production version yet")
    assert not replaces_quick(manifest(quick=True, parity=False), None)[0]


def test_per_row_log_losses_average_to_the_reported_log_loss():
    """The gate's paired log-loss difference and the reported log loss are one quantity, clipping included."""
    from training import gate, metrics

    labels = np.array([1, 0, 1, 0, 1])
    probs = np.array([1.0, 0.0, 0.0, 1.0, 0.3])  # two certain mistakes: only the clip keeps them finite
    assert gate.row_log_losses(labels, probs).mean() == pytest.approx(metrics.log_loss(labels, probs))


# -- the README's gate table states the CLI's defaults ----------------------------------------------
def test_the_readme_gate_table_states_each_flags_real_default():
    """Users pick tolerances from the README table: each "`--flag` (default)" cell is the real default."""
    import re
    from pathlib import Path

    from training.pipeline import build_parser

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    retrain = next(a for a in build_parser()._actions if a.dest == "command").choices["retrain"]
    defaults = {flag: action.default for action in retrain._actions for flag in action.option_strings}
    cells = re.findall(r"^\| `[a-z_]+` \|.*\| `(--[a-z-]+)` \(([^)]+)\) \|$", readme, flags=re.M)
    assert len(cells) >= 4, "the README's gate table moved: update this test"
    for flag, stated in cells:
        assert float(stated) == defaults[flag], (
            f"README says {flag} defaults to {stated}, the CLI to {defaults[flag]}"
        )
