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

Bounded like gthread: the worker caps each connection's request head (gunicorn's
``limit_request_*`` settings, counted as bytes arrive), the time to send it (gunicorn's
``keepalive``), the requests a connection may pipeline, the connections per worker
(``worker_connections``, then 503), and the request bodies the loop holds at once (as many as
``SENTIMENT_THREADS`` gthread threads could; beyond that a request goes to Flask's thread pool):
:class:`BoundedHttpToolsProtocol`. Malformed HTTP is answered with a JSON error body.

``SENTIMENT_WORKER_CLASS=gthread`` serves with gunicorn's threaded worker and the WSGI fast path
instead (``service/fastpath.py``); both pass the same integration tests.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from a2wsgi import WSGIMiddleware
from flask import Flask
from gunicorn.arbiter import Arbiter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server
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
        if DEFERRED_ERROR in scope:  # a failed lean request: same keys as the WSGI fast path's
            environ[DEFERRED_ERROR] = scope[DEFERRED_ERROR]
            environ[REQUEST_STARTED] = scope[REQUEST_STARTED]
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
        # Bodies the loop may hold at once: what ``threads`` gthread request threads could. A
        # request beyond it goes to Flask, whose thread pool reads one body per thread.
        self._body_budget = threads * settings.max_body_bytes
        self._body_bytes = 0
        self._name = settings.model_name
        metrics = flask_app.extensions[METRICS_EXTENSION]
        self._routes: dict[str, tuple[Answer, tuple]] = {
            PREDICT_RULE: (self._predict, metrics.request_series(PREDICT_RULE, "POST", 200)),
            INFER_RULE.replace("<name>", self._name): (
                self._infer,
                metrics.request_series(INFER_RULE, "POST", 200),
            ),
        }

    async def _predict(self, raw: bytes, header: Callable[[str], str | None]) -> tuple[bytes, str, list]:
        return await self._plane.run_async(predict_steps(raw, self._limits)), JSON_TYPE, []

    async def _infer(self, raw: bytes, header: Callable[[str], str | None]) -> tuple[bytes, str, list]:
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
        if length is None or self._body_bytes + length > self._body_budget:
            return await self._flask(scope, receive, send)
        self._body_bytes += length
        try:
            await self._answer(route, scope, receive, send, headers, length)
        finally:
            self._body_bytes -= length

    async def _answer(
        self, route: tuple, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], length: int
    ) -> None:
        """Read the body, score it on the loop, answer; or hand the failure to Flask."""
        answer, (count, latency) = route
        started = time.perf_counter()
        raw = await _read_body(receive, length)
        if raw is None:  # the client left before sending its body: nobody to answer
            return
        try:
            body, content_type, extra = await answer(raw, headers.get)
        except Exception as exc:  # noqa: BLE001 - Flask's handlers turn it into the error body
            replay = _replay(raw, receive)
            await self._flask({**scope, DEFERRED_ERROR: exc, REQUEST_STARTED: started}, replay, send)
            return
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
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
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
    """uvicorn's httptools protocol with bounds on what one connection may hold, and JSON refusals.

    httptools itself buffers a header field of any size until the next one arrives, uvicorn
    parses every pipelined request a client sends and queues it, and neither times out a client
    that never finishes its request head. So, per connection:

    - the request head may hold ``max_line`` bytes of request target (414), ``max_fields`` header
      fields of at most ``max_field_size`` bytes each (431), as gunicorn's ``limit_request_*``;
      the bytes received while a head is read are counted as they arrive, so a field that never
      ends is refused once the whole head could not be valid any more (431), not buffered;
    - a head must be complete within ``head_timeout_s`` of its first byte, and a new connection
      must start one within as long: else the connection is closed (gthread closes idle new
      connections after its keep-alive time too);
    - while ``max_pipelined`` requests wait behind the one being answered, the socket is not read;
    - a worker holds at most ``max_connections``; more are answered 503 (JSON, Retry-After) and
      closed at once.

    Values are set per worker by :class:`SentimentWorker` from gunicorn's settings.
    """

    max_line = 4094
    max_fields = 100
    max_field_size = 8190
    head_timeout_s = 5.0
    max_pipelined = 16
    max_connections = 1000

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._reading_head = True
        self._line_bytes = 0
        self._refusal: tuple[int, str, str] | None = None
        self._pending_refusal: tuple[int, str, str] | None = None
        self._head_timer: Any = None
        if len(self.connections) > self.max_connections:
            self._refusal = (503, "overloaded", "too many connections to this worker; retry shortly")
            self.send_400_response("")
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head_bytes():
                self._refusal = (431, "header_too_large", "the request head is too large")
                self.send_400_response("")
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._line_bytes = 0
        if not self._reading_head:  # the next request on a kept-alive or pipelining connection
            self._reading_head, self._head_bytes = True, 0
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._line_bytes += len(url)
        if self._line_bytes > self.max_line:
            self._refuse(414, "uri_too_long", f"the request target is longer than {self.max_line} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.max_fields:
            self._refuse(431, "too_many_headers", f"more than {self.max_fields} header fields")
        if len(name) + len(value) > self.max_field_size:
            self._refuse(431, "header_too_large", f"a header field over {self.max_field_size} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._cancel_head_timer()
        super().on_headers_complete()
        if len(self.pipeline) >= self.max_pipelined:
            self.flow.pause_reading()

    def on_response_complete(self) -> None:
        if self._pending_refusal is not None and not self.pipeline:
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self._write_refusal(*self._pending_refusal)  # the requests before it are all answered
            return
        super().on_response_complete()  # resumes reading
        if len(self.pipeline) >= self.max_pipelined and not self.transport.is_closing():
            self.flow.pause_reading()

    def _max_head_bytes(self) -> int:
        """Return the most bytes a head within the limits can take (line, fields, separators)."""
        return self.max_line + 16 + self.max_fields * (self.max_field_size + 4) + 4

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if getattr(self, "_head_timer", None) is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._reading_head and not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._refusal = (status, code, message)
        raise ValueError(message)  # httptools stops parsing; data_received calls send_400_response

    def send_400_response(self, msg: str) -> None:
        """Answer a request the parser refused (or a connection over the limit) in JSON, and close.

        Requests pipelined before the refused one are answered first, as gunicorn does: the
        refusal waits, with the socket unread, until their responses are written.
        """
        self._cancel_head_timer()
        refusal = self._refusal or (400, "bad_request", msg)
        if self.cycle is not None and not self.cycle.response_complete:
            self._pending_refusal = refusal
            self.flow.pause_reading()
            return
        self._write_refusal(*refusal)

    def _write_refusal(self, status: int, code: str, message: str) -> None:
        body = orjson.dumps({"error": {"code": code, "message": message}})
        extra = b"retry-after: 1\r\n" if status == 503 else b""
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s"
            b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), extra, body)
        )
        self.transport.close()


