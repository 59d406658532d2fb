"""Unit tests of the dynamic batcher with a plain function in place of a model."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.batcher import BatcherClosed, DeadlineExceeded, DynamicBatcher, QueueFull


class Recorder:
    """A predict function that doubles numbers, remembers its batches, and can be held."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.entered.set()
        self.release.wait(10)
        time.sleep(self.delay)
        return [2 * x for x in items]


class Observer:
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.waits: list[float] = []
        self.depths: list[int] = []

    def observe_batch(self, size: int, seconds: float, cpu_seconds: float) -> None:
        self.sizes.append(size)

    def observe_queue_wait(self, seconds: float) -> None:
        self.waits.append(seconds)

    def set_queue_depth(self, items: int) -> None:
        self.depths.append(items)


@pytest.fixture
def make_batcher():
    batchers: list[DynamicBatcher] = []

    def factory(predict, **kwargs) -> DynamicBatcher:
        batcher = DynamicBatcher(predict, **kwargs).start()
        batchers.append(batcher)
        return batcher

    yield factory
    for batcher in batchers:
        batcher.stop()


def later(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def test_lone_request_is_not_delayed_by_the_timeout(make_batcher):
    batcher = make_batcher(Recorder(), batch_timeout_s=2.0)
    started = time.perf_counter()
    assert batcher.submit([1, 2, 3], later()) == [2, 4, 6]
    assert time.perf_counter() - started < 0.5


def test_lone_announced_request_is_not_delayed_either(make_batcher):
    batcher = make_batcher(Recorder(), batch_timeout_s=2.0)
    started = time.perf_counter()
    with batcher.arrival() as arrival:
        assert arrival.submit([5], later()) == [10]
    assert time.perf_counter() - started < 0.5


def test_concurrent_requests_share_batches_and_keep_their_order(make_batcher):
    recorder = Recorder(delay=0.02)
    observer = Observer()
    batcher = make_batcher(recorder, max_batch_size=64, batch_timeout_s=0.0, observer=observer)
    requests = [list(range(100 * i, 100 * i + 1 + i % 3)) for i in range(24)]
    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(lambda items: batcher.submit(items, later()), requests))
    assert results == [[2 * x for x in items] for items in requests]
    assert max(len(b) for b in recorder.batches) > 3
    assert len(recorder.batches) < len(requests)
    assert sum(observer.sizes) == sum(len(r) for r in requests)
    assert len(observer.waits) == len(requests)
    assert observer.depths[-1] == 0


def test_large_request_is_split_into_batches_in_order(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=4)
    assert batcher.submit(list(range(10)), later()) == [2 * x for x in range(10)]
    assert [len(b) for b in recorder.batches] == [4, 4, 2]


def test_batch_waits_for_announced_arrival_within_timeout(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, batch_timeout_s=1.0)
    announced = batcher.arrival()  # another request is being parsed
    result: list = []
    first = threading.Thread(target=lambda: result.append(batcher.submit([1], later())))
    first.start()
    time.sleep(0.1)
    assert recorder.batches == []  # held for the announced request
    assert announced.submit([2], later()) == [4]
    first.join(5)
    assert result == [[2]]
    assert recorder.batches == [[1, 2]]


def test_batch_stops_waiting_when_announced_request_fails_to_parse(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, batch_timeout_s=5.0)
    announced = batcher.arrival()
    threading.Timer(0.1, announced.close).start()
    started = time.perf_counter()
    assert batcher.submit([1], later()) == [2]
    assert time.perf_counter() - started < 2.0


def test_batch_waits_at_most_the_timeout(make_batcher):
    batcher = make_batcher(Recorder(), batch_timeout_s=0.2)
    with batcher.arrival():  # announced but never submitted while we wait
        started = time.perf_counter()
        assert batcher.submit([1], later()) == [2]
        elapsed = time.perf_counter() - started
    assert 0.15 <= elapsed < 1.5


def test_full_queue_refuses_at_once(make_batcher):
    recorder = Recorder()
    recorder.release.clear()
    recorder.entered.clear()
    batcher = make_batcher(recorder, max_batch_size=2, max_queued=3)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(batcher.submit, [1, 2], later())  # taken by the held batch
        assert recorder.entered.wait(5)
        queued = pool.submit(batcher.submit, [3, 4, 5], later())  # fills the queue
        deadline = time.monotonic() + 5
        while batcher.queued < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.perf_counter()
        with pytest.raises(QueueFull):
            batcher.submit([6], later())
        assert time.perf_counter() - started < 0.5
        recorder.release.set()
        assert running.result(5) == [2, 4]
        assert queued.result(5) == [6, 8, 10]
    assert batcher.queued == 0


