"""Fixtures for the batch scorer: a random-weight registry, real IMDB reviews, input writers."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from registry.store import Registry
from tests.conftest import DATA_DIR
from tests.fakes import WORDS

N_REVIEWS = 240


@pytest.fixture(scope="session")
def reviews() -> pd.DataFrame:
    """Return real IMDB reviews (id, rating, label, text), or synthetic ones if the data is absent."""
    path = DATA_DIR / "train.csv.gz"
    if path.exists():
        frame = pd.read_csv(path, nrows=N_REVIEWS * 4).sample(N_REVIEWS, random_state=0)
        return frame.reset_index(drop=True).astype({"id": str, "text": str})
    rows = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(5 + i % 40)) for i in range(N_REVIEWS)]
    return pd.DataFrame(
        {"id": [f"r{i}" for i in range(N_REVIEWS)], "rating": 5, "label": 1, "text": rows}
    )


@pytest.fixture
def registry(fake_registry: Registry) -> Registry:
    """Return a registry with random-weight version 1 (production) of model ``sentiment``."""
    return fake_registry


@pytest.fixture
def messy(reviews: pd.DataFrame) -> pd.DataFrame:
    """Return reviews with bad texts mixed in: null, empty, whitespace-only and over-long."""
    frame = reviews.copy()
    frame.loc[3, "text"] = None
    frame.loc[10, "text"] = ""
    frame.loc[11, "text"] = " \n\t "
    frame.loc[20, "text"] = "great film " * 2_000  # 22,000 chars: over the tests' --max-chars
    return frame


#: Expected error per row of ``messy`` (CSV cannot tell an empty field from a missing one).
MESSY_ERRORS = {3: "null_text", 10: "empty_text", 11: "empty_text", 20: "text_too_long"}
MAX_CHARS = 20_000  # above every review in the sample


def write_input(frame: pd.DataFrame, path: Path, fmt: str | None = None) -> Path:
    """Write a frame as the input format its file name implies."""
    fmt = fmt or path.name.split(".", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        frame.to_parquet(path, index=False, row_group_size=50)
    elif fmt in ("csv", "csv.gz"):
        frame.to_csv(path, index=False)
    elif fmt in ("jsonl", "jsonl.gz"):
        text = frame.to_json(orient="records", lines=True)
        if fmt.endswith(".gz"):
            with gzip.open(path, "wt", encoding="utf-8") as fh:
                fh.write(text)
        else:
            path.write_text(text, encoding="utf-8")
    else:
        raise ValueError(fmt)
    return path


def cli_args(input_path: Path, output: Path, registry: Registry, *extra: str) -> list[str]:
    """Return the usual command line for the tests (small chunks, in-process, quiet)."""
    return [
        "--input", str(input_path), "--output", str(output), "--model-dir", str(registry.root),
        "--max-chars", str(MAX_CHARS), "--chunk-size", "64", "--workers", "1", "--quiet", *extra,
    ]
