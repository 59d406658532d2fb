"""Random-weight model versions for fast tests of consumers (service, scoring, registry).

They use the real artifact layout, real tokenizer and real ONNX graph builder; only the weights
are random. Tests that need a *trained* model use the session fixture in conftest instead.
"""

from __future__ import annotations

import time
from pathlib import Path

import onnx

from embeddings.tokenizer import tokenize
from embeddings.vocabulary import Vocabulary
from registry.artifact import ARTIFACT_FORMAT, ONNX_FILE, TOKENIZER_FILE
from registry.store import MANIFEST, Registry, write_json_atomic
from training.onnx_export import build_onnx_model, random_weights

WORDS = (
    "great wonderful superb loved brilliant awful terrible boring worst hated "
    "film movie plot acting the a and was is it this not don't ! ?"
).split()


def make_random_version(
    registry: Registry,
    name: str = "sentiment",
    *,
    seed: int = 0,
    temperature: float = 1.0,
    promote: bool = True,
    metrics: dict | None = None,
) -> int:
    """Publish a random-weight version of ``name`` and optionally promote it; return its number."""
    vocab = Vocabulary.build([tokenize(" ".join(WORDS))], min_count=1, max_len=64, head=16)
    weights = random_weights(len(vocab), 8, 6, bidirectional=True, pooling="meanmax", seed=seed)
    with registry.staging_dir(name) as staging:
        vocab.save(staging / TOKENIZER_FILE)
        onnx.save(build_onnx_model(weights), str(staging / ONNX_FILE))
        write_json_atomic(
            Path(staging) / MANIFEST,
            {
                "format": ARTIFACT_FORMAT,
                "name": name,
                "created_at": time.time(),
                "calibration": {"temperature": temperature},
                "metrics": metrics or {"accuracy": 0.5},
                "config": {"fake": True, "seed": seed},
                "lineage": {"parent_version": None},
            },
        )
        version = registry.commit_version(name, staging)
    if promote:
        registry.promote(name, version)
    return version