def test_deadline_passes_while_queued(make_batcher):
    recorder = Recorder()
    recorder.release.clear()
    batcher = make_batcher(recorder, max_batch_size=1)
    with ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(batcher.submit, [1], later())
        assert recorder.entered.wait(5)
        started = time.perf_counter()
        with pytest.raises(DeadlineExceeded):
            batcher.submit([2, 3], time.monotonic() + 0.1)
        assert time.perf_counter() - started < 1.0
        assert batcher.queued == 0  # the expired request left the queue: memory stays bounded
        assert len(batcher._queue) == 0  # its texts are freed even while predict is stuck
        recorder.release.set()
        assert blocker.result(5) == [2]
    assert batcher.submit([4], later()) == [8]
    assert [2, 3] not in recorder.batches  # never computed


def test_deadline_passes_during_the_model_call(make_batcher):
    recorder = Recorder()
    recorder.release.clear()
    batcher = make_batcher(recorder)
    with pytest.raises(DeadlineExceeded):
        batcher.submit([1], time.monotonic() + 0.1)
    recorder.release.set()


def test_failing_batch_fails_its_requests_but_not_the_batcher(make_batcher):
    calls = []

    def predict(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return items

    batcher = make_batcher(predict)
    with pytest.raises(RuntimeError, match="exploded"):
        batcher.submit([1], later())
    assert batcher.submit([7], later()) == [7]


def test_wrong_number_of_results_is_an_error(make_batcher):
    batcher = make_batcher(lambda items: items[:-1])
    with pytest.raises(RuntimeError, match="results"):
        batcher.submit([1, 2], later())


def test_stop_fails_waiting_requests(make_batcher):
    recorder = Recorder()
    recorder.release.clear()
    batcher = make_batcher(recorder, max_batch_size=1)
    with ThreadPoolExecutor(2) as pool:
        pool.submit(batcher.submit, [1], later())
        assert recorder.entered.wait(5)
        queued = pool.submit(batcher.submit, [2], later())
        while batcher.queued < 1:
            time.sleep(0.01)
        batcher.stop(timeout=0.1)
        with pytest.raises(BatcherClosed):
            queued.result(5)
        recorder.release.set()
    with pytest.raises(BatcherClosed):
        batcher.submit([3], later())


def test_empty_submission_returns_at_once(make_batcher):
    recorder = Recorder()
    assert make_batcher(recorder).submit([], later()) == []
    assert recorder.batches == []


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError):
        DynamicBatcher(lambda items: items, max_batch_size=0)


def test_observer_failure_does_not_kill_the_batching_thread(make_batcher):
    class Broken(Observer):
        def observe_batch(self, size: int, seconds: float, cpu_seconds: float) -> None:
            raise OSError("metrics directory full")

    batcher = make_batcher(Recorder(), observer=Broken())
    assert batcher.submit([1], later()) == [2]  # results still delivered
    assert batcher.submit([2], later()) == [4]  # and the thread lives on


def _queue_behind_a_held_batch(batcher: DynamicBatcher, recorder: Recorder, requests: list[list[int]]):
    """Hold the model on a first request, queue ``requests`` behind it, return their futures."""
    recorder.release.clear()
    recorder.entered.clear()
    pool = ThreadPoolExecutor(len(requests) + 1)
    first = pool.submit(batcher.submit, [0], later())
    assert recorder.entered.wait(5)
    futures = [pool.submit(batcher.submit, items, later()) for items in requests]
    deadline = time.monotonic() + 5
    while batcher.queued < sum(map(len, requests)) and time.monotonic() < deadline:
        time.sleep(0.01)
    recorder.release.set()
    assert first.result(5) == [0]
    return pool, futures


def test_a_round_runs_as_the_plan_groups_it(make_batcher):
    def plan(items: list[int]) -> list[list[int]]:  # odd numbers first, then even ones
        return [[j for j, x in enumerate(items) if x % 2], [j for j, x in enumerate(items) if not x % 2]]

    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=2, window=64, batch_timeout_s=0.0, plan=plan)
    requests = [[1, 2], [3], [4, 5, 6]]
    pool, futures = _queue_behind_a_held_batch(batcher, recorder, requests)
    assert [f.result(5) for f in futures] == [[2, 4], [6], [8, 10, 12]]
    pool.shutdown()
    assert recorder.batches[1:] == [[1, 3, 5], [2, 4, 6]]  # the plan, not max_batch_size, decides


