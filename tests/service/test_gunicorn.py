"""Integration: the real service under gunicorn (2 workers) over real HTTP.

The read-only tests run against both worker classes: the default asyncio worker
(``service.asgi``) and gunicorn's gthread worker with the WSGI fast path.

Each test takes its registry from ``serving_registry`` (see conftest) so the same tests run on a
really trained model once that fixture is added to ``SERVING_REGISTRIES``.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from registry.artifact import ONNX_FILE
from registry.store import Registry
from tests.fakes import make_random_version
from tests.service.gunicorn_server import GunicornServer
from tests.service.spec import validate

pytestmark = pytest.mark.slow

POLL_S = 0.3  # SENTIMENT_POLL_INTERVAL_S of the test servers
# Every worker serves a promoted version by then: one poll interval, plus loading and warming up
# the version on a machine whose cores are shared (1 s of slack).
SWITCH_S = POLL_S + 1.0
TEXTS = [
    "A wonderful, moving film with brilliant acting.",
    "The worst movie I have ever seen; boring and far too long!",
    "Not great, not terrible. The plot was fine?",
    "I loved it. Superb! " * 20,
    "awful",
    "This film is a masterpiece of the genre, and the acting is superb throughout. " * 5,
]


@pytest.fixture(scope="module", params=["asgi", "gthread"])
def server(
    request: pytest.FixtureRequest, serving_registry: Registry, tmp_path_factory: pytest.TempPathFactory
):
    """Start one server per worker class, shared by the read-only tests of this module."""
    workdir = tmp_path_factory.mktemp("gunicorn")
    env = {"SENTIMENT_BATCH_TIMEOUT_MICROS": "5000", "SENTIMENT_WORKER_CLASS": request.param}
    server = GunicornServer(serving_registry.root, workdir, env=env).start()
    yield server
    server.stop()


def predict(session: requests.Session, server: GunicornServer, texts: list[str]) -> list[dict]:
    response = session.post(server.url("/v1/predict"), json={"texts": texts}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def metric(samples: dict, name: str, **labels: str) -> float:
    """Sum the samples of ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


# -- every endpoint ---------------------------------------------------------------------------
def test_every_endpoint_over_http(server: GunicornServer, serving_registry: Registry):
    s = requests.Session()
    version = serving_registry.production_version("sentiment")

    body = s.post(server.url("/v1/predict"), json={"texts": TEXTS[:2]}).json()
    validate(body, "PredictResponse")
    assert [p["model_version"] for p in body["predictions"]] == [version, version]
    one = s.post(server.url("/v1/predict"), json={"text": TEXTS[0]}).json()
    assert one["predictions"][0]["probability"] == pytest.approx(
        body["predictions"][0]["probability"], abs=1e-6
    )

    tf = s.post(server.url("/v1/models/sentiment:predict"), json={"instances": TEXTS[:2]})
    assert tf.status_code == 200
    validate(tf.json(), "TFPredictResponse")

    status = s.get(server.url("/v1/models/sentiment"))
    validate(status.json(), "ModelStatus")
    assert status.json()["model_version_status"][0] == {
        "version": str(version),
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }
    assert status.json()["metrics"] == serving_registry.manifest("sentiment", version)["metrics"]

    assert s.get(server.url("/healthz")).json() == {"status": "ok"}
    assert s.get(server.url("/readyz")).json()["model_version"] == version
    spec = s.get(server.url("/openapi.json")).json()
    assert "/v1/predict" in spec["paths"]

    explained = s.post(server.url("/v1/explain"), json={"text": TEXTS[0]}).json()
    validate(explained, "ExplainResponse")
    assert explained["probability"] == pytest.approx(body["predictions"][0]["probability"], abs=1e-6)
    page = s.get(server.url("/"))
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert s.get(server.url("/static/app.js")).status_code == 200
    has_report = (serving_registry.version_dir("sentiment", version) / "report" / "report.md").is_file()
    report = s.get(server.url("/v1/models/sentiment/report"))
    assert report.status_code == (200 if has_report else 404)
    for raw in (
        "/v1/models/sentiment/report/../manifest.json",
        "/v1/models/sentiment/report/..%2Fmanifest.json",
    ):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)  # sends ".." as is
        connection.request("GET", raw)
        answer = connection.getresponse()
        assert answer.status == 404, raw
        assert json.loads(answer.read())["error"]["code"] in {"not_found", "report_not_found"}
        connection.close()
    metrics = s.get(server.url("/metrics"))
    assert metrics.status_code == 200 and "sentiment_batch_size_count" in metrics.text


