"""The OpenAPI description matches the routes, and the docs show every route and error code."""

from __future__ import annotations

import re
from pathlib import Path

from service.openapi import base_spec
from tests.service.spec import validate

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_spec_documents_exactly_the_routes(app):
    documented = set(base_spec()["paths"])
    served = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
    }
    assert served == documented


def test_docs_show_every_route_and_error_code():
    docs = (PROJECT_ROOT / "docs" / "service.md").read_text(encoding="utf-8")
    for path in base_spec()["paths"]:
        assert path.replace("{name}", "sentiment") in docs, path
    for code in [
        "invalid_json",
        "invalid_utf8",
        "invalid_request",
        "empty_texts",
        "empty_text",
        "invalid_text",
        "payload_too_large",
        "too_many_texts",
        "text_too_long",
        "normalization_too_large",
        "too_many_tokens",
        "report_not_found",
        "unsupported_media_type",
        "model_not_found",
        "not_found",
        "method_not_allowed",
        "overloaded",
        "model_unavailable",
        "deadline_exceeded",
        "not_ready",
        "shutting_down",
        "inference_failed",
        "internal_error",
        "invalid_label",
        "unauthorized",
        "feedback_disabled",
        "feedback_unavailable",
    ]:
        assert f"`{code}`" in docs, code


def test_spec_is_served_with_live_limits(make_app):
    client = make_app(MAX_TEXTS_PER_REQUEST=7, MAX_TEXT_CHARS=99, EXPLAIN_MAX_TOKENS=33).test_client()
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    schemas = spec["components"]["schemas"]
    assert schemas["PredictRequest"]["properties"]["texts"]["maxItems"] == 7
    assert schemas["TFPredictRequest"]["properties"]["instances"]["maxItems"] == 7
    assert schemas["Text"]["maxLength"] == 99
    assert schemas["ExplainRequest"]["x-max-tokens"] == 33
    assert schemas["FeedbackRequest"]["oneOf"][1]["maxItems"] == 7
    validate({"texts": ["ok"] * 7}, "PredictRequest", spec)


def test_request_examples_in_the_spec_are_valid():
    spec = base_spec()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    for example in body["examples"].values():
        validate(example["value"], "PredictRequest")
    tf_body = spec["paths"]["/v1/models/{name}:predict"]["post"]["requestBody"]["content"]["application/json"]
    validate(tf_body["example"], "TFPredictRequest")
    explain = spec["paths"]["/v1/explain"]["post"]
    validate(explain["requestBody"]["content"]["application/json"]["example"], "ExplainRequest")
    validate(explain["responses"]["200"]["content"]["application/json"]["example"], "ExplainResponse")


def test_v2_examples_in_the_spec_are_valid():
    spec = base_spec()
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        infer = spec["paths"][path]["post"]
        validate(infer["requestBody"]["content"]["application/json"]["example"], "V2InferRequest")
        validate(infer["responses"]["200"]["content"]["application/json"]["example"], "V2InferResponse")
    metadata = spec["paths"]["/v2/models/{name}"]["get"]["responses"]["200"]["content"]["application/json"]
    validate(metadata["example"], "V2ModelMetadata")
    server = spec["paths"]["/v2"]["get"]["responses"]["200"]["content"]["application/json"]
    validate(server["example"], "V2ServerMetadata")


def test_feedback_examples_in_the_spec_are_valid_and_accepted(make_app, tmp_path):
    spec = base_spec()
    operation = spec["paths"]["/v1/feedback"]["post"]
    client = make_app(FEEDBACK_DIR=str(tmp_path / "drop")).test_client()
    for example in operation["requestBody"]["content"]["application/json"]["examples"].values():
        validate(example["value"], "FeedbackRequest")
        answer = client.post("/v1/feedback", json=example["value"])
        assert answer.status_code == 200
        validate(answer.get_json(), "FeedbackResponse")
    validate(operation["responses"]["200"]["content"]["application/json"]["example"], "FeedbackResponse")
