"""The WSGI fast path of ``POST /v1/predict`` answers exactly as the Flask view does, for less CPU."""

from __future__ import annotations

import json
import time

import pytest

from service.batcher import DeadlineExceeded, QueueFull
from service.fastpath import PredictFastPath
from service.v2_codec import HEADER_LENGTH
from tests.service.test_v2 import triton_request, v2_doc

TEXTS = ["A wonderful film, I loved it!", "Dull and far too long.", "not bad at all", "ok"]

#: (headers, body) pairs a client may send: well-formed, malformed, over a limit, odd framing.
REQUESTS = [
    ({"Content-Type": "application/json"}, json.dumps({"text": TEXTS[0]})),
    ({"Content-Type": "application/json"}, json.dumps({"texts": TEXTS})),
    ({"Content-Type": "application/json; charset=utf-8"}, json.dumps({"texts": TEXTS[:2]})),
    ({"Content-Type": "APPLICATION/JSON"}, json.dumps({"text": "fine"})),
    ({"Content-Type": "application/json"}, json.dumps({"texts": []})),
    ({"Content-Type": "application/json"}, "{not json"),
    ({"Content-Type": "application/json"}, ""),
    ({"Content-Type": "application/json"}, json.dumps({"text": 3})),
    ({"Content-Type": "application/json"}, json.dumps({"text": "a", "texts": ["b"]})),
    ({"Content-Type": "application/json"}, json.dumps({"texts": ["x"] * 65})),
    ({"Content-Type": "application/json"}, json.dumps({"text": "x" * 20_001})),
    ({"Content-Type": "application/json"}, b'{"text": "\xff\xfe"}'),
    ({"Content-Type": "text/plain"}, json.dumps({"text": "fine"})),
    ({}, json.dumps({"text": "fine"})),
    ({"Content-Type": "application/vnd.api+json"}, json.dumps({"text": "fine"})),
]


INFER = "/v2/models/sentiment/infer"
BINARY_BODY, BINARY_HEADERS = triton_request(TEXTS)
JSON_INFER = json.dumps(v2_doc(TEXTS, id="r1"))
#: The same for the V2 infer route: JSON and tritonclient's binary tensors, good and bad.
INFER_REQUESTS = [
    ({"Content-Type": "application/json"}, JSON_INFER),
    ({}, JSON_INFER),
    ({"Content-Type": "application/octet-stream", **BINARY_HEADERS}, BINARY_BODY),
    (BINARY_HEADERS, BINARY_BODY[:-3]),
    ({HEADER_LENGTH: "12"}, BINARY_BODY),
    ({HEADER_LENGTH: "nope"}, BINARY_BODY),
    ({"Content-Encoding": "gzip"}, JSON_INFER),
    ({}, json.dumps(v2_doc(TEXTS, outputs=[{"name": "nothing"}]))),
    ({}, json.dumps({"inputs": []})),
    ({}, "{"),
]


#: Every request above against its route, for tests comparing a lean path with Flask alone.
ROUTED_REQUESTS = pytest.mark.parametrize(
    "url, headers, body",
    [("/v1/predict", *r) for r in REQUESTS] + [(INFER, *r) for r in INFER_REQUESTS],
    ids=[f"v1-{i}" for i in range(len(REQUESTS))] + [f"v2-{i}" for i in range(len(INFER_REQUESTS))],
)


def _answer(client, url: str, headers: dict, body) -> tuple:
    response = client.post(url, headers=headers, data=body)
    kept = {k: response.headers.get(k) for k in ("Content-Type", "Retry-After", HEADER_LENGTH)}
    return response.status_code, kept, response.get_data()


@ROUTED_REQUESTS
@pytest.mark.usefixtures("default_cost_model")
def test_the_fast_path_answers_as_flask_does(make_app, url, headers, body):
    fast = make_app().test_client()
    flask_only = make_app(PREDICT_FAST_PATH=0).test_client()
    assert _answer(fast, url, headers, body) == _answer(flask_only, url, headers, body)


