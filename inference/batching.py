"""How texts are grouped into model calls: the one place that decides it, for every consumer.

A recurrent model's call on a right-padded ``(batch, length)`` matrix costs about

    seconds = fixed + per_step * length + per_token * batch * length

``fixed`` is the call's overhead, ``per_step`` the sequential cost of one time step whatever
the batch (what batching amortises), ``per_token`` the work per padded token (what padding
wastes). Which effect wins depends on the machine: on a CPU core ``per_token`` dominates and
small batches of equal-length texts pay; on a GPU ``per_step`` dominates and large batches do.
So the three numbers are *measured* on the machine that serves (:meth:`CostModel.measure`, at
warm-up), never tuned constants, and :func:`plan_batches` cuts any set of texts into the
length-sorted groups that minimise the predicted total time, within ``max_batch_size`` texts and
``max_batch_tokens`` padded tokens per call (Hugging Face TEI's ``--max-batch-tokens``).

The service's batcher, the batch scorer and ``training.evaluate`` all score through
:meth:`inference.predictor.Predictor.logits_for_ids` or the batcher's ``plan`` hook, both of
which call :func:`plan_batches`. A text's score does not depend on the group it lands in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

#: Shapes timed by :meth:`CostModel.measure`: a few batch sizes × a few lengths.
PROBE_BATCHES = (1, 8, 32)
PROBE_LENGTHS = (16, 96, 384)


@dataclass(frozen=True)
class CostModel:
    """Predicted seconds of one model call on a padded ``(batch, length)`` matrix."""

    fixed_s: float
    per_step_s: float
    per_token_s: float

    def seconds(self, batch: int, length: int) -> float:
        """Return the predicted duration of one call."""
        return self.fixed_s + self.per_step_s * length + self.per_token_s * batch * length

    @classmethod
    def measure(
        cls,
        run: Callable[[np.ndarray], object],
        *,
        max_len: int,
        batches: Sequence[int] = PROBE_BATCHES,
        lengths: Sequence[int] = PROBE_LENGTHS,
        repeats: int = 3,
    ) -> CostModel:
        """Time ``run`` on padded id matrices of a few shapes and fit the three coefficients.

        Each shape keeps its fastest of ``repeats`` runs (the least disturbed by other work on
        the machine). The fit is least squares with every coefficient kept non-negative.
        """
        rows, seconds = [], []
        for length in sorted({min(max(1, n), max_len) for n in lengths}):
            for batch in batches:
                ids = np.full((batch, length), 2, dtype=np.int64)  # id 2: the most frequent word
                run(ids)  # the first run of a shape allocates; do not time it
                best = float("inf")
                for _ in range(repeats):
                    started = time.perf_counter()
                    run(ids)
                    best = min(best, time.perf_counter() - started)
                rows.append((1.0, float(length), float(batch * length)))
                seconds.append(best)
        model = cls(*_fit_non_negative(np.asarray(rows), np.asarray(seconds)))
        log.info(
            "batch cost model: %.3f ms per call + %.2f us per step + %.3f us per padded token",
            1e3 * model.fixed_s,
            1e6 * model.per_step_s,
            1e6 * model.per_token_s,
        )
        return model


#: Used until a model's own cost was measured (a tiny test model, or before warm-up): the
#: shape of what a 2-core x86 box measured for the full model, only its ratios matter.
DEFAULT_COST = CostModel(fixed_s=1e-4, per_step_s=2e-6, per_token_s=1e-6)


@dataclass(frozen=True)
class BatchPolicy:
    """The bounds a plan respects and the cost it minimises."""

    max_batch_size: int = 64
    max_batch_tokens: int = 32768
    cost: CostModel = DEFAULT_COST

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_batch_tokens < 1:
            raise ValueError("max_batch_size and max_batch_tokens must be >= 1")


def plan_batches(lengths: Sequence[int], policy: BatchPolicy) -> list[np.ndarray]:
    """Return groups of indices into ``lengths``, shortest texts first, one model call each.

    Texts are sorted by length (stable) and the sorted order is cut into contiguous groups by
    dynamic programming, minimising the summed :class:`CostModel` time of the calls. A group
    holds at most ``max_batch_size`` texts and ``max_batch_tokens`` padded tokens (a single text
    longer than the token budget still forms a group of one). O(n * max_batch_size).
    """
    n = len(lengths)
    if n == 0:
        return []
    lens = np.maximum(np.asarray(lengths, dtype=np.int64), 1)
    order = np.argsort(lens, kind="stable")
    if n == 1:
        return [order]
    sorted_lens = lens[order].astype(np.float64)
    cost = policy.cost
    best = np.zeros(n + 1)
    cut = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        longest = sorted_lens[end - 1]
        fits = max(1, min(policy.max_batch_size, int(policy.max_batch_tokens // longest)))
        starts = np.arange(max(0, end - fits), end)
        totals = best[starts] + cost.fixed_s + longest * (cost.per_step_s + cost.per_token_s * (end - starts))
        k = int(np.argmin(totals))
        best[end], cut[end] = totals[k], starts[k]
    groups = []
    end = n
    while end > 0:
        start = int(cut[end])
        groups.append(order[start:end])
        end = start
    groups.reverse()
    return groups


def _fit_non_negative(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least squares ``x @ c ≈ y`` with ``c >= 0`` (drop negative coefficients and refit)."""
    active = np.ones(x.shape[1], dtype=bool)
    coef = np.zeros(x.shape[1])
    for _ in range(x.shape[1]):
        coef[:] = 0.0
        coef[active] = np.linalg.lstsq(x[:, active], y, rcond=None)[0]
        if (coef >= 0).all():
            break
        active &= coef > 0
    coef = np.maximum(coef, 0.0)
    if coef[2] <= 0:  # padding must never look free, or every plan would be one padded call
        coef[2] = max(float(np.min(y / x[:, 2])) * 1e-3, 1e-12)
    return float(coef[0]), float(coef[1]), float(coef[2])
