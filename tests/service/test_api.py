"""Every endpoint and every error path through the Flask test client."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from embeddings.tokenizer import tokenize
from registry.artifact import REPORT_DIR
from registry.store import Registry
from embeddings.tokenizer import TOKENIZERS
from tests.fakes import add_fake_report, make_random_version, png, tokenize_as_before_version_2
from tests.service.spec import validate

PREDICT = "/v1/predict"
EXPLAIN = "/v1/explain"
TF_PREDICT = "/v1/models/sentiment:predict"
STATUS = "/v1/models/sentiment"
REPORT = "/v1/models/sentiment/report"
STATIC = Path(__file__).resolve().parents[2] / "service" / "static"


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


def test_quick_model_is_labelled_in_status_readiness_and_report(make_app, fake_registry):
    plain = make_app().test_client()
    model = plain.get(STATUS).get_json()["model"]
    assert (model["quick"], model["preset"]) == (False, None)
    assert plain.get("/readyz").get_json()["quick"] is False
    version = make_random_version(fake_registry, seed=5, extra_manifest={"quick": True, "preset": "quick"})
    add_fake_report(fake_registry, version=version)
    client = make_app().test_client()
    status, ready = client.get(STATUS).get_json(), client.get("/readyz").get_json()
    validate(status, "ModelStatus")
    validate(ready, "Ready")
    assert status["model"]["version"] == version and ready["model_version"] == version
    assert (status["model"]["quick"], status["model"]["preset"], ready["quick"]) == (True, "quick", True)
    page = client.get(REPORT).get_data(as_text=True)
    assert f"sentiment · v{version} · quick model</span>" in page and "badge-quick" in page


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
    cpu = re.search(r"^sentiment_inference_cpu_seconds_total (\S+)$", text, re.MULTILINE)
    assert cpu and float(cpu.group(1)) > 0, "the model call's CPU time is counted"
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
        (b'{"texts": ["\\ud800 lone surrogate"]}', 400, "invalid_json"),  # not valid Unicode
        (b'{"texts": NaN}', 400, "invalid_json"),  # NaN is not JSON
        (b'{"text": 1e999}', 400, "invalid_json"),
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
    original = predictor.score_together
    entered, release = threading.Event(), threading.Event()

    def held(sequences):
        entered.set()
        release.wait(10)
        return original(sequences)

    predictor.score_together = held
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


def test_version_with_a_negative_temperature_is_refused_and_counted(make_app, fake_registry):
    app = make_app()
    client = app.test_client()
    before = post_json(client, PREDICT, {"text": "a wonderful film"}).get_json()["predictions"][0]
    make_random_version(fake_registry, seed=0, temperature=-1.0)  # the same weights, inverted labels
    assert app.extensions["sentiment"].manager.refresh() is False
    after = post_json(client, PREDICT, {"text": "a wonderful film"}).get_json()["predictions"][0]
    assert after == before and after["model_version"] == 1
    text = client.get("/metrics").get_data(as_text=True)
    assert 'sentiment_model_reloads_total{model="sentiment",result="failure"} 1.0' in text
    states = {s["version"]: s["state"] for s in client.get(STATUS).get_json()["model_version_status"]}
    assert states == {"1": "AVAILABLE", "2": "END"}


def test_a_model_trained_with_tokenizer_1_is_served_with_tokenizer_1(make_app, tmp_path):
    registry = Registry(tmp_path / "old-models")
    make_random_version(registry, tokenizer=TOKENIZERS[1])
    app = make_app(registry)
    predictor = app.extensions["sentiment"].manager.current()
    assert predictor.vocabulary.tokenizer.version == 1
    texts = ["I <3 this film, it is better than > 90% of films", "<b>great</b> film", "awful <3 acting ＜i＞"]
    old_ids = [np.array(predictor.vocabulary.ids_for_tokens(tokenize_as_before_version_2(t))) for t in texts]
    expected = predictor.score_ids(old_ids)
    body = post_json(app.test_client(), PREDICT, {"texts": texts}).get_json()
    assert [p["probability"] for p in body["predictions"]] == pytest.approx(list(expected), abs=1e-6)
    explained = post_json(app.test_client(), EXPLAIN, {"text": texts[0]}).get_json()
    assert [t["token"] for t in explained["tokens"]] == ["i", "90", "of", "films"]


def test_model_failure_is_a_json_500_without_internals(app, client):
    app.extensions["sentiment"].manager.current().score_together = lambda seqs: 1 / 0
    response = post_json(client, PREDICT, {"text": "x"})
    assert_error(response, 500, "inference_failed")
    assert "ZeroDivision" not in response.get_data(as_text=True)
    assert post_json(client, PREDICT, {"text": "x"}).status_code == 500  # the batcher survived


def test_non_finite_score_is_a_json_500(app, client):
    app.extensions["sentiment"].manager.current().score_together = lambda seqs: np.full(len(seqs), np.nan)
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


def test_debug_stays_off_whatever_the_environment_or_config_asks(make_app, monkeypatch):
    """Werkzeug's debugger runs code typed into the browser: no setting may turn it on."""
    monkeypatch.setenv("SENTIMENT_DEBUG", "true")  # read by create_app's from_prefixed_env
    monkeypatch.setenv("FLASK_DEBUG", "1")
    app = make_app(DEBUG=True, PROPAGATE_EXCEPTIONS=True)
    assert app.debug is False and app.config["DEBUG"] is False

    def broken(doc, limits):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("service.api.texts_from_predict", broken)
    response = post_json(app.test_client(), PREDICT, {"text": "x"})  # no exception escapes to a debugger
    assert_error(response, 500, "internal_error")
    assert "ZeroDivision" not in response.get_data(as_text=True)


