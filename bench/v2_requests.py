"""Open Inference Protocol (KServe V2) requests in binary mode, for load generators and checks.

``binary_infer_request(texts)`` returns the body and headers that tritonclient's HTTP client sends
by default (the ``text`` tensor as binary data, every output asked for as binary data), built
once so a load generator spends no CPU on encoding while it measures::

    body, headers = binary_infer_request(["A wonderful, moving film."])
    conn.request("POST", infer_path("sentiment"), body, headers)
    response = conn.getresponse()
    outputs = read_binary_response(response.read(), dict(response.getheaders()))
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

from service.v2_codec import (
    BINARY_TYPE,
    HEADER_LENGTH,
    INPUT_DATATYPE,
    INPUT_NAME,
    decode_bytes_elements,
    encode_bytes_elements,
)

#: The infer URL of the production version; ``infer_path`` fills it in.
V2_INFER_PATH = "/v2/models/{model}/infer"
V2_VERSIONED_INFER_PATH = "/v2/models/{model}/versions/{version}/infer"


def infer_path(model: str = "sentiment", version: int | None = None) -> str:
    """Return the V2 infer path of ``model`` (production version unless ``version`` is given)."""
    if version is None:
        return V2_INFER_PATH.format(model=model)
    return V2_VERSIONED_INFER_PATH.format(model=model, version=version)


def binary_infer_request(
    texts: Sequence[str], *, request_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """Return (body, headers) of a binary-mode infer request scoring ``texts``, all outputs binary."""
    tensor = encode_bytes_elements([t.encode("utf-8") for t in texts])
    doc: dict = {}
    if request_id is not None:
        doc["id"] = request_id
    doc["inputs"] = [
        {
            "name": INPUT_NAME,
            "datatype": INPUT_DATATYPE,
            "shape": [len(texts)],
            "parameters": {"binary_data_size": len(tensor)},
        }
    ]
    doc["parameters"] = {"binary_data_output": True}
    header = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    headers = {"Content-Type": BINARY_TYPE, HEADER_LENGTH: str(len(header))}
    return header + tensor, headers


def read_binary_response(body: bytes, headers: Mapping[str, str]) -> dict:
    """Return a binary-mode (or JSON) infer answer as ``{"model_version", "probability", "label"}``.

    Raises when the body does not match its JSON header (a check for load generators).
    """
    lookup = {k.lower(): v for k, v in headers.items()}
    length = int(lookup.get(HEADER_LENGTH.lower(), len(body)))
    doc = json.loads(body[:length])
    offset = length
    result: dict = {"model_version": doc["model_version"]}
    for output in doc["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:
            result[output["name"]] = output["data"]
            continue
        raw = body[offset : offset + size]
        offset += size
        if output["datatype"] == "FP32":
            result[output["name"]] = np.frombuffer(raw, dtype="<f4").tolist()
        else:
            result[output["name"]] = [
                e.decode("utf-8") for e in decode_bytes_elements(raw, output["shape"][0])
            ]
    if offset != len(body):
        raise ValueError(f"the answer has {len(body) - offset} bytes after its declared outputs")
    return result
