"""The asyncio front (service.asgi) answers as the Flask views do; the real worker is in test_gunicorn."""

from __future__ import annotations

import asyncio
import json

import pytest

from service.asgi import AsgiFront
from service.batcher import QueueFull
from service.v2_codec import HEADER_LENGTH
from tests.service.test_fastpath import INFER, ROUTED_REQUESTS, TEXTS
from tests.service.test_v2 import v2_doc

KEPT = ("content-type", "retry-after", HEADER_LENGTH.lower())


def _scope(method: str, path: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _call(
    app, method: str, path: str, headers: list, body: bytes, *, leave: bool = False
) -> tuple | None:
    """Send one request through an ASGI app; return (status, kept headers, body), or None if unanswered."""
    scope = {
        **_scope(method, path),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    }
    incoming = [{"type": "http.disconnect"}] if leave else [{"type": "http.request", "body": body}]
    sent: list[dict] = []

    async def receive() -> dict:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()  # a client that stays connected sends nothing more
        return {}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    if not sent:
        return None
    start = sent[0]
    kept = {k.decode(): v.decode() for k, v in start["headers"] if k.decode().lower() in KEPT}
    return start["status"], kept, b"".join(m.get("body", b"") for m in sent[1:])


def call(app, method: str, path: str, headers: dict | None = None, body=b"", **kw) -> tuple | None:
    body = body.encode() if isinstance(body, str) else body
    headers = {**(headers or {}), "Content-Length": str(len(body))} if method == "POST" else headers or {}
    return asyncio.run(_call(app, method, path, list(headers.items()), body, **kw))


def flask_answer(client, url: str, headers: dict, body) -> tuple:
    response = client.post(url, headers=headers, data=body)
    kept = {k.lower(): v for k, v in response.headers.items() if k.lower() in KEPT}
    return response.status_code, kept, response.get_data()


@ROUTED_REQUESTS
@pytest.mark.usefixtures("default_cost_model")
def test_the_asgi_front_answers_as_flask_does(make_app, url, headers, body):
    front = AsgiFront(make_app(), threads=2)
    flask_only = make_app(PREDICT_FAST_PATH=0).test_client()
    assert call(front, "POST", url, headers, body) == flask_answer(flask_only, url, headers, body)


@pytest.mark.parametrize(
    "url, endpoint, doc",
    [("/v1/predict", "predict.predict", {"texts": TEXTS}), (INFER, "v2.infer", v2_doc(TEXTS))],
)
def test_inference_skips_flask_on_the_loop_and_everything_else_reaches_flask(make_app, url, endpoint, doc):
    calls = []
    for enabled, expected_view_calls in ((1, 0), (0, 1)):
        app = make_app(PREDICT_FAST_PATH=enabled)
        view = app.view_functions[endpoint]
        app.view_functions[endpoint] = lambda view=view, **kw: calls.append(1) or view(**kw)
        front = AsgiFront(app, threads=2)
        calls.clear()
        status, _, body = call(front, "POST", url, {"Content-Type": "application/json"}, json.dumps(doc))
        assert status == 200, body
        assert len(calls) == expected_view_calls
        status, kept, body = call(front, "GET", "/v1/models/sentiment")
        assert status == 200 and json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"


def test_a_failure_while_scoring_is_answered_by_flask_without_scoring_again(make_app):
    app = make_app()
    plane = app.extensions["sentiment"]
    attempts, threaded = [], []

    async def full(texts, deadline):
        attempts.append(list(texts))
        raise QueueFull("full")

    plane.predict_async = full
    plane.predict = lambda *a, **kw: threaded.append(a)
    status, kept, body = call(
        AsgiFront(app, threads=2),
        "POST",
        "/v1/predict",
        {"Content-Type": "application/json"},
        '{"text": "late"}',
    )
    assert (status, kept["retry-after"], json.loads(body)["error"]["code"]) == (503, "1", "overloaded")
    assert attempts == [["late"]] and threaded == []  # scored (attempted) once, not again by Flask


def test_requests_on_the_loop_are_counted_in_the_flask_series(make_app):
    app = make_app()
    front = AsgiFront(app, threads=2)
    json_type = {"Content-Type": "application/json"}
    for text in TEXTS:
        assert call(front, "POST", "/v1/predict", json_type, json.dumps({"text": text}))[0] == 200
    assert call(front, "POST", "/v1/predict", json_type, "{")[0] == 400
    exposition = app.test_client().get("/metrics").get_data(as_text=True)
    labels = 'method="POST",route="/v1/predict",status="{}"'
    assert f"sentiment_http_requests_total{{{labels.format(200)}}} {float(len(TEXTS))}" in exposition
    assert f"sentiment_http_requests_total{{{labels.format(400)}}} 1.0" in exposition
    assert f"sentiment_http_request_duration_seconds_count{{{labels.format(200)}}} {float(len(TEXTS))}" in (
        exposition
    )


def test_a_client_that_leaves_before_its_body_is_not_scored_or_answered(make_app):
    app = make_app()
    plane = app.extensions["sentiment"]
    scored = []

    async def record(texts, deadline):
        scored.append(texts)
        return []

    plane.predict_async = record
    body = json.dumps({"text": "never sent"})
    headers = {"Content-Type": "application/json"}
    assert call(AsgiFront(app, threads=2), "POST", "/v1/predict", headers, body, leave=True) is None
    assert scored == []


def test_repeated_framing_headers_are_left_to_flask(make_app):
    app = make_app()
    front = AsgiFront(app, threads=2)
    body = json.dumps({"text": "fine"}).encode()
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("content-type", "text/plain"),
    ]
    views = []
    view = app.view_functions["predict.predict"]
    app.view_functions["predict.predict"] = lambda: views.append(1) or view()
    status, _, _ = asyncio.run(_call(front, "POST", "/v1/predict", headers, body))
    assert status == 415  # a2wsgi joins the two values; Flask reads "application/json,text/plain"
    assert views == [1]


def test_bodies_beyond_the_budget_go_to_flask_instead_of_the_loop(make_app):
    app = make_app(MAX_BODY_BYTES=1000)
    front = AsgiFront(app, threads=1)  # the loop may hold 1 x 1000 body bytes
    views = []
    view = app.view_functions["predict.predict"]
    app.view_functions["predict.predict"] = lambda: views.append(1) or view()
    stalled = b'{"text": "' + b"a" * 580 + b'"}'
    fits = b'{"text": "fine"}'
    second = b'{"text": "' + b"b" * 480 + b'"}'

    async def run() -> list:
        never = asyncio.Event()

        async def slow_receive() -> dict:  # declares 592 bytes, then sends nothing
            await never.wait()
            return {}

        async def ignore(message: dict) -> None:
            pass

        scope_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(stalled)).encode()),
        ]
        scope = {**_scope("POST", "/v1/predict"), "headers": scope_headers}
        holder = asyncio.ensure_future(front(scope, slow_receive, ignore))
        await asyncio.sleep(0.05)
        answers = []
        for body in (second, fits):
            headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
            answers.append((await _call(front, "POST", "/v1/predict", headers, body))[0])
        holder.cancel()
        return answers

    assert asyncio.run(run()) == [200, 200]
    assert views == [1]  # the one over the budget was read by Flask; the one that fits stayed on the loop
