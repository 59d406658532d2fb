"""The refusals a request can meet: an HTTP status and a stable error code, in pure Python.

Raised by the pure validation rules (service/validation.py) and the routes; service/errors.py
turns them into JSON responses. No Flask here, so validation stays free of the HTTP layer.
"""

from __future__ import annotations

__all__ = ["ApiError", "InvalidRequest", "PayloadTooLarge"]


class ApiError(Exception):
    """A request the service refuses, with its HTTP status and stable error code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class InvalidRequest(ApiError):
    """The body is not a valid request document (malformed JSON, wrong types, empty text)."""

    status = 400
    code = "invalid_request"


class PayloadTooLarge(ApiError):
    """The body, the list of texts or one text exceeds a configured limit."""

    status = 413
    code = "payload_too_large"
