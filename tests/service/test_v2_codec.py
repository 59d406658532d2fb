"""The V2 tensor codec on its own: requests built and responses read by tritonclient, and every refusal."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import tritonclient.http as triton
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import ApiError, InvalidRequest, PayloadTooLarge
from service.v2_codec import (
    HEADER_LENGTH,
    RequestedOutput,
    decode_bytes_elements,
    encode_bytes_elements,
    encode_infer_response,
    parse_infer_request,
)
from service.validation import Limits

LIMITS = Limits(max_texts=8, max_text_chars=50)
TEXTS = ["A wonderful, moving film.", "Dull and far too long.", "café ☕ naïve"]
BOTH_JSON = (RequestedOutput("probability", False), RequestedOutput("label", False))


def triton_body(texts: list[str], *, binary: bool = True, outputs=None, request_id: str = "", **kw):
    """Return (body, header length or None) exactly as tritonclient's HTTP client would send them."""
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_), binary_data=binary)
    body, json_size = triton.InferenceServerClient.generate_request_body(
        [tensor], outputs=outputs, request_id=request_id, **kw
    )
    return body, json_size


def binary_request(doc: dict, binary: bytes) -> tuple[bytes, str]:
    """Return a body of a JSON header then ``binary``, and its header length."""
    header = json.dumps(doc).encode()
    return header + binary, str(len(header))


def text_input(**fields) -> dict:
    return {"name": "text", "datatype": "BYTES", "shape": [2], **fields}


# -- requests from tritonclient ------------------------------------------------------------------
def test_binary_request_from_tritonclient():
    body, json_size = triton_body(TEXTS, request_id="r-1")
    assert json_size is not None  # really the binary extension
    parsed = parse_infer_request(body, str(json_size), LIMITS)
    assert parsed.texts == TEXTS
    assert parsed.id == "r-1"
    # No outputs named: tritonclient asks for every output as binary data.
    assert parsed.outputs == (RequestedOutput("probability", True), RequestedOutput("label", True))


def test_json_request_from_tritonclient_with_requested_outputs():
    outputs = [triton.InferRequestedOutput("label", binary_data=False)]
    body, json_size = triton_body(TEXTS, binary=False, outputs=outputs)
    assert json_size is None
    parsed = parse_infer_request(body, None, LIMITS)
    assert parsed.texts == TEXTS and parsed.id is None
    assert parsed.outputs == (RequestedOutput("label", False),)


def test_per_output_binary_flag_overrides_the_request_default():
    doc = {
        "inputs": [text_input(shape=[1], data=["x"])],
        "outputs": [{"name": "label"}, {"name": "probability", "parameters": {"binary_data": False}}],
        "parameters": {"binary_data_output": True},
    }
    parsed = parse_infer_request(json.dumps(doc).encode(), None, LIMITS)
    assert parsed.outputs == (RequestedOutput("label", True), RequestedOutput("probability", False))


def test_nested_json_data_is_read_in_row_major_order_and_unknown_parameters_are_ignored():
    doc = {
        "inputs": [text_input(shape=[3], data=[["a b"], ["c", ["d e"]]], parameters={"content_type": "str"})],
        "parameters": {"priority": 3},
    }
    assert parse_infer_request(json.dumps(doc).encode(), None, LIMITS).texts == ["a b", "c", "d e"]


def test_header_length_equal_to_the_body_means_no_binary_section():
    body = json.dumps({"inputs": [text_input(data=["x", "y"])]}).encode()
    assert parse_infer_request(body, str(len(body)), LIMITS).texts == ["x", "y"]


