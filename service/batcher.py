"""Dynamic batching of concurrent requests into model calls (per process, like TF Serving's).

The batcher wraps any ``predict(items) -> results`` function and knows nothing about HTTP or
models. Request threads :meth:`DynamicBatcher.submit` their items and block (an event loop awaits
:meth:`DynamicBatcher.submit_async` instead, see ``service.asgi``); one background thread
takes up to ``window`` queued items (a large request is spread over several rounds), asks the
optional ``plan`` function how to group them into calls of ``predict`` (for a recurrent model:
by length, so short texts are not padded to the longest; see ``inference.batching``), runs the
groups one after another, and hands each request its results as soon as all of its items are
scored. Without a plan, items go in arrival order, ``max_batch_size`` per call.

When does a round close? As soon as nothing else is known to be on its way: the thread blocks
until the queue is non-empty, then takes everything queued. It waits (at most ``batch_timeout``
from the oldest queued request) only while other requests have announced themselves with
:meth:`DynamicBatcher.arrival` and are still being parsed. An idle server therefore runs a lone
request at once, and under load requests pile up while the previous round runs ("take all
queued, run, repeat"), so rounds grow with the load without a fixed delay.

Bounded memory: at most ``max_queued_texts`` items wait; more is refused with :class:`QueueFull`.
A request still waiting at its deadline is dropped with :class:`DeadlineExceeded`; its items
still queued in the current round are skipped, not scored.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")
#: Groups of positions in a round's item list, one ``predict`` call each.
Plan = Callable[[list[Any]], Sequence[Sequence[int]]]


class BatcherError(Exception):
    """A submitted request could not be scored by the batcher."""


class QueueFull(BatcherError):
    """The queue already holds ``max_queued_texts`` items: shed load instead of growing memory."""


class DeadlineExceeded(BatcherError):
    """The request's deadline passed before its results were ready."""


class BatcherClosed(BatcherError):
    """The batcher was stopped while the request waited."""


class BatchObserver(Protocol):
    """Receives batching statistics (the metrics layer implements it)."""

    def observe_batch(self, size: int, seconds: float, cpu_seconds: float) -> None: ...

    def observe_queue_wait(self, seconds: float) -> None: ...

    def set_queue_depth(self, items: int) -> None: ...


class _NullObserver:
    def observe_batch(self, size: int, seconds: float, cpu_seconds: float) -> None:
        pass

    def observe_queue_wait(self, seconds: float) -> None:
        pass

    def set_queue_depth(self, items: int) -> None:
        pass


@dataclass(eq=False)
class _Request:
    """One submitted request: its items, where the batcher got to, and its results."""

    items: Sequence[Any]
    deadline: float
    enqueued_at: float
    results: list = field(default_factory=list)
    taken: int = 0  # items handed to a batch so far
    done: int = 0  # items with a result
    error: BaseException | None = None
    cancelled: bool = False
    event: Done = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.results = [None] * len(self.items)

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.event.set()


class Done(Protocol):
    """What the batcher needs of a request's completion signal: a ``threading.Event`` or a loop's."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...


class _LoopEvent:
    """The part of ``threading.Event`` the batcher uses, resolving an asyncio future on its loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._set = False
        self.future = loop.create_future()

    def set(self) -> None:
        if not self._set:
            self._set = True
            try:
                self._loop.call_soon_threadsafe(self._resolve)
            except RuntimeError:  # the loop is closed (the worker is exiting): nobody awaits it
                pass

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def is_set(self) -> bool:
        return self._set


