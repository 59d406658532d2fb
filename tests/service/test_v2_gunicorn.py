"""Integration: the V2 endpoints of the real gunicorn server, driven by tritonclient and ``requests``.

tritonclient's HTTP client is a client we did not write: if it can read our metadata, probes and
answers in both its binary (default) and JSON modes, so can KServe/Triton tooling built on it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from bench.v2_requests import V2_INFER_PATH, binary_infer_request, infer_path, read_binary_response
from registry.store import Registry
from service.v2_codec import HEADER_LENGTH, encode_bytes_elements
from tests.service.gunicorn_server import GunicornServer
from tests.service.spec import validate
from tests.service.test_gunicorn import TEXTS, metric

pytestmark = pytest.mark.slow

MANY = [f"{TEXTS[i % len(TEXTS)]} (copy {i})" for i in range(64)]


@pytest.fixture(scope="module")
def server(serving_registry: Registry, tmp_path_factory: pytest.TempPathFactory):
    """Start one server shared by this module's tests (they only read)."""
    server = GunicornServer(serving_registry.root, tmp_path_factory.mktemp("gunicorn-v2")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def version(serving_registry: Registry) -> int:
    return serving_registry.production_version("sentiment")


@pytest.fixture
def client(server: GunicornServer):
    """Return a tritonclient HTTP client of the server (loopback only)."""
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=30)
    yield client
    client.close()


def v1_scores(server: GunicornServer, texts: list[str]) -> np.ndarray:
    response = requests.post(server.url("/v1/predict"), json={"texts": texts}, timeout=30)
    assert response.status_code == 200, response.text
    return np.array([p["probability"] for p in response.json()["predictions"]])


def text_tensor(texts: list[str], *, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_), binary_data=binary)
    return tensor


# -- tritonclient -------------------------------------------------------------------------------
def test_tritonclient_reads_metadata_and_probes(client, version: int):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("sentiment") and client.is_model_ready("sentiment", str(version))
    assert not client.is_model_ready("sentiment", str(version + 1))
    assert not client.is_model_ready("other")
    server_metadata = client.get_server_metadata()
    validate(server_metadata, "V2ServerMetadata")
    assert "binary_tensor_data" in server_metadata["extensions"]
    metadata = client.get_model_metadata("sentiment")
    validate(metadata, "V2ModelMetadata")
    assert metadata["versions"] == [str(version)] and metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [(o["name"], o["datatype"]) for o in metadata["outputs"]] == [
        ("probability", "FP32"),
        ("label", "BYTES"),
    ]
    assert client.get_model_metadata("sentiment", str(version)) == metadata
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("sentiment", str(version + 1))
    assert caught.value.status() == "404" and "is not loaded" in caught.value.message()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("texts", [TEXTS[:1], MANY], ids=["1 text", "64 texts"])
def test_tritonclient_infer_scores_like_v1(server, client, version: int, binary: bool, texts: list[str]):
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("probability", "label")]
    result = client.infer(
        "sentiment", [text_tensor(texts, binary=binary)], outputs=outputs, request_id=f"id-{len(texts)}"
    )
    response = result.get_response()
    assert response["model_name"] == "sentiment" and response["model_version"] == str(version)
    assert response["id"] == f"id-{len(texts)}"
    binary_outputs = [o for o in response["outputs"] if "parameters" in o]
    assert len(binary_outputs) == (2 if binary else 0)  # really the mode asked for
    probabilities = result.as_numpy("probability")
    assert probabilities.shape == (len(texts),) and probabilities.dtype == np.float32
    assert np.max(np.abs(probabilities - v1_scores(server, texts))) <= 1e-6
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")]
    assert labels == ["positive" if p >= 0.5 else "negative" for p in probabilities]


def test_tritonclient_default_request_and_requested_outputs(server, client, version: int):
    # No outputs named: tritonclient asks for all of them as binary data (its default).
    everything = client.infer("sentiment", [text_tensor(TEXTS, binary=True)], model_version=str(version))
    assert {o["name"] for o in everything.get_response()["outputs"]} == {"probability", "label"}
    only_label = client.infer(
        "sentiment",
        [text_tensor(TEXTS, binary=True)],
        outputs=[triton.InferRequestedOutput("label", binary_data=False)],
    )
    assert [o["name"] for o in only_label.get_response()["outputs"]] == ["label"]
    assert only_label.as_numpy("probability") is None
    assert list(only_label.as_numpy("label")) == [v.decode() for v in everything.as_numpy("label")]


