"""What a model version was trained on: review identities saved beside the weights, and gold-set overlap.

Every version records the identity (a 64-bit hash of the normalised text) and label of each
labelled row it was given, train and validation alike, in ``training_data.npz``. That answers
"did this model see the gold set?" exactly and cheaply. Versions trained before the file existed
are reconstructed from their manifest (the base file, sample size and seed) when the base file
still has the recorded sha256; otherwise their lineage is reported as unknown.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from registry.artifact import TRAINING_DATA_FILE
from registry.store import Registry, RegistryError

log = logging.getLogger(__name__)


def text_key(text: str) -> str:
    """Return the identity of a review: sha1 of its NFKC, case-folded, whitespace-collapsed text.

    Independent of the tokenizer on purpose, so identities stay stable when tokenisation rules change.
    """
    return hashlib.sha1(
        " ".join(unicodedata.normalize("NFKC", text).casefold().split()).encode("utf-8")
    ).hexdigest()


def key_hashes(keys: Iterable[str]) -> np.ndarray:
    """Return the 64-bit integer form of text keys (their first 16 hex digits)."""
    return np.fromiter((int(k[:16], 16) for k in keys), dtype=np.uint64)


def write_training_data(directory: Path, texts: Iterable[str], labels: np.ndarray) -> None:
    """Record the identity and label of every labelled row a version is given."""
    np.savez_compressed(
        Path(directory) / TRAINING_DATA_FILE,
        keys=key_hashes(map(text_key, texts)),
        labels=np.asarray(labels, dtype=np.int8),
    )


def read_training_data(version_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """Return (key hashes, labels) recorded in a version, or None if it predates the record."""
    path = Path(version_dir) / TRAINING_DATA_FILE
    if not path.is_file():
        return None
    with np.load(path) as doc:
        return doc["keys"], doc["labels"]


def reconstruct_training_keys(manifest: dict, data_dir: Path | None) -> np.ndarray | None:
    """Return the key hashes of a version trained without a record, rebuilt from its config (or None).

    Only plain training runs (not pipeline candidates, whose data included drop files) can be
    rebuilt, and only while the base file still has the sha256 recorded in the manifest.
    """
    from training.config import TrainConfig
    from training.data import DataError, fingerprint, labelled_rows, resolve

    if "retrain" in manifest:
        return None
    config = TrainConfig.from_dict(manifest.get("config", {}))
    path = resolve(config.train_file, data_dir)
    recorded = set(manifest.get("lineage", {}).get("data_fingerprints", {}).values())
    try:
        if not path.is_file() or fingerprint(path) not in recorded:
            return None
        labelled = labelled_rows(config, path)
    except DataError:
        return None
    return key_hashes(map(text_key, labelled.texts))


@dataclass
class GoldOverlap:
    """How many gold reviews one version was trained on, and how we know."""

    version: int
    seen: np.ndarray | None  # bool per gold row; None when the lineage is unknown
    method: str  # "recorded" | "reconstructed" | "unknown"

    @property
    def rows(self) -> int | None:
        """Return the number of gold rows the version trained on (None = unknown)."""
        return None if self.seen is None else int(self.seen.sum())

    def to_dict(self) -> dict:
        """Return the overlap as JSON-ready data."""
        return {
            "version": self.version,
            "gold_rows_trained_on": self.rows,
            "gold_rows": None if self.seen is None else len(self.seen),
            "method": self.method,
        }


def gold_overlap(
    registry: Registry, name: str, version: int, gold_hashes: np.ndarray, data_dir: Path | None
) -> GoldOverlap:
    """Return which gold rows (given as key hashes) a version was trained on."""
    try:
        recorded = read_training_data(registry.version_dir(name, version))
        if recorded is not None:
            return GoldOverlap(version, np.isin(gold_hashes, recorded[0]), "recorded")
        keys = reconstruct_training_keys(registry.manifest(name, version), data_dir)
    except RegistryError:
        keys = None
    if keys is None:
        return GoldOverlap(version, None, "unknown")
    return GoldOverlap(version, np.isin(gold_hashes, keys), "reconstructed")
