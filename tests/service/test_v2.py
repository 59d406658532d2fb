"""The Open Inference Protocol (KServe V2) routes through the Flask test client."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families

from registry.store import Registry
from service.dataplane import Prediction
from service.v2_codec import HEADER_LENGTH, encode_bytes_elements
from tests.service.spec import validate
from tests.service.test_api import hold_model, post_json

INFER = "/v2/models/sentiment/infer"
TEXTS = ["A wonderful, moving film.", "The worst movie I have ever seen.", "café ☕ naïve, not great"]


def v2_doc(texts: list[str], **extra) -> dict:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}], **extra}


def v1_probabilities(client, texts: list[str]) -> list[float]:
    response = post_json(client, "/v1/predict", {"texts": texts})
    return [p["probability"] for p in response.get_json()["predictions"]]


def assert_v2_error(response, status: int, words: str = "") -> str:
    """Check a V2 error: the status, ``{"error": "message"}`` and nothing else."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    validate(body, "V2Error")
    assert words in body["error"], body["error"]
    assert "Traceback" not in body["error"]
    return body["error"]


def triton_request(texts: list[str], **kw) -> tuple[bytes, dict]:
    """Return the body and headers tritonclient sends for ``texts`` (binary input by default)."""
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    body, json_size = triton.InferenceServerClient.generate_request_body([tensor], **kw)
    return body, ({HEADER_LENGTH: str(json_size)} if json_size is not None else {})


# -- metadata and probes -------------------------------------------------------------------------
def test_server_metadata_and_probes(client):
    metadata = client.get("/v2").get_json()
    validate(metadata, "V2ServerMetadata")
    assert metadata["extensions"] == ["binary_tensor_data"]
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    assert client.get("/v2/models/sentiment/ready").get_json() == {"name": "sentiment", "ready": True}
    assert client.get("/v2/models/sentiment/versions/1/ready").status_code == 200


def test_model_metadata_names_the_tensors_and_the_loaded_version(client):
    for url in ("/v2/models/sentiment", "/v2/models/sentiment/versions/1"):
        metadata = client.get(url).get_json()
        validate(metadata, "V2ModelMetadata")
        assert metadata == {
            "name": "sentiment",
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": "probability", "datatype": "FP32", "shape": [-1]},
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
            ],
        }


@pytest.mark.parametrize(
    "url",
    [
        "/v2/models/sentiment/versions/2",
        "/v2/models/sentiment/versions/2/ready",
        "/v2/models/sentiment/versions/one/ready",
        "/v2/models/sentiment/versions/%C2%B9",  # a superscript one is not the version 1
    ],
)
def test_a_version_not_served_is_404(client, url):
    assert "not loaded in this worker (it serves version 1)" in assert_v2_error(client.get(url), 404)


def test_another_model_is_404(client):
    for response in (
        client.get("/v2/models/imdb"),
        client.get("/v2/models/imdb/ready"),
        client.post("/v2/models/imdb/infer", json=v2_doc(["x"])),
    ):
        assert_v2_error(response, 404, "model 'imdb' is not served here")


def test_routing_errors_under_v2_have_the_v2_shape_and_v1_keeps_its_own(client):
    assert_v2_error(client.get(INFER), 405, "method is not allowed")
    assert "POST" in client.get(INFER).headers["Allow"]
    assert_v2_error(client.get("/v2/models"), 404, "not found")
    assert_v2_error(client.get("/v2/anything/else"), 404)
    v1 = client.get("/v1/nothing").get_json()
    validate(v1, "Error")  # the native shape is untouched outside /v2
    assert client.get("/v2x").get_json()["error"]["code"] == "not_found"


