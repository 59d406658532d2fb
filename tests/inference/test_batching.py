"""The one batching helper: plans are exact partitions, respect their bounds, minimise the cost."""

from __future__ import annotations

import dataclasses
import itertools
import random

import numpy as np
import pytest

from inference import batching
from inference.batching import BatchPolicy, CostModel, plan_batches
from inference.predictor import Predictor
from registry.store import Registry

CPU_LIKE = CostModel.linear(fixed_s=1e-4, per_step_s=2e-6, per_token_s=1e-6)  # padding is what costs
GPU_LIKE = CostModel.linear(fixed_s=1e-4, per_step_s=5e-5, per_token_s=1e-9)  # steps are what cost


def plan_cost(lengths: list[int], groups, cost: CostModel) -> float:
    return sum(cost.seconds(len(g), max(lengths[i] for i in g)) for g in groups)


def check_partition(lengths: list[int], groups, policy: BatchPolicy) -> None:
    flat = [int(i) for g in groups for i in g]
    assert sorted(flat) == list(range(len(lengths))), "every text exactly once"
    ordered = [lengths[i] for i in flat]
    assert ordered == sorted(ordered), "groups are length-sorted, shortest first"
    for g in groups:
        assert 1 <= len(g) <= policy.max_batch_size
        longest = max(lengths[i] for i in g)
        assert len(g) == 1 or len(g) * longest <= policy.max_batch_tokens


@pytest.mark.parametrize("cost", [CPU_LIKE, GPU_LIKE], ids=["cpu-like", "gpu-like"])
def test_plan_is_optimal_among_all_contiguous_cuts(cost: CostModel) -> None:
    rng = random.Random(7)
    policy = BatchPolicy(max_batch_size=5, max_batch_tokens=900, cost=cost)
    for _ in range(30):
        lengths = [
            rng.choice([3, 10, 40, 120, 300, 600]) + rng.randrange(5) for _ in range(rng.randint(1, 9))
        ]
        groups = plan_batches(lengths, policy)
        check_partition(lengths, groups, policy)
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        best = float("inf")
        for cuts in itertools.product([False, True], repeat=len(lengths) - 1):
            bounds = [0] + [k + 1 for k, c in enumerate(cuts) if c] + [len(lengths)]
            candidate = [order[a:b] for a, b in zip(bounds, bounds[1:])]
            try:
                check_partition(lengths, candidate, policy)
            except AssertionError:
                continue
            best = min(best, plan_cost(lengths, candidate, cost))
        assert plan_cost(lengths, groups, cost) == pytest.approx(best, rel=1e-9)


def test_the_machine_decides_the_batches() -> None:
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(20, 600, size=64)]
    cpu = plan_batches(lengths, BatchPolicy(cost=CPU_LIKE))
    gpu = plan_batches(lengths, BatchPolicy(max_batch_tokens=64 * 600, cost=GPU_LIKE))
    assert len(gpu) == 1, "when a step costs the same for any batch, one call is cheapest"
    assert len(cpu) > 4, "when padding costs, similar lengths go together"
    one_call = plan_cost(lengths, [list(range(64))], CPU_LIKE)
    assert plan_cost(lengths, cpu, CPU_LIKE) < 0.8 * one_call


def test_bounds_hold_and_an_overlong_text_runs_alone() -> None:
    policy = BatchPolicy(max_batch_size=4, max_batch_tokens=100, cost=GPU_LIKE)
    lengths = [10] * 9 + [30, 30, 500]
    groups = plan_batches(lengths, policy)
    check_partition(lengths, groups, policy)
    assert [len(g) for g in groups][-1] == 1
    assert plan_batches([], policy) == []


def fake_clock(monkeypatch, seconds) -> callable:
    """Return a model ``run`` that advances a fake clock by ``seconds(batch, length)``."""
    clock = [0.0]
    monkeypatch.setattr(batching.time, "perf_counter", lambda: clock[0])

    def run(ids: np.ndarray) -> None:
        clock[0] += seconds(*ids.shape)

    return run


def test_cost_model_recovers_known_lines(monkeypatch) -> None:
    truth = CostModel.linear(fixed_s=3e-4, per_step_s=7e-6, per_token_s=2e-7)
    fitted = CostModel.measure(fake_clock(monkeypatch, truth.seconds), max_len=600, max_batch_size=48)
    assert fitted.max_batch == 48
    for batch in (1, 2, 3, 8, 20, 48):  # probed (powers of two, 48) and interpolated sizes
        for length in (5, 100, 600):
            assert fitted.seconds(batch, length) == pytest.approx(truth.seconds(batch, length), rel=1e-6)


def test_plans_follow_a_cost_per_token_that_rises_with_batch_size(monkeypatch) -> None:
    """A CPU whose cost per token falls to batch 4 and rises beyond (caches): groups stay small."""

    def cpu(batch: int, length: int) -> float:
        per_token = 5e-6 * (1.0 if batch == 1 else 0.75 if batch <= 4 else 0.75 + 0.02 * (batch - 4))
        return 2e-5 + per_token * batch * length

    fitted = CostModel.measure(fake_clock(monkeypatch, cpu), max_len=600, max_batch_size=64)
    groups = plan_batches([150] * 64, BatchPolicy(max_batch_size=64, cost=fitted))
    assert {len(g) for g in groups} <= {3, 4, 5}, [len(g) for g in groups]
    linear = CostModel.linear(fixed_s=2e-5, per_step_s=0.0, per_token_s=4e-6)  # one line for all sizes
    assert len(plan_batches([150] * 64, BatchPolicy(max_batch_size=64, cost=linear))) == 1


def test_cost_model_keeps_lines_sane_on_nonsense_timings(monkeypatch) -> None:
    # cheaper for longer inputs: nonsense a noisy box can measure
    fitted = CostModel.measure(fake_clock(monkeypatch, lambda b, t: 1e-3 - 1e-7 * t), max_len=600)
    assert min(fitted.intercepts[1:]) >= 0 and min(fitted.slopes[1:]) > 0


def test_scores_do_not_depend_on_the_group_a_text_lands_in(fake_registry: Registry) -> None:
    predictor = Predictor.load(fake_registry.production_dir("sentiment"))
    rng = random.Random(3)
    words = "the film was not bad at all but the plot dragged ! great acting awful music".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 300))) for _ in range(40)]
    ids = predictor.encode(texts)
    alone = np.array([predictor.score_together([x])[0] for x in ids])
    together = predictor.score_together(ids)  # one call padded to the longest
    predictor.measure_cost()
    predictor.policy = dataclasses.replace(predictor.policy, max_batch_size=7)  # several groups
    planned = predictor.score_ids(ids)
    assert len(predictor.plan([len(x) for x in ids])) >= 6
    assert np.max(np.abs(alone - planned)) <= 1e-6
    assert np.max(np.abs(together - planned)) <= 1e-6
