"""Open Inference Protocol (KServe V2) tensors: parse an infer request, encode its response.

Pure functions over bytes and plain values (no Flask), so hypothesis can fuzz the parser and the
bench can build binary requests with the very encoding the server reads. Supports the JSON form
and the *binary tensor data* extension: a JSON header of ``Inference-Header-Content-Length``
bytes, then each binary tensor's raw bytes in the order of its tensor; a BYTES element is a
4-byte little-endian length followed by that many bytes.

The model has one input, ``text`` (BYTES, shape ``[n]``: one UTF-8 review per element), and two
outputs of shape ``[n]``: ``probability`` (FP32, calibrated P(positive)) and ``label`` (BYTES,
``positive``/``negative``). Every refusal is an ``InvalidRequest`` (400) or ``PayloadTooLarge``
(413) with a message naming the tensor and the element at fault.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from service.refusals import InvalidRequest, PayloadTooLarge
from service.validation import Limits, check_texts, decode_json

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_EXTENSION = "binary_tensor_data"
INPUT_NAME, INPUT_DATATYPE = "text", "BYTES"
#: Output name → datatype, in the order a response lists them when the request names none.
OUTPUTS = {"probability": "FP32", "label": "BYTES"}
JSON_TYPE, BINARY_TYPE = "application/json", "application/octet-stream"

_LENGTH = struct.Struct("<I")  # the length prefix of one BYTES element
_DIGITS = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True)
class RequestedOutput:
    """One output the client asked for, and whether it wants it as binary data."""

    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """A parsed, validated infer request: the texts to score and how to answer."""

    texts: list[str]
    outputs: tuple[RequestedOutput, ...]
    id: str | None = None


# -- requests ----------------------------------------------------------------------------------
def parse_infer_request(body: bytes, header_length: str | None, limits: Limits) -> InferRequest:
    """Parse an infer body (JSON, or JSON header + binary tensors); refuse anything malformed."""
    header, binary = split_body(body, header_length)
    doc = decode_json(header)
    if not isinstance(doc, dict):
        raise InvalidRequest("the inference request must be a JSON object")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest('"id" must be a string')
    parameters = _parameters(doc.get("parameters"), where="the request")
    binary_default = _flag(parameters, "binary_data_output", where="the request")
    text_input = _the_input(doc.get("inputs"))
    texts = _texts(text_input, binary, has_binary_section=header_length is not None, limits=limits)
    outputs = _requested_outputs(doc.get("outputs"), binary_default)
    return InferRequest(texts, outputs, request_id)


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """Split a body into its JSON header and its binary section by ``Inference-Header-Content-Length``."""
    if header_length is None:
        return body, b""
    value = header_length.strip()
    if not _DIGITS.fullmatch(value):
        raise InvalidRequest(
            f"{HEADER_LENGTH} must be a non-negative integer of at most 20 digits, not {value[:30]!r}"
        )
    length = int(value)
    if length > len(body):
        raise InvalidRequest(f"{HEADER_LENGTH} is {length} but the body has only {len(body)} bytes")
    return body[:length], body[length:]


def _the_input(inputs: Any) -> dict:
    """Return the one input tensor, ``text``; refuse missing, unknown or repeated inputs."""
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest(f'"inputs" must be a non-empty list holding the input "{INPUT_NAME}"')
    found = None
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise InvalidRequest(f'"inputs[{i}]" must be an object')
        name = tensor.get("name")
        if not isinstance(name, str):
            raise InvalidRequest(f'"inputs[{i}].name" must be a string')
        if name != INPUT_NAME:
            raise InvalidRequest(f"unknown input {name[:100]!r}; the model takes one input {INPUT_NAME!r}")
        if found is not None:
            raise InvalidRequest(f"input {INPUT_NAME!r} is given more than once")
        found = tensor
    return found


def _texts(tensor: dict, binary: bytes, *, has_binary_section: bool, limits: Limits) -> list[str]:
    """Return the validated texts of the ``text`` tensor, from its JSON data or the binary section."""
    where = f"input {INPUT_NAME!r}"
    datatype = tensor.get("datatype")
    if datatype != INPUT_DATATYPE:
        shown = datatype[:20] if isinstance(datatype, str) else _shown(datatype)
        raise InvalidRequest(f"{where} has datatype {shown}; it must be {INPUT_DATATYPE}")
    count = _count(tensor.get("shape"), limits, where=where)
    size = _parameters(tensor.get("parameters"), where=where).get("binary_data_size")
    if size is not None:
        if "data" in tensor:
            raise InvalidRequest(f'{where} has both "data" and binary_data_size; give one')
        if not has_binary_section:
            raise InvalidRequest(f"{where} declares binary_data_size but the request has no {HEADER_LENGTH}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidRequest(f"{where}: binary_data_size must be a non-negative integer")
        if size != len(binary):
            problem = "is truncated" if size > len(binary) else "is longer than declared"
            raise InvalidRequest(
                f"the binary section {problem}: {where} declares binary_data_size {size} but "
                f"{len(binary)} bytes follow the {HEADER_LENGTH} bytes of JSON"
            )
        texts = [_utf8(element, i) for i, element in enumerate(decode_bytes_elements(binary, count))]
    else:
        if binary:
            raise InvalidRequest(
                f"the body has {len(binary)} bytes after the JSON header but no input declares "
                "binary_data_size"
            )
        if "data" not in tensor:
            raise InvalidRequest(f'{where} has no "data" and no binary_data_size')
        texts = _flatten(tensor["data"], count, where=where)
    return check_texts(texts, limits, field=INPUT_NAME)


def _count(shape: Any, limits: Limits, *, where: str) -> int:
    """Return the element count of a ``[n]`` shape, refusing other shapes and counts over the limit."""
    if (
        not isinstance(shape, list)
        or len(shape) != 1
        or isinstance(shape[0], bool)
        or not isinstance(shape[0], int)
        or shape[0] < 0
    ):
        raise InvalidRequest(f"{where} must have shape [n] (one text per element), not {_shown(shape)}")
    count = shape[0]
    if count > limits.max_texts:
        raise PayloadTooLarge(
            f"{where} has shape [{count}]; the limit is {limits.max_texts} texts per request",
            code="too_many_texts",
        )
    return count


def _flatten(data: Any, count: int, *, where: str) -> list:
    """Return JSON tensor data in row-major order (nested lists flattened); it must hold ``count``."""
    flat: list = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
            continue
        flat.append(item)
        if len(flat) > count:
            break
    if len(flat) != count:
        held = f"more than {count}" if len(flat) > count else str(len(flat))
        noun = "element" if held == "1" else "elements"
        raise InvalidRequest(f"{where} has shape [{count}] but its data holds {held} {noun}")
    for i, element in enumerate(flat):
        if not isinstance(element, str):
            raise InvalidRequest(f'{where}: element {i} of "data" must be a string (BYTES in JSON)')
    return flat


def _shown(value: Any) -> str:
    """Return a decoded JSON value as short JSON text, for an error message."""
    try:
        return orjson.dumps(value).decode("utf-8")[:60]
    except TypeError:  # an integer beyond 64 bits (only callers building values by hand)
        return repr(value)[:60]


def _utf8(element: bytes, index: int) -> str:
    """Decode one BYTES element as UTF-8 text."""
    try:
        return element.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"input {INPUT_NAME!r}: element {index} is not valid UTF-8 (byte {exc.start})",
            code="invalid_utf8",
        ) from None


def _requested_outputs(outputs: Any, binary_default: bool) -> tuple[RequestedOutput, ...]:
    """Return the outputs to answer with: those named (in their order), or all when none are."""
    if outputs is None or outputs == []:
        return tuple(RequestedOutput(name, binary_default) for name in OUTPUTS)
    if not isinstance(outputs, list):
        raise InvalidRequest('"outputs" must be a list of {"name": ...} objects')
    chosen: list[RequestedOutput] = []
    for i, tensor in enumerate(outputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise InvalidRequest(f'"outputs[{i}]" must be an object with a string "name"')
        name = tensor["name"]
        if name not in OUTPUTS:
            raise InvalidRequest(f"unknown output {name[:100]!r}; the model's outputs are {list(OUTPUTS)}")
        if any(c.name == name for c in chosen):
            raise InvalidRequest(f"output {name!r} is requested more than once")
        parameters = _parameters(tensor.get("parameters"), where=f"output {name!r}")
        binary = _flag(parameters, "binary_data", where=f"output {name!r}", default=binary_default)
        chosen.append(RequestedOutput(name, binary))
    return tuple(chosen)


def _parameters(value: Any, *, where: str) -> dict:
    """Return a ``parameters`` object ({} when absent); unknown keys are ignored, as in the protocol."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f'"parameters" of {where} must be an object')
    return value


