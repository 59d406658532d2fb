"""What the service records about the traffic it scores: drift metrics and an opt-in sample.

The data plane calls the tap once per scored request with its texts, their encoded id sequences
and their predictions. The tap only queues them (one deque append, no lock, nothing computed);
a background thread per worker drains the queue twice a second and

- observes each text's input length (tokens the model read), out-of-vocabulary share and score
  in Prometheus histograms labelled by model version (``sentiment_input_tokens``,
  ``sentiment_input_oov_ratio``, ``sentiment_score``), to compare with the reference
  distributions the version was trained with;
- writes a random share (``SENTIMENT_SAMPLE_RATE``) of the texts with their score, version and
  time to the traffic sample (``service.rotating_log``: rotated, bounded in files and bytes),
  which ``python -m training.pipeline drift`` and the retrain's shadow evaluation read.

With the drift metrics off and a sample rate of 0 there is no tap at all: the data plane pays one
``is None`` test per request.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram

from embeddings.vocabulary import OOV_ID
from service.rotating_log import RotatingLog, close_at_exit, run_periodically
from service.settings import Settings

if TYPE_CHECKING:
    from service.dataplane import Prediction

log = logging.getLogger(__name__)

PREFIX = "sample"
#: Seconds between drains of the queue (metrics lag the traffic by at most this).
DRAIN_INTERVAL_S = 0.5
#: Requests the queue holds at most; beyond, requests are not recorded (and counted).
MAX_PENDING = 10_000
TOKEN_BUCKETS = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
OOV_BUCKETS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))

#: One scored request: its texts, items with ``.ids`` (encoded texts) and predictions.
Scored = tuple[Sequence[str], Sequence[Any], Sequence["Prediction"]]


class DriftMetrics:
    """Per-text histograms of input length, OOV share and score, by model version."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tokens = Histogram(
            "sentiment_input_tokens",
            "Tokens the model read per text (after truncation), by model version.",
            ["version"],
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.oov = Histogram(
            "sentiment_input_oov_ratio",
            "Share of a text's tokens outside the vocabulary, by model version.",
            ["version"],
            buckets=OOV_BUCKETS,
            registry=registry,
        )
        self.score = Histogram(
            "sentiment_score",
            "Calibrated positive probability per text, by model version.",
            ["version"],
            buckets=SCORE_BUCKETS,
            registry=registry,
        )

        self._children: dict[int, tuple] = {}  # version -> its three histograms (labels() takes a lock)

    def observe(self, texts: Sequence[str], items: Sequence[Any], predictions: Sequence[Prediction]) -> None:
        """Record one request's texts."""
        for item, p in zip(items, predictions, strict=True):
            children = self._children.get(p.model_version)
            if children is None:
                version = str(p.model_version)
                children = tuple(h.labels(version) for h in (self.tokens, self.oov, self.score))
                self._children[p.model_version] = children
            tokens, oov, score = children
            n = len(item.ids)
            tokens.observe(n)
            oov.observe(int(np.count_nonzero(item.ids == OOV_ID)) / n)
            score.observe(p.probability)


class TrafficSample:
    """Writes a random share of scored texts, with score and version, to rotated JSONL files."""

    def __init__(
        self, settings: Settings, registry: CollectorRegistry, rng: random.Random | None = None
    ) -> None:
        self.rate = settings.sample_rate
        self.rng = rng or random.Random()
        self.log = RotatingLog(
            settings.sample_dir,
            prefix=PREFIX,
            rotate_bytes=settings.sample_rotate_bytes,
            rotate_s=settings.sample_rotate_s,
            durable=False,  # a sample lost in a crash is only a smaller sample
            max_files=settings.sample_max_files,
            max_bytes=settings.sample_max_bytes,
        )
        self.written = Counter(
            "sentiment_sampled_texts_total", "Texts written to the traffic sample.", registry=registry
        )
        close_at_exit(self.log)

    def observe(self, texts: Sequence[str], items: Sequence[Any], predictions: Sequence[Prediction]) -> None:
        """Pick texts at the sample rate and append them to this worker's sample file."""
        now = round(time.time(), 3)
        records = [
            {
                "text": text,
                "probability": p.probability,
                "label": p.label,
                "model_name": p.model_name,
                "model_version": p.model_version,
                "tokens": len(item.ids),
                "oov": int(np.count_nonzero(item.ids == OOV_ID)),
                "time": now,
            }
            for text, item, p in zip(texts, items, predictions, strict=True)
            if self.rng.random() < self.rate
        ]
        if records:
            self.log.append(records)
            self.written.inc(len(records))


class TrafficTap:
    """Queues scored requests on the request thread; a background thread hands them to consumers."""

    def __init__(
        self,
        consumers: Sequence[Callable[[Sequence[str], Sequence[Any], Sequence[Prediction]], None]],
        *,
        housekeeping: Sequence[Callable[[], None]] = (),
        interval_s: float = DRAIN_INTERVAL_S,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.consumers = list(consumers)
        self.housekeeping = list(housekeeping)
        self.interval_s = interval_s
        self.max_pending = max_pending
        self._pending: collections.deque[Scored] = collections.deque()
        self._started = False
        self._start_lock = threading.Lock()
        self.dropped = 0

    def __call__(self, texts: Sequence[str], items: Sequence[Any], predictions: Sequence[Prediction]) -> None:
        """Queue one scored request (called by the data plane on the request thread)."""
        if len(self._pending) >= self.max_pending:
            self.dropped += 1  # approximate under races; only ever reported in a log line
            return
        self._pending.append((texts, items, predictions))
        if not self._started:
            self._start()

    def _start(self) -> None:
        with self._start_lock:
            if not self._started:
                run_periodically(self, "drain", self.interval_s, name="traffic-tap")
                self._started = True

    def drain(self) -> int:
        """Hand every queued request to the consumers; return how many were handled."""
        handled = 0
        while self._pending:
            texts, items, predictions = self._pending.popleft()
            for consume in self.consumers:
                try:
                    consume(texts, items, predictions)
                except Exception:  # noqa: BLE001 - a full sample disk must not stop the metrics
                    log.exception("traffic consumer %r failed", consume)
            handled += 1
        for task in self.housekeeping:
            task()
        if self.dropped:
            log.warning("traffic tap queue full: %d requests not recorded", self.dropped)
            self.dropped = 0
        return handled


def build_tap(settings: Settings, registry: CollectorRegistry) -> TrafficTap | None:
    """Return the tap the settings ask for, or None when nothing is recorded."""
    consumers: list = []
    housekeeping: list = []
    if settings.drift_metrics:
        consumers.append(DriftMetrics(registry).observe)
    if settings.sample_rate > 0:
        sample = TrafficSample(settings, registry)
        sample.log.recover_orphans()
        consumers.append(sample.observe)
        housekeeping.append(sample.log.housekeeping)
    if not consumers:
        return None
    return TrafficTap(consumers, housekeeping=housekeeping)
