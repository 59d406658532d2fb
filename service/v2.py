"""Open Inference Protocol (KServe V2 / Triton) REST endpoints on the same data plane as ``/v1``.

Clients, gateways and dashboards built for KServe, Triton, MLServer or OpenVINO Model Server
(``tritonclient.http`` included, which sends binary tensors by default) can call this service
unchanged. Inference goes through ``DataPlane.predict``, so V2 texts share batches with
``/v1/predict`` and obey the same limits, deadline, 503/504 answers and metrics (under their own
``route`` label). Errors under ``/v2`` have the protocol's shape ``{"error": "message"}``.

Versions: a worker holds one Predictor, the production version it serves. A URL naming that
version scores with it; any other version answers 404 (it is not loaded here). A URL without a
version scores with the production version.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify, request

from service.api import DEFERRED_ERROR, dataplane, limits, read_body
from service.dataplane import DataPlane, Prediction, ScoringSteps
from service.errors import (
    RETRY_AFTER_S,
    ApiError,
    ModelNotFound,
    UnsupportedMediaType,
    error_response,
    register_error_body,
)
from service.openapi import base_spec
from service.validation import Limits
from service.v2_codec import (
    BINARY_EXTENSION,
    BINARY_TYPE,
    HEADER_LENGTH,
    JSON_TYPE,
    encode_infer_response,
    model_metadata,
    parse_infer_request,
)

PREFIX = "/v2"
INFER_RULE = PREFIX + "/models/<name>/infer"
SERVER_NAME = "sentiment"
#: Triton's platform names for the runtimes a worker may use.
PLATFORMS = {"onnx": "onnxruntime_onnx", "savedmodel": "tensorflow_savedmodel"}

v2_bp = Blueprint("v2", __name__, url_prefix=PREFIX)


class VersionNotLoaded(ApiError):
    """The URL names a model version this worker does not hold."""

    status = 404
    code = "version_not_found"


class VersionsMixed(ApiError):
    """A hot reload split one request over two versions twice: a V2 answer names one version."""

    status = 503
    code = "version_changed"


def v2_error_body(code: str, message: str) -> dict:
    """Return the protocol's error body: the message alone."""
    return {"error": message}


# -- server --------------------------------------------------------------------------------------
@v2_bp.get("")
def server_metadata() -> Response:
    """Describe the server: name, version and the protocol extensions it supports."""
    version = base_spec()["info"]["version"]  # the API's version, as service/openapi.json states it
    return jsonify({"name": SERVER_NAME, "version": version, "extensions": [BINARY_EXTENSION]})


@v2_bp.get("/health/live")
def live() -> Response:
    """Report that the worker is alive (it answers), model or not."""
    return jsonify({"live": True})


@v2_bp.get("/health/ready")
def ready() -> Response:
    """Report whether the model is loaded and warmed up (503 until then, like ``/readyz``)."""
    if not dataplane().loaded_versions():
        return _not_ready()
    return jsonify({"ready": True})


# -- model -------------------------------------------------------------------------------------
@v2_bp.get("/models/<name>")
@v2_bp.get("/models/<name>/versions/<version>")
def model(name: str, version: str | None = None) -> Response:
    """Describe the model: loaded versions, platform, and its input and output tensors."""
    plane = dataplane()
    _check(name, version)
    platform = PLATFORMS.get(plane.settings.runtime, plane.settings.runtime)
    return jsonify(model_metadata(name, plane.loaded_versions(), platform))


@v2_bp.get("/models/<name>/ready")
@v2_bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None) -> Response:
    """Report whether the model (or this version of it) can score requests now."""
    _check(name, version)
    if not dataplane().loaded_versions():
        return _not_ready()
    return jsonify({"name": name, "ready": True})


