"""The service's default gunicorn worker: inference routes on an event loop, the rest in Flask.

Why. Under load a gthread worker spends about as much CPU per request on its own machinery as
the model spends scoring a short review: a thread hand-off from the poller, a Python HTTP parser,
a future, a blocking wait on the batcher and a second hand-off back (``bench/bench_service.py``,
'outside model' column; numbers in docs/service.md). Here uvicorn parses HTTP in C (httptools) on
a uvloop event loop, and a request waiting for its batch is an awaited future, not a parked thread.

What runs where, in each worker process:
- the event loop: HTTP parsing, and for a well-formed ``POST /v1/predict`` (JSON) or
  ``POST /v2/models/<served>/infer`` the whole request: reading the body, parsing, validation,
  tokenising, queueing on the batcher, and the answer. The rules and the bytes are those of the
  Flask views, because both run the same steps (``service.api.predict_steps``,
  ``service.v2.infer_steps``) and accept the same requests (``service.fastpath.answerable_length``);
- the batcher's thread: the model calls (ONNX Runtime releases the GIL), exactly as under gthread;
- a pool of ``SENTIMENT_THREADS`` threads: every other request, handed to the unchanged Flask
  app through ``a2wsgi``; so are predict requests that failed here, with their body and the
  exception, and Flask's error handlers write the answer (one set of error bodies).

The worker bounds what a connection may send before the app sees it, as gunicorn's own workers
do: the request line, the number of header fields and each field's size (gunicorn's
``limit_request_*`` settings), and connections per worker (``worker_connections``; more get 503).
Malformed HTTP is answered with a JSON error body, not plain text.

``SENTIMENT_WORKER_CLASS=gthread`` serves with gunicorn's threaded worker and the WSGI fast path
instead (``service/fastpath.py``); both pass the same integration tests.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from a2wsgi import WSGIMiddleware
from flask import Flask
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from service.api import DEFERRED_ERROR, EXTENSION, METRICS_EXTENSION, PREDICT_RULE, limits_for, predict_steps
from service.fastpath import PredictFastPath, answerable_length
from service.metrics import REQUEST_STARTED
from service.v2 import INFER_RULE, infer_response_headers, infer_steps
from service.v2_codec import HEADER_LENGTH, JSON_TYPE

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
#: Scores a body: (response body, content type, extra headers), or raises for Flask to answer.
Answer = Callable[[bytes, Callable[[str], "str | None"]], Awaitable[tuple[bytes, str, list[tuple[str, str]]]]]

#: Scope keys carrying a failed lean request to Flask (moved into the WSGI environ there).
_SCOPE_ERROR = "sentiment.deferred_error"
_SCOPE_STARTED = "sentiment.request_started"
#: The request headers the lean path reads (lower case, as ASGI gives them).
_READ_HEADERS = frozenset(
    {
        b"content-type",
        b"content-length",
        b"transfer-encoding",
        b"content-encoding",
        HEADER_LENGTH.lower().encode(),
    }
)


def _flask_environ(wsgi: Callable) -> Callable:
    """Wrap Flask's WSGI callable: complete a2wsgi's environ, pass on a lean request's exception.

    The server hands the app a de-chunked body that ends where the request ends, which WSGI
    says with ``wsgi.input_terminated`` (gunicorn sets it too); without it Werkzeug reads a
    chunked body, which has no Content-Length, as empty.
    """

    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        environ["wsgi.input_terminated"] = True
        scope = environ.get("asgi.scope") or {}
        if _SCOPE_ERROR in scope:
            environ[DEFERRED_ERROR] = scope[_SCOPE_ERROR]
            environ[REQUEST_STARTED] = scope[_SCOPE_STARTED]
        return wsgi(environ, start_response)

    return app


class AsgiFront:
    """ASGI app: inference requests answered on the event loop, all else by Flask (module doc)."""

    def __init__(self, flask_app: Flask, threads: int) -> None:
        wsgi = flask_app.wsgi_app
        # The WSGI fast path has nothing left to do behind this front; with it off, so is this one.
        self._lean = isinstance(wsgi, PredictFastPath)
        if self._lean:
            wsgi = wsgi.flask_wsgi
        self._flask = WSGIMiddleware(_flask_environ(wsgi), workers=threads)
        self._plane = flask_app.extensions[EXTENSION]
        settings = self._plane.settings
        self._limits = limits_for(settings)
        self._max_body = settings.max_body_bytes
        self._name = settings.model_name
        metrics = flask_app.extensions[METRICS_EXTENSION]
        self._routes: dict[str, tuple[Answer, tuple]] = {
            PREDICT_RULE: (self._predict, metrics.request_series(PREDICT_RULE, "POST", 200)),
            INFER_RULE.replace("<name>", self._name): (
                self._infer,
                metrics.request_series(INFER_RULE, "POST", 200),
            ),
        }

    async def _predict(self, raw: bytes, header: Callable[[str], str | None]) -> tuple:
        return await self._plane.run_async(predict_steps(raw, self._limits)), JSON_TYPE, []

    async def _infer(self, raw: bytes, header: Callable[[str], str | None]) -> tuple:
        steps = infer_steps(raw, header(HEADER_LENGTH.lower()), self._limits, self._name, self._plane)
        body, header_length = await self._plane.run_async(steps)
        return (body, *infer_response_headers(header_length))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._routes.get(scope.get("path", "")) if self._lean and scope["type"] == "http" else None
        if route is None:
            return await self._flask(scope, receive, send)
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name in _READ_HEADERS:
                key = name.decode("latin-1")
                if key in headers:  # a repeated framing header: leave the judgement to Flask
                    return await self._flask(scope, receive, send)
                headers[key] = value.decode("latin-1")
        length = answerable_length(scope["method"], scope["path"], headers.get, PREDICT_RULE, self._max_body)
        if length is None:
            return await self._flask(scope, receive, send)
        answer, (count, latency) = route
        started = time.perf_counter()
        raw = await _read_body(receive, length)
        if raw is None:  # the client left before sending its body: nobody to answer
            return None
        try:
            body, content_type, extra = await answer(raw, headers.get)
        except Exception as exc:  # noqa: BLE001 - Flask's handlers turn it into the error body
            replay = _replay(raw, receive)
            return await self._flask({**scope, _SCOPE_ERROR: exc, _SCOPE_STARTED: started}, replay, send)
        response_headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode("latin-1")),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})
        count.inc()
        latency.observe(time.perf_counter() - started)


async def _read_body(receive: Receive, length: int) -> bytes | None:
    """Return the request body (the server frames it by its Content-Length); None if the client left."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            break
    raw = b"".join(chunks)
    return raw if len(raw) == length else None


