"""Hold the Predictor a worker serves, and swap in newly promoted versions without downtime.

A background thread polls the registry's production pointer. When it names another version, that
version is loaded and warmed up on the polling thread while the old one keeps serving; only then
is the reference swapped (one attribute assignment, atomic under the GIL). A batch that already
took the old Predictor finishes with it. A version that fails to load or warm up is refused: the
old one keeps serving, the failure is logged, counted and shown in the model status, and the same
promotion is not retried on every poll (a new promotion is).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from inference.predictor import Predictor
from registry.store import Registry

log = logging.getLogger(__name__)


class ModelUnavailable(Exception):
    """No version of the model is loaded yet (nothing promoted, or every load failed)."""


class ReloadObserver(Protocol):
    """Receives model lifecycle events (the metrics layer implements it)."""

    def model_loaded(self, name: str, version: int) -> None: ...

    def model_load_failed(self, name: str, version: int) -> None: ...


@dataclass(frozen=True)
class LoadFailure:
    """Why a version was refused; ``error`` is the exception type, never a traceback or a path."""

    version: int
    stage: str  # "load" or "warm_up"
    error: str
    at: float


@dataclass(frozen=True)
class ModelState:
    """A consistent snapshot of what this worker serves and what it is doing."""

    name: str
    served: Predictor | None
    loading_version: int | None
    last_failure: LoadFailure | None
    loaded_at: float | None


Loader = Callable[[str], Predictor]


class ModelManager:
    """Serves one model name from a registry: current Predictor plus background hot reload."""

    def __init__(
        self,
        registry: Registry,
        name: str,
        *,
        loader: Loader,
        poll_interval_s: float = 5.0,
        observer: ReloadObserver | None = None,
    ) -> None:
        self.registry = registry
        self.name = name
        self._loader = loader
        self.poll_interval_s = poll_interval_s
        self._observer = observer
        self._current: Predictor | None = None
        self._loaded_at: float | None = None
        self._loading: int | None = None
        self._failure: LoadFailure | None = None
        self._refused: tuple[int, object] | None = None  # (version, pointer updated_at) not to retry
        self._pointer_problem: str | None = None
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    # -- serving -------------------------------------------------------------------------------
    def current(self) -> Predictor:
        """Return the Predictor to score the next batch with, or raise ModelUnavailable."""
        predictor = self._current
        if predictor is None:
            raise ModelUnavailable(f"model {self.name!r} is not loaded yet")
        return predictor

    @property
    def ready(self) -> bool:
        """Return whether a loaded and warmed-up version is being served."""
        return self._current is not None

    def state(self) -> ModelState:
        """Return a snapshot of the served version, any load in progress and the last refusal."""
        return ModelState(self.name, self._current, self._loading, self._failure, self._loaded_at)

    # -- reloading -----------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Load the production version if it differs from the served one; return True on a swap."""
        with self._reload_lock:
            try:
                pointer = self.registry.pointer(self.name)
                version = None if pointer is None else int(pointer["version"])
            except Exception as exc:  # a pointer being rewritten by hand, a vanished directory, ...
                self._note_pointer_problem(f"cannot read the production pointer ({type(exc).__name__})")
                return False
            if version is None:
                self._note_pointer_problem("nothing promoted yet")
                return False
            self._pointer_problem = None
            current = self._current
            if current is not None and current.version == version:
                return False
            promotion = (version, pointer.get("updated_at"))
            if self._refused == promotion:
                return False
            return self._load(version, promotion)

    def _load(self, version: int, promotion: tuple[int, object]) -> bool:
        """Load and warm up one version, then swap it in; refuse it on any failure."""
        self._loading = version
        stage = "load"
        started = time.perf_counter()
        try:
            path = self.registry.version_dir(self.name, version)
            predictor = self._loader(str(path))
            if predictor.version != version:
                raise ValueError(f"directory of version {version} holds version {predictor.version}")
            stage = "warm_up"
            predictor.warm_up()
        except Exception as exc:
            # With an old version serving, refuse this promotion until the next one. With nothing
            # served yet, retry at every poll: the failure may be passing (I/O, memory at start-up).
            if self._current is not None:
                self._refused = promotion
            self._failure = LoadFailure(version, stage, type(exc).__name__, time.time())
            served = self._current.version if self._current is not None else None
            log.error(
                "model %s: refused version %s (%s failed: %s); still serving version %s",
                self.name,
                version,
                stage,
                exc,
                served,
            )
            if self._observer is not None:
                self._observer.model_load_failed(self.name, version)
            return False
        finally:
            self._loading = None
        previous = self._current
        self._current = predictor  # the swap: batches that already hold `previous` finish with it
        self._loaded_at = time.time()
        self._refused = None
        self._failure = None
        log.info(
            "model %s: now serving version %s (was %s; loaded in %.2fs)",
            self.name,
            version,
            previous.version if previous else None,
            time.perf_counter() - started,
        )
        if self._observer is not None:
            self._observer.model_loaded(self.name, version)
        return True

    def _note_pointer_problem(self, problem: str) -> None:
        """Log a registry problem once rather than on every poll."""
        if problem != self._pointer_problem:
            self._pointer_problem = problem
            log.warning("model %s in %s: %s", self.name, self.registry.root, problem)

    # -- polling thread ------------------------------------------------------------------------
    def start(self) -> ModelManager:
        """Start polling the production pointer in a daemon thread (again, after a fork)."""
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return self
        self._pid = os.getpid()
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name=f"reload-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling (a load in progress finishes first)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                self.refresh()
            except Exception:  # never let the reload thread die: the worker would go stale
                log.exception("model %s: unexpected error while checking for a new version", self.name)