# -- responses read by tritonclient ------------------------------------------------------------
@pytest.mark.parametrize("binary", [False, True])
def test_response_is_read_by_tritonclient(binary: bool):
    probabilities = [0.25, 0.9, 1e-7]
    labels = ["negative", "positive", "negative"]
    outputs = (RequestedOutput("label", binary), RequestedOutput("probability", binary))
    body, header_length = encode_infer_response(
        model_name="sentiment",
        model_version=4,
        request_id="abc",
        outputs=outputs,
        probabilities=probabilities,
        labels=labels,
    )
    assert (header_length is not None) == binary
    result = triton.InferenceServerClient.parse_response_body(body, header_length=header_length)
    response = result.get_response()
    assert response["model_name"] == "sentiment" and response["model_version"] == "4"
    assert response["id"] == "abc"
    assert [o["name"] for o in response["outputs"]] == ["label", "probability"]
    assert result.as_numpy("probability").dtype == np.float32
    np.testing.assert_array_equal(result.as_numpy("probability"), np.float32(probabilities))
    assert [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")] == labels


def test_response_without_id_omits_it_and_mixes_json_and_binary_outputs():
    body, header_length = encode_infer_response(
        model_name="sentiment",
        model_version=1,
        request_id=None,
        outputs=(RequestedOutput("probability", True), RequestedOutput("label", False)),
        probabilities=[0.5],
        labels=["positive"],
    )
    header = json.loads(body[:header_length])
    assert "id" not in header
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 4}
    assert header["outputs"][1]["data"] == ["positive"]
    assert struct.unpack("<f", body[header_length:]) == (0.5,)


# -- BYTES elements ----------------------------------------------------------------------------
@given(st.lists(st.binary(max_size=40), max_size=10))
def test_bytes_elements_round_trip_and_match_tritonclient(elements):
    raw = encode_bytes_elements(elements)
    assert decode_bytes_elements(raw, len(elements)) == elements
    if elements:
        reference = triton.InferInput("t", [len(elements)], "BYTES")
        reference.set_data_from_numpy(np.array(elements, dtype=np.object_))
        assert reference._get_binary_data() == raw  # the bytes tritonclient itself would send


# -- refusals ----------------------------------------------------------------------------------
GOOD_BINARY = encode_bytes_elements([b"first text", b"second"])


def binary_case(raw: bytes, size: int | None = None, **input_fields) -> tuple[bytes, str]:
    parameters = {"binary_data_size": len(raw) if size is None else size}
    return binary_request({"inputs": [text_input(parameters=parameters, **input_fields)]}, raw)


def json_case(doc) -> tuple[bytes, None]:
    return json.dumps(doc).encode(), None


