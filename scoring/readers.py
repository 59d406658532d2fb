"""Find, check and stream the input rows: CSV, Parquet, JSON Lines, or a folder of such parts.

Everything the job needs to know about its input is settled by :func:`open_input` before any
output is written: which files, which format, which columns (and their output types), how many
rows when the format records it, and a fingerprint that tells a resumed job it is reading the same
data. Rows are then streamed in bounded chunks, so memory does not grow with the input size.

Column types: Parquet columns keep their Arrow types. CSV has no types, so every CSV column is
read as text (``"007"`` stays ``"007"``); an empty CSV field reads as null. JSON Lines types are
inferred from the first records of each file (values that do not fit the inferred type later are
reported by the writer); JSON Lines files may omit keys, which read as null.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from registry.files import TABLE_SUFFIXES
from scoring.config import ScoringError

if TYPE_CHECKING:
    import dask.dataframe as dd

log = logging.getLogger(__name__)

SUFFIXES = TABLE_SUFFIXES  # the file endings of each format, shared with the trainer
#: Rows sampled from each JSON Lines file to learn its keys and value types.
JSONL_SAMPLE_ROWS = 1_000
#: Bytes per Dask partition of an uncompressed JSON Lines file (split at line boundaries).
JSONL_BLOCK_BYTES = 64 * 2**20
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
    byte_range: tuple[int, int] | None = None  # uncompressed JSON Lines; None = the whole file


def detect_format(path: Path) -> str | None:
    """Return the input format a file name implies, or None."""
    name = path.name.lower()
    for fmt, suffixes in SUFFIXES.items():
        if name.endswith(suffixes):
            return fmt
    return None


def _list_files(root: Path, input_format: str) -> tuple[list[Path], str]:
    """Return the data files under ``root`` (sorted, hidden/underscore files skipped) and their format."""
    if root.is_file():
        fmt = detect_format(root) if input_format == "auto" else input_format
        if fmt is None:
            raise ScoringError(
                f"cannot tell the format of {root} from its name; pass --input-format csv|parquet|jsonl"
            )
        return [root], fmt
    if not root.is_dir():
        raise ScoringError(f"input {root} does not exist")
    candidates = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(root).parts)
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


def _read_csv(path: Any, **kwargs: Any) -> Any:
    """Call pandas' CSV reader with the options every consumer here must share."""
    # Text only, and only empty fields are null: a review reading "NA" or "null" is still a review.
    sep = "\t" if str(path).lower().endswith((".tsv", ".tsv.gz")) else ","
    return pd.read_csv(
        path, sep=sep, dtype=str, keep_default_na=False, na_values=[""], encoding_errors="replace", **kwargs
    )