# -- explanations ------------------------------------------------------------------------------
def test_explain_scores_like_predict_and_lists_every_token(client):
    text = "A wonderful film, but the plot was boring! zorblax"
    response = post_json(client, EXPLAIN, {"text": text})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    validate(body, "ExplainResponse")
    predicted = post_json(client, PREDICT, {"text": text}).get_json()["predictions"][0]
    assert body["probability"] == pytest.approx(predicted["probability"], abs=1e-6)
    assert body["label"] == ("positive" if body["probability"] >= 0.5 else "negative")
    assert (body["model_name"], body["model_version"]) == ("sentiment", 1)
    assert [t["token"] for t in body["tokens"]] == tokenize(text)
    assert [t["position"] for t in body["tokens"]] == list(range(len(body["tokens"])))
    assert [t["known"] for t in body["tokens"]][-1] is False  # zorblax is not in the vocabulary
    assert body["tokens_in_text"] == len(body["tokens"]) and body["truncated"] is False


def test_explain_contribution_is_the_score_change_without_the_token(app, client):
    text = "great acting, awful plot"
    body = post_json(client, EXPLAIN, {"text": text}).get_json()
    predictor = app.extensions["sentiment"].manager.current()
    ids = predictor.encode([text])[0]
    for i, token in enumerate(body["tokens"]):
        without = float(predictor.score_ids([np.delete(ids, i)])[0])
        assert token["contribution"] == pytest.approx(body["probability"] - without, abs=1e-6)


