"""A lean WSGI path for the two inference routes that carry the load.

Flask spends about 0.1 ms of CPU per request on machinery these routes do not need (request and
response objects, routing, context locals, hooks), and the model scores a short review in about
as long. So a well-formed ``POST /v1/predict`` (JSON) or ``POST /v2/models/<served>/infer``
(JSON or binary tensors, production version) is answered here, in front of Flask: the body is
read from ``wsgi.input`` within the size limit, parsed, validated and scored by the very
steps the Flask views run (``service.api.predict_steps``, ``service.v2.infer_steps``), and the
response bytes are the same. The request is counted
in the same Prometheus series as through Flask.

Everything else goes to Flask untouched: other routes and methods, another content type or a
content encoding, a body without ``Content-Length`` or over the limit. A request that fails here
is handed to Flask with its body and the exception; the view raises it again, so the status, the
error body and the headers come from the one set of error handlers, and the texts are never
scored twice. ``SENTIMENT_PREDICT_FAST_PATH=0`` turns the path off (the benchmark compares both).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import ClientDisconnected

from service.api import DEFERRED_ERROR, PREDICT_RULE, limits_for, predict_steps
from service.dataplane import DataPlane
from service.metrics import REQUEST_STARTED, Metrics
from service.v2 import INFER_RULE, infer_response_headers, infer_steps, is_identity_encoding
from service.v2_codec import HEADER_LENGTH, JSON_TYPE

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]
#: Scores a body; returns the response body and its headers after Content-Type and -Length.
Answer = Callable[[bytes, dict], tuple[bytes, str, list[tuple[str, str]]]]
_HEADER_LENGTH_ENVIRON = "HTTP_" + HEADER_LENGTH.upper().replace("-", "_")
#: Reads one request header by its lower-case name (None when absent).
Header = Callable[[str], "str | None"]


def _json_content_type(value: str) -> bool:
    """Tell whether a Content-Type header declares plain JSON (parameters such as charset allowed)."""
    return value == JSON_TYPE or value.partition(";")[0].strip().lower() == JSON_TYPE


def answerable_length(method: str, path: str, header: Header, predict_path: str, max_body: int) -> int | None:
    """Return the declared body length when a lean path may answer the request, else None (Flask).

    The one rule for both lean paths (this WSGI middleware and ``service.asgi``): a POST with a
    Content-Length of digits only (as Werkzeug reads it) within ``max_body``, no
    Transfer-Encoding; JSON for ``predict_path``, no Content-Encoding for the infer route.
    """
    if method != "POST" or header("transfer-encoding") is not None:
        return None
    if path == predict_path:
        if not _json_content_type(header("content-type") or ""):
            return None
    elif not is_identity_encoding(header("content-encoding")):
        return None
    declared = header("content-length") or ""
    if not (declared.isascii() and declared.isdigit()):
        return None
    length = int(declared)
    return length if length <= max_body else None


def _environ_header(environ: dict[str, Any]) -> Header:
    """Return a :data:`Header` reader over a WSGI environ."""

    def header(name: str) -> str | None:
        key = name.upper().replace("-", "_")
        return environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key)

    return header


class PredictFastPath:
    """WSGI middleware answering well-formed inference requests without Flask (see module doc)."""

    def __init__(self, flask_wsgi: WSGIApp, plane: DataPlane, metrics: Metrics) -> None:
        self.flask_wsgi = flask_wsgi  # the app behind this path (service.asgi fronts it directly)
        self._plane = plane
        self._limits = limits_for(plane.settings)
        self._max_body = plane.settings.max_body_bytes
        self._name = plane.settings.model_name
        self._routes: dict[str, tuple[Answer, tuple]] = {
            PREDICT_RULE: (self._predict, metrics.request_series(PREDICT_RULE, "POST", 200)),
            INFER_RULE.replace("<name>", self._name): (
                self._infer,
                metrics.request_series(INFER_RULE, "POST", 200),
            ),
        }

    def _predict(self, raw: bytes, environ: dict[str, Any]) -> tuple[bytes, str, list[tuple[str, str]]]:
        return self._plane.run(predict_steps(raw, self._limits)), JSON_TYPE, []

    def _infer(self, raw: bytes, environ: dict[str, Any]) -> tuple[bytes, str, list[tuple[str, str]]]:
        body, header_length = self._plane.run(
            infer_steps(raw, environ.get(_HEADER_LENGTH_ENVIRON), self._limits, self._name, self._plane)
        )
        return (body, *infer_response_headers(header_length))

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        route = self._routes.get(path)
        length = (
            None
            if route is None
            else answerable_length(
                environ.get("REQUEST_METHOD", ""),
                path,
                _environ_header(environ),
                PREDICT_RULE,
                self._max_body,
            )
        )
        if route is None or length is None:
            return self.flask_wsgi(environ, start_response)
        answer, (count, latency) = route
        started = time.perf_counter()
        raw = b""
        try:
            raw = environ["wsgi.input"].read(length) if length else b""
            if len(raw) != length:  # the client stopped sending: nothing complete to score
                raise ClientDisconnected()
            body, content_type, headers = answer(raw, environ)
        except Exception as exc:  # noqa: BLE001 - Flask's handlers turn it into the error body
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))
            environ[DEFERRED_ERROR] = exc
            environ[REQUEST_STARTED] = started  # its latency counts the time spent here too
            return self.flask_wsgi(environ, start_response)
        start_response(
            "200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers]
        )
        count.inc()
        latency.observe(time.perf_counter() - started)
        return [body]
