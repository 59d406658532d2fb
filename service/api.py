"""HTTP endpoints: parse the request, delegate to the data plane, serialise the answer.

Blueprints, one per concern: native predictions, explanations, TF-Serving-compatible routes,
health probes, the API description, and the web page with the model's evaluation report. Each
view stays a few lines; rules live in ``service.validation`` and logic in ``service.dataplane``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request, send_file, url_for
from markupsafe import Markup
from werkzeug.exceptions import MethodNotAllowed

from service.dataplane import DataPlane, Prediction, ScoringSteps
from service.errors import (
    RETRY_AFTER_S,
    ModelNotFound,
    PayloadTooLarge,
    ReportNotFound,
    UnsupportedMediaType,
    error_response,
)
from service.fastjson import dumps_bytes
from service.openapi import spec_for
from service.report import REPORT_MARKDOWN, markdown_to_html, report_images
from service.settings import Settings
from service.validation import (
    Limits,
    decode_json,
    text_from_explain,
    texts_from_instances,
    texts_from_predict,
)

EXTENSION = "sentiment"
#: app.extensions key of the worker's service.metrics.Metrics (service.asgi counts requests in it).
METRICS_EXTENSION = "sentiment.metrics"
PREDICT_RULE = "/v1/predict"
#: environ key under which service.fastpath hands Flask the exception a predict request raised.
DEFERRED_ERROR = "sentiment.deferred_error"
#: An oversized body is read and dropped up to this many times the limit, so the client sees 413.
DRAIN_FACTOR = 2

#: The page and the report load nothing from elsewhere; scripts and styles only from files.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

predict_bp = Blueprint("predict", __name__)
explain_bp = Blueprint("explain", __name__)
tfserving_bp = Blueprint("tfserving", __name__)
probes_bp = Blueprint("probes", __name__)
docs_bp = Blueprint("docs", __name__)
web_bp = Blueprint("web", __name__)


def dataplane() -> DataPlane:
    """Return the data plane of the current app."""
    return current_app.extensions[EXTENSION]


def _json_body() -> Any:
    """Read and decode the JSON body within the configured size limit."""
    return decode_json(_json_bytes())


def _json_bytes() -> bytes:
    """Read the body, declared as JSON, within the configured size limit."""
    if not request.is_json:
        raise UnsupportedMediaType('send the body as JSON with "Content-Type: application/json"')
    return read_body()


def read_body() -> bytes:
    """Read the raw body within the configured size limit (413 beyond it)."""
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
    return raw


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


def limits_for(settings: Settings) -> Limits:
    """Return the per-request limits of these settings."""
    return Limits(
        max_texts=settings.max_texts_per_request,
        max_text_chars=settings.max_text_chars,
        max_nfkc_rewritten_chars=settings.max_nfkc_rewritten_chars,
    )


def limits() -> Limits:
    """Return the per-request limits from the current app's settings."""
    return limits_for(dataplane().settings)


def _score(parse: Callable[[Any, Limits], list[str]]) -> list[Prediction]:
    """Parse the body with ``parse`` and score its texts before the request's deadline."""
    plane = dataplane()
    deadline = time.monotonic() + plane.settings.deadline_s
    with plane.arrival() as arrival:  # a forming batch may wait for this request while it parses
        texts = parse(_json_body(), limits())
        return plane.predict(texts, deadline, arrival)


# -- native API ------------------------------------------------------------------------------
def predict_steps(raw: bytes, limits: Limits) -> ScoringSteps[bytes]:
    """Parse and validate a ``/v1/predict`` body, have its texts scored, return the response body.

    Written once as steps (see ``service.dataplane.ScoringSteps``) and driven by the Flask view,
    the WSGI fast path (``DataPlane.run``) and the asyncio front (``DataPlane.run_async``), so all
    three answer alike.
    """
    texts = texts_from_predict(decode_json(raw), limits)
    predictions = yield texts
    return dumps_bytes(
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


@predict_bp.post(PREDICT_RULE)
def predict() -> Response:
    """Score ``{"texts": [...]}`` or ``{"text": "..."}``: label, probability, version per text."""
    deferred = request.environ.pop(DEFERRED_ERROR, None)
    if deferred is not None:  # the fast path failed on this request: answer with its error
        raise deferred
    body = dataplane().run(predict_steps(_json_bytes(), limits()))
    return current_app.response_class(body, mimetype="application/json")


# -- explanations ----------------------------------------------------------------------------
@explain_bp.post("/v1/explain")
def explain() -> Response:
    """Explain ``{"text": "..."}``: its prediction and each token's contribution, by occlusion."""
    plane = dataplane()
    deadline = time.monotonic() + plane.settings.deadline_s
    text = text_from_explain(_json_body(), limits())
    result = plane.explain(text, deadline)
    p, e = result.prediction, result.explanation
    return jsonify(
        {
            "label": p.label,
            "probability": p.probability,
            "model_name": p.model_name,
            "model_version": p.model_version,
            "tokens": [
                {"token": t.token, "position": t.position, "known": t.known, "contribution": t.contribution}
                for t in e.tokens
            ],
            "tokens_in_text": e.tokens_in_text,
            "truncated": e.truncated,
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


# -- web page and evaluation report ----------------------------------------------------------
@web_bp.get("/")
def index() -> Response:
    """Serve the demo page (static files; its script calls ``/readyz`` and ``/v1/explain``)."""
    return current_app.send_static_file("index.html")


@web_bp.get("/v1/models/<name>/report")
def report(name: str) -> str:
    """Render the served version's evaluation report (``report/report.md``) as an HTML page."""
    _check_model(name)
    served = dataplane().report()
    source = served.folder / REPORT_MARKDOWN
    if not source.is_file() or source.is_symlink():  # like the images: the folder's own file only
        raise ReportNotFound(
            f"version {served.model_version} of {served.model_name!r} has no evaluation report"
        )
    images = set(report_images(served.folder))

    def image_url(file: str) -> str | None:
        return url_for("web.report_image", name=name, file=file) if file in images else None

    body = markdown_to_html(source.read_text(encoding="utf-8", errors="replace"), image_url)
    return render_template("report.html", report=served, body=Markup(body))  # body is escaped HTML


@web_bp.get("/v1/models/<name>/report/<file>")
def report_image(name: str, file: str) -> Response:
    """Serve one PNG of the served version's report; no other file, no path, no link."""
    _check_model(name)
    served = dataplane().report()
    if file not in report_images(served.folder):
        raise ReportNotFound(
            f"the report of version {served.model_version} has no image {file[:100]!r}; "
            "only its own .png files are served"
        )
    return send_file(served.folder / file, mimetype="image/png", max_age=0)


@web_bp.after_request
def _page_headers(response: Response) -> Response:
    """Forbid inline scripts and foreign content on the page and the report (defence in depth)."""
    response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response