def test_without_a_model_probes_say_not_ready_and_infer_is_503(make_app, tmp_path):
    registry = Registry(tmp_path / "empty")
    client = make_app(registry).test_client()
    assert client.get("/v2/health/live").status_code == 200
    for url in ("/v2/health/ready", "/v2/models/sentiment/ready"):
        response = client.get(url)
        assert_v2_error(response, 503, "no model version is loaded yet")
        assert response.headers["Retry-After"] == "1"
    assert client.get("/v2/models/sentiment").get_json()["versions"] == []
    assert_v2_error(client.get("/v2/models/sentiment/versions/1"), 404, "no version is loaded yet")
    response = client.post(INFER, json=v2_doc(["x"]))
    assert_v2_error(response, 503, "no model version is loaded yet")
    assert response.headers["Retry-After"] == "1"


# -- inference -----------------------------------------------------------------------------------
def test_json_infer_scores_like_v1_and_echoes_the_id(client):
    response = client.post(INFER, json=v2_doc(TEXTS, id="req-7"))
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert HEADER_LENGTH not in response.headers
    body = response.get_json()
    validate(body, "V2InferResponse")
    assert body["model_name"] == "sentiment" and body["model_version"] == "1" and body["id"] == "req-7"
    probability, label = body["outputs"]
    assert probability["name"] == "probability" and probability["datatype"] == "FP32"
    assert probability["shape"] == [3] and label["shape"] == [3] and label["datatype"] == "BYTES"
    expected = v1_probabilities(client, TEXTS)
    assert np.max(np.abs(np.array(probability["data"]) - expected)) <= 1e-6
    assert label["data"] == ["positive" if p >= 0.5 else "negative" for p in probability["data"]]


def test_binary_infer_from_tritonclient_scores_like_v1(client):
    body, headers = triton_request(TEXTS, request_id="bin-1")
    response = client.post(INFER, data=body, headers=headers)  # no Content-Type, as tritonclient
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/octet-stream"
    result = triton.InferenceServerClient.parse_response_body(
        response.get_data(), header_length=int(response.headers[HEADER_LENGTH])
    )
    header = result.get_response()
    validate(header, "V2InferResponse")
    assert header["id"] == "bin-1"
    probabilities = result.as_numpy("probability")
    assert probabilities.dtype == np.float32 and probabilities.shape == (3,)
    assert np.max(np.abs(probabilities - v1_probabilities(client, TEXTS))) <= 1e-6
    assert [v.decode() for v in result.as_numpy("label")] == [
        "positive" if p >= 0.5 else "negative" for p in probabilities
    ]


def test_requested_outputs_choose_order_and_encoding(client):
    outputs = [triton.InferRequestedOutput("label", binary_data=True)]
    body, headers = triton_request(TEXTS[:1], outputs=outputs)
    response = client.post(INFER, data=body, headers=headers)
    result = triton.InferenceServerClient.parse_response_body(
        response.get_data(), header_length=int(response.headers[HEADER_LENGTH])
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]
    assert result.as_numpy("probability") is None

    doc = v2_doc(TEXTS[:2], outputs=[{"name": "label"}, {"name": "probability"}])
    names = [o["name"] for o in client.post(INFER, json=doc).get_json()["outputs"]]
    assert names == ["label", "probability"]


def test_versioned_infer_scores_with_the_served_version(client):
    response = client.post("/v2/models/sentiment/versions/1/infer", json=v2_doc(["fine"]))
    assert response.status_code == 200 and response.get_json()["model_version"] == "1"
    assert_v2_error(
        client.post("/v2/models/sentiment/versions/7/infer", json=v2_doc(["fine"])), 404, "version '7'"
    )