def test_errors_over_http_are_json_and_kill_no_worker(server: GunicornServer):
    s = requests.Session()
    pids = server.worker_pids()
    json_type = {"Content-Type": "application/json"}
    cases = [
        (s.post(server.url("/v1/predict"), data=b"{broken", headers=json_type), 400, "invalid_json"),
        (s.post(server.url("/v1/predict"), data=b'{"text": "\xff"}', headers=json_type), 400, "invalid_utf8"),
        (s.post(server.url("/v1/predict"), json={"texts": []}), 400, "empty_texts"),
        (s.post(server.url("/v1/predict"), json={"texts": ["  "]}), 400, "empty_text"),
        (s.post(server.url("/v1/predict"), json={"texts": [3]}), 400, "invalid_request"),
        (s.post(server.url("/v1/predict"), data="text=hi"), 415, "unsupported_media_type"),
        (s.post(server.url("/v1/predict"), json={"text": "x" * 20001}), 413, "text_too_long"),
        (s.post(server.url("/v1/predict"), json={"texts": ["x"] * 257}), 413, "too_many_texts"),
        (
            s.post(server.url("/v1/predict"), data=b"[" * (4 * 1024 * 1024 + 10), headers=json_type),
            413,
            "payload_too_large",
        ),
        (
            s.post(
                server.url("/v1/predict"),
                data=iter([b'{"text": "', b"y" * (4 * 1024 * 1024), b'"}']),
                headers=json_type,
            ),
            413,
            "payload_too_large",
        ),  # chunked, no Content-Length
        (s.post(server.url("/v1/models/other:predict"), json={"instances": ["x"]}), 404, "model_not_found"),
        (s.get(server.url("/v1/models/other")), 404, "model_not_found"),
        (s.get(server.url("/v1/predict")), 405, "method_not_allowed"),
        (s.get(server.url("/no/such/route")), 404, "not_found"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, (code, response.text[:200])
        validate(response.json(), "Error")
        assert response.json()["error"]["code"] == code
    assert server.worker_pids() == pids
    assert metric(server.metrics(), "sentiment_unhandled_errors_total") == 0


def test_chunked_valid_body_is_scored(server: GunicornServer):
    body = json.dumps({"texts": TEXTS[:3]}).encode()
    response = requests.post(
        server.url("/v1/predict"),
        data=iter([body[:10], body[10:]]),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 3


def test_raw_garbage_on_the_socket_kills_no_worker(server: GunicornServer):
    pids = server.worker_pids()
    for payload in (
        b"\x00\xff\xfe garbage\r\n\r\n",
        b"POST /v1/predict HTTP/1.1\r\nContent-Length: 99999\r\n\r\n{",
    ):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            try:
                sock.recv(4096)
            except OSError:
                pass
    assert requests.get(server.url("/healthz")).status_code == 200
    assert server.worker_pids() == pids


def _raw_exchange(server: GunicornServer, payload: bytes) -> bytes:
    """Send raw bytes on a fresh connection; return what the server answered before closing."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(payload)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_oversized_request_heads_are_refused_before_the_app(server: GunicornServer):
    long_target = b"GET /healthz?" + b"q" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    many_fields = b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n"
    huge_field = b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    pids = server.worker_pids()
    for payload, status in ((long_target, b" 414 "), (many_fields, b" 431 "), (huge_field, b" 431 ")):
        answer = _raw_exchange(server, payload)
        assert status in answer.split(b"\r\n", 1)[0], answer[:200]
        if server.env["SENTIMENT_WORKER_CLASS"] == "asgi":  # gunicorn's own workers answer in text
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"]
    assert server.worker_pids() == pids
    assert requests.get(server.url("/healthz")).status_code == 200


def test_malformed_http_gets_a_400(server: GunicornServer):
    answer = _raw_exchange(server, b"\x00\xff\xfe garbage\r\n\r\n")
    assert b" 400 " in answer.split(b"\r\n", 1)[0], answer[:200]
    if server.env["SENTIMENT_WORKER_CLASS"] == "asgi":
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "bad_request"


@pytest.fixture(scope="module")
def asgi_server(serving_registry: Registry, tmp_path_factory: pytest.TempPathFactory):
    """A default (asgi) server for the bounds of the asgi worker's own protocol."""
    server = GunicornServer(serving_registry.root, tmp_path_factory.mktemp("asgi")).start()
    yield server
    server.stop()


def test_a_header_that_never_ends_is_refused_before_it_is_buffered(asgi_server: GunicornServer):
    server = asgi_server
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: ")
            for _ in range(64):  # 16 MiB in all, never a line end: refused long before
                sock.sendall(b"a" * 256 * 1024)
        except OSError:  # the server answered and closed while we were still sending
            pass
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    assert b" 431 " in answer.split(b"\r\n", 1)[0], answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "header_too_large"
    assert requests.get(server.url("/healthz")).status_code == 200


def test_a_request_head_sent_too_slowly_is_cut_off(asgi_server: GunicornServer):
    server = asgi_server
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        assert sock.recv(4096) == b""  # closed by the server
        assert time.monotonic() - started < 9  # keepalive (5 s) plus slack


def test_pipelined_requests_are_all_answered_in_order(server: GunicornServer):
    count = 100
    payload = b"".join(b"GET /healthz?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(count))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(payload + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.count(b"HTTP/1.1 200 ") == count + 1


def test_a_malformed_request_behind_a_valid_one_is_refused_after_its_answer(server: GunicornServer):
    body = json.dumps({"text": "A fine film."}).encode()
    valid = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    valid += b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    answer = _raw_exchange(server, valid + b"\x00\xff garbage\r\n\r\n")
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert statuses == [b"200", b"400"], answer[:300]
    assert b'"predictions"' in answer


def test_connections_beyond_the_worker_limit_get_a_json_503(serving_registry: Registry, tmp_path: Path):
    env = {"SENTIMENT_WORKER_CLASS": "asgi", "GUNICORN_CMD_ARGS": "--worker-connections 4"}
    server = GunicornServer(serving_registry.root, tmp_path, workers=1, env=env).start()
    idle = []
    try:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
        response = requests.get(server.url("/healthz"), timeout=5)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert response.json()["error"]["code"] == "overloaded"
        for sock in idle:
            sock.close()
        idle = []
        deadline = time.monotonic() + 5
        while requests.get(server.url("/healthz"), timeout=5).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_workers_run_without_tensorflow(server: GunicornServer):
    for pid in server.worker_pids():
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "onnxruntime" in maps  # the check can see shared libraries
        assert "tensorflow" not in maps.lower()


# -- batching -----------------------------------------------------------------------------------
def test_concurrent_requests_are_batched_and_scores_match_single_requests(server: GunicornServer):
    s = requests.Session()
    alone = {t: predict(s, server, [t])[0]["probability"] for t in TEXTS}  # sequential: batches of one
    before = server.metrics()

    def client(i: int) -> list[tuple[str, float]]:
        session = requests.Session()
        out = []
        for j in range(12):
            text = TEXTS[(i + j) % len(TEXTS)]
            out.append((text, predict(session, server, [text])[0]["probability"]))
        return out

    with ThreadPoolExecutor(16) as pool:
        results = [r for chunk in pool.map(client, range(16)) for r in chunk]
    after = server.metrics()

    batches = metric(after, "sentiment_batch_size_count") - metric(before, "sentiment_batch_size_count")
    texts = metric(after, "sentiment_batch_size_sum") - metric(before, "sentiment_batch_size_sum")
    assert texts == len(results)
    assert texts / batches > 1.0, f"mean batch size {texts / batches:.2f}: no batching happened"
    for text, probability in results:
        assert abs(probability - alone[text]) <= 1e-6


def test_metrics_aggregate_all_workers(server: GunicornServer):
    s = requests.Session()
    before = metric(server.metrics(), "sentiment_http_requests_total", route="/healthz", status="200")
    for _ in range(20):  # spread over both workers by the kernel's accept balancing
        s.get(server.url("/healthz"), headers={"Connection": "close"})
    samples = server.metrics()
    assert metric(samples, "sentiment_http_requests_total", route="/healthz", status="200") - before == 20
    versions = {
        dict(labels)["pid"]: v for (name, labels), v in samples.items() if name == "sentiment_model_version"
    }
    assert set(map(int, versions)) == set(server.worker_pids())
    assert metric(samples, "sentiment_model_reloads_total", result="success") >= 2  # one per worker
    assert metric(samples, "sentiment_queue_depth") == 0


# -- hot reload -----------------------------------------------------------------------------------
class Load:
    """Client threads sending single-text requests back to back, recording every answer."""

    def __init__(self, server: GunicornServer, threads: int = 6) -> None:
        self.server = server
        self.stop = threading.Event()
        self.records: list[tuple[float, int, int | None]] = []  # (sent at, status, version)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, i: int) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                r = session.post(
                    self.server.url("/v1/predict"), json={"text": TEXTS[i % len(TEXTS)]}, timeout=10
                )
                version = r.json()["predictions"][0]["model_version"] if r.status_code == 200 else None
                record = (sent, r.status_code, version)
            except Exception as exc:  # a refused connection counts as a failure too
                record = (sent, -1, repr(exc))
            with self.lock:
                self.records.append(record)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)


@pytest.mark.parametrize("worker_class", ["asgi", "gthread"])
def test_hot_reload_under_load_switches_versions_without_failures(
    private_registry: Registry, gunicorn, worker_class: str
):
    server = gunicorn(
        private_registry, SENTIMENT_POLL_INTERVAL_S=str(POLL_S), SENTIMENT_WORKER_CLASS=worker_class
    )
    old = private_registry.production_version("sentiment")
    new = make_random_version(private_registry, seed=11, promote=False)
    with Load(server) as load:
        time.sleep(1.0)
        promoted_at = time.monotonic()
        private_registry.promote("sentiment", new)
        time.sleep(SWITCH_S + 1.5)
    failures = [r for r in load.records if r[1] != 200]
    assert failures == [], failures[:5]
    assert {v for _, _, v in load.records} == {old, new}
    late_old = [r for r in load.records if r[0] > promoted_at + SWITCH_S and r[2] == old]
    assert late_old == [], f"{len(late_old)} requests sent >{SWITCH_S}s after the promotion got v{old}"
    first_new = min(r[0] for r in load.records if r[2] == new)
    assert first_new - promoted_at <= SWITCH_S
    samples = server.metrics()
    versions = [v for (name, _), v in samples.items() if name == "sentiment_model_version"]
    assert versions == [new, new]


@pytest.mark.parametrize("worker_class", ["asgi", "gthread"])
def test_broken_version_is_refused_and_old_keeps_serving(
    private_registry: Registry, gunicorn, worker_class: str
):
    server = gunicorn(
        private_registry, SENTIMENT_POLL_INTERVAL_S=str(POLL_S), SENTIMENT_WORKER_CLASS=worker_class
    )
    old = private_registry.production_version("sentiment")
    broken = make_random_version(private_registry, seed=12, promote=False)
    (private_registry.version_dir("sentiment", broken) / ONNX_FILE).write_bytes(b"corrupt \x00 bytes")
    with Load(server, threads=3) as load:
        private_registry.promote("sentiment", broken)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if metric(server.metrics(), "sentiment_model_reloads_total", result="failure") >= 2:
                break
            time.sleep(0.1)
        time.sleep(POLL_S * 2)  # further polls must not retry the same broken promotion
    assert metric(server.metrics(), "sentiment_model_reloads_total", result="failure") == 2  # once per worker
    assert [r for r in load.records if r[1] != 200] == []
    assert {v for _, _, v in load.records} == {old}
    status = requests.get(server.url("/v1/models/sentiment")).json()
    states = {s["version"]: s["state"] for s in status["model_version_status"]}
    assert states == {str(old): "AVAILABLE", str(broken): "END"}
    assert f"refused version {broken}" in server.log()
    assert len(server.worker_pids()) == 2
