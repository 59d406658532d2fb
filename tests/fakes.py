"""Random-weight model versions for fast tests of consumers (service, scoring, registry).

They use the real artifact layout, real tokenizer and real ONNX graph builder; only the weights
are random, and they have no evaluation report unless :func:`add_fake_report` gives them one.
Tests that need a *trained* model use the session fixture in conftest instead.
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
import zlib
from pathlib import Path

import onnx

from embeddings.tokenizer import _TOKEN, CURRENT, Tokenizer
from embeddings.vocabulary import Vocabulary
from registry.artifact import ARTIFACT_FORMAT, ONNX_FILE, REPORT_DIR, TOKENIZER_FILE
from registry.files import write_json_atomic
from registry.store import MANIFEST, Registry
from training.onnx_export import build_onnx_model
from training.weights import random_weights

#: Retraining gate flags loose enough that every candidate passes (tests of the loop, not the gate).
OPEN_GATE_FLAGS = [
    "--accuracy-tolerance",
    "1",
    "--log-loss-tolerance",
    "1",
    "--ece-tolerance",
    "1",
    "--floor-margin",
    "1",
    "--behaviour-tolerance",
    "1",
]

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
    tokenizer: Tokenizer = CURRENT,
    extra_manifest: dict | None = None,
) -> int:
    """Publish a random-weight version of ``name`` and optionally promote it; return its number."""
    vocab = Vocabulary.build(
        [tokenizer.tokenize(" ".join(WORDS))], min_count=1, max_len=64, head=16, tokenizer=tokenizer
    )
    weights = random_weights(len(vocab), 8, 6, bidirectional=True, pooling="meanmax", seed=seed)
    with registry.staging_dir(name) as staging:
        vocab.save(staging / TOKENIZER_FILE)
        # The graph's probability output carries the temperature, as a trained version's does; an
        # invalid one (tests of the refusal at load pass -1, NaN, "1.0", None...) leaves it uncalibrated.
        number = isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
        baked = temperature if number and math.isfinite(temperature) and temperature > 0 else 1.0
        onnx.save(build_onnx_model(weights, baked), str(staging / ONNX_FILE))
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
                **(extra_manifest or {}),
            },
        )
        version = registry.commit_version(name, staging)
    if promote:
        registry.promote(name, version)
    return version


def tokenize_as_before_version_2(text: str) -> list[str]:
    """Tokenise exactly as the code did before tokenizer version 2 existed (what v1 models saw)."""
    apostrophes = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
    text = re.sub(r"<[^>]{0,100}>", " ", text)
    text = unicodedata.normalize("NFKC", text).lower().translate(apostrophes)
    return _TOKEN.findall(text)


def png(width: int = 1, height: int = 1) -> bytes:
    """Return a valid grey PNG image of the given size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])  # 8-bit grey
    pixels = zlib.compress(b"".join(b"\x00" + b"\x80" * width for _ in range(height)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def add_fake_report(registry: Registry, name: str = "sentiment", version: int = 1) -> Path:
    """Give a version a small evaluation report (``report.md``, ``roc.png``); return its folder."""
    folder = registry.version_dir(name, version) / REPORT_DIR
    folder.mkdir()
    (folder / "report.md").write_text(
        f"# Model {name}: validation report\n\n- **rows**: <b>200</b>\n\n"
        "| metric | value |\n| --- | --- |\n| accuracy | 0.8000 |\n\n## ROC curve\n\n![ROC curve](roc.png)\n",
        encoding="utf-8",
    )
    (folder / "roc.png").write_bytes(png(3, 2))
    (folder / "metrics.json").write_text('{"accuracy": 0.8}', encoding="utf-8")
    return folder
