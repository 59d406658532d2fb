"""Every endpoint and every error path through the Flask test client."""

from __future__ import annotations

import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from registry.store import Registry
from tests.fakes import make_random_version
from tests.service.spec import validate

PREDICT = "/v1/predict"
TF_PREDICT = "/v1/models/sentiment:predict"
STATUS = "/v1/models/sentiment"


def post_json(client, url: str, doc) -> object:
    return client.post(url, data=json.dumps(doc), content_type="application/json")


def assert_error(response, status: int, code: str) -> dict:
    """Check a JSON error body: status, code, a message, and nothing else."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    validate(body, "Error")
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


# -- happy paths -----------------------------------------------------------------------------
def test_predict_texts(client, app):
    response = post_json(client, PREDICT, {"texts": ["a wonderful film", "awful, boring, the worst"]})
    assert response.status_code == 200
    body = response.get_json()
    validate(body, "PredictResponse")
    expected = (
        app.extensions["sentiment"]
        .manager.current()
        .score_texts(["a wonderful film", "awful, boring, the worst"])
    )
    assert [p["probability"] for p in body["predictions"]] == pytest.approx(list(expected), abs=1e-6)
    for p in body["predictions"]:
        assert p["label"] == ("positive" if p["probability"] >= 0.5 else "negative")
        assert (p["model_name"], p["model_version"]) == ("sentiment", 1)


def test_predict_single_text(client):
    response = post_json(client, PREDICT, {"text": "loved it"})
    assert response.status_code == 200
    validate(response.get_json(), "PredictResponse")
    assert len(response.get_json()["predictions"]) == 1


def test_predict_accepts_json_with_charset(client):
    response = client.post(PREDICT, data='{"text": "fine"}', content_type="application/json; charset=utf-8")
    assert response.status_code == 200


def test_tf_serving_predict(client):
    response = post_json(
        client, TF_PREDICT, {"instances": ["great", {"text": "awful"}], "signature_name": "serving_default"}
    )
    assert response.status_code == 200
    body = response.get_json()
    validate(body, "TFPredictResponse")
    assert len(body["predictions"]) == 2
    native = post_json(client, PREDICT, {"texts": ["great", "awful"]}).get_json()["predictions"]
    assert [p["probability"] for p in body["predictions"]] == [p["probability"] for p in native]


def test_tf_serving_model_status(client):
    response = client.get(STATUS)
    assert response.status_code == 200
    body = response.get_json()
    validate(body, "ModelStatus")
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    assert body["model_version_status"][0]["version"] == "1"
    assert body["metrics"] == {"accuracy": 0.5}


def test_probes(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    validate(ready.get_json(), "Ready")
    assert ready.get_json()["model_version"] == 1


def test_metrics_endpoint(client):
    post_json(client, PREDICT, {"texts": ["a", "b", "c"]})
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    for name in (
        "sentiment_http_requests_total",
        "sentiment_http_request_duration_seconds",
        "sentiment_batch_size",
        "sentiment_queue_depth",
        "sentiment_queue_wait_seconds",
        "sentiment_inference_duration_seconds",
        "sentiment_model_version",
        "sentiment_model_reloads_total",
    ):
        assert name in text
    assert 'sentiment_http_requests_total{method="POST",route="/v1/predict",status="200"} 1.0' in text
    assert "sentiment_batch_size_sum 3.0" in text


# -- input errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"{not json", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b'{"texts": ["caf\xe9"]}', 400, "invalid_utf8"),
        (b"[" * 100_000, 400, "invalid_json"),
        (b'"just a string"', 400, "invalid_request"),
        (b"[]", 400, "invalid_request"),
        (b"{}", 400, "invalid_request"),
        (b'{"texts": "not a list"}', 400, "invalid_request"),
        (b'{"texts": [1, 2]}', 400, "invalid_request"),
        (b'{"texts": [null]}', 400, "invalid_request"),
        (b'{"texts": []}', 400, "empty_texts"),
        (b'{"texts": [""]}', 400, "empty_text"),
        (b'{"texts": [" \\n\\t\\u00a0"]}', 400, "empty_text"),
        (b'{"text": "   "}', 400, "empty_text"),
        (b'{"text": 5}', 400, "invalid_request"),
        (b'{"text": "a", "texts": ["b"]}', 400, "invalid_request"),
        (b'{"texts": ["a"], "extra": 1}', 400, "invalid_request"),
        (b'{"texts": ["\\ud800 lone surrogate"]}', 400, "invalid_text"),
        (b'{"texts": NaN}', 400, "invalid_request"),
    ],
)
def test_predict_rejects_bad_bodies(client, body, status, code):
    response = client.post(PREDICT, data=body, content_type="application/json")
    assert_error(response, status, code)


@pytest.mark.parametrize(
    "doc, code",
    [
        ({"texts": ["x"]}, "invalid_request"),
        ({"instances": "x"}, "invalid_request"),
        ({"instances": []}, "empty_texts"),
        ({"instances": [{"txt": "x"}]}, "invalid_request"),
        ({"instances": [{"text": "x", "more": 1}]}, "invalid_request"),
        ({"instances": [["x"]]}, "invalid_request"),
        ({"instances": ["x"], "signature_name": "other"}, "invalid_request"),
        ({"instances": [" "]}, "empty_text"),
    ],
)
def test_tf_predict_rejects_bad_bodies(client, doc, code):
    assert_error(post_json(client, TF_PREDICT, doc), 400, code)


def test_non_json_content_type(client):
    assert_error(
        client.post(PREDICT, data='{"text": "x"}', content_type="text/plain"), 415, "unsupported_media_type"
    )
    assert_error(client.post(PREDICT, data="text=x"), 415, "unsupported_media_type")
    assert_error(
        client.post(TF_PREDICT, data="x", content_type="application/xml"), 415, "unsupported_media_type"
    )


def test_oversized_body(make_app):
    client = make_app(MAX_BODY_BYTES=1000).test_client()
    body = json.dumps({"text": "x" * 2000})
    assert_error(client.post(PREDICT, data=body, content_type="application/json"), 413, "payload_too_large")


def test_oversized_body_without_content_length(make_app):
    client = make_app(MAX_BODY_BYTES=1000).test_client()
    body = json.dumps({"text": "x" * 2000}).encode()
    response = client.post(  # a chunked body, as gunicorn passes it on (input terminated)
        PREDICT,
        input_stream=io.BytesIO(body),
        environ_overrides={"wsgi.input_terminated": True},
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    assert_error(response, 413, "payload_too_large")


def test_too_many_texts_and_too_long_text(make_app):
    client = make_app(MAX_TEXTS_PER_REQUEST=3, MAX_TEXT_CHARS=50).test_client()
    assert_error(post_json(client, PREDICT, {"texts": ["a"] * 4}), 413, "too_many_texts")
    assert_error(post_json(client, PREDICT, {"texts": ["a" * 51]}), 413, "text_too_long")
    assert_error(post_json(client, TF_PREDICT, {"instances": ["a"] * 4}), 413, "too_many_texts")
    assert post_json(client, PREDICT, {"texts": ["a" * 50] * 3}).status_code == 200


def test_unknown_model(client):
    assert_error(post_json(client, "/v1/models/other:predict", {"instances": ["x"]}), 404, "model_not_found")
    assert_error(client.get("/v1/models/other"), 404, "model_not_found")


def test_wrong_method(client):
    response = client.get(PREDICT)
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    assert_error(client.get(TF_PREDICT), 405, "method_not_allowed")
    assert_error(client.delete(STATUS), 405, "method_not_allowed")
    assert_error(client.post("/healthz"), 405, "method_not_allowed")
    assert_error(client.put("/metrics"), 405, "method_not_allowed")


def test_unknown_route(client):
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(
        client.post("/v1/models/sentiment/versions/1:predict", json={"instances": ["x"]}), 404, "not_found"
    )


# -- service-side errors -------------------------------------------------------------------------
def test_no_model_yet_means_503_then_ready_after_promotion(make_app, tmp_path):
    registry = Registry(tmp_path / "empty")
    app = make_app(registry, POLL_INTERVAL_S=0.05)
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert_error(response, 503, "not_ready")
    assert response.headers["Retry-After"]
    response = post_json(client, PREDICT, {"text": "x"})
    assert_error(response, 503, "model_unavailable")
    assert response.headers["Retry-After"]
    status = client.get(STATUS).get_json()
    validate(status, "ModelStatus")
    assert status["model_version_status"] == [] and status["model"]["version"] is None
    make_random_version(registry)
    deadline = time.monotonic() + 5
    while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert post_json(client, PREDICT, {"text": "x"}).status_code == 200


def hold_model(app) -> tuple[threading.Event, threading.Event]:
    """Make the next model call block until released; return (entered, release)."""
    predictor = app.extensions["sentiment"].manager.current()
    original = predictor.score_ids
    entered, release = threading.Event(), threading.Event()

    def held(sequences):
        entered.set()
        release.wait(10)
        return original(sequences)

    predictor.score_ids = held
    return entered, release


def test_full_queue_answers_503_with_retry_after(make_app):
    app = make_app(MAX_QUEUED_TEXTS=2, MAX_TEXTS_PER_REQUEST=2, MAX_BATCH_SIZE=2)
    client = app.test_client()
    entered, release = hold_model(app)
    batcher = app.extensions["sentiment"].batcher
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post_json, app.test_client(), PREDICT, {"texts": ["a", "b"]})
        assert entered.wait(5)
        second = pool.submit(post_json, app.test_client(), PREDICT, {"texts": ["c", "d"]})
        deadline = time.monotonic() + 5
        while batcher.queued < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        response = post_json(client, PREDICT, {"text": "e"})
        assert_error(response, 503, "overloaded")
        assert response.headers["Retry-After"] == "1"
        release.set()
        assert first.result(5).status_code == 200
        assert second.result(5).status_code == 200


def test_deadline_answers_504(make_app):
    app = make_app(DEADLINE_MS=100)
    entered, release = hold_model(app)
    try:
        started = time.perf_counter()
        assert_error(post_json(app.test_client(), PREDICT, {"text": "slow"}), 504, "deadline_exceeded")
        assert time.perf_counter() - started < 2
    finally:
        release.set()
    assert post_json(app.test_client(), PREDICT, {"text": "fast again"}).status_code == 200


def test_refused_version_is_reported_in_status(make_app, fake_registry):
    app = make_app()
    version = make_random_version(fake_registry, seed=5, promote=False)
    (fake_registry.version_dir("sentiment", version) / "model.onnx").write_bytes(b"garbage")
    fake_registry.promote("sentiment", version)
    manager = app.extensions["sentiment"].manager
    assert manager.refresh() is False
    body = app.test_client().get(STATUS).get_json()
    validate(body, "ModelStatus")
    states = {s["version"]: s for s in body["model_version_status"]}
    assert states["1"]["state"] == "AVAILABLE"
    assert states[str(version)]["state"] == "END"
    assert states[str(version)]["status"]["error_code"] != "OK"
    assert "garbage" not in json.dumps(body) and str(fake_registry.root) not in json.dumps(body)
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'sentiment_model_reloads_total{model="sentiment",result="failure"} 1.0' in text


def test_model_failure_is_a_json_500_without_internals(app, client):
    app.extensions["sentiment"].manager.current().score_ids = lambda seqs: 1 / 0
    response = post_json(client, PREDICT, {"text": "x"})
    assert_error(response, 500, "inference_failed")
    assert "ZeroDivision" not in response.get_data(as_text=True)
    assert post_json(client, PREDICT, {"text": "x"}).status_code == 500  # the batcher survived


def test_non_finite_score_is_a_json_500(app, client):
    app.extensions["sentiment"].manager.current().score_ids = lambda seqs: np.full(len(seqs), np.nan)
    assert_error(post_json(client, PREDICT, {"text": "x"}), 500, "inference_failed")


def test_bug_is_a_json_500_without_trace_and_counted(client, monkeypatch):
    def broken(doc, limits):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("service.api.texts_from_predict", broken)
    response = post_json(client, PREDICT, {"text": "x"})
    assert_error(response, 500, "internal_error")
    assert "ZeroDivision" not in response.get_data(as_text=True)
    assert "sentiment_unhandled_errors_total 1.0" in client.get("/metrics").get_data(as_text=True)


def test_stopped_worker_answers_503_shutting_down(app, client):
    app.extensions["sentiment"].batcher.stop()
    response = post_json(client, PREDICT, {"text": "x"})
    assert_error(response, 503, "shutting_down")
    assert response.headers["Retry-After"] == "1"


def test_debug_is_off(app):
    assert app.debug is False
