"""Run the per-chunk function over the whole input: locally, or on a Dask cluster.

Both engines hand each finished part to the same callback (which records it in the manifest and
advances the progress bar) and skip the parts a killed run already completed.

Local engine, and why processes rather than threads: tokenisation is pure Python and holds the
GIL, so ONNX Runtime intra-op threads only parallelise the LSTM, and for the small matrices of one
LSTM step the threads mostly synchronise. Each chunk is therefore split across a pool of worker
processes (one model copy each, loaded once by the pool initializer) that tokenise *and* score in
parallel; the parent only reads, assembles and writes. Splitting every chunk (rather than giving
whole chunks to workers) keeps all cores busy up to the last chunk and keeps parts large.
``bench/bench_scoring.py`` measures both layouts; see docs/scoring.md for the numbers.

Dask engine: the input is cut into partitions (``InputSource.partitions``: row groups, byte ranges
at record ends, or chunks of a compressed file read here), so that many workers share one big
file. Each partition is one task that reads, scores and writes one part on a worker, and returns
the part's record; at most a few tasks per worker thread are in flight, so the CSV scan and the
compressed-file reader run ahead of the workers without holding the whole input. A task that fails
raises :class:`~scoring.config.JobFailed` with one line naming the part, the worker and the cause.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from scoring import storage
from scoring.config import JobConfig, JobFailed, ScoringError
from scoring.readers import Chunk, InputSource, Piece, read_piece
from scoring.score import ScoreSpec, score_chunk, warm_worker
from scoring.writer import MANIFEST_FILE, PartWriter

log = logging.getLogger(__name__)

OnPart = Callable[[dict], None]
#: Chunks submitted ahead of the one being written: keeps workers fed, bounds memory.
CHUNKS_AHEAD = 2
#: Seconds a pool may take to start its workers and load their models.
STARTUP_TIMEOUT = 180.0
#: Dask tasks in flight per worker thread: enough to keep every worker busy, few enough to bound
#: what the client holds (compressed-file chunks) and what a failure leaves running.
TASKS_PER_THREAD = 2
#: Seconds to wait for a scheduler without workers to get one before refusing the job.
WORKERS_TIMEOUT = 30.0
#: Longest reason quoted in a one-line failure message.
REASON_CHARS = 400


def one_line(exc: BaseException) -> str:
    """Return ``Type: message`` on one line, shortened: whatever the exception said."""
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    return reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS] + "..."


def failure_line(part: int, where: str, who: str, exc: BaseException) -> str:
    """Return the one-line message for a part that failed: which part, where it ran, why."""
    return f"part {part} ({where}) failed on {who}: {one_line(exc)}"


def this_process() -> str:
    """Return who is running this code: the Dask worker's address, or this process, and the host."""
    try:
        from distributed import get_worker

        return f"worker {get_worker().address} (host {socket.gethostname()})"
    except (ImportError, ValueError):
        return f"process {os.getpid()} (host {socket.gethostname()})"


def _init_pool_worker(spec: ScoreSpec, ready: Any) -> None:
    """Load the model in a new pool worker, then wait until every worker has (start together)."""
    try:
        warm_worker(spec)
    except BaseException:
        ready.abort()  # release the parent at once instead of letting it wait for the timeout
        raise
    ready.wait(STARTUP_TIMEOUT)


def _noop() -> None:
    """Do nothing (submitted once per worker so that the pool starts all of them)."""


