"""Prometheus metrics of the service, correct across gunicorn workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``service/gunicorn.conf.py`` sets and cleans it), every
worker writes its samples to files there and ``GET /metrics`` merges all workers' files, so any
worker answers for the whole server. Without it (tests, ``flask run``) each app has its own
registry. Gauges declare how workers combine: queue depth is summed over live workers, the model
version is reported per worker (``pid`` label) so a half-finished rollout is visible.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: environ key: when the request's handling began, if before Flask (service.fastpath sets it).
REQUEST_STARTED = "sentiment.request_started"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256)


def multiprocess_dir() -> str | None:
    """Return the multiprocess directory when multiprocess mode is on."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """The service's metrics; also the batcher's and model manager's observer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[str, str, int], tuple] = {}
        r = self.registry
        self.requests = Counter(
            "sentiment_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "sentiment_http_request_duration_seconds",
            "HTTP request latency by route, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "sentiment_batch_size",
            "Texts per model call made by the dynamic batcher.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inference_latency = Histogram(
            "sentiment_inference_duration_seconds",
            "Seconds one model call takes (padding, the runtime, calibration).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_cpu = Counter(
            "sentiment_inference_cpu_seconds",
            "CPU seconds the batcher thread spent in model calls (its own CPU clock: padding, the "
            "runtime on that thread, calibration); worker CPU minus this is the request path's cost.",
            registry=r,
        )
        self.queue_wait = Histogram(
            "sentiment_queue_wait_seconds",
            "Seconds a request waits in the queue before batching.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "sentiment_queue_depth",
            "Texts waiting for a batch, summed over live workers.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.model_version = Gauge(
            "sentiment_model_version",
            "Model version each live worker serves.",
            ["model"],
            multiprocess_mode="liveall",
            registry=r,
        )
        self.reloads = Counter(
            "sentiment_model_reloads_total",
            "Model version loads by result (success or failure).",
            ["model", "result"],
            registry=r,
        )
        self.unhandled = Counter(
            "sentiment_unhandled_errors_total",
            "Requests answered by the last-resort 500 handler.",
            registry=r,
        )

    # -- observer interfaces -------------------------------------------------------------------
    def observe_batch(self, size: int, seconds: float, cpu_seconds: float) -> None:
        """Record one model call: its size, wall time and the CPU time of the thread that made it."""
        self.batch_size.observe(size)
        self.inference_latency.observe(seconds)
        self.inference_cpu.inc(max(cpu_seconds, 0.0))

    def observe_queue_wait(self, seconds: float) -> None:
        """Record how long a request waited before its first batch."""
        self.queue_wait.observe(seconds)

    def set_queue_depth(self, items: int) -> None:
        """Record how many texts wait in this worker's queue."""
        self.queue_depth.set(items)

    def model_loaded(self, name: str, version: int) -> None:
        """Record a successful (re)load."""
        self.model_version.labels(name).set(version)
        self.reloads.labels(name, "success").inc()

    def model_load_failed(self, name: str, version: int) -> None:
        """Record a refused version."""
        self.reloads.labels(name, "failure").inc()

    # -- HTTP ----------------------------------------------------------------------------------
    def request_series(self, rule: str, method: str, status: int) -> tuple:
        """Return the (counter, histogram) children of one label set, looked up once per process.

        ``labels()`` validates and locks on every call; the label sets are few and bounded (rules
        of the app x known methods x status codes), so a plain dict keeps them off the hot path.
        """
        key = (rule, method, status)
        children = self._children.get(key)
        if children is None:
            labels = (rule, method, str(status))
            children = (self.requests.labels(*labels), self.request_latency.labels(*labels))
            self._children[key] = children
        return children

    def exposition(self) -> bytes:
        """Return the text exposition for all workers (multiprocess) or this app."""
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=path)
        return generate_latest(merged)

    def init_app(self, app: Flask) -> None:
        """Count and time every request, and serve ``GET /metrics``."""

        @app.before_request
        def _start_timer() -> None:
            g.metrics_started = request.environ.get(REQUEST_STARTED) or time.perf_counter()

        @app.after_request
        def _record(response: Response) -> Response:
            started = g.pop("metrics_started", None)
            rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
            method = request.method if request.method in KNOWN_METHODS else "OTHER"  # bounded labels
            count, latency = self.request_series(rule, method, response.status_code)
            count.inc()
            if started is not None:
                latency.observe(time.perf_counter() - started)
            return response

        def metrics_view() -> Response:
            return Response(self.exposition(), content_type=CONTENT_TYPE_LATEST)

        app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
