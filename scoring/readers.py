"""Find, check and stream the input rows: CSV, Parquet, JSON Lines, or a folder of such parts.

Everything the job needs to know about its input is settled by :func:`open_input` before any
output is written: which files, which format, which columns (and their output types), how many
rows when the format records it, and a fingerprint that tells a resumed job it is reading the same
data. Rows are then streamed in bounded chunks, so memory does not grow with the input size.

Column types: Parquet columns keep their Arrow types. CSV has no types, so every CSV column is
read as text (``"007"`` stays ``"007"``); an empty CSV field reads as null. JSON Lines types are
inferred from the first records of each file (values that do not fit the inferred type later are
reported by the writer); JSON Lines files may omit keys, which read as null.

Paths are local paths or fsspec URLs (``scoring.storage``). For Dask, :meth:`InputSource.partitions`
cuts the input into pieces that workers read on their own, so that many workers share one big file:

- Parquet: runs of whole row groups of about ``partition_size`` bytes (uncompressed, columns read);
- JSON Lines: byte ranges of ``partition_size`` bytes; a line belongs to the range it starts in
  (JSON strings cannot hold a raw newline, so every newline ends a record);
- CSV: byte ranges cut at record ends found by a sequential scan with the ``csv`` module, which
  follows quoting exactly as pandas does (a quoted field may hold newlines, commas, quotes);
  each piece is parsed with the file's header bytes in front of it;
- compressed files (``.gz``, ...) cannot be read from the middle: this process streams them
  once and ships chunks of ``chunk_size`` rows to the workers.

The CSV scan reads the file once on the client (tens of MB/s), while pieces are already being
scored: pieces are yielded as soon as the scan passes them.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from registry.files import TABLE_SUFFIXES
from scoring import storage
from scoring.config import ScoringError

log = logging.getLogger(__name__)

SUFFIXES = TABLE_SUFFIXES  # the file endings of each format, shared with the trainer
#: Suffixes of compressed files (not splittable: streamed by the client, see the module docstring).
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip")
#: Rows sampled from each JSON Lines file to learn its keys and value types.
JSONL_SAMPLE_ROWS = 1_000
#: Bytes hashed at each end of every input file for the fingerprint.
FINGERPRINT_BYTES = 64 * 2**10
#: Pandas-written Parquet may store its index as a column; it is not input data.
_PANDAS_INDEX_PREFIX = "__index_level_"


@dataclass(frozen=True)
class Chunk:
    """A run of consecutive input rows: chunk ``index`` holds rows ``[start, start + len(frame))``."""

    index: int
    start: int
    frame: pd.DataFrame


@dataclass(frozen=True)
class Piece:
    """A part of one input file that a Dask worker reads on its own (row groups or a byte range)."""

    path: str
    format: str
    row_groups: tuple[int, ...] | None = None  # Parquet
    byte_range: tuple[int, int] | None = None  # uncompressed JSON Lines / CSV; None = the whole file
    header_bytes: int = 0  # CSV: the file's first bytes [0, header_bytes) hold its header record

    def describe(self) -> str:
        """Return where the piece lies, for error messages."""
        if self.row_groups is not None:
            return (
                f"{self.path} row groups {self.row_groups[0]}-{self.row_groups[-1]}"
                if self.row_groups
                else self.path
            )
        if self.byte_range is not None:
            return f"{self.path} bytes {self.byte_range[0]}-{self.byte_range[1]}"
        return self.path


def detect_format(path: str | Path) -> str | None:
    """Return the input format a file name implies, or None."""
    name = storage.basename(path).lower()
    for fmt, suffixes in SUFFIXES.items():
        if name.endswith(suffixes):
            return fmt
    return None


def is_compressed(path: str) -> bool:
    """Return True for a compressed file (which cannot be read from the middle)."""
    return storage.basename(path).lower().endswith(COMPRESSED_SUFFIXES)


def _list_files(root: str, input_format: str) -> tuple[list[str], str]:
    """Return the data files under ``root`` (sorted, hidden/underscore files skipped) and their format."""
    if storage.is_file(root):
        fmt = detect_format(root) if input_format == "auto" else input_format
        if fmt is None:
            raise ScoringError(
                f"cannot tell the format of {root} from its name; pass --input-format csv|parquet|jsonl"
            )
        return [root], fmt
    if not storage.is_dir(root):
        raise ScoringError(f"input {root} does not exist")
    parts = {p: storage.relative(p, root).split("/") for p in storage.list_files(root)}
    candidates = sorted(
        (p for p, rel in parts.items() if not any(part.startswith((".", "_")) for part in rel)), key=parts.get
    )
    if input_format == "auto":
        formats = {p: detect_format(p) for p in candidates}
        found = {f for f in formats.values() if f}
        if not found:
            raise ScoringError(f"input folder {root} holds no CSV, Parquet or JSON Lines files")
        if len(found) > 1:
            raise ScoringError(f"input folder {root} mixes formats {sorted(found)}; score them separately")
        fmt = found.pop()
        files = [p for p in candidates if formats[p] == fmt]
        skipped = len(candidates) - len(files)
        if skipped:
            log.warning("ignoring %d file(s) in %s that are not %s", skipped, root, fmt)
        return files, fmt
    if not candidates:
        raise ScoringError(f"input folder {root} is empty")
    return candidates, input_format


def _infer_jsonl_type(values: pd.Series) -> pa.DataType:
    """Return the Arrow type for a JSON column: bool/int/float when consistent, otherwise string."""
    try:
        inferred = pa.array(values, from_pandas=True).type
    except (pa.ArrowException, TypeError, ValueError):
        return pa.string()
    if pa.types.is_boolean(inferred) or pa.types.is_integer(inferred) or pa.types.is_floating(inferred):
        return pa.int64() if pa.types.is_integer(inferred) else inferred
    return pa.string()


def _read_jsonl(path: Any, **kwargs: Any) -> Any:
    """Call pandas' JSON Lines reader with the options every consumer here must share."""
    # dtype=False: keep JSON's own types; a number in the text column must stay a number so it is
    # reported as "not_a_string" instead of being silently turned into text.
    return pd.read_json(path, lines=True, dtype=False, encoding_errors="replace", **kwargs)