def _replay(raw: bytes, receive: Receive) -> Receive:
    """Return a ``receive`` that hands the already-read body out again, then defers to the real one."""
    pending = [{"type": "http.request", "body": raw, "more_body": False}]

    async def again() -> dict:
        return pending.pop() if pending else await receive()

    return again


# -- the gunicorn worker --------------------------------------------------------------------------
class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with gunicorn's request-head limits and JSON error bodies.

    httptools itself accepts a request line and header fields of any size and number; this class
    refuses more than ``max_line`` bytes of request target (414), more than ``max_fields`` header
    fields or a field over ``max_field_size`` bytes (431), as gunicorn does with its
    ``limit_request_*`` settings. Values are set per worker by :class:`SentimentWorker`.
    """

    max_line = 4094
    max_fields = 100
    max_field_size = 8190

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._line_bytes = 0
        self._refusal: tuple[int, str, str] | None = None

    def on_url(self, url: bytes) -> None:
        self._line_bytes += len(url)
        if self._line_bytes > self.max_line:
            self._refuse(414, "uri_too_long", f"the request target is longer than {self.max_line} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.max_fields:
            self._refuse(
                431, "too_many_headers", f"the request has more than {self.max_fields} header fields"
            )
        if len(name) + len(value) > self.max_field_size:
            self._refuse(
                431, "header_too_large", f"a header field is larger than {self.max_field_size} bytes"
            )
        super().on_header(name, value)

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._refusal = (status, code, message)
        raise ValueError(message)  # httptools stops parsing; data_received calls send_400_response

    def send_400_response(self, msg: str) -> None:
        status, code, message = getattr(self, "_refusal", None) or (400, "bad_request", msg)
        body = orjson.dumps({"error": {"code": code, "message": message}})
        reason = {400: b"Bad Request", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.transport.close()


def _exit_normally(signum: int, frame: object) -> None:
    sys.exit(0)


class SentimentWorker(UvicornWorker):
    """gunicorn worker running :class:`AsgiFront` over the Flask app on uvicorn (httptools, uvloop)."""

    CONFIG_KWARGS = {"loop": "uvloop", "lifespan": "off", "access_log": False}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = {
            "max_line": self.cfg.limit_request_line or BoundedHttpToolsProtocol.max_line,
            "max_fields": self.cfg.limit_request_fields or BoundedHttpToolsProtocol.max_fields,
            "max_field_size": self.cfg.limit_request_field_size or BoundedHttpToolsProtocol.max_field_size,
        }
        self.config.http = type("WorkerHttpProtocol", (BoundedHttpToolsProtocol,), limits)
        self.config.limit_concurrency = self.cfg.worker_connections

    def init_signals(self) -> None:
        """Make SIGTERM/SIGINT end the worker with a normal exit once uvicorn has shut down.

        uvicorn serves them itself (graceful shutdown), then raises the signal again under the
        handler found at start. Left at ``SIG_DFL`` (uvicorn_worker's choice) that kills the
        process, skipping ``atexit``: the feedback and sample files still open would not be
        published (``service.rotating_log.close_at_exit``). A plain ``sys.exit(0)`` runs them.
        """
        super().init_signals()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _exit_normally)

    def load_wsgi(self) -> None:
        """Build the Flask app (the factory gunicorn was given) and put the ASGI front over it."""
        super().load_wsgi()
        self.wsgi = AsgiFront(self.wsgi, threads=self.cfg.threads)
