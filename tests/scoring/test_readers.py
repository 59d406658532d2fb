"""Input discovery, checks, chunking and Dask pieces."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.config import ScoringError
from scoring.readers import detect_format, open_input, read_piece, rechunk
from tests.scoring.conftest import write_input


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.parquet", "parquet"), ("a.CSV", "csv"), ("a.csv.gz", "csv"), ("a.jsonl", "jsonl"),
     ("a.ndjson.gz", "jsonl"), ("a.txt", None)],
)
def test_detect_format(name: str, fmt: str | None) -> None:
    assert detect_format(Path(name)) == fmt


def test_rechunk_makes_exact_sizes() -> None:
    frames = [pd.DataFrame({"x": range(a, b)}) for a, b in [(0, 3), (3, 4), (4, 15), (15, 15), (15, 22)]]
    out = list(rechunk(frames, 5))
    assert [len(f) for f in out] == [5, 5, 5, 5, 2]
    assert pd.concat(out)["x"].tolist() == list(range(22))


def test_folder_chunks_span_files_in_name_order(tmp_path: Path, reviews: pd.DataFrame) -> None:
    folder = tmp_path / "in"
    bounds = [0, 17, 18, 100, len(reviews)]
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        write_input(reviews.iloc[a:b], folder / f"part-{k:02d}.parquet")
    (folder / "_SUCCESS").touch()
    (folder / ".hidden.parquet").write_bytes(b"junk")
    source = open_input(folder)
    assert source.format == "parquet" and len(source.files) == 4
    assert source.total_rows == len(reviews)
    chunks = list(source.chunks(["id", "text"], 64))
    assert [c.start for c in chunks] == list(range(0, len(reviews), 64))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert pd.concat([c.frame for c in chunks])["id"].tolist() == reviews["id"].tolist()


def test_csv_reads_text_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('id,text\n007,"line one\nline two"\n008,\n009,NA\n010,null\n', encoding="utf-8")
    source = open_input(path)
    assert source.total_rows is None
    assert source.schema.field("id").type == pa.string()
    frame = next(source.frames(["id", "text"], 100))
    assert frame["id"].tolist() == ["007", "008", "009", "010"]
    assert frame["text"][0] == "line one\nline two"
    assert pd.isna(frame["text"][1])  # an empty CSV field is null
    assert frame["text"][2:].tolist() == ["NA", "null"]  # words, not missing values


def test_jsonl_keeps_types_and_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 1, "text": "good"}\n{"id": 2, "text": 5}\n{"id": 3}\n', encoding="utf-8")
    source = open_input(path)
    assert source.schema.field("id").type == pa.int64()
    frame = next(source.frames(["id", "text"], 100))
    assert frame["text"][0] == "good" and frame["text"][1] == 5 and pd.isna(frame["text"][2])


def test_fingerprint_changes_with_content(tmp_path: Path, reviews: pd.DataFrame) -> None:
    path = write_input(reviews, tmp_path / "in.csv")
    before = open_input(path).fingerprint()
    assert open_input(path).fingerprint() == before
    write_input(reviews.iloc[:-1], path)
    os.utime(path, ns=(0, 0))
    assert open_input(path).fingerprint() != before


def test_missing_column_is_named(tmp_path: Path, reviews: pd.DataFrame) -> None:
    source = open_input(write_input(reviews, tmp_path / "in.parquet"))
    with pytest.raises(ScoringError, match=r"no column 'review'.*columns are: id, label, rating, text"):
        source.require(["id", "review"])


@pytest.mark.parametrize(
    ("name", "content"),
    [("bad.parquet", b"not parquet at all"), ("bad.csv.gz", b"not gzip"), ("bad.jsonl", b"[1, 2\n")],
)
def test_unreadable_input_fails_at_open(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ScoringError, match="cannot read"):
        open_input(path)


def test_bad_inputs_are_refused(tmp_path: Path, reviews: pd.DataFrame) -> None:
    with pytest.raises(ScoringError, match="does not exist"):
        open_input(tmp_path / "nope.parquet")
    with pytest.raises(ScoringError, match="--input-format"):
        open_input(write_input(reviews, tmp_path / "in.csv").rename(tmp_path / "in.dat"))
    mixed = tmp_path / "mixed"
    write_input(reviews, mixed / "a.csv")
    write_input(reviews, mixed / "b.parquet")
    with pytest.raises(ScoringError, match="mixes formats"):
        open_input(mixed)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScoringError, match="no CSV, Parquet or JSON Lines"):
        open_input(tmp_path / "empty")


@pytest.mark.parametrize("name", ["in.parquet", "in.jsonl", "in.jsonl.gz", "in.csv.gz"])
def test_pieces_cover_every_row_once(tmp_path: Path, reviews: pd.DataFrame, name: str) -> None:
    source = open_input(write_input(reviews, tmp_path / name))
    pieces = source.pieces(chunk_size=100, block_bytes=5_000)
    if name in ("in.parquet", "in.jsonl"):
        assert len(pieces) > 2  # row groups / byte ranges really split the file
    frames = [read_piece(p, ["id", "text"]) for p in pieces]
    assert pd.concat(frames)["id"].astype(str).tolist() == reviews["id"].tolist()
    assert pd.concat(frames)["text"].tolist() == reviews["text"].tolist()


def test_gzip_jsonl_streams(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.writelines(f'{{"id": "{i}", "text": "t{i}"}}\n' for i in range(30))
    chunks = list(open_input(path).chunks(["id", "text"], 7))
    assert [len(c.frame) for c in chunks] == [7, 7, 7, 7, 2]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(max_size=30), min_size=1, max_size=40), block=st.integers(1, 300))
def test_jsonl_byte_ranges_give_every_line_once(tmp_path: Path, texts: list[str], block: int) -> None:
    path = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": i, "text": t}, ensure_ascii=False) for i, t in enumerate(texts)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")  # multi-byte characters included
    source = open_input(path)
    frames = [read_piece(p, ["id", "text"]) for p in source.pieces(chunk_size=10, block_bytes=block)]
    combined = pd.concat(frames, ignore_index=True)
    assert combined["id"].tolist() == list(range(len(texts)))
    assert combined["text"].tolist() == texts
