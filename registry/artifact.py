"""What a model version directory holds, and the one reader every consumer uses.

A version directory is self-describing (nanoGPT's checkpoints carry their ``model_args``)::

    manifest.json      written last; config, metrics, temperature, lineage, parity, versions
    tokenizer.json     tokenizer name/version + vocabulary + truncation rule (JSON, no pickle)
    model.onnx         inference graph with ONNX's native LSTM op (what the service runs)
    saved_model/       TF SavedModel (TF Serving can serve it as-is; alternative runtime)
    model.keras        the trained Keras model (training side only)
    word2vec.model     gensim word2vec the embedding was initialised from (training side only)
    training_data.npz  identity (64-bit text hash) and label of every labelled row it was given (lineage)
    report/            evaluation report: report.md, metrics, PNG plots
    drift_reference.json  length, OOV and score distributions of the held-out rows (training.drift)

The service and the batch scorer read only ``manifest.json``, ``tokenizer.json`` and
``model.onnx`` (or ``saved_model/`` when asked), never a pickle, so a tampered registry cannot
run code in them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from embeddings.vocabulary import Vocabulary
from registry.store import MANIFEST

TOKENIZER_FILE = "tokenizer.json"
ONNX_FILE = "model.onnx"
SAVED_MODEL_DIR = "saved_model"
KERAS_FILE = "model.keras"
WORD2VEC_FILE = "word2vec.model"
TRAINING_DATA_FILE = "training_data.npz"
REPORT_DIR = "report"
DRIFT_REFERENCE_FILE = "drift_reference.json"

#: What the service and the batch scorer read (the ONNX runtime): all a remote copy needs.
SERVING_FILES = (MANIFEST, TOKENIZER_FILE, ONNX_FILE)

#: Bumped when the layout above changes incompatibly.
ARTIFACT_FORMAT = 1


class InvalidArtifact(ValueError):
    """A version directory's manifest holds a value no consumer may serve."""


def check_temperature(value: object) -> float:
    """Return a calibration temperature, or raise InvalidArtifact unless it is a finite number > 0.

    Probabilities are ``sigmoid(logit / T)``: T <= 0 inverts (or breaks) every label, and a NaN or
    infinite T makes every probability NaN or 0.5.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArtifact(f"calibration temperature {value!r} is not a number")
    if not (math.isfinite(value) and value > 0):
        raise InvalidArtifact(f"calibration temperature {value!r} must be a finite number > 0")
    return float(value)


def _temperature_field(manifest: dict) -> object:
    """Return the manifest's raw ``calibration.temperature`` (1.0 when the version has none)."""
    calibration = manifest.get("calibration", {})
    if not isinstance(calibration, dict):
        raise InvalidArtifact(f"calibration {calibration!r} is not an object")
    return calibration.get("temperature", 1.0)


def is_quick(manifest: dict | None) -> bool:
    """Return whether a version's manifest marks it as a quick first model (``"quick": true``)."""
    return bool(manifest and manifest.get("quick"))


@dataclass(frozen=True)
class Artifact:
    """A read-only view of one model version directory."""

    path: Path
    manifest: dict

    @classmethod
    def open(cls, path: str | Path) -> "Artifact":
        """Read a version directory's manifest; fail clearly if it is not an artifact."""
        path = Path(path)
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} is not a model version (no {MANIFEST})") from None
        if manifest.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"{path}: artifact format {manifest.get('format')}, expected {ARTIFACT_FORMAT}")
        try:
            check_temperature(_temperature_field(manifest))
        except InvalidArtifact as exc:
            raise InvalidArtifact(f"{path}: {exc}; refusing this version") from None
        return cls(path, manifest)

    @property
    def name(self) -> str:
        """Return the model name."""
        return str(self.manifest["name"])

    @property
    def version(self) -> int:
        """Return the version number (the directory name; a staging dir reads as 0)."""
        return int(self.path.name) if self.path.name.isdigit() else 0

    @property
    def temperature(self) -> float:
        """Return the calibration temperature fitted at training time (1.0 = none); checked at open."""
        return check_temperature(_temperature_field(self.manifest))

    @property
    def quick(self) -> bool:
        """Return whether this is a quick first model, served only until a full one replaces it."""
        return is_quick(self.manifest)

    @property
    def preset(self) -> str | None:
        """Return the name of the training preset, when the trainer recorded one."""
        preset = self.manifest.get("preset")
        return None if preset is None else str(preset)

    @property
    def metrics(self) -> dict:
        """Return the validation metrics recorded at training time."""
        return dict(self.manifest.get("metrics", {}))

    def vocabulary(self) -> Vocabulary:
        """Load the vocabulary with the tokenizer version the model was trained with.

        Raises UnknownTokenizer (a ValueError) when the version is unknown to this code.
        """
        return Vocabulary.load(self.path / TOKENIZER_FILE)

    def file(self, name: str) -> Path:
        """Return the path of one file of the artifact."""
        return self.path / name