class Arrival:
    """A request announced to the batcher while it is parsed; submit through it (see module doc)."""

    def __init__(self, batcher: DynamicBatcher) -> None:
        self._batcher = batcher
        self._open = True

    def submit(self, items: Sequence[Any], deadline: float) -> list:
        """Queue the items, stop counting as 'arriving', and wait for their results."""
        return self._batcher._submit(items, deadline, self)

    def _close_locked(self) -> None:
        if self._open:
            self._open = False
            self._batcher._arriving -= 1

    def close(self) -> None:
        """Stop counting as arriving (idempotent), e.g. when parsing failed."""
        with self._batcher._cond:
            self._close_locked()
            self._batcher._cond.notify_all()

    def __enter__(self) -> Arrival:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DynamicBatcher(Generic[Item, Result]):
    """Groups items submitted by concurrent threads into batches for one ``predict`` function."""

    def __init__(
        self,
        predict: Callable[[list[Item]], Sequence[Result]],
        *,
        max_batch_size: int = 64,
        batch_timeout_s: float = 0.002,
        max_queued: int = 1024,
        window: int | None = None,
        plan: Plan | None = None,
        observer: BatchObserver | None = None,
        name: str = "batcher",
    ) -> None:
        window = max_batch_size if window is None else window
        if max_batch_size < 1 or max_queued < 1 or window < 1 or batch_timeout_s < 0:
            raise ValueError("max_batch_size, window and max_queued must be >= 1, batch_timeout_s >= 0")
        self._predict = predict
        self._plan = plan
        self.max_batch_size = max_batch_size
        self.window = window
        self.batch_timeout_s = batch_timeout_s
        self.max_queued = max_queued
        self._observer: BatchObserver = observer or _NullObserver()
        self._name = name
        self._cond = threading.Condition()
        self._queue: collections.deque[_Request] = collections.deque()
        self._queued = 0  # items waiting, not yet handed to a batch
        self._arriving = 0
        self._running = False
        self._closed = False  # stop() was called: never restart
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> DynamicBatcher:
        """Start the batching thread (again, after a fork); idempotent."""
        with self._cond:
            if self._closed:
                raise BatcherClosed("a stopped batcher cannot be restarted")
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return self
            self._pid = os.getpid()
            self._running = True
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread after its current batch; waiting requests fail with BatcherClosed."""
        with self._cond:
            self._running = False
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._queued = 0
            self._cond.notify_all()
        for req in pending:
            req.fail(BatcherClosed("the service is shutting down"))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def queued(self) -> int:
        """Return how many items wait for a batch."""
        return self._queued

    # -- request side --------------------------------------------------------------------------
    def arrival(self) -> Arrival:
        """Announce a request being parsed so a forming batch may wait for it (use as ``with``)."""
        with self._cond:
            self._arriving += 1
        return Arrival(self)

    def submit(self, items: Sequence[Item], deadline: float) -> list[Result]:
        """Score ``items`` in some batch and return their results in order; blocks until done.

        ``deadline`` is a ``time.monotonic()`` instant. Raises QueueFull, DeadlineExceeded,
        BatcherClosed, or whatever ``predict`` raised for the batch holding these items.
        """
        return self._submit(items, deadline, None)

    def _submit(self, items: Sequence[Item], deadline: float, arrival: Arrival | None) -> list[Result]:
        done = threading.Event()
        req = self._enqueue(items, deadline, arrival, done)
        if req is None:
            return []
        if not done.wait(max(0.0, deadline - time.monotonic())):
            self._abandon(req)
        return self._collect(req)

    async def submit_async(self, items: Sequence[Item], deadline: float) -> list[Result]:
        """Like :meth:`submit`, awaited on the running event loop instead of blocking a thread.

        The batching thread wakes the loop once, when the request's last item is scored (or the
        request fails); an asyncio server (``service.asgi``) needs no thread per waiting request.
        """
        loop = asyncio.get_running_loop()
        done = _LoopEvent(loop)
        req = self._enqueue(items, deadline, None, done)
        if req is None:
            return []
        try:
            await asyncio.wait_for(done.future, max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            self._abandon(req)
        except asyncio.CancelledError:  # the task was cancelled (shutdown): free its queued texts
            self._abandon(req)
            raise
        return self._collect(req)

    def _enqueue(
        self, items: Sequence[Item], deadline: float, arrival: Arrival | None, event: Done
    ) -> _Request | None:
        """Queue a request whose ``event`` is set when it is done; None when there is nothing to do."""
        if not items:
            if arrival is not None:
                arrival.close()
            return None
        if self._closed:
            if arrival is not None:
                arrival.close()
            raise BatcherClosed("the service is shutting down")
        if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
            self.start()  # first use, or the thread did not survive a fork
        now = time.monotonic()
        req = _Request(items, deadline, now, event=event)
        with self._cond:
            if arrival is not None:
                arrival._close_locked()
            if not self._running:
                self._cond.notify_all()
                raise BatcherClosed("the service is shutting down")
            if self._queued + len(items) > self.max_queued:
                self._cond.notify_all()
                raise QueueFull(f"{self._queued} texts already queued (limit {self.max_queued})")
            self._queue.append(req)
            self._queued += len(items)
            self._observer.set_queue_depth(self._queued)  # under the lock: gauges never go stale
            self._cond.notify_all()
        return req

    def _abandon(self, req: _Request) -> None:
        """Give up on a request still waiting (deadline passed, or its task cancelled): unqueue its items."""
        with self._cond:
            if not req.event.is_set():
                req.cancelled = True
                self._queued -= len(req.items) - req.taken
                req.taken = len(req.items)
                try:  # free its texts now, even if the batching thread is stuck in predict
                    self._queue.remove(req)
                except ValueError:
                    pass
                self._observer.set_queue_depth(self._queued)
                self._cond.notify_all()

    @staticmethod
    def _collect(req: _Request) -> list[Result]:
        """Return a finished request's results, or raise why it has none."""
        if req.error is not None:
            raise req.error
        if req.done < len(req.items):
            raise DeadlineExceeded("the request's deadline passed while it waited to be scored")
        return req.results

    # -- batching thread -----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            try:
                with self._cond:
                    while self._running and not self._queue:
                        self._cond.wait()
                    if not self._running:
                        return
                    self._wait_for_arrivals()
                    parts, expired, depth = self._take_batch()
                    self._observer.set_queue_depth(depth)
                for req in expired:
                    req.fail(DeadlineExceeded("the request's deadline passed while it was queued"))
                if parts:
                    self._run(parts)
            except Exception:  # noqa: BLE001 - e.g. a metrics write failing: the thread must live on
                log.exception("batching loop error; continuing")

    def _wait_for_arrivals(self) -> None:
        """Hold a partial batch while announced requests are still being parsed (lock held)."""
        if self.batch_timeout_s <= 0:
            return
        close_at = self._queue[0].enqueued_at + self.batch_timeout_s
        while self._running and self._arriving > 0 and self._queued < self.window:
            remaining = close_at - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _take_batch(self) -> tuple[list[tuple[_Request, int, int]], list[_Request], int]:
        """Cut up to ``window`` items off the queue front (lock held)."""
        parts: list[tuple[_Request, int, int]] = []
        expired: list[_Request] = []
        size = 0
        now = time.monotonic()
        while self._queue and size < self.window:
            req = self._queue[0]
            if req.cancelled or now >= req.deadline:
                self._queue.popleft()
                self._queued -= len(req.items) - req.taken
                req.taken = len(req.items)
                if not req.cancelled:
                    expired.append(req)
                continue
            if req.taken == 0:
                self._observer.observe_queue_wait(now - req.enqueued_at)
            k = min(self.window - size, len(req.items) - req.taken)
            parts.append((req, req.taken, req.taken + k))
            req.taken += k
            size += k
            self._queued -= k
            if req.taken == len(req.items):
                self._queue.popleft()
        return parts, expired, self._queued

    def _run(self, parts: list[tuple[_Request, int, int]]) -> None:
        """Score one round: plan its groups, call predict once per group, deliver as they finish."""
        slots = [(req, i) for req, start, end in parts for i in range(start, end)]
        items = [req.items[i] for req, i in slots]
        for group in self._groups(items):
            live = [j for j in group if not slots[j][0].cancelled and slots[j][0].error is None]
            if live:
                self._run_group([slots[j] for j in live], [items[j] for j in live])

    def _groups(self, items: list[Any]) -> Sequence[Sequence[int]]:
        """Return the plan's groups, or arrival-order chunks when there is no plan or it failed."""
        if self._plan is not None:
            try:
                groups = self._plan(items)
                if sorted(j for g in groups for j in g) == list(range(len(items))):
                    return groups
                log.error("batch plan does not cover the round exactly once; using arrival order")
            except Exception:  # noqa: BLE001 - e.g. no model loaded: predict reports it per request
                log.debug("batch plan failed; using arrival order", exc_info=True)
        size = self.max_batch_size
        return [range(k, min(k + size, len(items))) for k in range(0, len(items), size)]

    def _run_group(self, slots: list[tuple[_Request, int]], batch: list[Any]) -> None:
        """Call predict once and deliver each result to its request (the slots, in order)."""
        started, started_cpu = time.perf_counter(), time.thread_time()
        try:
            results = list(self._predict(batch))
            if len(results) != len(batch):
                raise RuntimeError(f"predict returned {len(results)} results for {len(batch)} items")
        except Exception as exc:  # a failed batch fails its requests, never the thread
            log.exception("batch of %d items failed", len(batch))
            failed = list(dict.fromkeys(req for req, _ in slots))
            with self._cond:
                for req in failed:  # drop their unscored rest: the request has failed anyway
                    req.cancelled = True
                    self._queued -= len(req.items) - req.taken
                    req.taken = len(req.items)
            for req in failed:
                req.fail(exc)
            return
        try:
            self._observer.observe_batch(
                len(batch), time.perf_counter() - started, time.thread_time() - started_cpu
            )
        except Exception:  # noqa: BLE001 - losing a metric must not lose the batch's results
            log.exception("could not record batch metrics")
        scored: dict[_Request, int] = {}
        for (req, i), result in zip(slots, results):
            req.results[i] = result
            scored[req] = scored.get(req, 0) + 1
        finished = []
        with self._cond:
            for req, count in scored.items():
                req.done += count
                if req.done == len(req.items):
                    finished.append(req)
        for req in finished:
            req.event.set()