_REASONS = {
    400: b"Bad Request",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


def _exit_normally(signum: int, frame: object) -> None:
    sys.exit(0)


class SentimentWorker(UvicornWorker):
    """gunicorn worker running :class:`AsgiFront` over the Flask app on uvicorn (httptools, uvloop)."""

    CONFIG_KWARGS = {"loop": "uvloop", "lifespan": "off", "access_log": False}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.cfg
        limits = {
            # gunicorn: 0 means "no limit" for these two; here it means httptools' own bound.
            "max_line": cfg.limit_request_line or 8190,
            "max_fields": cfg.limit_request_fields or 32768,
            "max_field_size": cfg.limit_request_field_size or 8190,
            "head_timeout_s": float(max(cfg.keepalive, 1)),
            "max_connections": cfg.worker_connections,
        }
        self.config.http = type("WorkerHttpProtocol", (BoundedHttpToolsProtocol,), limits)
        self.config.limit_concurrency = None  # the protocol refuses extra connections, in JSON
        # Finish in-flight requests before gunicorn's own graceful timeout would SIGKILL us.
        self.config.timeout_graceful_shutdown = max(1, cfg.graceful_timeout - 2)

    def init_signals(self) -> None:
        """Make every way gunicorn stops a worker end in a normal exit (atexit handlers run).

        SIGTERM/SIGINT: uvicorn shuts down gracefully, then raises the signal again under the
        handler found at start; left at ``SIG_DFL`` (uvicorn_worker's choice) that kills the
        process and skips ``atexit``, so feedback and sample files still open would not be
        published (``service.rotating_log.close_at_exit``). SIGQUIT (gunicorn's quick shutdown)
        stops the server at once (see :meth:`_serve`); SIGABRT (a worker gunicorn timed out)
        exits through gunicorn's ``handle_abort``.
        """
        super().init_signals()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _exit_normally)
        signal.signal(signal.SIGABRT, self.handle_abort)

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = Server(config=self.config)
        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, _stop_now, server)
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def load_wsgi(self) -> None:
        """Build the Flask app (the factory gunicorn was given) and put the ASGI front over it."""
        super().load_wsgi()
        self.wsgi = AsgiFront(self.wsgi, threads=self.cfg.threads)


def _stop_now(server: Server) -> None:
    server.should_exit = True
    server.force_exit = True