def test_a_request_split_over_two_versions_is_scored_again(app, client, monkeypatch):
    plane = app.extensions["sentiment"]
    original = plane.predict
    calls = []

    def split_once(texts, deadline, arrival=None):
        predictions = original(texts, deadline, arrival)
        calls.append(len(texts))
        if len(calls) == 1:  # as if a hot reload had swapped versions between two batches
            return [
                Prediction(p.label, p.probability, p.model_name, 0) for p in predictions[:1]
            ] + predictions[1:]
        return predictions

    monkeypatch.setattr(plane, "predict", split_once)
    response = client.post(INFER, json=v2_doc(TEXTS))
    assert response.status_code == 200 and response.get_json()["model_version"] == "1"
    assert calls == [3, 3]

    calls.clear()
    response = client.post("/v2/models/sentiment/versions/1/infer", json=v2_doc(TEXTS))
    assert_v2_error(response, 404, "version '1'")  # the version asked for went away mid-request
    assert calls == [3]


def test_a_request_split_twice_is_503(app, client, monkeypatch):
    plane = app.extensions["sentiment"]
    original = plane.predict

    def always_split(texts, deadline, arrival=None):
        predictions = original(texts, deadline, arrival)
        return [Prediction(p.label, p.probability, p.model_name, i) for i, p in enumerate(predictions)]

    monkeypatch.setattr(plane, "predict", always_split)
    assert_v2_error(client.post(INFER, json=v2_doc(TEXTS)), 503, "model version changed")


# -- refusals, limits and service-side errors ----------------------------------------------------
def test_bad_tensors_are_400_with_the_v2_error_shape(client):
    raw = encode_bytes_elements([b"good", b"caf\xe9"])
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "datatype": "BYTES",
                    "shape": [2],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    cases = [
        (client.post(INFER, data=b"{nope", content_type="application/json"), "not valid JSON"),
        (
            client.post(
                INFER, json={"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1]}]}
            ),
            "datatype FP32",
        ),
        (
            client.post(
                INFER, json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": ["a"]}]}
            ),
            "shape [3]",
        ),
        (client.post(INFER, json={"id": "no inputs"}), '"inputs"'),
        (client.post(INFER, json=v2_doc(["a"], outputs=[{"name": "logit"}])), "unknown output 'logit'"),
        (client.post(INFER, data=header + raw, headers={HEADER_LENGTH: str(len(header))}), "not valid UTF-8"),
        (client.post(INFER, data=header + raw[:-1], headers={HEADER_LENGTH: str(len(header))}), "truncated"),
        (
            client.post(INFER, data=header + raw, headers={HEADER_LENGTH: str(len(header) + len(raw) + 1)}),
            "only",
        ),
        (client.post(INFER, data=header + raw, headers={HEADER_LENGTH: "-5"}), HEADER_LENGTH),
    ]
    for response, words in cases:
        assert_v2_error(response, 400, words)
    assert "sentiment_unhandled_errors_total 0.0" in client.get("/metrics").get_data(as_text=True)


def test_compressed_bodies_are_refused_with_415(client):
    body, headers = triton_request(["x"])
    response = client.post(INFER, data=body, headers={**headers, "Content-Encoding": "gzip"})
    assert_v2_error(response, 415, "Content-Encoding 'gzip' is not supported")
    assert (
        client.post(INFER, data=body, headers={**headers, "Content-Encoding": "identity"}).status_code == 200
    )


def test_limits_are_those_of_v1(make_app):
    client = make_app(MAX_TEXTS_PER_REQUEST=4, MAX_TEXT_CHARS=30, MAX_BODY_BYTES=1000).test_client()
    assert_v2_error(client.post(INFER, json=v2_doc(["x"] * 5)), 413, "the limit is 4")
    assert_v2_error(client.post(INFER, json=v2_doc(["x" * 31])), 413, "the limit is 30")
    assert_v2_error(client.post(INFER, json=v2_doc(["x" * 25] * 40)), 413, "the limit is 1000")
    spec = client.get("/openapi.json").get_json()
    assert spec["components"]["schemas"]["V2RequestInput"]["properties"]["shape"]["items"]["maximum"] == 4


def test_deadline_and_full_queue_answer_504_and_503(make_app):
    app = make_app(DEADLINE_MS=100)
    entered, release = hold_model(app)
    try:
        assert_v2_error(app.test_client().post(INFER, json=v2_doc(["slow"])), 504, "deadline")
    finally:
        release.set()

    app = make_app(MAX_QUEUED_TEXTS=2, MAX_TEXTS_PER_REQUEST=2, MAX_BATCH_SIZE=2)
    entered, release = hold_model(app)
    batcher = app.extensions["sentiment"].batcher
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(app.test_client().post, INFER, json=v2_doc(["a", "b"]))
        assert entered.wait(5)
        second = pool.submit(app.test_client().post, INFER, json=v2_doc(["c", "d"]))
        deadline = time.monotonic() + 5
        while batcher.queued < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        response = app.test_client().post(INFER, json=v2_doc(["e"]))
        assert_v2_error(response, 503, "retry later")
        assert response.headers["Retry-After"] == "1"
        release.set()
        assert first.result(5).status_code == 200 and second.result(5).status_code == 200


def test_model_failure_is_a_v2_500_without_internals(app, client):
    app.extensions["sentiment"].manager.current().score_together = lambda seqs: 1 / 0
    message = assert_v2_error(client.post(INFER, json=v2_doc(["x"])), 500, "failed to score")
    assert "ZeroDivision" not in message


def batches(client) -> tuple[float, float]:
    """Return (model calls, texts scored) so far, from /metrics."""
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
        for s in family.samples
    }
    return samples["sentiment_batch_size_count"], samples["sentiment_batch_size_sum"]