def _csv_separator(path: str) -> str:
    """Return the field separator a CSV file name implies (tab for .tsv and .tsv.gz)."""
    return "\t" if storage.basename(path).lower().endswith((".tsv", ".tsv.gz")) else ","


def _read_csv(source: Any, sep: str, **kwargs: Any) -> Any:
    """Call pandas' CSV reader with the options every consumer here must share."""
    # Text only, and only empty fields are null: a review reading "NA" or "null" is still a review.
    return pd.read_csv(
        source, sep=sep, dtype=str, keep_default_na=False, na_values=[""], encoding_errors="replace", **kwargs
    )


@contextlib.contextmanager
def _parquet_file(path: str, **kwargs: Any) -> Iterator[pq.ParquetFile]:
    """Open a Parquet file, local or remote, and close it afterwards."""
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(storage.open_file(path)) if storage.is_url(path) else path
        yield stack.enter_context(pq.ParquetFile(source, **kwargs))


def _file_schema(path: str, fmt: str) -> tuple[pa.Schema, int | None]:
    """Read one file's columns, output types and row count (when recorded); fail if unreadable."""
    try:
        if fmt == "parquet":
            with _parquet_file(path) as pf:
                schema = pa.schema(
                    [f for f in pf.schema_arrow if not f.name.startswith(_PANDAS_INDEX_PREFIX)]
                )
                return schema, pf.metadata.num_rows
        if fmt == "csv":
            header = _read_csv(path, _csv_separator(path), nrows=0)
            return pa.schema([(str(c), pa.string()) for c in header.columns]), None
        sample = _read_jsonl(path, nrows=JSONL_SAMPLE_ROWS)
        return pa.schema([(str(c), _infer_jsonl_type(sample[c])) for c in sample.columns]), None
    except ScoringError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure means "unreadable input"
        raise ScoringError(f"cannot read {path} as {fmt}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class InputSource:
    """The checked input: its files, format, output column types and (when known) row count."""

    root: str  # absolute path or URL
    files: tuple[str, ...]
    format: str
    schema: pa.Schema  # every column seen, in first-seen order, with the type the output keeps
    file_columns: tuple[frozenset[str], ...]  # the columns each file actually has
    total_rows: int | None  # None when the format does not record it (CSV, JSON Lines)

    @property
    def columns(self) -> list[str]:
        """Return the input column names in order."""
        return list(self.schema.names)

    def require(self, names: Sequence[str]) -> None:
        """Fail with a clear message unless every file has every named column."""
        for path, have in zip(self.files, self.file_columns):
            missing = [n for n in names if n not in have]
            if missing:
                raise ScoringError(
                    f"input {path} has no column {', '.join(map(repr, missing))}; "
                    f"its columns are: {', '.join(sorted(have))}"
                )

    def fingerprint(self) -> str:
        """Return a digest of names, sizes, mtimes and head/tail bytes: changes when the input does."""
        digest = hashlib.sha256()
        for path in self.files:
            size, stamp = storage.stamp(path)
            rel = storage.basename(path) if path == self.root else storage.relative(path, self.root)
            digest.update(json.dumps([rel, size, stamp]).encode())
            digest.update(storage.read_bytes(path, 0, min(size, FINGERPRINT_BYTES)))
            if size > 2 * FINGERPRINT_BYTES:
                digest.update(storage.read_bytes(path, size - FINGERPRINT_BYTES, size))
        return digest.hexdigest()

    # -- local streaming ---------------------------------------------------------------------
    def frames(self, columns: Sequence[str], batch_rows: int) -> Iterator[pd.DataFrame]:
        """Yield the named columns of every row, file after file, in frames of at most ``batch_rows``."""
        columns = list(columns)
        for path, have in zip(self.files, self.file_columns):
            present = [c for c in columns if c in have]
            for frame in _stream_file(path, self.format, present, batch_rows):
                yield frame.reindex(columns=columns)

    def chunks(self, columns: Sequence[str], chunk_size: int) -> Iterator[Chunk]:
        """Yield consecutive chunks of exactly ``chunk_size`` rows (the last may be shorter)."""
        start = 0
        for index, frame in enumerate(rechunk(self.frames(columns, chunk_size), chunk_size)):
            yield Chunk(index, start, frame)
            start += len(frame)

    # -- Dask ----------------------------------------------------------------------------------
    def partitions(
        self, columns: Sequence[str], partition_size: int, chunk_size: int
    ) -> Iterator[Piece | pd.DataFrame]:
        """Yield the Dask partitions in input order: pieces workers read, or frames read here.

        Every row lands in exactly one partition, and the same input and sizes always give the
        same partitions (resuming relies on it). Compressed files yield frames of ``chunk_size``
        rows (with every named column); everything else yields :class:`Piece` descriptions.
        """
        columns = list(columns)
        for path, have in zip(self.files, self.file_columns):
            if is_compressed(path):
                present = [c for c in columns if c in have]
                for frame in rechunk(_stream_file(path, self.format, present, chunk_size), chunk_size):
                    yield frame.reindex(columns=columns)
            elif self.format == "parquet":
                yield from _parquet_pieces(path, columns, partition_size)
            elif self.format == "jsonl":
                size, _ = storage.stamp(path)
                for begin in range(0, max(size, 1), partition_size):
                    yield Piece(path, "jsonl", byte_range=(begin, min(begin + partition_size, size)))
            else:
                yield from _csv_pieces(path, partition_size)

    def empty_frame(self, columns: Sequence[str]) -> pd.DataFrame:
        """Return an empty frame with the pandas dtypes the readers produce."""
        if self.format == "parquet":
            return self.schema.empty_table().to_pandas()[list(columns)]
        if self.format == "csv":
            return pd.DataFrame({c: pd.Series([], dtype="str") for c in columns})
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})


