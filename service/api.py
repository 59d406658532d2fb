"""HTTP endpoints: parse the request, delegate to the data plane, serialise the answer.

Blueprints, one per concern: native predictions, TF-Serving-compatible routes, health probes and
the API description. Each view stays a few lines; rules live in ``service.validation`` and logic
in ``service.dataplane``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import MethodNotAllowed

from service.dataplane import DataPlane, Prediction
from service.errors import RETRY_AFTER_S, ModelNotFound, PayloadTooLarge, UnsupportedMediaType, error_response
from service.openapi import spec_for
from service.validation import Limits, decode_json, texts_from_instances, texts_from_predict

EXTENSION = "sentiment"
#: An oversized body is read and dropped up to this many times the limit, so the client sees 413.
DRAIN_FACTOR = 2

predict_bp = Blueprint("predict", __name__)
tfserving_bp = Blueprint("tfserving", __name__)
probes_bp = Blueprint("probes", __name__)
docs_bp = Blueprint("docs", __name__)


def dataplane() -> DataPlane:
    """Return the data plane of the current app."""
    return current_app.extensions[EXTENSION]


def _json_body() -> Any:
    """Read and decode the JSON body within the configured size limit."""
    if not request.is_json:
        raise UnsupportedMediaType('send the body as JSON with "Content-Type: application/json"')
    limit = dataplane().settings.max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        _discard_body(length if length <= DRAIN_FACTOR * limit else 0)
        raise PayloadTooLarge(f"the body has {length} bytes; the limit is {limit}")
    # A chunked body has no Content-Length: Werkzeug stops reading at MAX_CONTENT_LENGTH, which
    # create_app sets one byte above the limit, so a longer body shows up as limit + 1 bytes.
    raw = request.get_data(cache=False)
    if len(raw) > limit:
        _discard_body(DRAIN_FACTOR * limit)
        raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
    return decode_json(raw)


def _discard_body(budget: int) -> None:
    """Read and drop what the client still sends, up to ``budget`` bytes, before answering 413.

    gunicorn drains at most 64 KiB of an unread body and then closes the connection; a client
    still sending would get a reset instead of the 413. Beyond the budget it may still do so.
    """
    stream = request.environ.get("wsgi.input")
    try:
        while budget > 0 and stream is not None:
            chunk = stream.read(min(64 * 1024, budget))
            if not chunk:
                return
            budget -= len(chunk)
    except Exception:  # the client went away: nothing left to answer
        return


def _limits() -> Limits:
    """Return the per-request limits from the settings."""
    s = dataplane().settings
    return Limits(max_texts=s.max_texts_per_request, max_text_chars=s.max_text_chars)


def _score(parse: Callable[[Any, Limits], list[str]]) -> list[Prediction]:
    """Parse the body with ``parse`` and score its texts before the request's deadline."""
    plane = dataplane()
    deadline = time.monotonic() + plane.settings.deadline_s
    with plane.arrival() as arrival:  # a forming batch may wait for this request while it parses
        texts = parse(_json_body(), _limits())
        return plane.predict(texts, deadline, arrival)


# -- native API ------------------------------------------------------------------------------
@predict_bp.post("/v1/predict")
def predict() -> Response:
    """Score ``{"texts": [...]}`` or ``{"text": "..."}``: label, probability, version per text."""
    predictions = _score(texts_from_predict)
    return jsonify(
        {
            "predictions": [
                {
                    "label": p.label,
                    "probability": p.probability,
                    "model_name": p.model_name,
                    "model_version": p.model_version,
                }
                for p in predictions
            ]
        }
    )


# -- TF Serving REST API ---------------------------------------------------------------------
def _check_model(name: str) -> None:
    """Refuse a URL naming another model than the one served."""
    served = dataplane().settings.model_name
    if name != served:
        raise ModelNotFound(f"model {name[:100]!r} is not served here; this service serves {served!r}")


@tfserving_bp.post("/v1/models/<name>:predict")
def tf_predict(name: str) -> Response:
    """Score TF Serving's row format ``{"instances": [...]}`` → ``{"predictions": [...]}``."""
    _check_model(name)
    predictions = _score(texts_from_instances)
    return jsonify(
        {
            "predictions": [
                {"probability": p.probability, "label": p.label, "model_version": p.model_version}
                for p in predictions
            ]
        }
    )


@tfserving_bp.get("/v1/models/<name>")
def tf_status(name: str) -> Response:
    """Return TF Serving's model version status plus the served version's training metrics."""
    if name.endswith(":predict"):  # GET on the predict URL: say which method works
        raise MethodNotAllowed(valid_methods=["POST"])
    _check_model(name)
    return jsonify(dataplane().model_status())


# -- probes ----------------------------------------------------------------------------------
@probes_bp.get("/healthz")
def healthz() -> Response:
    """Report that the worker is alive (it answers), model or not."""
    return jsonify({"status": "ok"})


@probes_bp.get("/readyz")
def readyz() -> Response:
    """Report whether a model version is loaded and warmed up (503 until then)."""
    ready = dataplane().readiness()
    if ready is None:
        return error_response(
            503, "not_ready", "no model version is loaded yet", {"Retry-After": str(RETRY_AFTER_S)}
        )
    return jsonify(ready)


# -- API description -------------------------------------------------------------------------
@docs_bp.get("/openapi.json")
def openapi() -> Response:
    """Serve the OpenAPI 3 description, with the limits this worker enforces."""
    return jsonify(spec_for(dataplane().settings))
