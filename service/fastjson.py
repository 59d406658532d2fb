"""orjson behind Flask's JSON interface: the predict path spends its CPU on the model, not on JSON.

``jsonify`` and ``request.get_json`` go through ``app.json`` (a provider); this one serialises
with orjson, several times faster than the standard library, straight to bytes. Key order is
insertion order (as with ``sort_keys = False``); floats keep their shortest round-trip form.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import JSONProvider

#: numpy scalars/arrays serialise as numbers/lists; non-string keys are turned into strings.
DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _fallback(obj: Any) -> Any:
    """Serialise what orjson does not know natively (sets, objects with ``__html__``...)."""
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "__html__"):
        return str(obj.__html__())
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps_bytes(obj: Any) -> bytes:
    """Return ``obj`` as compact UTF-8 JSON."""
    return orjson.dumps(obj, default=_fallback, option=DUMP_OPTIONS)


class OrjsonProvider(JSONProvider):
    """Flask JSON provider backed by orjson."""

    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Serialise to a string (Flask's interface; responses use :meth:`response`)."""
        return dumps_bytes(obj).decode("utf-8")

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse a JSON document."""
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """Serialise the ``jsonify`` arguments straight into a response body (no str round trip)."""
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(dumps_bytes(obj), mimetype=self.mimetype)
