"""Every engine writes the same rows: in-process, a process pool, and Dask on a LocalCluster."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from registry.store import Registry
from scoring import score
from scoring.config import JobConfig, ScoringError
from scoring.job import run_job
from scoring.writer import MANIFEST_FILE, read_output
from tests.scoring.conftest import MAX_CHARS, assert_same_rows, write_input


def _config(source: Path, out: Path, registry: Registry, **changes) -> JobConfig:
    base = JobConfig(
        input=source,
        output=out,
        model_dir=registry.root,
        max_chars=MAX_CHARS,
        chunk_size=64,
        workers=1,
        quiet=True,
    )
    return base.replace(**changes)


@pytest.fixture
def local_output(tmp_path: Path, registry: Registry, messy: pd.DataFrame) -> tuple[Path, pd.DataFrame]:
    """Return a Parquet input (row groups of 50) and its in-process output."""
    source = write_input(messy, tmp_path / "in.parquet")
    run_job(_config(source, tmp_path / "local", registry, keep_columns=True))
    return source, read_output(tmp_path / "local")


def test_process_pool_equals_in_process(
    tmp_path: Path, registry: Registry, local_output: tuple[Path, pd.DataFrame]
) -> None:
    source, expected = local_output
    summary = run_job(_config(source, tmp_path / "pool", registry, keep_columns=True, workers=2))
    assert summary["run"]["workers"] == 2
    assert_same_rows(read_output(tmp_path / "pool"), expected)


def test_dask_equals_local_and_loads_the_model_once(
    tmp_path: Path, registry: Registry, local_output: tuple[Path, pd.DataFrame]
) -> None:
    source, expected = local_output
    out = tmp_path / "dask"
    config = _config(
        source,
        out,
        registry,
        keep_columns=True,
        engine="dask",
        dask_workers=2,
        dask_processes=False,
        partition_size=60_000,
    )
    version_dir = str(registry.production_dir("sentiment").resolve())

    summary = run_job(config)

    assert_same_rows(read_output(out), expected)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["job"]["partitioning"] == {"engine": "dask", "partition_size": 60_000, "chunk_size": 64}
    starts = [p["start"] for p in manifest["parts"]]
    assert len(starts) > 2 and starts[0] == 0 and all(s % 50 == 0 for s in starts)  # whole row groups of 50
    assert summary["rows_read"] == len(expected) and summary["errors"] == {
        "empty_text": 2,
        "null_text": 1,
        "text_too_long": 1,
    }
    # Three partitions on two in-process workers: the model was loaded once, by the job's check.
    assert score.model_loads()[version_dir] == 1

    # Resume: forget the last partition, rerun, get the same output.
    last = manifest["parts"][-1]
    manifest["parts"], manifest["complete"] = manifest["parts"][:-1], False
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    (out / last["file"]).unlink()
    assert run_job(config)["run"]["rows"] == last["rows"]
    assert_same_rows(read_output(out), expected)


def test_dask_reads_a_jsonl_folder(tmp_path: Path, registry: Registry, messy: pd.DataFrame) -> None:
    folder = tmp_path / "in"
    write_input(messy.iloc[:100], folder / "a.jsonl")
    write_input(messy.iloc[100:], folder / "b.jsonl.gz")
    run_job(_config(folder, tmp_path / "local", registry))
    run_job(_config(folder, tmp_path / "dask", registry, engine="dask", dask_workers=2, dask_processes=False))
    assert_same_rows(read_output(tmp_path / "dask"), read_output(tmp_path / "local"))


def test_switching_engine_mid_job_is_refused(
    tmp_path: Path, registry: Registry, local_output: tuple[Path, pd.DataFrame]
) -> None:
    source, _ = local_output
    out = tmp_path / "local"  # complete: any engine may "resume" it (nothing to do)
    assert (
        run_job(
            _config(
                source, out, registry, keep_columns=True, engine="dask", dask_processes=False, dask_workers=1
            )
        )["run"]["rows"]
        == 0
    )
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    manifest["complete"] = False
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ScoringError, match="partitioning.engine"):
        run_job(
            _config(
                source, out, registry, keep_columns=True, engine="dask", dask_processes=False, dask_workers=1
            )
        )


def test_dask_cluster_of_processes_loads_the_model_once_per_worker(
    tmp_path: Path, registry: Registry, local_output: tuple[Path, pd.DataFrame]
) -> None:
    from distributed import Client, LocalCluster

    source, expected = local_output
    with (
        LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        config = _config(
            source,
            tmp_path / "dask",
            registry,
            keep_columns=True,
            engine="dask",
            scheduler=cluster.scheduler_address,
            partition_size=1,
        )  # 5 partitions (row groups)
        run_job(config)
        loads = client.run(score.model_loads)
    assert_same_rows(read_output(tmp_path / "dask"), expected)
    version_dir = str(registry.production_dir("sentiment").resolve())
    assert sorted(loads.values(), key=str) == [{version_dir: 1}, {version_dir: 1}]


def test_pool_worker_that_cannot_load_the_model_fails_at_once(tmp_path: Path, messy: pd.DataFrame) -> None:
    from scoring.engines import LocalEngine
    from scoring.readers import open_input
    from scoring.score import ScoreSpec
    from scoring.writer import PartWriter

    source = open_input(write_input(messy, tmp_path / "in.parquet"))
    spec = ScoreSpec(
        version_dir=str(tmp_path / "no-such-version"), model_version=7, text_column="text", carry=("id",)
    )
    engine = LocalEngine(
        source,
        spec,
        PartWriter(str(tmp_path), "parquet", source.schema),
        columns=["id", "text"],
        chunk_size=64,
        workers=2,
    )
    with pytest.raises(RuntimeError, match="failed to start"):
        engine.run(set(), lambda record: None)


def test_scheduler_without_workers_is_refused(
    tmp_path: Path,
    registry: Registry,
    local_output: tuple[Path, pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from distributed import LocalCluster

    from scoring import engines

    monkeypatch.setattr(engines, "WORKERS_TIMEOUT", 0.5)
    source, _ = local_output
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        with pytest.raises(ScoringError, match="has no workers"):
            run_job(
                _config(
                    source, tmp_path / "dask", registry, engine="dask", scheduler=cluster.scheduler_address
                )
            )
    assert not (tmp_path / "dask").exists()


def test_worker_problems_are_reported_in_one_line() -> None:
    from scoring.engines import _worker_errors, failure_line

    assert _worker_errors({"tcp://a:1": None, "tcp://b:2": None}) is None
    line = _worker_errors(
        {"tcp://b:2": OSError("no\nsuch file"), "tcp://a:1": None, "tcp://c:3": ValueError("x")}
    )
    assert line == "Dask worker tcp://b:2 (and 1 more of 3 workers): OSError: no such file"
    long = failure_line(7, "in.csv bytes 0-10", "worker tcp://w:1", RuntimeError("y" * 1_000))
    assert long.startswith("part 7 (in.csv bytes 0-10) failed on worker tcp://w:1: RuntimeError: yyy")
    assert "\n" not in long and len(long) < 500