@pytest.mark.usefixtures("default_cost_model")  # three one-word texts: one call, whatever the load
def test_v2_and_v1_texts_share_batches(make_app):
    app = make_app()
    entered, release = hold_model(app)
    batcher = app.extensions["sentiment"].batcher
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(post_json, app.test_client(), "/v1/predict", {"text": "held"})
        assert entered.wait(5)
        v1 = pool.submit(post_json, app.test_client(), "/v1/predict", {"texts": ["a", "b"]})
        v2 = pool.submit(app.test_client().post, INFER, json=v2_doc(["c"]))
        deadline = time.monotonic() + 5
        while batcher.queued < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        assert first.result(5).status_code == v1.result(5).status_code == v2.result(5).status_code == 200
    # The held batch of one, then one batch holding the v1 and the v2 texts together.
    assert batches(app.test_client()) == (2, 4)


def test_v2_requests_are_counted_under_their_own_routes(client):
    client.post(INFER, json=v2_doc(["x"]))
    client.post("/v2/models/sentiment/versions/9/infer", json=v2_doc(["x"]))
    client.get("/v2/health/ready")
    text = client.get("/metrics").get_data(as_text=True)
    for line in (
        'sentiment_http_requests_total{method="POST",route="/v2/models/<name>/infer",status="200"} 1.0',
        'sentiment_http_requests_total{method="POST",'
        'route="/v2/models/<name>/versions/<version>/infer",status="404"} 1.0',
        'sentiment_http_requests_total{method="GET",route="/v2/health/ready",status="200"} 1.0',
    ):
        assert line in text, line
    assert (
        'sentiment_http_request_duration_seconds_count{method="POST",route="/v2/models/<name>/infer"' in text
    )


def test_concurrent_v2_requests_each_get_their_own_results(client, app):
    texts = [f"review number {i} was {'great' if i % 2 else 'awful'}" for i in range(24)]
    expected = dict(zip(texts, v1_probabilities(client, texts), strict=True))
    errors: list[str] = []

    def one(i: int) -> None:
        chunk = texts[i : i + 3]
        body = app.test_client().post(INFER, json=v2_doc(chunk, id=str(i))).get_json()
        if body["id"] != str(i):
            errors.append(f"id {body['id']} for {i}")
        for text, p in zip(chunk, body["outputs"][0]["data"], strict=True):
            if abs(p - expected[text]) > 1e-6:
                errors.append(text)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(0, 24, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
