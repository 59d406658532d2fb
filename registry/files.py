"""File helpers every image shares: atomic writes, sha256 checksums and the table formats we read.

One home for each, so the registry, the trainer, the fetcher and the batch scorer cannot drift
apart. Only the standard library is imported here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Iterator

#: Table file formats by name, and the (lower-case) file name endings that mean each.
TABLE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "parquet": (".parquet", ".parq", ".pq"),
    "csv": (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst", ".tsv", ".tsv.gz"),
    "jsonl": (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json", ".json.gz"),
}


def table_format(path: str | os.PathLike) -> str | None:
    """Return the table format a file name implies ("parquet", "csv" or "jsonl"), or None."""
    name = Path(path).name.lower()
    return next((fmt for fmt, suffixes in TABLE_SUFFIXES.items() if name.endswith(suffixes)), None)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary path next to ``path``; on success fsync it and rename it into place.

    Readers see the old file or the new one, never a mix (``os.replace`` is atomic on POSIX); if
    the block raises, the temporary file is deleted and ``path`` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as fh:  # the data must be on disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)  # the rename itself survives a crash only once its directory is flushed
    finally:
        tmp.unlink(missing_ok=True)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory's entries (a rename or a new file in it) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """Flush every file and directory under ``root`` (and ``root``) to disk, before publishing it."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(folder)


def write_json_atomic(path: str | os.PathLike, doc: dict) -> None:
    """Write JSON to ``path`` so that readers see the old file or the new one, never a mix."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")


def file_sha256(path: str | os.PathLike) -> str:
    """Return a file's sha256 hex digest."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