def test_explain_shows_a_xss_attempt_only_as_plain_tokens(client):
    text = '<script>alert("x")</script> loved it <img src=x onerror=alert(1)>'
    body = post_json(client, EXPLAIN, {"text": text}).get_json()
    assert [t["token"] for t in body["tokens"]] == ["alert", "x", "loved", "it"]  # tags are dropped


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"{not json", 400, "invalid_json"),
        (b'{"text": "caf\xe9"}', 400, "invalid_utf8"),
        (b'"just a string"', 400, "invalid_request"),
        (b"{}", 400, "invalid_request"),
        (b'{"texts": ["a"]}', 400, "invalid_request"),
        (b'{"text": "a", "texts": ["b"]}', 400, "invalid_request"),
        (b'{"text": ["a"]}', 400, "invalid_request"),
        (b'{"text": null}', 400, "invalid_request"),
        (b'{"text": " \\n"}', 400, "empty_text"),
        (b'{"text": "\\ud800 lone surrogate"}', 400, "invalid_json"),
    ],
)
def test_explain_rejects_bad_bodies(client, body, status, code):
    assert_error(client.post(EXPLAIN, data=body, content_type="application/json"), status, code)


def test_explain_limits(make_app):
    client = make_app(EXPLAIN_MAX_TOKENS=5, MAX_TEXT_CHARS=60, MAX_BODY_BYTES=200).test_client()
    assert post_json(client, EXPLAIN, {"text": "one two three four five"}).status_code == 200
    body = assert_error(
        post_json(client, EXPLAIN, {"text": "one two three four five six"}), 413, "too_many_tokens"
    )
    assert "6 tokens" in body["error"]["message"] and "limit is 5" in body["error"]["message"]
    assert_error(post_json(client, EXPLAIN, {"text": "x" * 61}), 413, "text_too_long")
    assert_error(post_json(client, EXPLAIN, {"text": "x " * 150}), 413, "payload_too_large")
    assert_error(client.post(EXPLAIN, data="text=x"), 415, "unsupported_media_type")
    response = client.get(EXPLAIN)
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_explain_caps_tokens_after_truncation(make_app):
    client = make_app(EXPLAIN_MAX_TOKENS=64).test_client()  # the fake model reads 64 tokens
    body = post_json(client, EXPLAIN, {"text": "great " * 500}).get_json()
    validate(body, "ExplainResponse")
    assert len(body["tokens"]) == 64 and body["tokens_in_text"] == 500 and body["truncated"] is True
    positions = [t["position"] for t in body["tokens"]]
    assert positions[:16] == list(range(16)) and positions[16:] == list(range(452, 500))  # head 16 + tail


def test_explain_runs_one_at_a_time_and_leaves_predictions_flowing(make_app):
    app = make_app(DEADLINE_MS=300)
    predictor = app.extensions["sentiment"].manager.current()
    original = predictor.score_together
    entered, release = threading.Event(), threading.Event()

    def held(sequences):  # holds the first call (the explanation); predictions pass
        if not entered.is_set():
            entered.set()
            release.wait(10)
        return original(sequences)

    predictor.score_together = held
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post_json, app.test_client(), EXPLAIN, {"text": "slow one"})
        assert entered.wait(5)
        client = app.test_client()
        assert post_json(client, PREDICT, {"text": "the batcher is not blocked"}).status_code == 200
        response = post_json(client, EXPLAIN, {"text": "waits for the first"})
        assert_error(response, 503, "overloaded")
        assert response.headers["Retry-After"] == "1"
        release.set()
        assert first.result(5).status_code == 200
    assert post_json(app.test_client(), EXPLAIN, {"text": "free again"}).status_code == 200


def test_explain_model_failures_are_json_500(app, client):
    predictor = app.extensions["sentiment"].manager.current()
    predictor.score_together = lambda seqs: 1 / 0
    response = post_json(client, EXPLAIN, {"text": "x"})
    assert_error(response, 500, "inference_failed")
    assert "ZeroDivision" not in response.get_data(as_text=True)
    predictor.score_together = lambda seqs: np.full(len(seqs), np.nan)
    assert_error(post_json(client, EXPLAIN, {"text": "x"}), 500, "inference_failed")


def test_explain_without_a_model_is_503(make_app, tmp_path):
    client = make_app(Registry(tmp_path / "empty")).test_client()
    assert_error(post_json(client, EXPLAIN, {"text": "x"}), 503, "model_unavailable")


