"""How texts are grouped into model calls: the one place that decides it, for every consumer.

A recurrent model's call on a right-padded ``(batch, length)`` matrix costs, for each batch size
``B``, about a straight line in the padded length ``T``:

    seconds(B, T) = intercept[B] + slope[B] * T

``intercept`` is the call's overhead; ``slope[B] / B`` is the cost of one padded token at that
batch size. Batching amortises the sequential per-step work, padding wastes per-token work, and
which effect wins depends on the machine and on ``B`` itself: on a CPU core the cost per token
falls from batch 1 to a few texts and *rises again* for large batches (their working set leaves
the caches), on a GPU it keeps falling. So the lines are *measured* on the machine that serves
(:meth:`CostModel.measure`, at warm-up: a few lengths at batch sizes 1, 2, 4, ... up to
``max_batch_size``), never tuned constants, and :func:`plan_batches` cuts any set of texts into
the length-sorted groups that minimise the predicted total time, within ``max_batch_size`` texts
and ``max_batch_tokens`` padded tokens per call (Hugging Face TEI's ``--max-batch-tokens``).

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

#: Lengths timed by :meth:`CostModel.measure` at every probed batch size (capped at max_len).
PROBE_LENGTHS = (16, 64, 256)


def probe_batches(max_batch_size: int) -> list[int]:
    """Return the batch sizes to time: powers of two up to ``max_batch_size``, and it."""
    sizes, b = [], 1
    while b < max_batch_size:
        sizes.append(b)
        b *= 2
    return [*sizes, max_batch_size]


@dataclass(frozen=True)
class CostModel:
    """Predicted seconds of one model call: for each batch size, a line in the padded length.

    ``intercepts[b]`` and ``slopes[b]`` describe batch size ``b`` (index 0 is unused). Beyond the
    largest batch size described, a call is predicted to cost the largest one's time per text.
    """

    intercepts: tuple[float, ...]
    slopes: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.intercepts) != len(self.slopes) or len(self.slopes) < 2:
            raise ValueError("a cost model needs one intercept and one slope per batch size >= 1")
        object.__setattr__(self, "_lines", {})  # max_batch_size -> arrays, built once

    @classmethod
    def linear(cls, fixed_s: float, per_step_s: float, per_token_s: float, max_batch: int = 256) -> CostModel:
        """Return the textbook model ``fixed + per_step * T + per_token * B * T`` (tests, defaults)."""
        b = np.arange(max_batch + 1)
        return cls(tuple(np.full(max_batch + 1, fixed_s)), tuple(per_step_s + per_token_s * b))

    @property
    def max_batch(self) -> int:
        """Return the largest batch size the lines describe."""
        return len(self.slopes) - 1

    def seconds(self, batch: int, length: int) -> float:
        """Return the predicted duration of one call."""
        if batch <= self.max_batch:
            return self.intercepts[batch] + self.slopes[batch] * length
        top = self.max_batch
        return (self.intercepts[top] + self.slopes[top] * length) * batch / top

    def lines(self, max_batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (intercepts, slopes) arrays for batch sizes 0..max_batch_size (vectorised plans)."""
        cached = self._lines.get(max_batch_size)
        if cached is None:
            b = np.arange(max_batch_size + 1)
            top = self.max_batch
            inner = np.minimum(b, top)
            scale = np.maximum(b / top, 1.0)
            cached = (np.asarray(self.intercepts)[inner] * scale, np.asarray(self.slopes)[inner] * scale)
            self._lines[max_batch_size] = cached
        return cached

    def per_text_ms(self, length: int, batches: Sequence[int]) -> str:
        """Return a log line: predicted milliseconds per text at ``length`` for each batch size."""
        return ", ".join(f"B={b}: {1e3 * self.seconds(b, length) / b:.3f}" for b in batches)

    @classmethod
    def measure(
        cls,
        run: Callable[[np.ndarray], object],
        *,
        max_len: int,
        max_batch_size: int = 64,
        vocab_size: int = 3,
        lengths: Sequence[int] = PROBE_LENGTHS,
        repeats: int = 3,
    ) -> CostModel:
        """Time ``run`` at a few lengths for each probed batch size; fit one line per size.

        Each shape keeps its fastest of ``repeats`` runs (the least disturbed by other work on
        the machine). Inputs are random ids below ``vocab_size`` (a fixed seed): a matrix of one
        repeated id runs faster than text does. Each line is a least-squares fit with a non-negative
        intercept and a positive slope; sizes between probed ones are interpolated linearly.
        """
        batches = probe_batches(max_batch_size)
        probe_lengths = sorted({min(max(1, n), max_len) for n in lengths})
        fitted: dict[int, tuple[float, float]] = {}
        rng = np.random.default_rng(0)
        for batch in batches:
            seconds = []
            for length in probe_lengths:
                ids = rng.integers(2, max(vocab_size, 3), size=(batch, length), dtype=np.int64)
                run(ids)  # the first run of a shape allocates; do not time it
                best = float("inf")
                for _ in range(repeats):
                    started = time.perf_counter()
                    run(ids)
                    best = min(best, time.perf_counter() - started)
                seconds.append(best)
            fitted[batch] = _fit_line(np.asarray(probe_lengths, dtype=np.float64), np.asarray(seconds))
        sizes = np.arange(max_batch_size + 1)
        known = np.asarray(batches, dtype=np.float64)
        intercepts = np.interp(sizes, known, [fitted[b][0] for b in batches])
        slopes = np.interp(sizes, known, [fitted[b][1] for b in batches])
        model = cls(tuple(intercepts), tuple(slopes))
        log.info(
            "batch cost model, predicted ms per text at 128 tokens: %s",
            model.per_text_ms(128, batches),
        )
        return model


#: Used until a model's own cost was measured (a tiny test model, or before warm-up): the
#: shape of what a 2-core x86 box measured for the full model, only its ratios matter.
DEFAULT_COST = CostModel.linear(fixed_s=1e-4, per_step_s=2e-6, per_token_s=1e-6)


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
    sorted_lens = lens[order].tolist()
    intercepts, slopes = policy.cost.lines(policy.max_batch_size)
    best = np.zeros(n + 1)
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        longest = sorted_lens[end - 1]
        fits = max(1, min(policy.max_batch_size, policy.max_batch_tokens // longest, end))
        # Candidate groups end here and start at end - fits, ..., end - 1, so their sizes run
        # fits, ..., 1: contiguous views of the lines, read backwards (no index arrays per step).
        totals = best[end - fits : end] + intercepts[fits:0:-1] + slopes[fits:0:-1] * float(longest)
        k = int(totals.argmin())
        best[end], cut[end] = totals[k], end - fits + k
    groups = []
    end = n
    while end > 0:
        start = cut[end]
        groups.append(order[start:end])
        end = start
    groups.reverse()
    return groups


def _fit_line(lengths: np.ndarray, seconds: np.ndarray) -> tuple[float, float]:
    """Least squares ``seconds ≈ a + b * length`` with ``a >= 0`` and ``b > 0``.

    A noisy machine can measure nonsense (longer inputs faster); padding must never look free,
    or every plan would be one padded call.
    """
    b, a = np.polyfit(lengths, seconds, 1)
    if a < 0:
        a, b = 0.0, float(np.dot(lengths, seconds) / np.dot(lengths, lengths))
    if b <= 0:
        b = max(float(np.min(seconds / lengths)) * 1e-3, 1e-12)
        a = max(float(np.mean(seconds - b * lengths)), 0.0)
    return float(a), float(b)
