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
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from scoring.config import JobConfig, ScoringError
from scoring.readers import Chunk, InputSource
from scoring.score import ScoreSpec, score_chunk, warm_worker
from scoring.writer import PartWriter

log = logging.getLogger(__name__)

OnPart = Callable[[dict], None]
#: Chunks submitted ahead of the one being written: keeps workers fed, bounds memory.
CHUNKS_AHEAD = 2
#: Seconds a pool may take to start its workers and load their models.
STARTUP_TIMEOUT = 180.0


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
                on_part(self.writer.write(chunk.index, score_chunk(chunk.frame, self.spec), chunk.start))
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
                    f"a scoring worker failed to start or took over {STARTUP_TIMEOUT:.0f} s (see its error above)"
                ) from None
            self.ready_at = time.perf_counter()
            window: deque[tuple[Chunk, list[Future]]] = deque()
            for chunk in chunks:
                window.append((chunk, [pool.submit(score_chunk, piece, self.spec) for piece in self._split(chunk)]))
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
        scored = pd.concat([f.result() for f in futures], ignore_index=True)
        on_part(self.writer.write(chunk.index, scored, chunk.start))


def _check_worker(paths: list[str], spec: ScoreSpec) -> None:
    """Fail unless this Dask worker can read every input file; load its model (once per worker)."""
    missing = [p for p in paths if not os.access(p, os.R_OK)]
    if missing:
        raise FileNotFoundError(f"input not readable on this worker: {missing[:3]}")
    warm_worker(spec)


class DaskEngine:
    """Map the per-chunk function over ``dask.dataframe`` partitions; workers write their own parts."""

    name = "dask"

    def __init__(
        self,
        source: InputSource,
        spec: ScoreSpec,
        writer: PartWriter,
        *,
        columns: Sequence[str],
        chunk_size: int,
        scheduler: str | None,
        workers: int,
        processes: bool = True,
    ) -> None:
        self.source, self.spec, self.writer = source, spec, writer
        self.scheduler, self.workers, self.processes = scheduler, workers, processes
        self.columns, self.chunk_size = list(columns), chunk_size
        self.frame = source.dask_frame(columns, chunk_size)
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
            # Every worker must see the input and load the model (shared storage, same packages);
            # finding out now, before the output folder is touched, is the cheap moment.
            self.client.run(_check_worker, [str(f) for f in self.source.files], self.spec)
        except Exception as exc:  # noqa: BLE001 - any worker-side failure means "cannot run"
            self.__exit__()
            raise ScoringError(f"a Dask worker cannot run this job: {type(exc).__name__}: {exc}") from exc
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
        return {"engine": self.name, "chunk_size": self.chunk_size, "partitions": self.frame.npartitions}

    def run(self, done: set[int], on_part: OnPart) -> None:
        """Score every partition not in ``done``; record each part as soon as a worker wrote it."""
        import dask
        from distributed import as_completed

        assert self.client is not None, "use the engine as a context manager"
        self.ready_at = time.perf_counter()
        meta = score_chunk(self.source.empty_frame(self.columns), self.spec)  # no rows: no model needed
        scored = self.frame.map_partitions(score_chunk, self.spec, meta=meta)
        partitions = scored.to_delayed()
        todo = [i for i in range(len(partitions)) if i not in done]
        tasks = [dask.delayed(self.writer.write)(i, partitions[i]) for i in todo]
        for future in as_completed(self.client.compute(tasks)):
            on_part(future.result())


def make_engine(
    config: JobConfig, source: InputSource, spec: ScoreSpec, writer: PartWriter, columns: Sequence[str]
) -> LocalEngine | DaskEngine:
    """Build the engine the config asks for."""
    if config.engine == "dask":
        return DaskEngine(
            source, spec, writer, columns=columns, chunk_size=config.chunk_size,
            scheduler=config.scheduler, workers=config.dask_workers, processes=config.dask_processes,
        )
    return LocalEngine(source, spec, writer, columns=columns, chunk_size=config.chunk_size, workers=config.workers)