def open_input(path: str | Path, input_format: str = "auto") -> InputSource:
    """Find and check the input's files, columns and row count; raise ScoringError if unusable."""
    root = storage.absolute(path)
    try:
        files, fmt = _list_files(root, input_format)
    except (OSError, ValueError) as exc:  # unreachable store, no credentials, bad URL
        raise ScoringError(f"cannot list input {root}: {type(exc).__name__}: {exc}") from exc
    schemas, counts, file_columns = [], [], []
    for f in files:
        schema, rows = _file_schema(f, fmt)
        schemas.append(schema)
        counts.append(rows)
        file_columns.append(frozenset(schema.names))
    fields: dict[str, pa.Field] = {}
    for path_, schema in zip(files, schemas):
        for field in schema:
            seen = fields.setdefault(field.name, field)
            if seen.type != field.type:
                if fmt == "jsonl":  # JSON types are guesses: disagreeing guesses fall back to text
                    fields[field.name] = pa.field(field.name, pa.string())
                else:
                    raise ScoringError(
                        f"column {field.name!r} is {seen.type} in {files[0]} but {field.type} in {path_}"
                    )
    total = None if any(c is None for c in counts) else int(sum(counts))
    source = InputSource(
        root, tuple(files), fmt, pa.schema(list(fields.values())), tuple(file_columns), total
    )
    log.info(
        "input %s: %d %s file(s), %s rows, columns %s",
        root,
        len(files),
        fmt,
        "unknown" if total is None else f"{total:,}",
        source.columns,
    )
    return source


