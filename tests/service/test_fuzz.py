"""Hypothesis fuzzing of request bodies, content types, methods and paths: never a 5xx.

Every answer must be a JSON body (a binary V2 answer: a JSON header); a 200 must match the
OpenAPI schema, anything else must be a 4xx error body. The last-resort 500 handler must never
have fired.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from service.v2_codec import HEADER_LENGTH, encode_bytes_elements
from tests.fakes import add_fake_report
from tests.service.spec import validate

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: The POST routes taking a JSON body, with the schema of their 200 answer.
ROUTES = {
    "/v1/predict": "PredictResponse",
    "/v1/models/sentiment:predict": "TFPredictResponse",
    "/v1/explain": "ExplainResponse",
}
REPORT_FILES = "/v1/models/sentiment/report/"
V2_INFER = ["/v2/models/sentiment/infer", "/v2/models/sentiment/versions/1/infer"]
V2_GET = ["/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/sentiment", "/v2/models/sentiment/ready"]

texts = st.text(max_size=120)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | texts,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
    max_leaves=20,
)
# Documents close to valid ones reach the deeper validation and the model.
near_valid = st.one_of(
    st.fixed_dictionaries({"texts": st.lists(texts | json_values, max_size=6)}),
    st.fixed_dictionaries({"text": texts | json_values}),
    st.fixed_dictionaries(
        {"instances": st.lists(texts | st.fixed_dictionaries({"text": texts}), max_size=6)}
    ),
    st.dictionaries(
        st.sampled_from(["text", "texts", "instances", "signature_name", "x"]), json_values, max_size=3
    ),
    json_values,
)


def check(response, route: str) -> None:
    """Check one answer: never 5xx; JSON; schema-valid success or a JSON error body."""
    assert response.status_code < 500, response.get_data(as_text=True)
    body = response.get_json(silent=True)
    assert body is not None, response.get_data(as_text=True)
    if response.status_code == 200:
        validate(body, ROUTES[route])
    else:
        assert 400 <= response.status_code < 500
        validate(body, "Error")


@pytest.fixture
def fuzz_client(make_app, fake_registry):
    """Return a client of an app with small limits, so the limits are reachable by fuzzing."""
    add_fake_report(fake_registry)
    app = make_app(MAX_TEXTS_PER_REQUEST=4, MAX_TEXT_CHARS=80, MAX_BODY_BYTES=2000, EXPLAIN_MAX_TOKENS=8)
    yield app.test_client()
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert "sentiment_unhandled_errors_total 0.0" in metrics


@FUZZ
@given(doc=near_valid, route=st.sampled_from(sorted(ROUTES)))
def test_json_documents_never_cause_5xx(fuzz_client, doc, route):
    body = json.dumps(doc, allow_nan=True)
    check(fuzz_client.post(route, data=body, content_type="application/json"), route)


@FUZZ
@given(body=st.binary(max_size=300), route=st.sampled_from(sorted(ROUTES)))
def test_arbitrary_bytes_never_cause_5xx(fuzz_client, body, route):
    check(fuzz_client.post(route, data=body, content_type="application/json"), route)


@FUZZ
@given(
    body=st.one_of(st.binary(max_size=100), st.just(b'{"text": "fine"}')),
    content_type=st.one_of(
        st.none(),
        st.sampled_from(
            [
                "application/json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "application/problem+json",
                "application/json; charset=latin-1",
            ]
        ),
        st.text(max_size=30),
    ),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
    path=st.one_of(
        st.sampled_from(
            sorted(ROUTES)
            + ["/v1/models/sentiment", "/healthz", "/readyz", "/openapi.json", "/v1/models/x:predict"]
            + V2_INFER
            + V2_GET
            + ["/v2/models/sentiment/versions/2", "/v2/models/x/infer"]
            + ["/", "/static/app.js", "/v1/models/sentiment/report", "/v1/models/sentiment/report/roc.png"]
        ),
        st.text(alphabet=st.characters(codec="ascii", exclude_characters="?#"), max_size=30).map(
            lambda p: "/" + p
        ),
        st.text(alphabet=st.characters(codec="ascii", exclude_characters="?#"), max_size=30).map(
            lambda p: REPORT_FILES + p  # only the report's own PNG files may come back
        ),
    ),
)
def test_methods_paths_and_content_types_never_cause_5xx(fuzz_client, body, content_type, method, path):
    headers = {} if content_type is None else {"Content-Type": content_type}
    try:
        response = fuzz_client.open(path, method=method, data=body, headers=headers)
    except ValueError:  # the test client itself refuses headers with newlines: not a request at all
        return
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code == 200 and method in ("GET", "HEAD") and path.startswith(REPORT_FILES):
        assert response.mimetype == "image/png" and path.endswith("/roc.png"), path
    # Werkzeug redirects a path with doubled slashes ("//") to its single-slash form (308).
    redirect = response.status_code == 308 and response.headers.get("Location")
    if method != "HEAD" and path != "/metrics" and not redirect:
        assert response.get_json(silent=True) is not None or response.status_code == 200


# -- Open Inference Protocol (V2) infer bodies: JSON header, binary tensors, header lengths ----------
v2_inputs = st.fixed_dictionaries(
    {"name": st.sampled_from(["text", "text", "x"]), "datatype": st.sampled_from(["BYTES", "BYTES", "FP32"])},
    optional={
        "shape": st.lists(st.integers(-2, 6), max_size=2) | json_values,
        "data": st.lists(texts | json_values, max_size=6) | json_values,
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_size": st.integers(-3, 120) | json_values}
        ),
    },
)
v2_docs = st.one_of(
    st.fixed_dictionaries(
        {"inputs": st.lists(v2_inputs, max_size=2)},
        optional={
            "id": texts | json_values,
            "outputs": st.lists(
                st.fixed_dictionaries(
                    {"name": st.sampled_from(["probability", "label", "x"])},
                    optional={
                        "parameters": st.fixed_dictionaries({"binary_data": st.booleans() | json_values})
                    },
                ),
                max_size=3,
            ),
            "parameters": st.fixed_dictionaries(
                {}, optional={"binary_data_output": st.booleans() | json_values}
            ),
        },
    ),
    json_values,
)
v2_tails = st.one_of(
    st.just(b""),
    st.lists(st.text(max_size=30).map(str.encode) | st.binary(max_size=30), max_size=6).map(
        encode_bytes_elements
    ),
    st.binary(max_size=60),
)


@st.composite
def v2_random_bodies(draw) -> tuple[bytes, dict]:
    """Return a near-valid JSON header, any tail and any header length (mostly refused)."""
    head = json.dumps(draw(v2_docs), allow_nan=True).encode()
    header = draw(
        st.one_of(st.sampled_from(["exact", "none"]), st.text(max_size=8), st.integers(-5, 400).map(str))
    )
    if header == "none":
        return head + draw(v2_tails), {}
    return head + draw(v2_tails), {HEADER_LENGTH: str(len(head)) if header == "exact" else header}


@st.composite
def v2_wellformed_bodies(draw) -> tuple[bytes, dict]:
    """Return a well-formed request (JSON or binary texts and outputs), sometimes cut short or mislabelled."""
    items = draw(st.lists(texts, min_size=1, max_size=5))
    tensor: dict = {"name": "text", "datatype": "BYTES", "shape": [len(items)]}
    doc: dict = {"inputs": [tensor]}
    if draw(st.booleans()):
        doc["outputs"] = [
            {"name": name, "parameters": {"binary_data": draw(st.booleans())}}
            for name in draw(st.lists(st.sampled_from(["probability", "label"]), unique=True, min_size=1))
        ]
    doc["parameters"] = {"binary_data_output": draw(st.booleans())}
    if not draw(st.booleans()):
        tensor["data"] = items
        return json.dumps(doc).encode(), {}
    raw = encode_bytes_elements([t.encode("utf-8", "surrogatepass") for t in items])
    tensor["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps(doc).encode()
    body = head + raw
    length = len(head) + draw(st.sampled_from([0, 0, 0, -1, 1]))
    cut = draw(st.sampled_from([0, 0, 0, 1, 4, len(raw)]))
    return body[: len(body) - cut], {HEADER_LENGTH: str(length)}


def check_v2(response) -> None:
    """Check one V2 answer: never 5xx; a schema-valid answer (JSON or binary) or a V2 JSON error."""
    assert response.status_code < 500, response.get_data()[:300]
    if response.status_code != 200:
        assert 400 <= response.status_code < 500
        validate(response.get_json(), "V2Error")
        return
    body = response.get_data()
    length = int(response.headers.get(HEADER_LENGTH, len(body)))
    header = json.loads(body[:length])
    validate(header, "V2InferResponse")
    sizes = [o.get("parameters", {}).get("binary_data_size", 0) for o in header["outputs"]]
    assert length + sum(sizes) == len(body)


@FUZZ
@given(request=st.one_of(v2_random_bodies(), v2_wellformed_bodies()), route=st.sampled_from(V2_INFER))
def test_v2_infer_bodies_never_cause_5xx(fuzz_client, request, route):
    body, headers = request
    try:
        response = fuzz_client.post(route, data=body, headers=headers)
    except ValueError:  # the test client refuses header values with newlines: not a request
        return
    event(f"status {response.status_code}")  # --hypothesis-show-statistics: how many reach the model
    check_v2(response)


feedback_items = st.one_of(
    st.fixed_dictionaries(
        {
            "text": texts | json_values,
            "label": st.sampled_from(["positive", "negative", 0, 1, 2, True, "pos"]),
        },
        optional={"id": texts | json_values, "source": texts | json_values, "x": json_values},
    ),
    json_values,
)


@pytest.fixture
def feedback_client(make_app, tmp_path):
    """Return a client of an app with feedback on and small limits, and its feedback folder."""
    drop = tmp_path / "fuzz-drop"
    app = make_app(FEEDBACK_DIR=str(drop), MAX_TEXTS_PER_REQUEST=4, MAX_TEXT_CHARS=80, MAX_BODY_BYTES=2000)
    return app.test_client(), drop


@FUZZ
@given(doc=st.one_of(feedback_items, st.lists(feedback_items, max_size=6)))
def test_feedback_documents_never_cause_5xx_and_a_refusal_writes_nothing(feedback_client, doc):
    client, drop = feedback_client
    before = sum(len(p.read_bytes().splitlines()) for p in drop.rglob("*.jsonl"))
    response = client.post("/v1/feedback", data=json.dumps(doc), content_type="application/json")
    assert response.status_code < 500, response.get_data(as_text=True)
    written = sum(len(p.read_bytes().splitlines()) for p in drop.rglob("*.jsonl")) - before
    if response.status_code == 200:
        validate(response.get_json(), "FeedbackResponse")
        assert written == response.get_json()["accepted"]
    else:
        validate(response.get_json(), "Error")
        assert written == 0
