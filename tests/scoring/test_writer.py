"""Part files, the manifest and its refusal rules, summaries."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scoring.config import ScoringError
from scoring.writer import (
    MANIFEST_FILE,
    RESULT_FIELDS,
    Manifest,
    PartWriter,
    prepare_output,
    read_output,
    to_arrow,
)

SCHEMA = pa.schema([pa.field("id", pa.string())] + RESULT_FIELDS)
JOB = {
    "input": {"path": "/a", "fingerprint": "f1"},
    "model": {"name": "m", "version": 1, "path": "/m/1"},
    "columns": [["id", "string"]],
    "partitioning": {"engine": "local", "chunk_size": 2},
}


def _scored(ids: list[str], errors: list[str | None]) -> pd.DataFrame:
    ok = [e is None for e in errors]
    return pd.DataFrame(
        {
            "id": ids,
            "probability": [0.9 if k else None for k in ok],
            "score": [0.9 if k else None for k in ok],
            "label": ["positive" if k else None for k in ok],
            "model_version": 1,
            "error": errors,
        }
    )


def test_part_is_written_atomically_with_counts(tmp_path: Path) -> None:
    writer = PartWriter(str(tmp_path), "parquet", SCHEMA)
    record = writer.write(3, _scored(["a", "b", "c"], [None, "empty_text", None]), start=30)
    assert record == {
        "part": 3,
        "file": "part-00003.parquet",
        "rows": 3,
        "scored": 2,
        "errors": {"empty_text": 1},
        "labels": {"positive": 2},
        "start": 30,
        "stop": 33,
    }
    assert [p.name for p in tmp_path.iterdir()] == ["part-00003.parquet"]  # no temp file left
    assert pq.read_schema(tmp_path / "part-00003.parquet").remove_metadata() == SCHEMA


def test_to_arrow_renders_mixed_values_in_text_columns() -> None:
    frame = _scored(["a", "b"], [None, None])
    frame["id"] = pd.Series(["a", {"x": 1}], dtype=object)
    assert to_arrow(frame, SCHEMA)["id"].to_pylist() == ["a", '{"x": 1}']
    with pytest.raises(ValueError, match="'id' holds values that are not int64"):
        to_arrow(_scored(["a", "b"], [None, None]), SCHEMA.set(0, pa.field("id", pa.int64())))


def test_manifest_resumes_same_job_and_refuses_another(tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = prepare_output(out, JOB)
    manifest.record(
        {"part": 1, "file": "part-00001.parquet", "rows": 2, "scored": 2, "errors": {}, "labels": {}}
    )
    moved = {**JOB, "input": {**JOB["input"], "path": "/moved"}}  # paths are informational
    assert set(prepare_output(out, moved).done) == {1}

    other = {**JOB, "model": {**JOB["model"], "version": 2}}
    with pytest.raises(ScoringError, match=r"another job \(model.version: 1 -> 2\).*--overwrite"):
        prepare_output(out, other)
    assert set(Manifest.read(out).done) == {1}  # untouched

    (out / "part-00001.parquet").write_bytes(b"x")
    (out / "notes.txt").write_text("mine")
    fresh = prepare_output(out, other, overwrite=True)
    assert fresh.done == {} and fresh.job["model"]["version"] == 2
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_FILE, "notes.txt"]  # only ours deleted


def test_non_empty_folder_without_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("do not delete")
    with pytest.raises(ScoringError, match="not empty"):
        prepare_output(tmp_path, JOB)
    assert not (tmp_path / MANIFEST_FILE).exists()
    with pytest.raises(ScoringError, match="not a folder"):
        prepare_output(tmp_path / "precious.txt", JOB)


def test_summary_adds_up_parts_and_finish_fills_ranges(tmp_path: Path) -> None:
    manifest = prepare_output(tmp_path, JOB)
    writer = PartWriter(str(tmp_path), "csv", SCHEMA)
    manifest.record(writer.write(1, _scored(["c"], ["null_text"])))
    manifest.record(writer.write(0, _scored(["a", "b"], [None, "empty_text"])))
    manifest.finish()
    assert [(p["start"], p["stop"]) for p in manifest.doc["parts"]] == [(0, 2), (2, 3)]
    summary = manifest.summary()
    assert summary | {"model": None} == {
        "rows_read": 3,
        "rows_scored": 1,
        "rows_errored": 2,
        "errors": {"empty_text": 1, "null_text": 1},
        "labels": {"positive": 1},
        "parts": 2,
        "complete": True,
        "model": None,
        "input": "/a",
        "output": str(tmp_path),
    }
    assert read_output(tmp_path)["id"].tolist() == ["a", "b", "c"]