@pytest.mark.parametrize(
    "url, endpoint, doc",
    [("/v1/predict", "predict.predict", {"texts": TEXTS}), (INFER, "v2.infer", v2_doc(TEXTS))],
)
def test_the_fast_path_skips_the_flask_view_and_flask_still_serves_when_off(make_app, url, endpoint, doc):
    calls = []
    for enabled, expected_view_calls in ((1, 0), (0, 1)):
        app = make_app(PREDICT_FAST_PATH=enabled)
        assert isinstance(app.wsgi_app, PredictFastPath) == bool(enabled)
        view = app.view_functions[endpoint]
        app.view_functions[endpoint] = lambda view=view, **kw: calls.append(1) or view(**kw)
        calls.clear()
        response = app.test_client().post(url, json=doc)
        assert response.status_code == 200, response.get_data()
        assert len(calls) == expected_view_calls


def test_a_failure_while_scoring_is_answered_by_flask_without_scoring_again(make_app):
    app = make_app()
    plane = app.extensions["sentiment"]
    calls = []

    def full(texts, deadline, arrival=None):
        calls.append(list(texts))
        if arrival is not None:
            arrival.close()
        raise QueueFull("full")

    plane.predict = full
    response = app.test_client().post("/v1/predict", json={"text": "queued behind too many"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["error"]["code"] == "overloaded"
    assert calls == [["queued behind too many"]]  # scored (attempted) once, not again by Flask


def test_fast_path_requests_are_counted_in_the_same_series(make_app):
    client = make_app().test_client()
    for text in TEXTS:
        assert client.post("/v1/predict", json={"text": text}).status_code == 200
    assert client.post("/v1/predict", data="{", content_type="application/json").status_code == 400
    assert client.post(INFER, json=v2_doc(TEXTS)).status_code == 200
    exposition = client.get("/metrics").get_data(as_text=True)
    labels = 'method="POST",route="/v1/predict",status="{}"'
    assert f"sentiment_http_requests_total{{{labels.format(200)}}} {float(len(TEXTS))}" in exposition
    assert f"sentiment_http_requests_total{{{labels.format(400)}}} 1.0" in exposition
    assert f"sentiment_http_request_duration_seconds_count{{{labels.format(200)}}} {float(len(TEXTS))}" in (
        exposition
    )
    assert (
        'sentiment_http_requests_total{method="POST",route="/v2/models/<name>/infer",status="200"} 1.0'
        in exposition
    )


def test_a_body_shorter_than_declared_is_refused_as_through_flask(make_app):
    answers = []
    for enabled in (1, 0):
        app = make_app(PREDICT_FAST_PATH=enabled)
        scored = []
        plane = app.extensions["sentiment"]
        real = plane.predict
        plane.predict = lambda texts, *a, real=real: scored.append(texts) or real(texts, *a)
        body = json.dumps({"text": "cut short"}).encode()
        for length in (str(len(body) + 50), "1_3", "+20"):
            response = app.test_client().post(
                "/v1/predict",
                data=body,
                content_type="application/json",
                environ_overrides={"CONTENT_LENGTH": length},
            )
            answers.append((enabled, length, response.status_code, response.get_data()))
        assert scored == [], scored  # nothing incomplete (or oddly framed) was scored
    fast, flask_only = answers[:3], answers[3:]
    assert [a[1:] for a in fast] == [a[1:] for a in flask_only]
    assert all(a[2] == 400 for a in answers)


def test_a_failed_request_is_timed_from_its_arrival_not_from_the_hand_over(make_app):
    app = make_app()
    plane = app.extensions["sentiment"]

    def slow_then_late(texts, deadline, arrival=None):
        if arrival is not None:
            arrival.close()
        time.sleep(0.2)
        raise DeadlineExceeded("late")

    plane.predict = slow_then_late
    client = app.test_client()
    assert client.post("/v1/predict", json={"text": "slow"}).status_code == 504
    exposition = client.get("/metrics").get_data(as_text=True)
    line = 'sentiment_http_request_duration_seconds_sum{method="POST",route="/v1/predict",status="504"} '
    seconds = float(next(x for x in exposition.splitlines() if x.startswith(line)).split()[-1])
    assert 0.2 <= seconds < 5
