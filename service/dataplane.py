"""The logic behind every endpoint, free of HTTP: score texts through the batcher, report status.

Texts are encoded on the request thread or the event loop (in parallel with the model call of the
previous batch) with the Predictor served at that moment. The batch function scores them with the Predictor
served when the batch runs; if a hot reload swapped versions in between, it re-encodes with the
new version's vocabulary, so a text is always scored by the version whose tokenizer encoded it,
and every prediction carries that version.

Explanations (``/v1/explain``) bypass the batcher: the ``n + 1`` occluded sequences of one text
are already a full batch and must all be scored by one version in one model call, which a
shared batch could split across calls and, during a hot reload, across versions. Their cost is
bounded by the token cap and by running one explanation at a time per worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from inference.explain import Explanation, Occlusion
from inference.predictor import Predictor
from registry.artifact import REPORT_DIR
from service.batcher import Arrival, BatchObserver, DynamicBatcher, QueueFull
from service.model_manager import ModelManager
from service.settings import Settings

log = logging.getLogger(__name__)


class InferenceError(RuntimeError):
    """The model failed to score a batch (runtime error, or a non-finite score)."""


class NonFiniteScore(InferenceError):
    """The model produced NaN/inf for a text: fail the batch rather than emit invalid JSON."""


@dataclass(frozen=True)
class Prediction:
    """One text's result and the model version that produced it."""

    label: str
    probability: float
    model_name: str
    model_version: int


@dataclass(frozen=True)
class ExplainedPrediction:
    """One text's prediction and the per-token explanation computed with the same version."""

    prediction: Prediction
    explanation: Explanation


@dataclass(frozen=True)
class Report:
    """Where the served version keeps its evaluation report."""

    model_name: str
    model_version: int
    folder: Path
    quick: bool


@dataclass(frozen=True)
class _Encoded:
    """A text queued for the batcher, encoded by one Predictor."""

    text: str
    ids: np.ndarray
    encoder: Predictor


T = TypeVar("T")
#: One request's scoring, free of how it waits: a generator that yields each batch of texts it
#: needs scored, receives their predictions, and returns the response. ``DataPlane.run`` drives it
#: on a request thread (WSGI), ``DataPlane.run_async`` on an event loop (``service.asgi``): one
#: implementation of parsing, validation and answers for both servers.
ScoringSteps = Generator[Sequence[str], "list[Prediction]", T]

#: Told about every scored request: its texts, their encoded items (``.ids``), their predictions.
Tap = Callable[[Sequence[str], Sequence[_Encoded], list[Prediction]], None]