def test_a_failing_group_fails_only_its_requests(make_batcher):
    class FailsOnThirteen(Recorder):
        def __call__(self, items: list[int]) -> list[int]:
            if 13 in items:
                raise RuntimeError("bad input")
            return super().__call__(items)

    def plan(items: list[int]) -> list[list[int]]:
        return [[j] for j in range(len(items))]  # one call per item

    recorder = FailsOnThirteen()
    batcher = make_batcher(recorder, window=64, batch_timeout_s=0.0, plan=plan)
    pool, futures = _queue_behind_a_held_batch(batcher, recorder, [[1], [13, 2], [3]])
    assert futures[0].result(5) == [2] and futures[2].result(5) == [6]
    with pytest.raises(RuntimeError, match="bad input"):
        futures[1].result(5)
    pool.shutdown()
    assert [2] not in recorder.batches  # the failed request's other item was not scored for nothing
    assert batcher.queued == 0


def test_a_plan_that_loses_items_falls_back_to_arrival_order(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=2, plan=lambda items: [[0]])
    assert batcher.submit([1, 2, 3], later()) == [2, 4, 6]
    assert recorder.batches == [[1, 2], [3]]


# -- awaited submissions (the asyncio worker, service.asgi) -------------------------------------
def test_awaited_requests_share_batches_with_threaded_ones_and_keep_their_order(make_batcher):
    recorder = Recorder()
    recorder.release.clear()
    batcher = make_batcher(recorder, max_batch_size=64)

    async def main() -> list:
        first = asyncio.ensure_future(batcher.submit_async([0], later()))
        await asyncio.sleep(0.05)  # the batching thread holds [0] in predict
        waiting = [asyncio.ensure_future(batcher.submit_async([k, k + 1], later())) for k in (1, 3, 5)]
        while batcher.queued < 6:
            await asyncio.sleep(0.01)
        with ThreadPoolExecutor(1) as pool:
            threaded = pool.submit(batcher.submit, [7], later())
            while batcher.queued < 7:
                await asyncio.sleep(0.01)
            recorder.release.set()
            results = [await first] + [await w for w in waiting]
            return [*results, threaded.result(5)]

    assert asyncio.run(main()) == [[0], [2, 4], [6, 8], [10, 12], [14]]
    assert recorder.batches == [[0], [1, 2, 3, 4, 5, 6, 7]]


async def _hold_the_batching_thread(batcher: DynamicBatcher, recorder: Recorder) -> asyncio.Future:
    """Submit [1] and wait until predict holds it (the recorder is not released yet)."""
    blocker = asyncio.ensure_future(batcher.submit_async([1], later()))
    while not recorder.entered.is_set():
        await asyncio.sleep(0.01)
    return blocker


def test_awaited_request_past_its_deadline_leaves_the_queue_unscored(make_batcher):
    recorder = Recorder()
    recorder.release.clear()
    batcher = make_batcher(recorder, max_batch_size=1)

    async def main() -> None:
        blocker = await _hold_the_batching_thread(batcher, recorder)
        started = time.perf_counter()
        with pytest.raises(DeadlineExceeded):
            await batcher.submit_async([2, 3], time.monotonic() + 0.1)
        assert time.perf_counter() - started < 1.0
        assert batcher.queued == 0 and len(batcher._queue) == 0  # freed while predict is stuck
        recorder.release.set()
        assert await blocker == [2]

    asyncio.run(main())
    assert [2, 3] not in recorder.batches


def test_a_cancelled_awaited_request_frees_its_queued_items(make_batcher):
    recorder = Recorder()
    recorder.release.clear()
    batcher = make_batcher(recorder, max_batch_size=1)

    async def main() -> None:
        blocker = await _hold_the_batching_thread(batcher, recorder)
        gone = asyncio.ensure_future(batcher.submit_async([2, 3], later()))
        while batcher.queued < 2:
            await asyncio.sleep(0.01)
        gone.cancel()  # e.g. the server dropped the task
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert batcher.queued == 0
        recorder.release.set()
        assert await blocker == [2]

    asyncio.run(main())
    assert recorder.batches == [[1]]


def test_an_awaited_request_fails_like_a_threaded_one(make_batcher):
    def broken(items):
        raise RuntimeError("model exploded")

    batcher = make_batcher(broken, max_queued=2)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="exploded"):
            await batcher.submit_async([1], later())
        with pytest.raises(QueueFull):
            await batcher.submit_async([1, 2, 3], later())
        assert await batcher.submit_async([], later()) == []

    asyncio.run(main())