def _file_schema(path: Path, fmt: str) -> tuple[pa.Schema, int | None]:
    """Read one file's columns, output types and row count (when recorded); fail if unreadable."""
    try:
        if fmt == "parquet":
            pf = pq.ParquetFile(path)
            schema = pa.schema([f for f in pf.schema_arrow if not f.name.startswith(_PANDAS_INDEX_PREFIX)])
            return schema, pf.metadata.num_rows
        if fmt == "csv":
            header = _read_csv(path, nrows=0)
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

    root: Path
    files: tuple[Path, ...]
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
            stat = path.stat()
            rel = path.name if path == self.root else str(path.relative_to(self.root))
            digest.update(json.dumps([rel, stat.st_size, stat.st_mtime_ns]).encode())
            with open(path, "rb") as fh:
                digest.update(fh.read(FINGERPRINT_BYTES))
                if stat.st_size > 2 * FINGERPRINT_BYTES:
                    fh.seek(-FINGERPRINT_BYTES, 2)
                    digest.update(fh.read())
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
    def pieces(self, chunk_size: int, block_bytes: int = JSONL_BLOCK_BYTES) -> list[Piece]:
        """Split the input into independently readable pieces, in input order (Dask partitions)."""
        pieces: list[Piece] = []
        for path in self.files:
            if self.format == "parquet":
                meta = pq.ParquetFile(path).metadata
                group: list[int] = []
                rows = 0
                for g in range(meta.num_row_groups):
                    group.append(g)
                    rows += meta.row_group(g).num_rows
                    if rows >= chunk_size:
                        pieces.append(Piece(str(path), "parquet", row_groups=tuple(group)))
                        group, rows = [], 0
                if group or meta.num_row_groups == 0:
                    pieces.append(Piece(str(path), "parquet", row_groups=tuple(group)))
            elif self.format == "jsonl" and path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
                size = path.stat().st_size
                for begin in range(0, max(size, 1), block_bytes):
                    pieces.append(Piece(str(path), "jsonl", byte_range=(begin, min(begin + block_bytes, size))))
            else:  # CSV may quote newlines and compressed files cannot be split: one piece per file
                pieces.append(Piece(str(path), self.format))
        return pieces

    def empty_frame(self, columns: Sequence[str]) -> pd.DataFrame:
        """Return an empty frame with the pandas dtypes the readers produce (Dask's ``meta``)."""
        if self.format == "parquet":
            return self.schema.empty_table().to_pandas()[list(columns)]
        if self.format == "csv":
            return pd.DataFrame({c: pd.Series([], dtype="str") for c in columns})
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})

    def dask_frame(self, columns: Sequence[str], chunk_size: int) -> "dd.DataFrame":
        """Return a ``dask.dataframe`` over the named columns, one partition per :meth:`pieces` item."""
        import dask.dataframe as dd

        columns = list(columns)
        return dd.from_map(
            read_piece,
            self.pieces(chunk_size),
            columns=columns,
            meta=self.empty_frame(columns),
            label="read-input",
            enforce_metadata=False,
        )


def open_input(path: str | Path, input_format: str = "auto") -> InputSource:
    """Find and check the input's files, columns and row count; raise ScoringError if unusable."""
    root = Path(path)
    files, fmt = _list_files(root, input_format)
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
    source = InputSource(root, tuple(files), fmt, pa.schema(list(fields.values())), tuple(file_columns), total)
    log.info(
        "input %s: %d %s file(s), %s rows, columns %s",
        root, len(files), fmt, "unknown" if total is None else f"{total:,}", source.columns,
    )
    return source


def _stream_file(path: Path, fmt: str, columns: list[str], batch_rows: int) -> Iterator[pd.DataFrame]:
    """Yield one file's rows in frames of at most ``batch_rows`` without loading the whole file."""
    if fmt == "parquet":
        # pre_buffer=False + a read buffer: stream column chunks instead of loading a row group.
        pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=2**20)
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            yield batch.to_pandas()
    elif fmt == "csv":
        with _read_csv(path, usecols=columns, chunksize=batch_rows) as reader:
            yield from reader
    else:
        with _read_jsonl(path, chunksize=batch_rows) as reader:
            yield from reader


def read_piece(piece: Piece, columns: Sequence[str]) -> pd.DataFrame:
    """Read one :class:`Piece` completely (runs on a Dask worker)."""
    columns = list(columns)
    if piece.format == "parquet":
        pf = pq.ParquetFile(piece.path)
        present = [c for c in columns if c in pf.schema_arrow.names]
        table = pf.read_row_groups(list(piece.row_groups or ()), columns=present)
        return table.to_pandas().reindex(columns=columns)
    if piece.format == "csv":
        header = _read_csv(piece.path, nrows=0).columns
        return _read_csv(piece.path, usecols=[c for c in columns if c in header]).reindex(columns=columns)
    if piece.byte_range is None:
        return _read_jsonl(piece.path).reindex(columns=columns)
    data = _read_line_block(piece.path, *piece.byte_range)
    if not data.strip():
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    return _read_jsonl(io.BytesIO(data)).reindex(columns=columns)


def _read_line_block(path: str, begin: int, end: int) -> bytes:
    """Return the whole lines that *start* inside ``[begin, end)`` (each line lands in one block)."""
    with open(path, "rb") as fh:
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