def _stream_file(path: str, fmt: str, columns: list[str], batch_rows: int) -> Iterator[pd.DataFrame]:
    """Yield one file's rows in frames of at most ``batch_rows`` without loading the whole file."""
    if fmt == "parquet":
        # pre_buffer=False + a read buffer: stream column chunks instead of loading a row group.
        with _parquet_file(path, pre_buffer=False, buffer_size=2**20) as pf:
            for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
                yield batch.to_pandas()
    elif fmt == "csv":
        with _read_csv(path, _csv_separator(path), usecols=columns, chunksize=batch_rows) as reader:
            yield from reader
    else:
        with _read_jsonl(path, chunksize=batch_rows) as reader:
            yield from reader


def _parquet_pieces(path: str, columns: list[str], partition_size: int) -> Iterator[Piece]:
    """Group consecutive row groups until the columns read reach ``partition_size`` bytes."""
    with _parquet_file(path) as pf:
        meta = pf.metadata
    wanted = set(columns)
    group: list[int] = []
    size = 0
    for g in range(meta.num_row_groups):
        row_group = meta.row_group(g)
        group.append(g)
        size += sum(
            row_group.column(i).total_uncompressed_size
            for i in range(row_group.num_columns)
            if row_group.column(i).path_in_schema in wanted
        )
        if size >= partition_size:
            yield Piece(path, "parquet", row_groups=tuple(group))
            group, size = [], 0
    if group or meta.num_row_groups == 0:
        yield Piece(path, "parquet", row_groups=tuple(group))


def _csv_pieces(path: str, partition_size: int) -> Iterator[Piece]:
    """Cut an uncompressed CSV file into byte ranges of about ``partition_size`` at record ends."""
    size, _ = storage.stamp(path)
    header = start = 0
    with storage.open_file(path) as fh:
        ends = csv_record_ends(fh, _csv_separator(path), partition_size)
        try:
            header = start = next(ends, size)
            for end in ends:
                if end < size:
                    yield Piece(path, "csv", byte_range=(start, end), header_bytes=header)
                    start = end
        except csv.Error as exc:  # e.g. a bare carriage return in a quoted record: stop cutting here
            log.warning(
                "%s: cannot find CSV record ends after byte %d (%s): the rest is one partition",
                path,
                start,
                exc,
            )
        yield Piece(path, "csv", byte_range=(start, size), header_bytes=header)


