"""Fixtures for the batch scorer: a random-weight registry, real IMDB reviews, input writers, an S3
server (moto, on loopback) and a real Dask cluster (``dask scheduler`` + two ``dask worker`` processes).
"""

from __future__ import annotations

import gzip
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest

from bench.dask_processes import dask_processes
from registry.store import Registry
from tests.conftest import DATA_DIR, PROJECT_ROOT
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
    return pd.DataFrame({"id": [f"r{i}" for i in range(N_REVIEWS)], "rating": 5, "label": 1, "text": rows})


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


def cli_args(input_path: Path | str, output: Path | str, registry: Registry | str, *extra: str) -> list[str]:
    """Return the usual command line for the tests (small chunks, in-process, quiet).

    Paths may be URLs (``s3://...``); ``registry`` is a Registry or the model directory's URL.
    """
    return [
        "--input",
        str(input_path),
        "--output",
        str(output),
        "--model-dir",
        registry if isinstance(registry, str) else str(registry.root),
        "--max-chars",
        str(MAX_CHARS),
        "--chunk-size",
        "64",
        "--workers",
        "1",
        "--quiet",
        *extra,
    ]


def assert_same_rows(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Check two outputs row for row (scores to float tolerance: batch shapes may differ)."""
    assert actual.columns.tolist() == expected.columns.tolist()
    floats = ["probability", "score"]
    pd.testing.assert_frame_equal(actual.drop(columns=floats), expected.drop(columns=floats))
    for column in floats:
        np.testing.assert_allclose(actual[column], expected[column], rtol=0, atol=1e-6, equal_nan=True)


# -- a real S3 protocol server -------------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_env() -> Iterator[dict[str, str]]:
    """Start moto's S3 server on 127.0.0.1 (a random port); return the environment that points at it.

    The variables are also set in this process for the session: s3fs (through botocore) reads the
    endpoint and the credentials from them, exactly as a worker on another machine would.
    """
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",  # never ask a cloud metadata service for credentials
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        try:
            yield env
        finally:
            server.stop()


@pytest.fixture
def bucket(s3_env: dict[str, str], request: pytest.FixtureRequest) -> str:
    """Return a fresh empty bucket as an ``s3://`` URL."""
    import fsspec

    name = "t" + str(abs(hash(request.node.nodeid)))[:12] + str(time.monotonic_ns())[-6:]
    fs = fsspec.filesystem("s3")
    fs.mkdir(name)
    return f"s3://{name}"


def upload(local: Path, url: str) -> None:
    """Copy a local file or folder (recursively) to an ``s3://`` URL."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    if local.is_dir():
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            fs.put_file(str(file), f"{path}/{file.relative_to(local).as_posix()}")
    else:
        fs.put_file(str(local), path)


# -- a real Dask cluster -------------------------------------------------------------------------
@dataclass(frozen=True)
class DaskCluster:
    """A scheduler address, and the environment its workers run with (also for clients)."""

    address: str
    env: dict[str, str]
    worker_cwd: Path


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory, s3_env: dict[str, str]) -> Iterator[DaskCluster]:
    """Start ``dask scheduler`` and two single-threaded ``dask worker`` processes, loopback only.

    They run in their own working directory (not the tests', not the client's), so a relative
    path that reached a worker would point elsewhere; their environment reaches the S3 server.
    """
    cwd = tmp_path_factory.mktemp("dask-cwd")
    env = {
        **os.environ,
        **s3_env,
        "PYTHONPATH": str(PROJECT_ROOT),
        "SENTIMENT_MODEL_CACHE": str(tmp_path_factory.mktemp("worker-model-cache")),
    }
    with dask_processes(2, cwd=cwd, env=env, threads=1) as address:
        assert address.startswith("tcp://127.0.0.1:"), address
        yield DaskCluster(address, env, cwd)


def run_cli(
    args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess:
    """Run ``python -m scoring`` in a subprocess from ``cwd``; return its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "scoring", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
