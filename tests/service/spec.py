"""Check JSON documents against the schemas of the service's OpenAPI description."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from service.openapi import base_spec


def validate(doc: Any, schema: str, spec: dict | None = None) -> None:
    """Raise jsonschema.ValidationError unless ``doc`` matches ``components/schemas/<schema>``."""
    spec = spec or base_spec()
    root = {"$ref": f"#/components/schemas/{schema}", "components": spec["components"]}
    Draft202012Validator(root).validate(doc)