@v2_bp.post(INFER_RULE.removeprefix(PREFIX))
@v2_bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None) -> Response:
    """Score the ``text`` tensor; answer the requested outputs as JSON or binary tensors."""
    deferred = request.environ.pop(DEFERRED_ERROR, None)
    if deferred is not None:  # the fast path failed on this request: answer with its error
        raise deferred
    wanted = _check(name, version)
    encoding = request.headers.get("Content-Encoding")
    if not is_identity_encoding(encoding):  # e.g. tritonclient's request_compression_algorithm
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding.strip().lower()[:20]!r} is not supported; send the body uncompressed"
        )
    plane = dataplane()
    body, header_length = plane.run(
        infer_steps(read_body(), request.headers.get(HEADER_LENGTH), limits(), name, plane, wanted)
    )
    content_type, headers = infer_response_headers(header_length)
    response = Response(body, mimetype=content_type)
    response.headers.extend(headers)
    return response


def is_identity_encoding(value: str | None) -> bool:
    """Tell whether a Content-Encoding header leaves the body as sent (absent, empty or identity)."""
    return value is None or value.strip().lower() in ("", "identity")


def infer_response_headers(header_length: int | None) -> tuple[str, list[tuple[str, str]]]:
    """Return an infer answer's content type and extra headers: JSON, or a JSON header + binary."""
    if header_length is None:
        return JSON_TYPE, []
    return BINARY_TYPE, [(HEADER_LENGTH, str(header_length))]


def infer_steps(
    raw: bytes,
    header_length: str | None,
    limits: Limits,
    name: str,
    plane: DataPlane,
    wanted: int | None = None,
) -> ScoringSteps[tuple[bytes, int | None]]:
    """Parse and score an infer body; return the response body and its JSON header's length.

    The length is None for an all-JSON answer. Steps (``service.dataplane.ScoringSteps``) shared
    by the view above, the WSGI fast path and the asyncio front. ``wanted`` is the version the URL
    names (None: the production version).
    """
    parsed = parse_infer_request(raw, header_length, limits)
    predictions = yield parsed.texts
    # A hot reload may swap versions while a request waits or between its batches (once per
    # promotion). The version asked for was served at the start; after a swap it is gone.
    scored = _one_version(predictions)
    if wanted is not None and scored != wanted:
        raise VersionNotLoaded(_unloaded(name, wanted, plane.loaded_versions()))
    if scored is None:  # split over two versions: a V2 answer names one, so score again
        predictions = yield parsed.texts
        scored = _one_version(predictions)
        if scored is None:
            raise VersionsMixed("the model version changed while this request was scored; retry")
    return encode_infer_response(
        model_name=name,
        model_version=scored,
        request_id=parsed.id,
        outputs=parsed.outputs,
        probabilities=[p.probability for p in predictions],
        labels=[p.label for p in predictions],
    )


# -- helpers -----------------------------------------------------------------------------------
def _check(name: str, version: str | None) -> int | None:
    """Refuse another model name or a version this worker does not hold; return the version asked."""
    served = dataplane().settings.model_name
    if name != served:
        raise ModelNotFound(f"model {name[:100]!r} is not served here; this service serves {served!r}")
    if version is None:
        return None
    loaded = dataplane().loaded_versions()
    if not (version.isascii() and version.isdigit()) or int(version) not in loaded:
        raise VersionNotLoaded(_unloaded(name, version, loaded))
    return int(version)


def _unloaded(name: str, version: int | str, loaded: list[int]) -> str:
    """Say which version was asked for and which ones this worker can score with."""
    serving = f"it serves version {loaded[0]}" if loaded else "no version is loaded yet"
    return (
        f"version {str(version)[:30]!r} of model {name!r} is not loaded in this worker ({serving}); "
        f"POST {PREFIX}/models/{name}/infer scores with the production version"
    )


def _one_version(predictions: list[Prediction]) -> int | None:
    """Return the version that scored every prediction, or None when several did."""
    versions = {p.model_version for p in predictions}
    return versions.pop() if len(versions) == 1 else None


def _not_ready() -> Response:
    """Answer a readiness probe before a version is loaded: 503 with Retry-After."""
    return error_response(
        503, "not_ready", "no model version is loaded yet", {"Retry-After": str(RETRY_AFTER_S)}
    )


def init_app(app: Flask) -> None:
    """Register the V2 routes and give every error under ``/v2`` the protocol's body."""
    app.register_blueprint(v2_bp)
    register_error_body(app, PREFIX, v2_error_body)
