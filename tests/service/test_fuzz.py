"""Hypothesis fuzzing of request bodies, content types, methods and paths: never a 5xx.

Every answer must be a JSON body; a 200 must match the OpenAPI schema, anything else must be a
4xx error body. The last-resort 500 handler must never have fired.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
