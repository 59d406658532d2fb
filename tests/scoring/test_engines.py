"""Every engine writes the same rows: in-process, a process pool, and Dask on a LocalCluster."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from registry.store import Registry
from scoring import score
from scoring.config import JobConfig, ScoringError
from scoring.job import run_job
from scoring.writer import MANIFEST_FILE, read_output
from tests.scoring.conftest import MAX_CHARS, write_input


def _config(source: Path, out: Path, registry: Registry, **changes) -> JobConfig:
    base = JobConfig(input=source, output=out, model_dir=registry.root, max_chars=MAX_CHARS, chunk_size=64,
                     workers=1, quiet=True)
    return base.replace(**changes)


def assert_same_rows(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Check two outputs row for row (scores to float tolerance: batch shapes may differ)."""
    assert actual.columns.tolist() == expected.columns.tolist()
    floats = ["probability", "score"]
    pd.testing.assert_frame_equal(actual.drop(columns=floats), expected.drop(columns=floats))
    for column in floats:
        np.testing.assert_allclose(actual[column], expected[column], rtol=0, atol=1e-6, equal_nan=True)


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
    config = _config(source, out, registry, keep_columns=True, engine="dask", dask_workers=2,
                     dask_processes=False)
    version_dir = str(registry.production_dir("sentiment").resolve())

    summary = run_job(config)

    assert_same_rows(read_output(out), expected)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["job"]["partitioning"] == {"engine": "dask", "chunk_size": 64, "partitions": 3}
    assert [p["start"] for p in manifest["parts"]] == [0, 100, 200]
    assert summary["rows_read"] == len(expected) and summary["errors"] == {"empty_text": 2, "null_text": 1,
                                                                          "text_too_long": 1}
    # Three partitions on two in-process workers: the model was loaded once, by the job's check.
    assert score.model_loads()[version_dir] == 1

    # Resume: forget the last partition, rerun, get the same output.
    manifest["parts"], manifest["complete"] = manifest["parts"][:-1], False
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    (out / "part-00002.parquet").unlink()
    assert run_job(config)["run"]["rows"] == len(expected) - 200
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
    assert run_job(_config(source, out, registry, keep_columns=True, engine="dask", dask_processes=False,
                           dask_workers=1))["run"]["rows"] == 0
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    manifest["complete"] = False
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ScoringError, match="partitioning.engine"):
        run_job(_config(source, out, registry, keep_columns=True, engine="dask", dask_processes=False,
                        dask_workers=1))


def test_dask_cluster_of_processes_loads_the_model_once_per_worker(
    tmp_path: Path, registry: Registry, local_output: tuple[Path, pd.DataFrame]
) -> None:
    from distributed import Client, LocalCluster

    source, expected = local_output
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        config = _config(source, tmp_path / "dask", registry, keep_columns=True, engine="dask",
                         scheduler=cluster.scheduler_address, chunk_size=50)  # 5 partitions
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
    spec = ScoreSpec(version_dir=str(tmp_path / "no-such-version"), model_version=7, text_column="text",
                     carry=("id",))
    engine = LocalEngine(source, spec, PartWriter(str(tmp_path), "parquet", source.schema),
                         columns=["id", "text"], chunk_size=64, workers=2)
    with pytest.raises(RuntimeError, match="failed to start"):
        engine.run(set(), lambda record: None)
