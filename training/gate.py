"""The promotion gate: may a retrained candidate replace production? Paired statistics on a gold set.

Candidate and production are scored on the same gold rows, so their difference is measured
*paired*: rows both get right or both get wrong say nothing about which is better; only the
disagreements do. With a 2,000-row gold set the accuracy of one model has a standard error of
about 0.6 points, so a fixed "at most 0.5 points worse" rule on point estimates mostly judges
noise. Instead the gate reports, for candidate minus production,

- McNemar's exact test on the disagreements (``b`` rows only the candidate gets right, ``c`` rows
  only production gets right),
- a paired bootstrap confidence interval of the accuracy and log-loss differences,
- the smallest accuracy difference this gold set can detect (80% power at the same confidence),

and refuses a candidate only when the interval shows it is worse by more than the tolerance.
Accuracy says little about "not bad at all", so the candidate's **behaviour suite** pass rates
(training/behaviour.py, scored now with one suite version for both) may not fall more than
``behaviour_tolerance`` below production's, overall or on any capability.
Small losses that the gold set cannot see are bounded by the **floor**: the candidate may never
fall more than ``floor_margin`` below the best gold accuracy any fairly measured production
version reached on this gold set, so a chain of "within the noise" candidates cannot walk quality
down.

:func:`decide` runs a list of checks, each returning a :class:`Check` (name, passed, detail,
numbers); the result lists them all. Add a check by writing a function ``(GateInputs, Policy) ->
Check`` and appending it to :data:`CHECKS`, or pass it in ``extra_checks`` (the pipeline's
``RetrainOptions.extra_checks``); a check that needs the registry can be a closure over it.

The first start (``run.sh``, training/quickstart.py) has a simpler rule, :func:`replaces_quick`:
its quick model is a placeholder that any full model passing the training run's own checks
replaces; it never replaces a full production model (only ``retrain`` and this gate do).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.stats import binomtest, norm

from registry.artifact import is_quick
from training.metrics import PROBABILITY_EPS, expected_calibration_error

#: Fewer gold rows than this that production never trained on: no fair comparison is possible.
MIN_COMPARABLE_ROWS = 30


@dataclass
class Policy:
    """When a candidate may replace production (defaults are the CLI's defaults)."""

    accuracy_tolerance: float = 0.0  # refuse if the CI shows accuracy lower than production's by more
    log_loss_tolerance: float = 0.0  # refuse if the CI shows log loss higher than production's by more
    ece_tolerance: float = 0.01  # refuse if ECE (point estimate) is higher than production's by more
    floor_margin: float = 0.02  # refuse if accuracy is below the best fair production accuracy minus this
    behaviour_tolerance: float = 0.05  # refuse if a behaviour-suite pass rate is this much below production's
    confidence: float = 0.95  # two-sided confidence of the intervals (and of McNemar's test)
    bootstrap: int = 2000  # paired bootstrap resamples
    seed: int = 0  # seed of the bootstrap


@dataclass
class FloorReference:
    """The best gold accuracy a fairly measured production version reached on this gold set."""

    version: int
    accuracy: float
    rows: int


@dataclass
class GateInputs:
    """Calibrated gold-set probabilities of candidate and production, row by row."""

    labels: np.ndarray  # 0/1 gold labels
    candidate: np.ndarray  # candidate's P(positive) per gold row
    candidate_version: int
    production: np.ndarray | None = None  # production's P(positive) per gold row; None = no production
    production_version: int | None = None
    comparable: np.ndarray | None = None  # bool per row: production never trained on it (None = all rows)
    floor: FloorReference | None = None
    candidate_behaviour: dict | None = None  # training.behaviour.run_suite report; None = not scored
    production_behaviour: dict | None = None
    _paired: dict = field(default_factory=dict, repr=False)  # the comparison, computed once per policy


@dataclass
class Check:
    """One named test of the gate with its verdict and the numbers behind it."""

    name: str
    passed: bool
    detail: str
    numbers: dict = field(default_factory=dict)


@dataclass
class GateResult:
    """Every check the gate ran; the candidate is promoted only if all passed."""

    checks: list[Check]

    @property
    def promote(self) -> bool:
        """Return whether every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def reason(self) -> str:
        """Return the failed checks' details, or every check's when all passed."""
        failed = [c for c in self.checks if not c.passed]
        return "; ".join(f"{c.name}: {c.detail}" for c in (failed or self.checks))

    def check(self, name: str) -> Check:
        """Return the check called ``name``."""
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict:
        """Return the result as JSON-ready data."""
        return {"promote": self.promote, "reason": self.reason, "checks": [asdict(c) for c in self.checks]}


# -- statistics -----------------------------------------------------------------------------------
def mcnemar(candidate_correct: np.ndarray, production_correct: np.ndarray) -> dict:
    """Return McNemar's exact test on the disagreements of two classifiers scored on the same rows.

    ``b`` = rows only the candidate gets right, ``c`` = rows only production gets right. Under "equally
    accurate" each disagreement goes either way with probability 1/2, so ``b ~ Binomial(b + c, 1/2)``.
    """
    cand = np.asarray(candidate_correct, dtype=bool)
    prod = np.asarray(production_correct, dtype=bool)
    b, c = int((cand & ~prod).sum()), int((~cand & prod).sum())
    if b + c == 0:
        return {"b": 0, "c": 0, "p_value": 1.0, "p_candidate_worse": 1.0}
    return {
        "b": b,
        "c": c,
        "p_value": float(binomtest(b, b + c, 0.5).pvalue),
        "p_candidate_worse": float(binomtest(b, b + c, 0.5, alternative="less").pvalue),
    }


def paired_bootstrap(
    values: np.ndarray, *, resamples: int = 2000, confidence: float = 0.95, seed: int = 0, chunk: int = 250
) -> dict:
    """Return the mean of per-row paired differences and its percentile bootstrap interval.

    ``values`` holds one difference per gold row (candidate minus production: 0/±1 for accuracy,
    the difference of the two rows' log losses for log loss); rows are resampled with replacement.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        raise ValueError("paired_bootstrap needs at least one row")
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [
            values[rng.integers(0, n, size=(min(chunk, resamples - i), n))].mean(axis=1)
            for i in range(0, resamples, chunk)
        ]
    )
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {"diff": float(values.mean()), "low": float(low), "high": float(high)}


def min_detectable_difference(
    rows: int, discordant_rate: float, *, confidence: float = 0.95, power: float = 0.8
) -> float:
    """Return the smallest accuracy difference a paired test on ``rows`` rows detects with ``power``.

    Normal approximation of McNemar's test: the difference of two accuracies measured on the same
    rows has standard error ``sqrt(p_d / n)`` where ``p_d`` is the share of rows the models disagree
    on (at least one row is assumed, so identical models do not claim infinite resolution).
    """
    if rows <= 0:
        return float("inf")
    p_d = max(discordant_rate, 1.0 / rows)
    return float((norm.ppf(1 - (1 - confidence) / 2) + norm.ppf(power)) * np.sqrt(p_d / rows))


def row_log_losses(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Return each row's binary cross-entropy (clipped like ``training.metrics.log_loss``: same mean)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), PROBABILITY_EPS, 1 - PROBABILITY_EPS)
    y = np.asarray(labels, dtype=np.float64)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    """Return the share of rows whose thresholded probability matches the label."""
    return float(((np.asarray(probs) >= 0.5) == (np.asarray(labels) == 1)).mean())


def compare(labels: np.ndarray, candidate: np.ndarray, production: np.ndarray, policy: Policy) -> dict:
    """Return the paired comparison of candidate and production on the same rows (see module doc)."""
    labels = np.asarray(labels)
    cand_ok = (np.asarray(candidate) >= 0.5) == (labels == 1)
    prod_ok = (np.asarray(production) >= 0.5) == (labels == 1)
    n = len(labels)
    test = mcnemar(cand_ok, prod_ok)
    acc = paired_bootstrap(
        cand_ok.astype(float) - prod_ok.astype(float),
        resamples=policy.bootstrap,
        confidence=policy.confidence,
        seed=policy.seed,
    )
    ll = paired_bootstrap(
        row_log_losses(labels, candidate) - row_log_losses(labels, production),
        resamples=policy.bootstrap,
        confidence=policy.confidence,
        seed=policy.seed + 1,
    )
    discordant = (test["b"] + test["c"]) / n
    return {
        "rows": n,
        "candidate_accuracy": float(cand_ok.mean()),
        "production_accuracy": float(prod_ok.mean()),
        "accuracy_diff": acc,
        "log_loss_diff": ll,
        "mcnemar": test,
        "discordant_rate": discordant,
        "min_detectable_difference": min_detectable_difference(n, discordant, confidence=policy.confidence),
        "confidence": policy.confidence,
    }


# -- checks ---------------------------------------------------------------------------------------
def _comparable(inputs: GateInputs) -> np.ndarray:
    return (
        np.ones(len(inputs.labels), dtype=bool)
        if inputs.comparable is None
        else np.asarray(inputs.comparable)
    )


def _paired(inputs: GateInputs, policy: Policy) -> tuple[dict | None, str | None]:
    """Return (comparison on the rows production never saw, None) or (None, why it is impossible)."""
    if inputs.production is None:
        return None, "no production version yet"
    rows = _comparable(inputs)
    if rows.sum() < MIN_COMPARABLE_ROWS:
        return None, (
            f"production v{inputs.production_version} trained on {int((~rows).sum())} of the "
            f"{len(rows)} gold reviews; only {int(rows.sum())} are left to compare on "
            f"(need {MIN_COMPARABLE_ROWS}): retrain production without the gold set"
        )
    key = repr(policy)
    if key not in inputs._paired:
        inputs._paired[key] = compare(
            inputs.labels[rows], inputs.candidate[rows], inputs.production[rows], policy
        )
    return inputs._paired[key], None


def check_finite(inputs: GateInputs, policy: Policy) -> Check:
    """Refuse a candidate whose gold-set probabilities are not all finite numbers in [0, 1]."""
    p = np.asarray(inputs.candidate, dtype=np.float64)
    ok = bool(len(p)) and bool(np.isfinite(p).all()) and bool(((p >= 0) & (p <= 1)).all())
    return Check(
        "finite",
        ok,
        "all gold probabilities are finite"
        if ok
        else f"{int((~np.isfinite(p)).sum())} of {len(p)} gold probabilities are not finite",
        {"rows": len(p)},
    )


def check_accuracy(inputs: GateInputs, policy: Policy) -> Check:
    """Refuse a candidate whose accuracy is shown lower than production's by more than the tolerance."""
    comparison, why_not = _paired(inputs, policy)
    if comparison is None:
        return Check("accuracy_vs_production", inputs.production is None, why_not or "")
    d = comparison["accuracy_diff"]
    m = comparison["mcnemar"]
    worse = d["high"] < -policy.accuracy_tolerance
    pct = policy.confidence * 100
    detail = (
        f"accuracy {comparison['candidate_accuracy']:.4f} vs {comparison['production_accuracy']:.4f} on "
        f"{comparison['rows']} rows: difference {d['diff']:+.4f}, {pct:.0f}% CI [{d['low']:+.4f}, "
        f"{d['high']:+.4f}]; McNemar b={m['b']} c={m['c']} p={m['p_value']:.3g}; smallest detectable "
        f"difference {comparison['min_detectable_difference']:.4f}"
    )
    detail += (
        f" — worse by more than the tolerance {policy.accuracy_tolerance}"
        if worse
        else f" — not shown worse by more than {policy.accuracy_tolerance}"
    )
    return Check("accuracy_vs_production", not worse, detail, comparison)


def check_log_loss(inputs: GateInputs, policy: Policy) -> Check:
    """Refuse a candidate whose log loss is shown higher than production's by more than the tolerance."""
    comparison, why_not = _paired(inputs, policy)
    if comparison is None:
        return Check("log_loss_vs_production", inputs.production is None, why_not or "")
    d = comparison["log_loss_diff"]
    worse = d["low"] > policy.log_loss_tolerance
    detail = (
        f"log loss difference {d['diff']:+.4f}, {policy.confidence * 100:.0f}% CI [{d['low']:+.4f}, "
        f"{d['high']:+.4f}]"
        + (
            f" — worse by more than the tolerance {policy.log_loss_tolerance}"
            if worse
            else f" — not shown worse by more than {policy.log_loss_tolerance}"
        )
    )
    return Check("log_loss_vs_production", not worse, detail, d)


def check_ece(inputs: GateInputs, policy: Policy) -> Check:
    """Refuse a candidate whose calibration error is higher than production's by more than the tolerance."""
    if inputs.production is None:
        return Check("ece_vs_production", True, "no production version yet")
    rows = _comparable(inputs)
    if rows.sum() < MIN_COMPARABLE_ROWS:
        return Check(
            "ece_vs_production", False, f"too few gold rows production never trained on ({int(rows.sum())})"
        )
    cand = expected_calibration_error(inputs.labels[rows], inputs.candidate[rows])
    prod = expected_calibration_error(inputs.labels[rows], inputs.production[rows])
    ok = cand - prod <= policy.ece_tolerance
    return Check(
        "ece_vs_production",
        ok,
        f"ECE {cand:.4f} vs {prod:.4f} (tolerance {policy.ece_tolerance})",
        {"candidate": cand, "production": prod, "tolerance": policy.ece_tolerance},
    )


def check_floor(inputs: GateInputs, policy: Policy) -> Check:
    """Refuse a candidate below the best fair production accuracy on this gold set minus the floor margin."""
    acc = accuracy(inputs.labels, inputs.candidate)
    if inputs.floor is None:
        return Check(
            "floor",
            True,
            "no fairly measured production score on this gold set yet",
            {"candidate_accuracy": acc},
        )
    floor = inputs.floor.accuracy - policy.floor_margin
    ok = acc >= floor
    detail = (
        f"accuracy {acc:.4f} {'>=' if ok else '<'} floor {floor:.4f} "
        f"(best production v{inputs.floor.version} "
        f"{inputs.floor.accuracy:.4f} minus margin {policy.floor_margin})"
    )
    return Check(
        "floor",
        ok,
        detail,
        {
            "candidate_accuracy": acc,
            "floor": floor,
            "margin": policy.floor_margin,
            "reference_version": inputs.floor.version,
            "reference_accuracy": inputs.floor.accuracy,
        },
    )


def check_behaviour(inputs: GateInputs, policy: Policy) -> Check:
    """Refuse a candidate whose behaviour pass rate (overall or per capability) drops more than allowed."""
    from training.behaviour import pass_rates, regression

    candidate, production = inputs.candidate_behaviour, inputs.production_behaviour
    if candidate is None or production is None:
        why = "no production version yet" if inputs.production is None else "behaviour suite not run"
        return Check(
            "behaviour", True, why, {} if candidate is None else {"candidate": pass_rates(candidate)}
        )
    ok, detail = regression(candidate, production, policy.behaviour_tolerance)
    numbers = {
        "candidate": pass_rates(candidate),
        "production": pass_rates(production),
        "tolerance": policy.behaviour_tolerance,
        "suite": f"{candidate['suite']} v{candidate['suite_version']}",
    }
    return Check("behaviour", ok, detail, numbers)


#: The gate's checks, in the order they are reported.
CHECKS: list[Callable[[GateInputs, Policy], Check]] = [
    check_finite,
    check_accuracy,
    check_log_loss,
    check_ece,
    check_floor,
    check_behaviour,
]


def decide(
    inputs: GateInputs, policy: Policy, extra_checks: Sequence[Callable[[GateInputs, Policy], Check]] = ()
) -> GateResult:
    """Run every check on the gold-set scores and return all verdicts."""
    return GateResult([check(inputs, policy) for check in (*CHECKS, *extra_checks)])


def replaces_quick(candidate: dict, production: dict | None) -> tuple[bool, str]:
    """Return (promote?, reason) for a first-start version (training.quickstart) vs production's manifest.

    A quick model is a placeholder: any full model that passed the training run's own checks
    (runtime parity, finite validation metrics) replaces it. Their validation numbers are not
    compared: they come from different splits of different sizes (the quick and full presets hold
    out 500 and 1,250 calibration reviews), so the comparison would mostly measure noise; both are
    logged. A full production version is never replaced here (that is ``retrain``'s gold-set
    gate), and a quick model never replaces anything.
    """
    metrics = candidate.get("metrics", {})
    values = [metrics.get("accuracy"), metrics.get("ece")]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return False, f"its validation metrics are missing or not finite: {values}"
    if not candidate.get("parity", {}).get("passed"):
        return False, "it has no passed runtime parity check"
    if production is None:
        return True, "no production version yet"
    if is_quick(candidate):
        return False, "a quick model never replaces a production version"
    if not is_quick(production):
        return False, (
            "production is a full model already; replacing it is the retraining pipeline's "
            "job (python -m training.pipeline retrain, gold-set gate)"
        )
    quick = production.get("metrics", {})
    return True, (
        f"a full model replaces the quick one (validation accuracy {metrics['accuracy']:.4f} on "
        f"{metrics.get('n', '?')} reviews; the quick model had {quick.get('accuracy', math.nan):.4f} "
        f"on {quick.get('n', '?')}, another split: not compared)"
    )
