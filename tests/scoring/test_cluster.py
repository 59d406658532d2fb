"""A real ``dask scheduler`` and two ``dask worker`` processes, started from another directory.

The client is ``python -m scoring`` in a subprocess with its own working directory and relative
paths; one file is split into many parts shared by both workers, and the output must equal the
local engine's row for row, through a worker-side failure, a kill of the client, and on S3.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import fsspec
import pandas as pd
import pytest

from registry.store import Registry
from scoring.config import JobConfig
from scoring.job import run_job
from scoring.writer import MANIFEST_FILE, read_output
from tests.fakes import make_random_version
from tests.scoring.conftest import MAX_CHARS, DaskCluster, assert_same_rows, run_cli, upload, write_input

pytestmark = pytest.mark.slow

#: Texts that a naive newline split of a CSV file would cut in the middle of a record.
TRICKY = ['a "quoted" word, a comma', "two\nlines", 'quote at the end"', 'x,\n\n,y ""', "\r\nwindows\r\n"]


def _client_dir(tmp_path: Path, frame: pd.DataFrame, name: str = "reviews.csv") -> Path:
    """Return a client working directory holding the input file and a registry (``models/``)."""
    client = tmp_path / "client"
    write_input(frame, client / name)
    make_random_version(Registry(client / "models"), "sentiment")
    return client


def _big_frame(reviews: pd.DataFrame, copies: int) -> pd.DataFrame:
    """Return the reviews repeated (unique ids), with multi-line and quoted texts mixed in."""
    frame = pd.concat([reviews.assign(id=reviews["id"] + f"-{k}") for k in range(copies)], ignore_index=True)
    frame.loc[::7, "text"] = [TRICKY[i % len(TRICKY)] + " " + t for i, t in enumerate(frame["text"][::7])]
    return frame


def _local_reference(client: Path, name: str, out: Path) -> pd.DataFrame:
    """Score the client's file with the local engine, in process; return its output."""
    run_job(
        JobConfig(
            input=client / name,
            output=out,
            model_dir=client / "models",
            max_chars=MAX_CHARS,
            workers=1,
            quiet=True,
        )
    )
    return read_output(out)


def _dask_args(cluster: DaskCluster, *extra: str) -> list[str]:
    return [
        "--input",
        "reviews.csv",
        "--output",
        "scored",
        "--model-dir",
        "models",
        "--engine",
        "dask",
        "--scheduler",
        cluster.address,
        "--max-chars",
        str(MAX_CHARS),
        "--quiet",
        *extra,
    ]


def test_one_file_with_relative_paths_is_shared_by_both_workers(
    tmp_path: Path, dask_cluster: DaskCluster, reviews: pd.DataFrame
) -> None:
    client = _client_dir(tmp_path, _big_frame(reviews, 3))
    assert not (dask_cluster.worker_cwd / "reviews.csv").exists()  # a relative path would not resolve there

    result = run_cli(_dask_args(dask_cluster, "--partition-size", "64kB"), cwd=client, env=dask_cluster.env)

    assert result.returncode == 0, result.stderr
    assert_same_rows(
        read_output(client / "scored"), _local_reference(client, "reviews.csv", tmp_path / "local")
    )
    manifest = json.loads((client / "scored" / MANIFEST_FILE).read_text())
    assert manifest["job"]["input"]["path"] == str(client / "reviews.csv")
    assert len(manifest["parts"]) >= 8  # ~900 kB of CSV in 64 kB byte ranges
    writers = Counter(part["worker"].split()[1] for part in manifest["parts"])
    assert len(writers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in writers), writers


