"""JSON error bodies for every failure: ``{"error": {"code": "...", "message": "..."}}``.

Clients get a stable machine-readable ``code`` and a human ``message``; never HTML, never a stack
trace. Domain errors of the batcher and the model manager are mapped to HTTP statuses here, so
those layers stay free of HTTP. A protocol with its own error shape (the Open Inference Protocol
under ``/v2``) registers a body builder for its URL prefix: same statuses and headers, its body.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response, current_app, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

from inference.explain import TooManyTokens
from service.batcher import BatcherClosed, DeadlineExceeded, QueueFull
from service.dataplane import InferenceError
from service.model_manager import ModelUnavailable
from service.refusals import ApiError, InvalidRequest, PayloadTooLarge  # noqa: F401 - the routes import them from here

log = logging.getLogger(__name__)

#: Retry-After (seconds) on 503: long enough for a queue to drain or a model to load.
RETRY_AFTER_S = 1

# Werkzeug's HTTP errors (routing, body size, method) keyed by status, as stable codes.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "too_many_requests",
    431: "headers_too_large",
    501: "not_implemented",
}


class UnsupportedMediaType(ApiError):
    """The body is not declared as JSON."""

    status = 415
    code = "unsupported_media_type"


class ReportNotFound(ApiError):
    """The served version has no evaluation report, or its report has no such image."""

    status = 404
    code = "report_not_found"


class ModelNotFound(ApiError):
    """The URL names a model this service does not serve."""

    status = 404
    code = "model_not_found"


#: Builds an error body from the stable code and the message.
ErrorBody = Callable[[str, str], dict]
_ERROR_BODIES = "error_bodies"  # app.extensions key: [(URL prefix, ErrorBody), ...]


def native_error_body(code: str, message: str) -> dict:
    """Return the service's own error body."""
    return {"error": {"code": code, "message": message}}


def register_error_body(app: Flask, prefix: str, body: ErrorBody) -> None:
    """Answer errors of ``prefix`` and the paths below it with ``body`` (another protocol's shape)."""
    app.extensions.setdefault(_ERROR_BODIES, []).append((prefix.rstrip("/"), body))


def _error_body() -> ErrorBody:
    """Return the body builder for the current request's path."""
    if has_request_context():
        path = request.path
        for prefix, body in current_app.extensions.get(_ERROR_BODIES, ()):
            if path == prefix or path.startswith(prefix + "/"):
                return body
    return native_error_body


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    """Return the JSON error body with its status (in the shape of the path's protocol)."""
    response = jsonify(_error_body()(code, message))
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def init_app(app: Flask, on_unhandled: Callable[[], None] | None = None) -> None:
    """Register handlers turning every exception into a JSON error body."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(TooManyTokens)
    def _too_many_tokens(exc: TooManyTokens) -> Response:
        return error_response(
            413,
            "too_many_tokens",
            f"the text has {exc.count} tokens to explain (after truncation to the model's input length); "
            f"the limit is {exc.limit} (SENTIMENT_EXPLAIN_MAX_TOKENS)",
        )

    @app.errorhandler(QueueFull)
    def _queue_full(exc: QueueFull) -> Response:
        return error_response(
            503,
            "overloaded",
            "too many texts are waiting to be scored; retry later",
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.errorhandler(DeadlineExceeded)
    def _deadline(exc: DeadlineExceeded) -> Response:
        return error_response(504, "deadline_exceeded", "the request was not scored before its deadline")

    @app.errorhandler(BatcherClosed)
    def _closed(exc: BatcherClosed) -> Response:
        return error_response(
            503, "shutting_down", "this worker is shutting down; retry", {"Retry-After": str(RETRY_AFTER_S)}
        )

    @app.errorhandler(ModelUnavailable)
    def _unavailable(exc: ModelUnavailable) -> Response:
        return error_response(
            503,
            "model_unavailable",
            "no model version is loaded yet; retry later",
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.errorhandler(InferenceError)
    def _inference(exc: InferenceError) -> Response:
        # Already logged with its traceback (batcher or explanation); the client gets no internals.
        return error_response(500, "inference_failed", "the model failed to score this request")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = error_response(status, _HTTP_CODES.get(status, "http_error"), exc.description or exc.name)
        for key, value in exc.get_headers():  # keep e.g. the Allow header of a 405
            if key.lower() != "content-type":
                response.headers[key] = value
        return response

    @app.errorhandler(Exception)
    def _unhandled(exc: Exception) -> Response:
        # Last resort: the fuzz tests show it never triggers on bad input.
        log.exception("unhandled error")
        if on_unhandled is not None:
            on_unhandled()
        return error_response(500, "internal_error", "internal server error")