BAD = [
    # (id, (body, header length), error type, words in the message)
    ("not json", (b"{oops", None), InvalidRequest, "not valid JSON"),
    ("not utf-8 json", (b'{"inputs": "\xff"}', None), InvalidRequest, "UTF-8"),
    ("not an object", json_case([1]), InvalidRequest, "JSON object"),
    ("missing input", json_case({"id": "x"}), InvalidRequest, '"inputs"'),
    ("empty inputs", json_case({"inputs": []}), InvalidRequest, '"inputs"'),
    ("input not an object", json_case({"inputs": ["text"]}), InvalidRequest, "inputs[0]"),
    (
        "unknown input",
        json_case({"inputs": [{**text_input(data=["a", "b"]), "name": "review"}]}),
        InvalidRequest,
        "unknown input 'review'",
    ),
    (
        "input twice",
        json_case({"inputs": [text_input(data=["a", "b"])] * 2}),
        InvalidRequest,
        "more than once",
    ),
    (
        "wrong datatype",
        json_case({"inputs": [text_input(datatype="FP32", data=[1.0, 2.0])]}),
        InvalidRequest,
        "datatype FP32",
    ),
    (
        "datatype missing",
        json_case({"inputs": [{"name": "text", "shape": [1], "data": ["a"]}]}),
        InvalidRequest,
        "datatype",
    ),
    (
        "rank 2 shape",
        json_case({"inputs": [text_input(shape=[1, 2], data=["a", "b"])]}),
        InvalidRequest,
        "shape [n]",
    ),
    (
        "negative shape",
        json_case({"inputs": [text_input(shape=[-1], data=["a"])]}),
        InvalidRequest,
        "shape [n]",
    ),
    (
        "boolean shape",
        json_case({"inputs": [text_input(shape=[True], data=["a"])]}),
        InvalidRequest,
        "shape [n]",
    ),
    (
        "huge shape",  # beyond 64 bits: JSON decodes it as a float
        json_case({"inputs": [text_input(shape=[10**30], data=["a"])]}),
        InvalidRequest,
        "shape [n]",
    ),
    (
        "uint64 shape",
        json_case({"inputs": [text_input(shape=[2**64 - 1], data=["a"])]}),
        PayloadTooLarge,
        "the limit is 8",
    ),
    (
        "shape over the limit",
        json_case({"inputs": [text_input(shape=[9], data=["a"] * 9)]}),
        PayloadTooLarge,
        "the limit is 8",
    ),
    (
        "fewer data than shape",
        json_case({"inputs": [text_input(shape=[3], data=["a", "b"])]}),
        InvalidRequest,
        "holds 2 elements",
    ),
    (
        "more data than shape",
        json_case({"inputs": [text_input(shape=[1], data=["a", "b"])]}),
        InvalidRequest,
        "more than 1",
    ),
    (
        "empty shape",
        json_case({"inputs": [text_input(shape=[0], data=[])]}),
        InvalidRequest,
        "must not be empty",
    ),
    ("no data at all", json_case({"inputs": [text_input()]}), InvalidRequest, 'no "data"'),
    ("number in data", json_case({"inputs": [text_input(data=["a", 3])]}), InvalidRequest, "element 1"),
    (
        "empty text",
        json_case({"inputs": [text_input(data=["a", " "])]}),
        InvalidRequest,
        "empty or only whitespace",
    ),
    (
        "text too long",
        json_case({"inputs": [text_input(data=["a", "x" * 51])]}),
        PayloadTooLarge,
        "the limit is 50",
    ),
    (
        "id not a string",
        json_case({"id": 7, "inputs": [text_input(data=["a", "b"])]}),
        InvalidRequest,
        '"id"',
    ),
    (
        "parameters not an object",
        json_case({"parameters": [], "inputs": [text_input(data=["a", "b"])]}),
        InvalidRequest,
        "parameters",
    ),
    (
        "binary_data_output not a boolean",
        json_case({"parameters": {"binary_data_output": "yes"}, "inputs": [text_input(data=["a", "b"])]}),
        InvalidRequest,
        "binary_data_output",
    ),
    (
        "unknown output",
        json_case({"inputs": [text_input(data=["a", "b"])], "outputs": [{"name": "logit"}]}),
        InvalidRequest,
        "unknown output 'logit'",
    ),
    (
        "output twice",
        json_case({"inputs": [text_input(data=["a", "b"])], "outputs": [{"name": "label"}] * 2}),
        InvalidRequest,
        "more than once",
    ),
    (
        "outputs not a list",
        json_case({"inputs": [text_input(data=["a", "b"])], "outputs": "label"}),
        InvalidRequest,
        '"outputs"',
    ),
    (
        "output without a name",
        json_case({"inputs": [text_input(data=["a", "b"])], "outputs": [{}]}),
        InvalidRequest,
        "outputs[0]",
    ),
    (
        "binary_data not a boolean",
        json_case(
            {
                "inputs": [text_input(data=["a", "b"])],
                "outputs": [{"name": "label", "parameters": {"binary_data": 1}}],
            }
        ),
        InvalidRequest,
        "binary_data",
    ),
    # binary tensor data extension
    (
        "truncated binary section",
        (binary_case(GOOD_BINARY, size=len(GOOD_BINARY))[0][:-3], binary_case(GOOD_BINARY)[1]),
        InvalidRequest,
        "truncated",
    ),
    (
        "binary longer than declared",
        binary_case(GOOD_BINARY, size=len(GOOD_BINARY) - 1),
        InvalidRequest,
        "longer than declared",
    ),
    ("element truncated", binary_case(GOOD_BINARY[:-3]), InvalidRequest, "truncated: element 1"),
    ("length prefix truncated", binary_case(GOOD_BINARY[:16]), InvalidRequest, "has no 4-byte length"),
    (
        "element claims 4 GiB",
        binary_case(struct.pack("<I", 2**32 - 1) + b"abc" + GOOD_BINARY),
        InvalidRequest,
        "truncated: element 0",
    ),
    (
        "extra elements",
        binary_case(GOOD_BINARY + encode_bytes_elements([b"third"])),
        InvalidRequest,
        "remain after the 2 elements",
    ),
    (
        "non-utf-8 element",
        binary_case(encode_bytes_elements([b"ok", b"caf\xe9"])),
        InvalidRequest,
        "element 1 is not valid UTF-8",
    ),
    ("negative binary_data_size", binary_case(GOOD_BINARY, size=-4), InvalidRequest, "non-negative"),
    (
        "binary_data_size not a number",
        binary_request({"inputs": [text_input(parameters={"binary_data_size": "22"})]}, GOOD_BINARY),
        InvalidRequest,
        "non-negative integer",
    ),
    ("data and binary", binary_case(GOOD_BINARY, data=["a", "b"]), InvalidRequest, "both"),
    ("binary without header", (binary_case(GOOD_BINARY)[0], None), InvalidRequest, "not valid"),
    (
        "binary size without header",
        (json.dumps({"inputs": [text_input(parameters={"binary_data_size": 0})]}).encode(), None),
        InvalidRequest,
        "no Inference-Header-Content-Length",
    ),
    (
        "bytes after json, none declared",
        (
            json.dumps({"inputs": [text_input(data=["a", "b"])]}).encode() + b"tail",
            str(len(json.dumps({"inputs": [text_input(data=["a", "b"])]}))),
        ),
        InvalidRequest,
        "no input declares",
    ),
    ("header longer than body", (b'{"inputs": []}', "15"), InvalidRequest, "only 14 bytes"),
    ("negative header length", (b"{}", "-1"), InvalidRequest, HEADER_LENGTH),
    ("huge header length", (b"{}", "9" * 25), InvalidRequest, HEADER_LENGTH),
    ("non-numeric header length", (b"{}", "twelve"), InvalidRequest, HEADER_LENGTH),
    ("unicode digit header length", (b"{}", "\u00b2"), InvalidRequest, HEADER_LENGTH),
    ("header length splits the json", (binary_case(GOOD_BINARY)[0], "10"), InvalidRequest, "not valid JSON"),
    ("zero header length", (binary_case(GOOD_BINARY)[0], "0"), InvalidRequest, "not valid JSON"),
]