def test_worker_failure_is_one_line_and_the_output_resumes(
    tmp_path: Path, dask_cluster: DaskCluster, reviews: pd.DataFrame
) -> None:
    client = _client_dir(tmp_path, _big_frame(reviews, 2))
    args = _dask_args(dask_cluster, "--partition-size", "64kB")
    out = client / "scored"
    run_job(
        JobConfig(
            input=client / "reviews.csv",
            output=out,
            model_dir=client / "models",
            max_chars=MAX_CHARS,
            engine="dask",
            scheduler=dask_cluster.address,
            partition_size=64_000,
            quiet=True,
        )
    )
    expected = read_output(out)
    # Forget every part from the third on, and put a folder where part 3 must go: its worker fails.
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    manifest["parts"], manifest["complete"] = manifest["parts"][:3], False
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    for part in out.glob("part-*"):
        if int(part.name[5:10]) >= 3:
            part.unlink()
    (out / "part-00003.parquet").mkdir()

    failed = run_cli(args, cwd=client, env=dask_cluster.env)

    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert errors[0].startswith("error: part 3 (") and "reviews.csv bytes " in errors[0], errors[0]
    assert "failed on worker tcp://127.0.0.1:" in errors[0] and "IsADirectoryError" in errors[0], errors[0]
    assert "rerun the same command to resume" in errors[0]
    kept = json.loads((out / MANIFEST_FILE).read_text())
    assert (
        not kept["complete"]
        and {0, 1, 2} <= {p["part"] for p in kept["parts"]}
        and 3 not in {p["part"] for p in kept["parts"]}
    )
    before = {p["file"]: (out / p["file"]).stat().st_mtime_ns for p in kept["parts"]}

    (out / "part-00003.parquet").rmdir()  # the cause is fixed: the same command resumes
    resumed = run_cli(args, cwd=client, env=dask_cluster.env)

    assert resumed.returncode == 0, resumed.stderr
    assert_same_rows(read_output(out), expected)
    assert {f: (out / f).stat().st_mtime_ns for f in before} == before  # finished parts not redone


def test_killed_client_resumes_without_duplicates_or_losses(
    tmp_path: Path, dask_cluster: DaskCluster, reviews: pd.DataFrame
) -> None:
    frame = _big_frame(reviews, 6)
    client = _client_dir(tmp_path, frame)
    expected = _local_reference(client, "reviews.csv", tmp_path / "local")
    args = _dask_args(dask_cluster, "--partition-size", "32kB")
    out = client / "scored"

    with subprocess.Popen(
        [sys.executable, "-m", "scoring", *args],
        cwd=client,
        env=dask_cluster.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as proc:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if len(json.loads((out / MANIFEST_FILE).read_text())["parts"]) >= 3:
                    break
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert not manifest["complete"] and len(manifest["parts"]) >= 3

    resumed = run_cli(args, cwd=client, env=dask_cluster.env)

    assert resumed.returncode == 0, resumed.stderr
    assert len(json.loads((out / MANIFEST_FILE).read_text())["parts"]) > len(
        manifest["parts"]
    )  # killed mid-run
    scored = read_output(out)
    assert set(Counter(scored["id"]).values()) == {1} and len(scored) == len(frame)
    assert_same_rows(scored, expected)


def test_s3_input_output_and_model_on_the_cluster(
    tmp_path: Path,
    dask_cluster: DaskCluster,
    reviews: pd.DataFrame,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENTIMENT_MODEL_CACHE", str(tmp_path / "client-model-cache"))
    client = _client_dir(tmp_path, _big_frame(reviews, 2))
    expected = _local_reference(client, "reviews.csv", tmp_path / "local")
    upload(client / "reviews.csv", f"{bucket}/in/reviews.csv")
    upload(client / "models", f"{bucket}/models")
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    env = {**dask_cluster.env, "SENTIMENT_MODEL_CACHE": os.environ["SENTIMENT_MODEL_CACHE"]}

    result = run_cli(
        [
            "--input",
            f"{bucket}/in/reviews.csv",
            "--output",
            f"{bucket}/scored",
            "--model-dir",
            f"{bucket}/models",
            "--engine",
            "dask",
            "--scheduler",
            dask_cluster.address,
            "--partition-size",
            "64kB",
            "--max-chars",
            str(MAX_CHARS),
            "--quiet",
        ],
        cwd=elsewhere,
        env=env,
    )

    assert result.returncode == 0, result.stderr
    assert_same_rows(read_output(f"{bucket}/scored"), expected)
    manifest = json.loads(fsspec.filesystem("s3").cat_file(f"{bucket}/scored/{MANIFEST_FILE}"))
    assert len(manifest["parts"]) >= 4 and manifest["job"]["model"]["path"] == f"{bucket}/models/sentiment/1"
    assert not list(elsewhere.iterdir())  # nothing local: all on S3
