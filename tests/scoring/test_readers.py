"""Input discovery, checks, chunking and Dask partitions (row groups, byte ranges, streamed chunks)."""

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
from scoring.readers import Piece, detect_format, open_input, read_piece, rechunk
from tests.scoring.conftest import write_input


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.parquet", "parquet"),
        ("a.CSV", "csv"),
        ("a.csv.gz", "csv"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson.gz", "jsonl"),
        ("a.txt", None),
    ],
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


def _read_partitions(source, partition_size: int, chunk_size: int = 100, columns=("id", "text")) -> list:
    """Return every partition of the source, read as a worker would."""
    return [
        read_piece(p, list(columns)) for p in source.partitions(list(columns), partition_size, chunk_size)
    ]


@pytest.mark.parametrize("name", ["in.parquet", "in.jsonl", "in.csv", "in.jsonl.gz", "in.csv.gz"])
def test_partitions_cover_every_row_once(tmp_path: Path, reviews: pd.DataFrame, name: str) -> None:
    source = open_input(write_input(reviews, tmp_path / name))
    partitions = list(source.partitions(["id", "text"], 5_000, 100))
    if name.endswith(".gz"):  # not splittable: read here once, sent as chunks of --chunk-size rows
        assert [len(p) for p in partitions] == [100, 100, 40]
    else:  # row groups / byte ranges really split the file
        assert len(partitions) > 2 and all(isinstance(p, Piece) for p in partitions)
    frames = [read_piece(p, ["id", "text"]) for p in partitions]
    assert pd.concat(frames)["id"].astype(str).tolist() == reviews["id"].tolist()
    assert pd.concat(frames)["text"].tolist() == reviews["text"].tolist()


def test_parquet_partitions_are_runs_of_whole_row_groups(tmp_path: Path, reviews: pd.DataFrame) -> None:
    source = open_input(write_input(reviews, tmp_path / "in.parquet"))  # row groups of 50 rows
    assert [p.row_groups for p in source.partitions(["id", "text"], 1, 100)] == [(0,), (1,), (2,), (3,), (4,)]
    assert [p.row_groups for p in source.partitions(["id", "text"], 2**30, 100)] == [(0, 1, 2, 3, 4)]
    # Only the columns read count: the ids alone are far smaller than the texts.
    by_text = len(list(source.partitions(["id", "text"], 20_000, 100)))
    assert len(list(source.partitions(["id"], 20_000, 100))) < by_text


#: Characters that stress CSV splitting: record and field separators inside quoted fields, quotes.
CSV_TRICKY = st.lists(st.sampled_from(list('ab é,"\n\r\t😀') + ["\r\n", '""']), max_size=20).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(CSV_TRICKY, min_size=1, max_size=40),
    size=st.integers(1, 400),
    newline=st.sampled_from(["\n", "\r\n"]),
    sep=st.sampled_from([",", "\t"]),
)
def test_csv_byte_ranges_split_at_record_ends(
    tmp_path: Path, texts: list[str], size: int, newline: str, sep: str
) -> None:
    path = tmp_path / ("in.csv" if sep == "," else "in.tsv")
    frame = pd.DataFrame({"id": [f"{i:03d}" for i in range(len(texts))], "text": texts, "n": 1})
    frame.to_csv(path, index=False, sep=sep, lineterminator=newline)
    source = open_input(path)
    whole = pd.concat(source.frames(["id", "text"], 1_000), ignore_index=True)  # what the local engine reads
    combined = pd.concat(_read_partitions(source, size), ignore_index=True)
    pd.testing.assert_frame_equal(combined, whole)
    if newline == "\r\n" or not any("\r" in t for t in texts):  # pandas writes a lone \r unquoted
        assert combined["id"].tolist() == frame["id"].tolist()


def test_csv_split_follows_the_parser_on_hand_written_quotes(tmp_path: Path) -> None:
    # A quote inside an unquoted field is a plain character (5"9); counting quotes would get it wrong.
    rows = ['1,He is 5"9 tall', '2,"a quoted\nreview, with ""quotes"""', "3,plain", '4,"x"', '5,ok"', "6,"]
    path = tmp_path / "in.csv"
    path.write_text("id,text\n" + "\n".join(rows * 20) + "\n", encoding="utf-8")
    source = open_input(path)
    whole = pd.concat(source.frames(["id", "text"], 1_000), ignore_index=True)
    assert len(whole) == 120 and whole["text"][1] == 'a quoted\nreview, with "quotes"'
    for size in (1, 7, 30, 100, 10_000):
        pd.testing.assert_frame_equal(pd.concat(_read_partitions(source, size), ignore_index=True), whole)


def test_csv_header_with_quotes_and_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('"id","the\ntext"\n1,"a\nb"\n2,c\n3,d\n', encoding="utf-8")
    source = open_input(path)
    frames = _read_partitions(source, 1, columns=("id", "the\ntext", "absent"))
    assert len(frames) == 3
    combined = pd.concat(frames, ignore_index=True)
    assert combined["the\ntext"].tolist() == ["a\nb", "c", "d"] and combined["absent"].isna().all()


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
    frames = _read_partitions(source, block, chunk_size=10)
    combined = pd.concat(frames, ignore_index=True)
    assert combined["id"].tolist() == list(range(len(texts)))
    assert combined["text"].tolist() == texts