@pytest.mark.parametrize("case,error,words", [(c, e, w) for _, c, e, w in BAD], ids=[b[0] for b in BAD])
def test_bad_requests_are_refused_precisely(case, error, words):
    body, header_length = case
    with pytest.raises(error) as caught:
        parse_infer_request(body, header_length, LIMITS)
    assert words in caught.value.message
    assert len(caught.value.message) < 400  # never echoes a whole body back


# -- fuzzing: any body, any header length, only precise refusals -------------------------------
near_valid_inputs = st.fixed_dictionaries(
    {"name": st.sampled_from(["text", "TEXT", "x"]), "datatype": st.sampled_from(["BYTES", "FP32", "bytes"])},
    optional={
        "shape": st.lists(st.integers(-3, 12), max_size=2) | st.none() | st.just([1.5]),
        "data": st.lists(
            st.text(max_size=8) | st.integers() | st.lists(st.text(max_size=4), max_size=3), max_size=10
        ),
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_size": st.integers(-5, 80) | st.text(max_size=3)}
        ),
    },
)
near_valid_docs = st.fixed_dictionaries(
    {"inputs": st.lists(near_valid_inputs, max_size=2) | st.none()},
    optional={
        "id": st.text(max_size=5) | st.integers(),
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["probability", "label", "logit"])},
                optional={
                    "parameters": st.fixed_dictionaries({"binary_data": st.booleans() | st.integers()})
                },
            ),
            max_size=3,
        ),
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": st.booleans() | st.none()}),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    doc=near_valid_docs,
    tail=st.one_of(
        st.lists(st.binary(max_size=12), max_size=10).map(encode_bytes_elements),
        st.binary(max_size=40),
    ),
    header=st.sampled_from(["exact", "none", "short", "long", "junk"]),
)
def test_fuzzed_requests_parse_or_fail_with_an_api_error(doc, tail, header):
    head = json.dumps(doc).encode()
    header_length = {
        "exact": str(len(head)),
        "none": None,
        "short": str(max(0, len(head) - 3)),
        "long": str(len(head) + len(tail) + 1),
        "junk": "1e3",
    }[header]
    try:
        parsed = parse_infer_request(head + tail, header_length, LIMITS)
    except ApiError as exc:
        assert 400 <= exc.status < 500 and exc.message
        return
    assert 1 <= len(parsed.texts) <= LIMITS.max_texts
    assert all(isinstance(t, str) and t.strip() for t in parsed.texts)
    assert parsed.outputs and {o.name for o in parsed.outputs} <= {"probability", "label"}
