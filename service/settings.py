"""Typed service settings: one documented default per knob, read from ``SENTIMENT_*`` variables.

Only the standard library is imported, so ``gunicorn.conf.py`` and the docs test can read it too.
A Flask config key is the field name in upper case (``MAX_BATCH_SIZE``); its environment variable
adds the prefix (``SENTIMENT_MAX_BATCH_SIZE``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from inference import RUNTIMES

ENV_PREFIX = "SENTIMENT_"


class SettingsError(ValueError):
    """A setting has a value of the wrong type or outside its allowed range."""


def _doc(text: str, **extra: Any) -> dict:
    """Return field metadata holding the one-line meaning (used by the docs and their test)."""
    return {"doc": text, **extra}


@dataclass(frozen=True)
class Settings:
    """Everything one service worker needs to know; each field documents itself in ``metadata``."""

    model_dir: str = field(
        default="models", metadata=_doc("Registry root directory (holds `<name>/<version>/`).")
    )
    model_name: str = field(
        default="sentiment", metadata=_doc("Model served; also the name in the TF-Serving URLs.")
    )
    runtime: str = field(
        default="onnx",
        metadata=_doc("Inference runtime: `onnx` (no TensorFlow in the process) or `savedmodel`."),
    )
    max_batch_size: int = field(default=64, metadata=_doc("Most texts in one model call.", minimum=1))
    max_batch_tokens: int = field(
        default=32768,
        metadata=_doc(
            "Most padded tokens (texts x longest text) in one model call; a longer single text still runs.",
            minimum=1,
        ),
    )
    batch_window_texts: int = field(
        default=256,
        metadata=_doc(
            "Most queued texts the batcher takes at once, sorts by length and cuts into model calls "
            "(the cut minimises the cost model measured at warm-up).",
            minimum=1,
        ),
    )
    batch_timeout_micros: int = field(
        default=2000,
        metadata=_doc(
            "Longest a partial batch waits for requests already being parsed (an idle server never waits).",
            minimum=0,
        ),
    )
    max_queued_texts: int = field(
        default=1024,
        metadata=_doc("Texts allowed to wait in a worker's queue; beyond it requests get 503.", minimum=1),
    )
    deadline_ms: int = field(
        default=5000,
        metadata=_doc("Per-request deadline from arrival; a request past it gets 504.", minimum=1),
    )
    max_texts_per_request: int = field(
        default=64, metadata=_doc("Most texts in one request body; more gets 413.", minimum=1)
    )
    max_text_chars: int = field(
        default=20000,
        metadata=_doc(
            "Most characters (code points) in one text, also once Unicode NFKC normalisation has expanded "
            "it (one U+FDFA becomes 18); more gets 413.",
            minimum=1,
        ),
    )
    max_nfkc_rewritten_chars: int = field(
        default=200_000,
        metadata=_doc(
            "Most characters Unicode NFKC normalisation may produce by rewriting others, over all texts of "
            "one request (a full-width letter makes 1, U+FDFA makes 18): bounds the tokenizer's work per "
            "request; more gets 413.",
            minimum=0,
        ),
    )
    max_body_bytes: int = field(
        default=4 * 1024 * 1024, metadata=_doc("Largest request body in bytes; more gets 413.", minimum=1)
    )
    explain_max_tokens: int = field(
        default=256,
        metadata=_doc(
            "Most tokens `/v1/explain` explains (one model call scores tokens + 1 sequences); more gets 413.",
            minimum=1,
        ),
    )
    predict_fast_path: int = field(
        default=1,
        metadata=_doc(
            "1 = well-formed `POST /v1/predict` and `/v2/models/<name>/infer` requests skip Flask's "
            "per-request machinery (same answers, less CPU: on the event loop under the asgi worker, "
            "`service/fastpath.py` under gthread); 0 = all go through Flask (under asgi: each holds "
            "one of `SENTIMENT_THREADS`).",
            minimum=0,
        ),
    )
    intra_op_threads: int = field(
        default=1, metadata=_doc("Threads ONNX Runtime / TensorFlow use inside one model call.", minimum=1)
    )
    poll_interval_s: float = field(
        default=5.0,
        metadata=_doc(
            "Seconds between checks of the registry's production pointer (hot reload).", minimum=0.01
        ),
    )
    # -- closing the loop: feedback, traffic sample, drift metrics (service/feedback.py, traffic.py)
    feedback_dir: str = field(
        default="",
        metadata=_doc(
            "Drop folder `POST /v1/feedback` publishes JSONL files into (the retrain pipeline's "
            "`--new-data`); empty = feedback disabled."
        ),
    )
    feedback_token: str = field(
        default="",
        repr=False,  # a secret: never in logs or tracebacks
        metadata=_doc(
            "Shared secret `/v1/feedback` requires as `Authorization: Bearer <token>`; empty = none."
        ),
    )
    feedback_rotate_bytes: int = field(
        default=1024 * 1024,
        metadata=_doc("A worker's feedback file is published once it holds this many bytes.", minimum=1),
    )
    feedback_rotate_s: float = field(
        default=60.0,
        metadata=_doc("... or this many seconds after it was opened, whichever comes first.", minimum=0.01),
    )
    sample_rate: float = field(
        default=0.0,
        metadata=_doc(
            "Share of scored texts written to the traffic sample (0 = off, 1 = every text).", minimum=0
        ),
    )
    sample_dir: str = field(
        default="",
        metadata=_doc(
            "Folder of the traffic sample (JSONL: text, score, version, time); needed when sampling."
        ),
    )
    sample_rotate_bytes: int = field(
        default=1024 * 1024,
        metadata=_doc("A worker's sample file is published once it holds this many bytes.", minimum=1),
    )
    sample_rotate_s: float = field(
        default=300.0,
        metadata=_doc("... or this many seconds after it was opened, whichever comes first.", minimum=0.01),
    )
    sample_max_files: int = field(
        default=200,
        metadata=_doc("Published sample files kept; the oldest are deleted beyond it.", minimum=1),
    )
    sample_max_bytes: int = field(
        default=100 * 1024 * 1024,
        metadata=_doc("Bytes of published sample files kept; the oldest are deleted beyond it.", minimum=1),
    )
    drift_metrics: int = field(
        default=1,
        metadata=_doc(
            "1 = histograms of input length, OOV rate and score per text in `/metrics`; 0 = off.", minimum=0
        ),
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            minimum = f.metadata.get("minimum")
            if minimum is not None and not value >= minimum:
                raise SettingsError(f"{config_key(f.name)}={value!r} must be >= {minimum}")
            if isinstance(value, float) and not math.isfinite(value):
                raise SettingsError(f"{config_key(f.name)}={value!r} must be finite")
        if self.runtime not in RUNTIMES:
            raise SettingsError(f"RUNTIME={self.runtime!r}; choose one of {RUNTIMES}")
        if not self.model_name or "/" in self.model_name or self.model_name.startswith("."):
            raise SettingsError(f"MODEL_NAME={self.model_name!r} is not a valid model name")
        if not self.sample_rate <= 1:
            raise SettingsError(f"SAMPLE_RATE={self.sample_rate!r} must lie in [0, 1]")
        if self.sample_rate > 0 and not self.sample_dir:
            raise SettingsError(
                f"SAMPLE_RATE={self.sample_rate} needs SAMPLE_DIR: where should the sample go?"
            )
        for flag in ("drift_metrics", "predict_fast_path"):
            if getattr(self, flag) not in (0, 1):
                raise SettingsError(f"{config_key(flag)}={getattr(self, flag)!r} must be 0 or 1")
        if self.feedback_dir and self.sample_dir and _same_dir(self.feedback_dir, self.sample_dir):
            raise SettingsError(
                "FEEDBACK_DIR and SAMPLE_DIR must differ: unlabelled samples are not training data"
            )
        if self.max_texts_per_request > self.max_queued_texts:
            raise SettingsError(
                f"MAX_TEXTS_PER_REQUEST={self.max_texts_per_request} exceeds MAX_QUEUED_TEXTS="
                f"{self.max_queued_texts}: such a request could never be queued"
            )

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Settings:
        """Build settings from UPPERCASE keys (a Flask config), coercing and checking every value."""
        values = {}
        for f in dataclasses.fields(cls):
            key = config_key(f.name)
            if key in mapping and mapping[key] is not None:
                values[f.name] = _coerce(key, mapping[key], f.type)
        return cls(**values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``SENTIMENT_*`` environment variables over the defaults."""
        environ = os.environ if environ is None else environ
        return cls.from_mapping(
            {k[len(ENV_PREFIX) :]: v for k, v in environ.items() if k.startswith(ENV_PREFIX)}
        )

    def as_config(self) -> dict[str, Any]:
        """Return the settings as UPPERCASE Flask config keys."""
        return {config_key(f.name): getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def batch_timeout_s(self) -> float:
        """Return the batch timeout in seconds."""
        return self.batch_timeout_micros / 1e6

    @property
    def deadline_s(self) -> float:
        """Return the per-request deadline in seconds."""
        return self.deadline_ms / 1e3


@dataclass(frozen=True)
class ServerSettings:
    """Process-level knobs read by ``service/gunicorn.conf.py`` (not by the app)."""

    bind: str = field(default="0.0.0.0:8000", metadata=_doc("Address gunicorn listens on (`host:port`)."))
    workers: int = field(
        default=2, metadata=_doc("Worker processes, each with its own model copy and batcher.", minimum=1)
    )
    worker_class: str = field(
        default="asgi",
        metadata=_doc(
            "`asgi`: inference requests on an event loop (uvicorn, httptools, uvloop), other routes "
            "in Flask threads (`service/asgi.py`); `gthread`: gunicorn's threaded worker with the "
            "WSGI fast path.",
            choices=("asgi", "gthread"),
        ),
    )
    threads: int = field(
        default=16,
        metadata=_doc(
            "Threads per worker serving Flask: every request under `gthread`; under `asgi` the routes "
            "other than the inference ones (they mostly wait on the batcher or are quick).",
            minimum=1,
        ),
    )
    timeout_s: int = field(
        default=60, metadata=_doc("Seconds of worker silence before gunicorn restarts it.", minimum=1)
    )
    log_level: str = field(default="info", metadata=_doc("Log level of gunicorn and the service."))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Build server settings from ``SENTIMENT_*`` environment variables over the defaults."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            name = ENV_PREFIX + config_key(f.name)
            if name in environ:
                values[f.name] = _coerce(name, environ[name], f.type)
        settings = cls(**values)
        for f in dataclasses.fields(cls):
            minimum = f.metadata.get("minimum")
            if minimum is not None and getattr(settings, f.name) < minimum:
                raise SettingsError(f"{ENV_PREFIX}{config_key(f.name)} must be >= {minimum}")
            choices = f.metadata.get("choices")
            if choices is not None and getattr(settings, f.name) not in choices:
                raise SettingsError(f"{ENV_PREFIX}{config_key(f.name)} must be one of {', '.join(choices)}")
        return settings


def _same_dir(a: str, b: str) -> bool:
    """Tell whether two folder settings name the same folder."""
    return os.path.realpath(a) == os.path.realpath(b)


def config_key(field_name: str) -> str:
    """Return the Flask config key of a settings field."""
    return field_name.upper()


def env_var(field_name: str) -> str:
    """Return the environment variable of a settings field."""
    return ENV_PREFIX + config_key(field_name)


def describe() -> list[tuple[str, Any, str]]:
    """Return (environment variable, default, meaning) for every knob, for docs and their test."""
    rows = []
    for cls in (Settings, ServerSettings):
        for f in dataclasses.fields(cls):
            rows.append((env_var(f.name), f.default, f.metadata["doc"]))
    return rows


def _coerce(key: str, value: Any, type_name: Any) -> Any:
    """Convert a config or environment value to the field's type, refusing lossy conversions."""
    type_name = getattr(type_name, "__name__", type_name)
    try:
        if type_name == "str":
            return str(value)
        if type_name == "int":
            if isinstance(value, bool):
                raise ValueError("booleans are not integers")
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError("not a whole number")
                return int(value)
            return int(str(value).strip())
        if type_name == "float":
            if isinstance(value, bool):
                raise ValueError("booleans are not numbers")
            return float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{key}={value!r} is not a valid {type_name}: {exc}") from None
    raise SettingsError(f"{key}: unsupported setting type {type_name}")
