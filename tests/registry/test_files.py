"""Atomic writes, checksums and table formats: one implementation each, shared by every image."""

from __future__ import annotations

import hashlib
import json

import pytest

from registry.files import atomic_path, file_sha256, table_format, write_json_atomic


def test_atomic_path_publishes_only_on_success(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed midway")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # the temporary file is gone
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".")
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # invisible until the block ends
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_json_is_written_atomically_and_sorted(tmp_path):
    path = tmp_path / "doc.json"
    write_json_atomic(path, {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    assert path.read_text().index('"a"') < path.read_text().index('"b"')


def test_file_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "blob"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("a.csv", "csv"),
        ("A.CSV.GZ", "csv"),
        ("a.tsv", "csv"),
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
        ("a.jsonl.gz", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.xlsx", None),
        ("csv", None),
    ],
)
def test_table_format_from_the_file_name(name, fmt):
    assert table_format(name) == fmt


def test_trainer_pipeline_and_scorer_accept_the_same_files():
    from registry.files import TABLE_SUFFIXES
    from scoring import readers

    assert readers.SUFFIXES is TABLE_SUFFIXES
