"""Kill a real scoring process with SIGKILL mid-run, rerun it, and check every id comes out once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from registry.store import Registry
from scoring.cli import main
from scoring.writer import MANIFEST_FILE, SUMMARY_FILE, read_output
from tests.conftest import PROJECT_ROOT
from tests.scoring.conftest import cli_args, write_input

REPEATS = 100  # 24,000 rows: several seconds of work, so the kill lands mid-run
KILL_AFTER_PARTS = 3


def _parts_done(out: Path) -> int:
    try:
        return len(json.loads((out / MANIFEST_FILE).read_text())["parts"])
    except (FileNotFoundError, ValueError):
        return 0


def test_sigkill_then_rerun_gives_every_id_exactly_once(
    tmp_path: Path, registry: Registry, reviews: pd.DataFrame
) -> None:
    big = pd.concat([reviews.assign(id=reviews["id"] + f"-{k}") for k in range(REPEATS)], ignore_index=True)
    source = write_input(big, tmp_path / "in.parquet")
    out = tmp_path / "out"
    args = cli_args(source, out, registry, "--chunk-size", "400")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}

    log = tmp_path / "stderr.txt"
    with (
        open(log, "wb") as stderr,
        subprocess.Popen(
            [sys.executable, "-m", "scoring", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        ) as proc,
    ):
        deadline = time.monotonic() + 60
        while _parts_done(out) < KILL_AFTER_PARTS and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-2000:]

    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert not manifest["complete"] and not (out / SUMMARY_FILE).exists()
    before = {p["file"]: (out / p["file"]).stat().st_mtime_ns for p in manifest["parts"]}
    rows_before = sum(p["rows"] for p in manifest["parts"])
    assert 0 < rows_before < len(big)

    assert main(args) == 0  # the same command resumes

    scored = read_output(out)
    counts = Counter(scored["id"])
    assert set(counts) == set(big["id"]) and set(counts.values()) == {1}
    assert scored["id"].tolist() == big["id"].tolist()
    assert {f: (out / f).stat().st_mtime_ns for f in before} == before  # finished parts not redone
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["rows_read"] == summary["rows_scored"] == len(big)
    assert summary["run"]["resumed_rows"] == rows_before
    assert not list(out.glob(".*.tmp"))  # the killed run's temp file was cleaned up


def test_part_written_but_not_recorded_is_redone(
    tmp_path: Path, registry: Registry, reviews: pd.DataFrame
) -> None:
    source = write_input(reviews, tmp_path / "in.parquet")
    out = tmp_path / "out"
    assert main(cli_args(source, out, registry)) == 0
    expected = read_output(out)
    # Simulate a kill between renaming the last part into place and recording it in the manifest.
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    manifest["parts"] = manifest["parts"][:-1]
    manifest["complete"] = False
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    (out / SUMMARY_FILE).unlink()

    assert main(cli_args(source, out, registry)) == 0
    pd.testing.assert_frame_equal(read_output(out), expected)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["rows_read"] == len(reviews) and summary["run"]["rows"] == len(reviews) - 3 * 64