class LocalEngine:
    """Stream chunks and score them in this process (one worker) or in a pool of processes."""

    name = "local"

    def __init__(
        self,
        source: InputSource,
        spec: ScoreSpec,
        writer: PartWriter,
        *,
        columns: Sequence[str],
        chunk_size: int,
        workers: int,
    ) -> None:
        self.source, self.spec, self.writer = source, spec, writer
        self.columns, self.chunk_size, self.workers = list(columns), chunk_size, workers
        self.ready_at: float | None = None  # perf_counter() when scoring could start

    def __enter__(self) -> "LocalEngine":
        """Nothing to start: the pool lives only while :meth:`run` does."""
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def partitioning(self) -> dict:
        """Describe how parts map to input rows (a resumed run must use the same)."""
        return {"engine": self.name, "chunk_size": self.chunk_size}

    def run(self, done: set[int], on_part: OnPart) -> None:
        """Score every chunk not in ``done`` and report each written part to ``on_part``."""
        chunks = (c for c in self.source.chunks(self.columns, self.chunk_size) if c.index not in done)
        if self.workers == 1:
            self.ready_at = time.perf_counter()
            for chunk in chunks:
                on_part(self._write(chunk, lambda: score_chunk(chunk.frame, self.spec)))  # noqa: B023 - called now
            return
        self._run_pool(chunks, on_part)

    def _run_pool(self, chunks: Iterator[Chunk], on_part: OnPart) -> None:
        """Split each chunk across worker processes; write parts in order as they complete."""
        context = multiprocessing.get_context("spawn")  # no fork of a process holding ORT threads
        ready = context.Barrier(self.workers + 1)
        pool = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_init_pool_worker, initargs=(self.spec, ready)
        )
        try:
            for _ in range(self.workers):  # the pool starts one process per task while none is idle
                pool.submit(_noop)
            try:
                ready.wait(STARTUP_TIMEOUT)
            except threading.BrokenBarrierError:
                raise RuntimeError(
                    f"a scoring worker failed to start or took over {STARTUP_TIMEOUT:.0f} s "
                    "(see its error above)"
                ) from None
            self.ready_at = time.perf_counter()
            window: deque[tuple[Chunk, list[Future]]] = deque()
            for chunk in chunks:
                window.append(
                    (chunk, [pool.submit(score_chunk, piece, self.spec) for piece in self._split(chunk)])
                )
                while len(window) > CHUNKS_AHEAD:
                    self._finish(*window.popleft(), on_part)
            while window:
                self._finish(*window.popleft(), on_part)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()

    def _split(self, chunk: Chunk) -> list[pd.DataFrame]:
        """Cut a chunk into one contiguous piece per worker."""
        bounds = np.linspace(0, len(chunk.frame), self.workers + 1).astype(int)
        return [chunk.frame.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    def _finish(self, chunk: Chunk, futures: list[Future], on_part: OnPart) -> None:
        """Wait for a chunk's pieces, reassemble them in order and write the part."""
        on_part(self._write(chunk, lambda: pd.concat([f.result() for f in futures], ignore_index=True)))

    def _write(self, chunk: Chunk, scored: Callable[[], pd.DataFrame]) -> dict:
        """Write the part of a chunk scored by ``scored()``; a failure becomes one line naming the part."""
        try:
            return self.writer.write(chunk.index, scored(), chunk.start)
        except Exception as exc:  # noqa: BLE001 - reported as one line naming the part
            where = f"rows {chunk.start}-{chunk.start + len(chunk.frame) - 1}"
            raise JobFailed(failure_line(chunk.index, where, "a local scoring process", exc)) from exc


def _check_worker(paths: list[str], spec: ScoreSpec) -> None:
    """Fail unless this Dask worker can read every input file; load its model (once per worker)."""
    missing = [p for p in paths if not storage.exists(p)]
    if missing:
        raise FileNotFoundError(f"input not readable on this worker: {', '.join(missing[:3])}")
    warm_worker(spec)


def _check_output(manifest_path: str) -> None:
    """Fail unless this Dask worker sees the output folder the client created (same storage)."""
    if not storage.exists(manifest_path):
        raise FileNotFoundError(
            f"{manifest_path} is not visible on this worker: every worker must see the "
            "client's output folder (shared storage at the same path, or an s3:// URL)"
        )


def score_part(
    index: int, item: Piece | pd.DataFrame, columns: list[str], spec: ScoreSpec, writer: PartWriter
) -> dict:
    """Read, score and write one partition as part ``index`` (a Dask task); return its record."""
    try:
        record = writer.write(index, score_chunk(read_piece(item, columns), spec))
    except Exception as exc:  # noqa: BLE001 - the client prints this one line
        where = item.describe() if isinstance(item, Piece) else f"{len(item)} rows read by the client"
        raise JobFailed(failure_line(index, where, this_process(), exc)) from None
    return {**record, "worker": this_process()}  # kept in the manifest: who wrote which part


def _worker_errors(results: dict[str, Any]) -> str | None:
    """Return one line naming the workers whose ``client.run`` call failed, or None if none did."""
    failed = {address: r for address, r in results.items() if isinstance(r, BaseException)}
    if not failed:
        return None
    address, exc = sorted(failed.items())[0]
    others = f" (and {len(failed) - 1} more of {len(results)} workers)" if len(failed) > 1 else ""
    return f"Dask worker {address}{others}: {one_line(exc)}"


class DaskEngine:
    """Score the input's partitions as Dask tasks; workers read their piece and write their own part."""

    name = "dask"

    def __init__(
        self,
        source: InputSource,
        spec: ScoreSpec,
        writer: PartWriter,
        *,
        columns: Sequence[str],
        chunk_size: int,
        partition_size: int,
        scheduler: str | None,
        workers: int,
        processes: bool = True,
    ) -> None:
        self.source, self.spec, self.writer = source, spec, writer
        self.scheduler, self.workers, self.processes = scheduler, workers, processes
        self.columns, self.chunk_size, self.partition_size = list(columns), chunk_size, partition_size
        self.client = None
        self.cluster = None
        self.ready_at: float | None = None

    def __enter__(self) -> "DaskEngine":
        """Connect (or start a LocalCluster) before any output is written: fail fast."""
        from distributed import Client, LocalCluster

        try:
            if self.scheduler:
                self.client = Client(self.scheduler, timeout="30s")
            else:
                self.cluster = LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=self.processes,
                    dashboard_address=None,
                    silence_logs=logging.WARNING,
                )
                self.client = Client(self.cluster)
        except (OSError, TimeoutError) as exc:
            self.__exit__()
            raise ScoringError(f"cannot reach the Dask scheduler {self.scheduler}: {exc}") from exc
        log.info("dask: %s", self.client)
        try:
            self.client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
        except TimeoutError:
            self.__exit__()
            raise ScoringError(
                f"the Dask scheduler {self.scheduler} has no workers "
                f"(none connected within {WORKERS_TIMEOUT:.0f} s)"
            ) from None
        # Every worker must see the input and load the model (shared storage, same packages);
        # finding out now, before the output folder is touched, is the cheap moment.
        problem = _worker_errors(
            self.client.run(_check_worker, list(self.source.files), self.spec, on_error="return")
        )
        if problem:
            self.__exit__()
            raise ScoringError(f"a Dask worker cannot run this job: {problem}")
        return self

    def __exit__(self, *exc: object) -> None:
        """Disconnect, and stop the LocalCluster if this engine started one."""
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None

    def partitioning(self) -> dict:
        """Describe how parts map to input rows (a resumed run must use the same)."""
        return {"engine": self.name, "partition_size": self.partition_size, "chunk_size": self.chunk_size}

    def run(self, done: set[int], on_part: OnPart) -> None:
        """Score every partition not in ``done``; record each part as soon as a worker wrote it."""
        from distributed import as_completed

        client = self.client
        assert client is not None, "use the engine as a context manager"
        problem = _worker_errors(
            client.run(_check_output, storage.join(self.writer.directory, MANIFEST_FILE), on_error="return")
        )
        if problem:
            raise ScoringError(f"a Dask worker cannot write this job's output: {problem}")
        self.ready_at = time.perf_counter()
        run_id = uuid.uuid4().hex[:8]
        partitions = self.source.partitions(self.columns, self.partition_size, self.chunk_size)
        todo = ((i, item) for i, item in enumerate(partitions) if i not in done)
        limit = max(2, TASKS_PER_THREAD * sum(client.nthreads().values()))
        in_flight: dict[Any, tuple[int, Piece | pd.DataFrame]] = {}
        finished = as_completed()

        def submit_next() -> None:
            """Submit the next partition, if any is left."""
            for index, item in todo:
                # A frame read here goes straight to a worker, not through the scheduler.
                payload = client.scatter(item) if isinstance(item, pd.DataFrame) else item
                future = client.submit(
                    score_part,
                    index,
                    payload,
                    self.columns,
                    self.spec,
                    self.writer,
                    key=f"score-part-{run_id}-{index:05d}",
                    retries=0,
                )
                in_flight[future] = (index, item)
                finished.add(future)
                return

        for _ in range(limit):
            submit_next()
        for future in finished:
            index, item = in_flight.pop(future)
            try:
                record = future.result()
            except BaseException as exc:
                client.cancel(list(in_flight))
                raise _client_side_failure(index, item, exc) from None
            on_part(record)
            submit_next()