def test_tritonclient_sees_errors_as_errors(client, version: int):
    cases = [
        (
            lambda: client.infer(
                "sentiment", [text_tensor(["x"], binary=True)], model_version=str(version + 1)
            ),
            "404",
        ),
        (lambda: client.infer("other", [text_tensor(["x"], binary=True)]), "404"),
        (lambda: client.infer("sentiment", [text_tensor([" "], binary=True)]), "400"),
        (
            lambda: client.infer(
                "sentiment", [text_tensor(["x"], binary=True)], outputs=[triton.InferRequestedOutput("logit")]
            ),
            "400",
        ),
    ]
    for call, status in cases:
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == status and caught.value.message()


# -- plain requests: the bad tensors ---------------------------------------------------------------
def test_bad_tensors_are_4xx_json_and_never_5xx(server: GunicornServer):
    s = requests.Session()
    url = server.url(infer_path())
    pids = server.worker_pids()
    raw = encode_bytes_elements([b"a fine review", b"caf\xe9 au lait"])
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
    good_binary, good_headers = binary_infer_request(TEXTS[:2])

    def doc(**tensor) -> dict:
        return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["ok"], **tensor}]}

    cases = [
        ("wrong datatype", s.post(url, json=doc(datatype="INT64", data=[1])), 400),
        ("shape/data mismatch", s.post(url, json=doc(shape=[2])), 400),
        ("rank-2 shape", s.post(url, json=doc(shape=[1, 1])), 400),
        ("missing input", s.post(url, json={"inputs": []}), 400),
        ("unknown input", s.post(url, json=doc(name="review")), 400),
        ("unknown output", s.post(url, json={**doc(), "outputs": [{"name": "logit"}]}), 400),
        ("non-UTF-8 bytes", s.post(url, data=header + raw, headers={HEADER_LENGTH: str(len(header))}), 400),
        ("truncated binary section", s.post(url, data=good_binary[:-5], headers=good_headers), 400),
        (
            "header longer than body",
            s.post(url, data=good_binary, headers={HEADER_LENGTH: str(len(good_binary) + 1)}),
            400,
        ),
        ("negative header length", s.post(url, data=good_binary, headers={HEADER_LENGTH: "-1"}), 400),
        ("huge header length", s.post(url, data=good_binary, headers={HEADER_LENGTH: "9" * 40}), 400),
        ("header length cuts the JSON", s.post(url, data=good_binary, headers={HEADER_LENGTH: "7"}), 400),
        ("binary without the header", s.post(url, data=good_binary), 400),
        ("not JSON", s.post(url, data=b"\x00\x01garbage"), 400),
        ("too many texts", s.post(url, json=doc(shape=[257], data=["x"] * 257)), 413),
        ("body over the limit", s.post(url, data=b"x" * (4 * 1024 * 1024 + 1)), 413),
        ("wrong method", s.get(url), 405),
        ("unknown version", s.post(server.url(infer_path(version=999)), json=doc()), 404),
    ]
    for name, response, status in cases:
        assert response.status_code == status, (name, response.status_code, response.text[:300])
        validate(response.json(), "V2Error")
    assert server.worker_pids() == pids
    assert metric(server.metrics(), "sentiment_unhandled_errors_total") == 0


# -- the bench's request builder, and metrics --------------------------------------------------------
def test_bench_binary_request_scores_like_v1_and_is_counted(server: GunicornServer, version: int):
    before = metric(
        server.metrics(), "sentiment_http_requests_total", route="/v2/models/<name>/infer", status="200"
    )
    body, headers = binary_infer_request(MANY, request_id="bench")
    assert infer_path("sentiment") == V2_INFER_PATH.format(model="sentiment")  # what bench_service.py formats
    assert set(headers) == {"Inference-Header-Content-Length", "Content-Type"}
    response = requests.post(server.url(infer_path("sentiment")), data=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"] == "application/octet-stream"
    outputs = read_binary_response(response.content, response.headers)
    assert outputs["model_version"] == str(version)
    assert np.max(np.abs(np.array(outputs["probability"]) - v1_scores(server, MANY))) <= 1e-6
    assert outputs["label"] == ["positive" if p >= 0.5 else "negative" for p in outputs["probability"]]
    versioned = requests.post(
        server.url(infer_path("sentiment", version)), data=body, headers=headers, timeout=30
    )
    assert read_binary_response(versioned.content, versioned.headers)["probability"] == pytest.approx(
        outputs["probability"], abs=1e-6
    )
    samples = server.metrics()
    after = metric(samples, "sentiment_http_requests_total", route="/v2/models/<name>/infer", status="200")
    assert after - before == 1
    assert (
        metric(
            samples,
            "sentiment_http_request_duration_seconds_count",
            route="/v2/models/<name>/versions/<version>/infer",
        )
        >= 1
    )
