"""Find the model version a job scores with, in a registry on local disk or at a URL, and load it.

The registry layout is ``registry.store``'s (``<root>/<name>/<version>/``, ``production.json``);
at a URL (``s3://bucket/models``) it is read through fsspec, read-only. ONNX Runtime loads local
files, so every process that scores (the client, each Dask worker) first copies the version's
serving files (``registry.artifact.SERVING_FILES``) into a local cache, once per machine: versions
are immutable once published, and the cache key includes the manifest, so a copy never goes stale.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

from registry.artifact import SERVING_FILES
from registry.cli import PRODUCTION, VersionSpec
from registry.store import MANIFEST, POINTER, Registry, RegistryError
from scoring import storage
from scoring.config import ScoringError

log = logging.getLogger(__name__)

#: Where copies of remote model versions are kept (default: ~/.cache/sentiment/models).
CACHE_ENV = "SENTIMENT_MODEL_CACHE"


def resolve_model(model_dir: str, name: str, version: VersionSpec) -> tuple[str, int]:
    """Return the version directory (path or URL) and number to score with; ScoringError if none.

    ``version`` is a number or "production". The production pointer is read once: a promotion in
    between must not mix two versions.
    """
    if storage.is_url(model_dir):
        return _resolve_remote(model_dir, name, version)
    registry = Registry(model_dir)
    try:
        number = registry.resolve_version(name, version)
        return str(registry.version_dir(name, number).resolve()), number
    except RegistryError as exc:
        known = registry.versions(name) if registry.model_home(name).is_dir() else []
        raise ScoringError(f"{exc} (registry {model_dir}; versions available: {known or 'none'})") from exc


def _resolve_remote(root: str, name: str, version: VersionSpec) -> tuple[str, int]:
    """Resolve a version in a registry stored at a URL (the same layout, read through fsspec)."""
    if not name or "/" in name or name.startswith("."):
        raise ScoringError(f"invalid model name {name!r}")
    model_url = storage.join(root, name)
    try:
        if version is None or version == PRODUCTION:
            try:
                version = int(json.loads(storage.read_bytes(storage.join(model_url, POINTER)))["version"])
            except FileNotFoundError:
                raise ScoringError(f"model {name!r} has no production version") from None
        version_url = storage.join(model_url, str(int(version)))
        if not storage.is_file(storage.join(version_url, MANIFEST)):
            raise ScoringError(f"model {name!r} has no version {version}")
    except ScoringError as exc:
        known = sorted(
            int(v)
            for v in storage.listdir(model_url)
            if v.isdigit() and storage.is_file(storage.join(model_url, v, MANIFEST))
        )
        raise ScoringError(f"{exc} (registry {root}; versions available: {known or 'none'})") from None
    except (OSError, ValueError, KeyError) as exc:  # unreachable store, no credentials, bad pointer
        raise ScoringError(f"cannot read the model registry {root}: {type(exc).__name__}: {exc}") from exc
    return version_url, int(version)


def cache_root() -> Path:
    """Return the folder holding local copies of remote model versions."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sentiment" / "models"


def local_copy(version_dir: str) -> str:
    """Return a local directory holding the version's serving files (remote: copied once per machine)."""
    if not storage.is_url(version_dir):
        return version_dir
    manifest = storage.read_bytes(storage.join(version_dir, MANIFEST))
    key = hashlib.sha256(version_dir.encode() + b"\0" + manifest).hexdigest()[:16]
    target = cache_root() / key / storage.basename(version_dir)  # keeps the version number as its name
    if (target / MANIFEST).is_file():
        return str(target)
    staging = target.parent / f".download-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        for name in SERVING_FILES:
            if name != MANIFEST:
                storage.download(storage.join(version_dir, name), staging / name)
        (staging / MANIFEST).write_bytes(manifest)  # last: a copy with a manifest is complete
        try:
            os.rename(staging, target)  # atomic; another process may have finished first
        except OSError:
            if not (target / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("model %s copied to %s", version_dir, target)
    return str(target)
