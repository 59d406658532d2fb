"""``POST /v1/feedback``: clients send labelled texts, which land durably in the retrain drop folder.

Each gunicorn worker appends accepted items to its own JSON Lines file (``service.rotating_log``)
and answers 200 only once the lines are fsynced. Files are published into
``SENTIMENT_FEEDBACK_DIR`` whole, by atomic rename, where
``python -m training.pipeline retrain --new-data <that folder>`` ingests them like any drop file.

Feedback changes future models, so it can require a shared secret: with
``SENTIMENT_FEEDBACK_TOKEN`` set, a request needs ``Authorization: Bearer <token>`` (compared in
constant time). Authentication comes first: a request presenting a wrong token (or none while
one is set) gets the same 401 whether feedback is enabled or not, so the answer tells an outsider
nothing about the deployment. Only an authorised caller learns that feedback is disabled (404).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from prometheus_client import CollectorRegistry, Counter

from service.api import _json_body, limits
from service.errors import ApiError, error_response
from service.rotating_log import RotatingLog, close_at_exit, run_periodically
from service.settings import Settings
from service.validation import FeedbackItem, feedback_from_body

log = logging.getLogger(__name__)

EXTENSION = "sentiment.feedback"
PREFIX = "feedback"
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="feedback"'}

bp = Blueprint("feedback", __name__)


class FeedbackDisabled(ApiError):
    """The service has no feedback folder configured."""

    status = 404
    code = "feedback_disabled"


class FeedbackUnavailable(ApiError):
    """The feedback file could not be written (full disk, lost volume): nothing was accepted."""

    status = 503
    code = "feedback_unavailable"


def _digest(token: str) -> bytes:
    """Hash a token so the comparison's time depends on neither token's length."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Feedback:
    """The token check and this worker's feedback file (None when feedback is disabled)."""

    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        self._token = _digest(settings.feedback_token) if settings.feedback_token else None
        self.log: RotatingLog | None = None
        if settings.feedback_dir:
            self.log = RotatingLog(
                settings.feedback_dir,
                prefix=PREFIX,
                rotate_bytes=settings.feedback_rotate_bytes,
                rotate_s=settings.feedback_rotate_s,
                durable=True,
            )
        self.items = Counter(
            "sentiment_feedback_items_total",
            "Feedback items appended durably (answered 200).",
            registry=registry,
        )

    def start(self) -> Feedback:
        """Publish files left open by dead workers, then rotate and sweep in the background."""
        if self.log is not None:
            self.log.recover_orphans()
            interval = min(5.0, max(0.05, self.log.rotate_s / 4))
            run_periodically(self.log, "housekeeping", interval, name="feedback-rotation")
            close_at_exit(self.log)
        return self

    def authorized(self, header: str | None) -> bool:
        """Tell whether the ``Authorization`` header satisfies the configured token (if any)."""
        scheme, _, presented = (header or "").partition(" ")
        if not header:
            return self._token is None
        if scheme.lower() != "bearer" or self._token is None:
            return False  # a token nobody configured is as wrong as a wrong one
        return hmac.compare_digest(_digest(presented.strip()), self._token)

    def record(self, items: list[FeedbackItem]) -> list[str]:
        """Append the items durably; return their ids (the client's, or new ones)."""
        assert self.log is not None
        now = round(time.time(), 3)
        records = [
            {
                "id": item.id or uuid.uuid4().hex,
                "text": item.text,
                "label": item.label,
                "source": item.source,
                "time": now,
            }
            for item in items
        ]
        try:
            self.log.append(records)
        except OSError as exc:
            log.exception("feedback not written")
            raise FeedbackUnavailable(f"feedback could not be stored ({exc.strerror}); retry later") from None
        self.items.inc(len(records))
        return [r["id"] for r in records]


@bp.post("/v1/feedback")
def feedback() -> Response:
    """Append labelled ``{"text", "label", "id"?, "source"?}`` items (one or a list) to the drop folder."""
    sink: Feedback = current_app.extensions[EXTENSION]
    if not sink.authorized(request.headers.get("Authorization")):
        return error_response(
            401,
            "unauthorized",
            "a valid feedback token is required: Authorization: Bearer <token>",
            UNAUTHORIZED_HEADERS,
        )
    if sink.log is None:
        raise FeedbackDisabled("feedback is not enabled on this service (SENTIMENT_FEEDBACK_DIR is unset)")
    items = feedback_from_body(_json_body(), limits())
    ids = sink.record(items)
    return jsonify({"accepted": len(ids), "ids": ids})


def init_app(app: Flask, settings: Settings, registry: CollectorRegistry) -> Feedback:
    """Register the endpoint and start this worker's feedback file housekeeping."""
    sink = Feedback(settings, registry).start()
    app.extensions[EXTENSION] = sink
    app.register_blueprint(bp)
    return sink