def csv_record_ends(fh: IO[bytes], delimiter: str, every: int) -> Iterator[int]:
    """Yield byte offsets where a CSV record ends: the header's end, then one every ``every`` bytes or more.

    A line without a quote character that starts a record is a whole record; a record with quotes
    is handed to the ``csv`` module (the same quoting rules as pandas' parser), which consumes as
    many lines as its quoted fields span. Only those lines are decoded, so the scan stays fast.
    """
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # the default 128 KiB is below --max-chars
    lines = iter(fh)  # binary lines, split at b"\n" only (as the csv module and pandas split records)
    consumed = 0

    def record_lines(first: bytes) -> Iterator[str]:
        """Feed the csv module one record's lines, counting the bytes it takes."""
        nonlocal consumed
        consumed = len(first)
        yield first.decode("utf-8", "replace")
        for line in lines:
            consumed += len(line)
            yield line.decode("utf-8", "replace")

    position, last = 0, None
    for line in lines:
        if b'"' in line:
            next(csv.reader(record_lines(line), delimiter=delimiter))
            position += consumed
        else:
            position += len(line)
        if last is None or position - last >= every:
            yield position
            last = position


def read_piece(piece: Piece | pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Read one :class:`Piece` completely (runs on a Dask worker); a frame is returned as it is."""
    if isinstance(piece, pd.DataFrame):
        return piece
    columns = list(columns)
    wanted = set(columns)
    if piece.format == "parquet":
        with _parquet_file(piece.path) as pf:
            present = [c for c in columns if c in pf.schema_arrow.names]
            table = pf.read_row_groups(list(piece.row_groups or ()), columns=present)
        return table.to_pandas().reindex(columns=columns)
    if piece.format == "csv":
        source: Any = piece.path
        if piece.byte_range is not None:
            with storage.open_file(piece.path) as fh:
                header = fh.read(piece.header_bytes)
                fh.seek(piece.byte_range[0])
                source = io.BytesIO(header + fh.read(piece.byte_range[1] - piece.byte_range[0]))
        frame = _read_csv(source, _csv_separator(piece.path), usecols=lambda c: c in wanted)
        return frame.reindex(columns=columns)
    if piece.byte_range is None:
        return _read_jsonl(piece.path).reindex(columns=columns)
    data = _read_line_block(piece.path, *piece.byte_range)
    if not data.strip():
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    return _read_jsonl(io.BytesIO(data)).reindex(columns=columns)


def _read_line_block(path: str, begin: int, end: int) -> bytes:
    """Return the whole lines that *start* inside ``[begin, end)`` (each line lands in one block)."""
    with storage.open_file(path) as fh:
        if begin > 0:
            fh.seek(begin - 1)
            fh.readline()  # finish the line that started before ``begin`` (it belongs to the previous block)
        start = fh.tell()
        if start >= end:
            return b""
        data = fh.read(end - start)
        if not data.endswith(b"\n"):
            data += fh.readline()
        return data


def rechunk(frames: Iterable[pd.DataFrame], size: int) -> Iterator[pd.DataFrame]:
    """Regroup frames of any sizes into frames of exactly ``size`` rows (the last may be shorter)."""
    buffer: list[pd.DataFrame] = []
    held = 0
    for frame in frames:
        while len(frame):
            take = frame.iloc[: size - held]
            frame = frame.iloc[size - held :]
            buffer.append(take)
            held += len(take)
            if held == size:
                yield _concat(buffer)
                buffer, held = [], 0
    if held:
        yield _concat(buffer)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate frames with a fresh 0..n-1 index."""
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    return pd.concat(frames, ignore_index=True)