def _client_side_failure(index: int, item: Piece | pd.DataFrame, exc: BaseException) -> BaseException:
    """Turn what a failed task raised on the client into one line (KeyboardInterrupt stays itself)."""
    if isinstance(exc, JobFailed):  # raised by score_part on the worker: already one line
        return exc
    if not isinstance(exc, Exception):
        return exc
    where = item.describe() if isinstance(item, Piece) else f"{len(item)} rows read by the client"
    if type(exc).__name__ == "KilledWorker":
        who = "every worker that tried it (the worker process died each time: out of memory?)"
    else:
        who = "the cluster"
    return JobFailed(failure_line(index, where, who, exc))


def make_engine(
    config: JobConfig, source: InputSource, spec: ScoreSpec, writer: PartWriter, columns: Sequence[str]
) -> LocalEngine | DaskEngine:
    """Build the engine the config asks for."""
    if config.engine == "dask":
        return DaskEngine(
            source,
            spec,
            writer,
            columns=columns,
            chunk_size=config.chunk_size,
            partition_size=config.partition_size,
            scheduler=config.scheduler,
            workers=config.dask_workers,
            processes=config.dask_processes,
        )
    return LocalEngine(
        source, spec, writer, columns=columns, chunk_size=config.chunk_size, workers=config.workers
    )
