"""Paths that are local files or fsspec URLs (``s3://bucket/key``): one small API for both.

The client of a job and its Dask workers may run on different machines. A local path only works
there if every machine mounts the same storage at the same place; a URL works wherever the
credentials do. Local paths keep the guarantees resuming relies on (write a temp file, fsync,
rename it into place); on an object store a PUT is atomic by itself (an object appears only once
its upload completed), so files are buffered and put straight to their final key.

Credentials and endpoints come from each process's environment, never from the job (the job is
shipped to every worker): for S3 the usual AWS variables and files (``AWS_ACCESS_KEY_ID``,
``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` for S3-compatible servers, ...), or fsspec's
``FSSPEC_S3_<OPTION>`` variables for any other s3fs option.
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterator

from registry.files import atomic_path

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

PathLike = str | os.PathLike


def is_url(path: PathLike) -> bool:
    """Return True for ``scheme://...`` locations (other than ``file://``), which fsspec opens."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def absolute(path: PathLike) -> str:
    """Return ``path`` as the client sees it, made absolute so it means the same on every worker."""
    text = str(path)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if is_url(text):
        return text.rstrip("/") if not text.endswith("://") else text
    return str(Path(text).expanduser().resolve())


def join(base: PathLike, *names: str) -> str:
    """Join path components (``/`` for URLs, the OS rule for local paths)."""
    if is_url(base):
        return "/".join([str(base).rstrip("/"), *names])
    return os.path.join(base, *names)


def basename(path: PathLike) -> str:
    """Return the last component of a path or URL."""
    return posixpath.basename(str(path).rstrip("/"))


def relative(path: PathLike, root: PathLike) -> str:
    """Return ``path`` relative to the folder ``root`` (``/``-separated)."""
    if is_url(root):
        return str(path)[len(str(root).rstrip("/")) + 1 :]
    return Path(path).relative_to(root).as_posix()


def filesystem(url: str) -> tuple["AbstractFileSystem", str]:
    """Return the fsspec filesystem serving ``url`` and the path inside it."""
    import fsspec  # the scorer image has it; imported here so that --help stays fast

    return fsspec.core.url_to_fs(url)


# -- reading -------------------------------------------------------------------------------------
def open_file(path: PathLike, mode: str = "rb") -> IO[Any]:
    """Open a file for reading (seekable: byte ranges of remote objects are fetched on demand)."""
    if not is_url(path):
        return open(path, mode)
    fs, inner = filesystem(str(path))
    return fs.open(inner, mode)


def read_bytes(path: PathLike, start: int | None = None, end: int | None = None) -> bytes:
    """Return the bytes ``[start, end)`` of a file (all of it by default)."""
    if is_url(path):
        fs, inner = filesystem(str(path))
        return fs.cat_file(inner, start=start, end=end)
    with open(path, "rb") as fh:
        if start:
            fh.seek(start)
        return fh.read() if end is None else fh.read(end - (start or 0))


def exists(path: PathLike) -> bool:
    """Return True if a file or folder exists (local files must also be readable)."""
    if is_url(path):
        fs, inner = filesystem(str(path))
        return fs.exists(inner)
    return os.access(path, os.R_OK)


def is_file(path: PathLike) -> bool:
    """Return True for an existing file (an object, for URLs)."""
    if is_url(path):
        fs, inner = filesystem(str(path))
        return fs.isfile(inner)
    return os.path.isfile(path)


def is_dir(path: PathLike) -> bool:
    """Return True for an existing folder (a prefix holding objects, for URLs)."""
    if is_url(path):
        fs, inner = filesystem(str(path))
        try:
            return fs.isdir(inner)
        finally:
            fs.invalidate_cache(inner)  # see listdir
    return os.path.isdir(path)


def list_files(root: PathLike) -> list[str]:
    """Return every file under the folder ``root``, recursively, as full paths or URLs."""
    if is_url(root):
        fs, inner = filesystem(str(root))
        fs.invalidate_cache(inner)
        try:
            return [fs.unstrip_protocol(p) for p in fs.find(inner)]
        finally:
            fs.invalidate_cache(inner)  # see listdir
    return [str(p) for p in Path(root).rglob("*") if p.is_file()]


def listdir(directory: PathLike) -> list[str]:
    """Return the names directly inside a folder ([] if it does not exist)."""
    if not is_url(directory):
        try:
            return os.listdir(directory)
        except FileNotFoundError:
            return []
    fs, inner = filesystem(str(directory))
    # Other processes (the workers) write here: never answer from, nor leave behind, a cached
    # listing, which fsspec would also use to answer exists()/open() with "not found".
    fs.invalidate_cache(inner)
    try:
        return [basename(p) for p in fs.ls(inner, detail=False) if basename(p)]
    except FileNotFoundError:
        return []
    finally:
        fs.invalidate_cache(inner)


def stamp(path: PathLike) -> tuple[int, int | str]:
    """Return a file's size and what changes when it is rewritten (mtime in ns, or the ETag)."""
    if is_url(path):
        fs, inner = filesystem(str(path))
        info = fs.info(inner)
        return int(info["size"]), str(info.get("ETag") or info.get("LastModified") or info.get("mtime"))
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def download(path: PathLike, target: Path) -> None:
    """Copy a (remote) file to the local path ``target``."""
    if is_url(path):
        fs, inner = filesystem(str(path))
        fs.get_file(inner, str(target))
    else:
        target.write_bytes(read_bytes(path))


# -- writing -------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_writer(path: PathLike) -> Iterator[IO[bytes]]:
    """Yield a binary file whose content appears at ``path`` whole, or not at all, when the block ends.

    Local: a hidden temp file beside the target, fsynced and renamed into place. URL: a memory
    buffer put as one object, so an exception (or a kill) never publishes a partial file.
    """
    if is_url(path):
        buffer = io.BytesIO()
        yield buffer
        fs, inner = filesystem(str(path))
        fs.pipe_file(inner, buffer.getvalue())
        return
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # closed before atomic_path fsyncs and renames
        yield fh


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write a whole file atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as fh:
        fh.write(data)


def remove(path: PathLike) -> None:
    """Delete a file if it exists."""
    if is_url(path):
        fs, inner = filesystem(str(path))
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(inner)
    else:
        Path(path).unlink(missing_ok=True)


def makedirs(path: PathLike) -> None:
    """Create a local folder and its parents; nothing to do on object stores (no real folders)."""
    if not is_url(path):
        Path(path).mkdir(parents=True, exist_ok=True)