def _flag(parameters: dict, key: str, *, where: str, default: bool = False) -> bool:
    """Return a boolean parameter, refusing non-booleans."""
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise InvalidRequest(f"{key} of {where} must be true or false")
    return value


# -- BYTES elements ---------------------------------------------------------------------------
def encode_bytes_elements(elements: Sequence[bytes]) -> bytes:
    """Serialise BYTES elements: each as a 4-byte little-endian length, then its bytes."""
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)


def decode_bytes_elements(raw: bytes, count: int) -> list[bytes]:
    """Read exactly ``count`` length-prefixed elements filling ``raw``; refuse truncation or extra bytes."""
    elements = []
    offset = 0
    for i in range(count):
        if offset + _LENGTH.size > len(raw):
            raise InvalidRequest(
                f"input {INPUT_NAME!r}: the binary data is truncated: element {i} of {count} has no "
                f"4-byte length (only {len(raw) - offset} bytes left)"
            )
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if length > len(raw) - offset:
            raise InvalidRequest(
                f"input {INPUT_NAME!r}: the binary data is truncated: element {i} declares {length} bytes "
                f"but only {len(raw) - offset} are left"
            )
        elements.append(raw[offset : offset + length])
        offset += length
    if offset != len(raw):
        raise InvalidRequest(
            f"input {INPUT_NAME!r}: {len(raw) - offset} bytes of binary data remain after the {count} "
            "elements of its shape"
        )
    return elements


