"""A lean WSGI path for ``POST /v1/predict``, the route that carries the load.

Flask spends about 0.1 ms of CPU per request on machinery this route does not need (request and
response objects, routing, context locals, hooks), and the model scores a short review in about
as long. So a well-formed JSON predict request is answered here, in front of Flask: the body is
read from ``wsgi.input`` within the size limit, parsed, validated and scored by the very
functions the Flask view calls (``service.api.score_predict_body``), and the response bytes are
the same. The request is counted in the same Prometheus series.

Everything else goes to Flask untouched: other routes and methods, another content type, a body
without ``Content-Length`` or over the limit. A request that fails here is handed to Flask with
its body and the exception; the view raises it again, so the status, the JSON error body and
the headers come from the one set of error handlers, and the texts are never scored twice.
``SENTIMENT_PREDICT_FAST_PATH=0`` turns the path off (the benchmark compares both).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from typing import Any

from service.api import DEFERRED_ERROR, PREDICT_RULE, limits_for, score_predict_body
from service.dataplane import DataPlane
from service.metrics import Metrics

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]
JSON = "application/json"
_HEADERS_BASE = [("Content-Type", JSON)]


def _json_content_type(value: str) -> bool:
    """Tell whether a Content-Type header declares plain JSON (parameters such as charset allowed)."""
    return value == JSON or value.partition(";")[0].strip().lower() == JSON


class PredictFastPath:
    """WSGI middleware answering well-formed ``POST /v1/predict`` requests without Flask."""

    def __init__(self, flask_wsgi: WSGIApp, plane: DataPlane, metrics: Metrics) -> None:
        self._flask = flask_wsgi
        self._plane = plane
        self._limits = limits_for(plane.settings)
        self._max_body = plane.settings.max_body_bytes
        self._count, self._latency = metrics.request_series(PREDICT_RULE, "POST", 200)

    def _body_length(self, environ: dict[str, Any]) -> int | None:
        """Return the declared body length when this path may answer the request, else None."""
        if environ.get("PATH_INFO") != PREDICT_RULE or environ.get("REQUEST_METHOD") != "POST":
            return None
        if not _json_content_type(environ.get("CONTENT_TYPE", "")) or "HTTP_TRANSFER_ENCODING" in environ:
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        return length if 0 <= length <= self._max_body else None

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        length = self._body_length(environ)
        if length is None:
            return self._flask(environ, start_response)
        started = time.perf_counter()
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            body = score_predict_body(self._plane, raw, self._limits)
        except Exception as exc:  # noqa: BLE001 - Flask's handlers turn it into the JSON error
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))
            environ[DEFERRED_ERROR] = exc
            return self._flask(environ, start_response)
        start_response("200 OK", [*_HEADERS_BASE, ("Content-Length", str(len(body)))])
        self._count.inc()
        self._latency.observe(time.perf_counter() - started)
        return [body]
