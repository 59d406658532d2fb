"""The WSGI fast path of ``POST /v1/predict`` answers exactly as the Flask view does, for less CPU."""

from __future__ import annotations

import json

import pytest

from service.batcher import QueueFull
from service.fastpath import PredictFastPath

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


def _answer(client, headers: dict, body) -> tuple[int, str | None, str | None, dict]:
    response = client.post("/v1/predict", headers=headers, data=body)
    return (
        response.status_code,
        response.content_type,
        response.headers.get("Retry-After"),
        response.get_json(),
    )


@pytest.mark.parametrize("headers, body", REQUESTS)
def test_the_fast_path_answers_as_flask_does(make_app, headers, body):
    fast = make_app().test_client()
    flask_only = make_app(PREDICT_FAST_PATH=0).test_client()
    assert _answer(fast, headers, body) == _answer(flask_only, headers, body)


def test_the_fast_path_skips_the_flask_view_and_flask_still_serves_when_off(make_app):
    calls = []
    for enabled, expected_view_calls in ((1, 0), (0, 1)):
        app = make_app(PREDICT_FAST_PATH=enabled)
        assert isinstance(app.wsgi_app, PredictFastPath) == bool(enabled)
        view = app.view_functions["predict.predict"]
        app.view_functions["predict.predict"] = lambda view=view: calls.append(1) or view()
        calls.clear()
        response = app.test_client().post("/v1/predict", json={"texts": TEXTS})
        assert response.status_code == 200 and len(response.get_json()["predictions"]) == len(TEXTS)
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
    exposition = client.get("/metrics").get_data(as_text=True)
    labels = 'method="POST",route="/v1/predict",status="{}"'
    assert f"sentiment_http_requests_total{{{labels.format(200)}}} {float(len(TEXTS))}" in exposition
    assert f"sentiment_http_requests_total{{{labels.format(400)}}} 1.0" in exposition
    assert f"sentiment_http_request_duration_seconds_count{{{labels.format(200)}}} {float(len(TEXTS))}" in (
        exposition
    )