class DataPlane:
    """Connects the model manager and the batcher; the HTTP layer calls only this."""

    def __init__(
        self,
        settings: Settings,
        manager: ModelManager,
        *,
        observer: BatchObserver | None = None,
        tap: Tap | None = None,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.tap = tap  # service.traffic: drift metrics and the traffic sample, off the request path
        self.batcher: DynamicBatcher[_Encoded, Prediction] = DynamicBatcher(
            self._score_batch,
            max_batch_size=settings.max_batch_size,
            batch_timeout_s=settings.batch_timeout_s,
            max_queued=settings.max_queued_texts,
            window=settings.batch_window_texts,
            plan=self._plan_batches,
            observer=observer,
            name=f"batcher-{settings.model_name}",
        )
        self._explaining = threading.Lock()  # one explanation at a time per worker

    def start(self) -> DataPlane:
        """Load the production version now (if any) and start the batching and reload threads."""
        self.manager.refresh()
        self.manager.start()
        self.batcher.start()
        return self

    def stop(self) -> None:
        """Stop the background threads (tests; gunicorn workers simply exit)."""
        self.manager.stop()
        self.batcher.stop()

    # -- predictions ---------------------------------------------------------------------------
    def arrival(self) -> Arrival:
        """Announce a request being parsed, so a forming batch may wait for it."""
        return self.batcher.arrival()

    def predict(
        self, texts: Sequence[str], deadline: float, arrival: Arrival | None = None
    ) -> list[Prediction]:
        """Score validated texts in the shared batches; results in input order."""
        items = self._encode(texts)
        if arrival is not None:
            results = arrival.submit(items, deadline)
        else:
            results = self.batcher.submit(items, deadline)
        return self._tapped(texts, items, results)

    def run(self, steps: ScoringSteps[T]) -> T:
        """Drive a request's scoring steps on this thread: each batch of texts waits in the batcher.

        The steps' parsing counts as an arrival, so a forming batch may wait for it.
        """
        deadline = time.monotonic() + self.settings.deadline_s
        with self.arrival() as arrival:
            texts = next(steps)
            predictions = self.predict(texts, deadline, arrival)
        while True:
            try:
                texts = steps.send(predictions)
            except StopIteration as done:
                return done.value
            predictions = self.predict(texts, deadline)

    async def run_async(self, steps: ScoringSteps[T]) -> T:
        """Drive scoring steps on an event loop (``service.asgi``): no thread waits for the batcher."""
        deadline = time.monotonic() + self.settings.deadline_s
        texts = next(steps)
        while True:
            predictions = await self.predict_async(texts, deadline)
            try:
                texts = steps.send(predictions)
            except StopIteration as done:
                return done.value

    async def predict_async(self, texts: Sequence[str], deadline: float) -> list[Prediction]:
        """:meth:`predict` for an event loop: awaits the batch instead of blocking a thread."""
        items = self._encode(texts)
        return self._tapped(texts, items, await self.batcher.submit_async(items, deadline))

    def _encode(self, texts: Sequence[str]) -> list[_Encoded]:
        """Encode texts with the Predictor served now (the batch re-encodes if it has changed)."""
        predictor = self.manager.current()
        return [_Encoded(t, ids, predictor) for t, ids in zip(texts, predictor.encode(texts), strict=True)]

    def _tapped(
        self, texts: Sequence[str], items: list[_Encoded], results: list[Prediction]
    ) -> list[Prediction]:
        """Hand a scored request to the traffic tap (if any); return its results."""
        if self.tap is not None:
            self.tap(texts, items, results)
        return results

    def explain(self, text: str, deadline: float) -> ExplainedPrediction:
        """Score one validated text and each of its one-token occlusions in one model call.

        Raises TooManyTokens (413) at once when the text exceeds ``explain_max_tokens``; waits
        for the worker's explanation slot until ``deadline``, then raises QueueFull (503).
        """
        predictor = self.manager.current()
        occlusion = Occlusion.of(predictor.vocabulary, text, max_tokens=self.settings.explain_max_tokens)
        if not self._explaining.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise QueueFull("another explanation kept this worker busy until the deadline")
        try:
            explanation = occlusion.explain(predictor)
        except Exception as exc:
            # No batcher logs this one: keep the traceback here; the client gets no internals.
            log.exception("explanation of %d tokens failed", len(occlusion.positions))
            raise InferenceError(f"model {predictor.name} v{predictor.version} failed: {exc}") from exc
        finally:
            self._explaining.release()
        values = [explanation.probability] + [t.contribution for t in explanation.tokens]
        if not np.all(np.isfinite(values)):
            log.error("model %s v%s: non-finite score in an explanation", predictor.name, predictor.version)
            raise NonFiniteScore(f"model {predictor.name} v{predictor.version} produced a non-finite score")
        p = explanation.probability
        prediction = Prediction(predictor.label_for(p), p, predictor.name, predictor.version)
        return ExplainedPrediction(prediction, explanation)

    def _plan_batches(self, items: list[_Encoded]) -> list[np.ndarray]:
        """Group a round of queued texts into model calls by length (inference.batching decides)."""
        return self.manager.current().plan([len(it.ids) for it in items])

    def _score_batch(self, items: list[_Encoded]) -> list[Prediction]:
        """Score one planned group in one model call with the Predictor served now (batcher thread)."""
        predictor = self.manager.current()
        ids = [it.ids if it.encoder is predictor else predictor.encode([it.text])[0] for it in items]
        try:
            probabilities = predictor.score_together(ids)
        except Exception as exc:
            raise InferenceError(f"model {predictor.name} v{predictor.version} failed: {exc}") from exc
        if not np.isfinite(probabilities).all():
            raise NonFiniteScore(f"model {predictor.name} v{predictor.version} produced a non-finite score")
        name, version = predictor.name, predictor.version
        label_for = predictor.label_for
        return [Prediction(label_for(p), p, name, version) for p in probabilities.tolist()]

    # -- status --------------------------------------------------------------------------------
    def model_status(self) -> dict:
        """Return TF Serving's ``model_version_status`` document plus the served version's metrics."""
        state = self.manager.state()
        statuses = []
        metrics: dict = {}
        if state.served is not None:
            statuses.append(_version_status(state.served.version, "AVAILABLE"))
            metrics = state.served.artifact.metrics
        if state.loading_version is not None:
            statuses.append(_version_status(state.loading_version, "LOADING"))
        failure = state.last_failure
        if failure is not None and (state.served is None or failure.version != state.served.version):
            statuses.append(
                _version_status(
                    failure.version,
                    "END",
                    "UNKNOWN",
                    f"version {failure.version} was refused: {failure.stage} failed ({failure.error})",
                )
            )
        return {
            "model_version_status": statuses,
            "model": {
                "name": state.name,
                "version": state.served.version if state.served is not None else None,
                "runtime": self.settings.runtime,
                "loaded_at": state.loaded_at,
                "quick": state.served is not None and state.served.artifact.quick,
                "preset": state.served.artifact.preset if state.served is not None else None,
            },
            "metrics": metrics,
        }

    def report(self) -> Report:
        """Return the served version's report folder (it may not exist: the caller checks)."""
        served = self.manager.current()
        return Report(served.name, served.version, served.artifact.file(REPORT_DIR), served.artifact.quick)

    def loaded_versions(self) -> list[int]:
        """Return the versions this worker can score with now: the served one (none before a load).

        A worker holds one Predictor, so a request naming another version cannot be honoured.
        """
        served = self.manager.state().served
        return [] if served is None else [served.version]

    def readiness(self) -> dict | None:
        """Return the served model's name, version and quick flag, or None when not ready."""
        state = self.manager.state()
        if state.served is None:
            return None
        served = state.served
        return {
            "status": "ready",
            "model_name": served.name,
            "model_version": served.version,
            "quick": served.artifact.quick,
        }


def _version_status(version: int, state: str, error_code: str = "OK", message: str = "") -> dict:
    """Return one entry of TF Serving's model_version_status list."""
    return {
        "version": str(version),
        "state": state,
        "status": {"error_code": error_code, "error_message": message},
    }