# -- responses ---------------------------------------------------------------------------------
def encode_infer_response(
    *,
    model_name: str,
    model_version: int,
    request_id: str | None,
    outputs: Sequence[RequestedOutput],
    probabilities: Sequence[float],
    labels: Sequence[str],
) -> tuple[bytes, int | None]:
    """Return the response body and, when any output is binary, its JSON header's length."""
    n = len(probabilities)
    values = {
        "probability": np.asarray(probabilities, dtype="<f4"),  # FP32, little-endian
        "label": list(labels),
    }
    tensors, blobs = [], []
    for output in outputs:
        tensor: dict[str, Any] = {"name": output.name, "datatype": OUTPUTS[output.name], "shape": [n]}
        value = values[output.name]
        if output.binary:
            blob = (
                value.tobytes()
                if output.name == "probability"
                else encode_bytes_elements([label.encode("utf-8") for label in value])
            )
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = value.tolist() if output.name == "probability" else value
        tensors.append(tensor)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": str(model_version)}
    if request_id is not None:
        doc["id"] = request_id
    doc["outputs"] = tensors
    header = orjson.dumps(doc)  # compact UTF-8, the fast serialiser of the predict path
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def model_metadata(name: str, versions: Sequence[int], platform: str) -> dict:
    """Return the model metadata document: versions, platform and the tensors' names, types, shapes."""
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": platform,
        "inputs": [{"name": INPUT_NAME, "datatype": INPUT_DATATYPE, "shape": [-1]}],
        "outputs": [{"name": o, "datatype": t, "shape": [-1]} for o, t in OUTPUTS.items()],
    }
