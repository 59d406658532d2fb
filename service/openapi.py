"""The OpenAPI 3.1 description of the API: ``openapi.json`` beside this file, with live limits.

The JSON file is the reviewed source of truth; only the size limits in its schemas are replaced
by the values this worker enforces, so clients can validate requests before sending them.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

from service.settings import Settings

SPEC_FILE = Path(__file__).with_name("openapi.json")


@functools.lru_cache(maxsize=1)
def base_spec() -> dict:
    """Return the spec as stored (read once per process)."""
    return json.loads(SPEC_FILE.read_text(encoding="utf-8"))


def spec_for(settings: Settings) -> dict:
    """Return the spec with the text, list and explanation limits of ``settings``."""
    spec = copy.deepcopy(base_spec())
    schemas = spec["components"]["schemas"]
    schemas["Text"]["maxLength"] = settings.max_text_chars
    schemas["PredictRequest"]["properties"]["texts"]["maxItems"] = settings.max_texts_per_request
    schemas["TFPredictRequest"]["properties"]["instances"]["maxItems"] = settings.max_texts_per_request
    schemas["V2RequestInput"]["properties"]["shape"]["items"]["maximum"] = settings.max_texts_per_request
    schemas["FeedbackRequest"]["oneOf"][1]["maxItems"] = settings.max_texts_per_request
    schemas["ExplainRequest"]["x-max-tokens"] = settings.explain_max_tokens
    return spec