def test_explain_is_counted_under_its_route(client):
    post_json(client, EXPLAIN, {"text": "fine"})
    post_json(client, EXPLAIN, {"text": ""})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'sentiment_http_requests_total{method="POST",route="/v1/explain",status="200"} 1.0' in text
    assert 'sentiment_http_requests_total{method="POST",route="/v1/explain",status="400"} 1.0' in text
    assert "sentiment_unhandled_errors_total 0.0" in text


# -- web page and evaluation report -------------------------------------------------------------
def test_page_is_served_with_its_files(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert 'id="review"' in page and 'id="analyse"' in page
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    for asset, mimetype in (("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")):
        served = client.get(asset)
        assert served.status_code == 200 and served.mimetype == mimetype, asset
    assert_error(client.get("/static/missing.js"), 404, "not_found")
    assert_error(client.post("/"), 405, "method_not_allowed")


def test_page_loads_nothing_from_elsewhere_and_never_inserts_html():
    for path in STATIC.iterdir():
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=[\"'](https?:)?//", source), f"{path.name} loads a foreign resource"
        assert "@import" not in source and "url(http" not in source, path.name
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink


def test_report_is_rendered_as_html(client, fake_registry):
    add_fake_report(fake_registry)
    response = client.get(REPORT)
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<h1>Model sentiment: validation report</h1>" in page
    assert "<td>accuracy</td><td>0.8000</td>" in page
    assert '<img src="/v1/models/sentiment/report/roc.png" alt="ROC curve"' in page
    assert "&lt;b&gt;200&lt;/b&gt;" in page and "<b>200" not in page
    assert "sentiment · v1" in page
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert client.head(REPORT).status_code == 200


def test_report_images_are_served(client, fake_registry):
    folder = add_fake_report(fake_registry)
    response = client.get(REPORT + "/roc.png")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert response.data == (folder / "roc.png").read_bytes()
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/../manifest.json",
        "/..%2Fmanifest.json",
        "/%2e%2e%2fmanifest.json",
        "/..%2F..%2F1%2Fmanifest.json",
        "/..",
        "/%2e%2e",
        "/..%5Croc.png",
        "/report.md",
        "/metrics.json",
        "/.hidden.png",
        "/ROC.PNG",
        "/missing.png",
        "/roc.png%00.txt",
        "/sub/roc.png",
    ],
)
def test_report_serves_nothing_but_its_png_files(client, fake_registry, path):
    add_fake_report(fake_registry)
    (fake_registry.version_dir("sentiment", 1) / REPORT_DIR / ".hidden.png").write_bytes(png())
    response = client.get(REPORT + path)
    assert response.status_code == 404, path
    assert response.mimetype == "application/json"
    validate(response.get_json(), "Error")
    assert response.get_json()["error"]["code"] in {"not_found", "report_not_found"}
    assert b"\x89PNG" not in response.data and b'"format"' not in response.data


def test_report_must_be_the_folders_own_file(client, fake_registry, tmp_path):
    folder = add_fake_report(fake_registry)
    (tmp_path / "elsewhere.md").write_text("# secret")
    (folder / "report.md").unlink()
    (folder / "report.md").symlink_to(tmp_path / "elsewhere.md")
    assert_error(client.get(REPORT), 404, "report_not_found")


def test_report_errors(make_app, client, tmp_path):
    assert_error(client.get(REPORT), 404, "report_not_found")  # random-weight versions have no report
    assert_error(client.get(REPORT + "/roc.png"), 404, "report_not_found")
    assert_error(client.get("/v1/models/other/report"), 404, "model_not_found")
    assert_error(client.get("/v1/models/other/report/roc.png"), 404, "model_not_found")
    assert_error(client.post(REPORT), 405, "method_not_allowed")
    empty = make_app(Registry(tmp_path / "empty")).test_client()
    assert_error(empty.get(REPORT), 503, "model_unavailable")
