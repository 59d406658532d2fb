"""Append-only JSON Lines files, one per process, published whole into a folder by atomic rename.

The feedback endpoint writes through it durably (every append is fsynced before the client hears
2xx); the traffic sample writes through it buffered. Layout::

    <folder>/.open/<prefix>-<time>-<host>-<pid>-<seq>.jsonl   being appended to by one process
    <folder>/<prefix>-<time>-<host>-<pid>-<seq>.jsonl         published: complete, never written again

A reader of ``<folder>`` (the retrain pipeline's drop folder lists only its top level) never sees
half a file: lines are appended under ``.open/`` only, and a file appears in ``<folder>`` by one
``rename``, already complete, once it reaches ``rotate_bytes`` or ``rotate_s``. Each process
appends to its own file, so concurrent gunicorn workers never interleave lines.

Nothing acknowledged is lost when a worker is SIGKILLed: the owner holds an exclusive ``flock`` on
its open file, which the kernel drops when the process dies. Any other process (the restarted
worker, or a sibling's periodic sweep) can therefore tell an orphan from a live file, cut a torn
last line (never acknowledged: the 2xx follows the fsync of whole lines) and publish the rest.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

OPEN_DIR = ".open"
SUFFIX = ".jsonl"
#: A temporary file (created, not yet locked) older than this is debris of a crash.
STALE_TEMP_S = 60.0
_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


def encode_lines(records: Sequence[dict]) -> bytes:
    """Encode records as JSON lines (ASCII-escaped: no reader can split a text at U+2028)."""
    return b"".join((json.dumps(r, separators=(",", ":")) + "\n").encode("ascii") for r in records)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` survive a power loss (POSIX needs the folder synced)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RotatingLog:
    """This process's JSON Lines file in ``folder``: append, rotate, publish, recover orphans, prune."""

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        prefix: str,
        rotate_bytes: int,
        rotate_s: float,
        durable: bool,
        max_files: int | None = None,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", prefix):
            raise ValueError(f"prefix {prefix!r}: use lower-case letters, digits and _")
        self.folder = Path(folder)
        self.open_dir = self.folder / OPEN_DIR
        self.prefix = prefix
        self.rotate_bytes = rotate_bytes
        self.rotate_s = rotate_s
        self.durable = durable
        self.max_files = max_files
        self.max_bytes = max_bytes
        self._clock = clock
        self.open_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._opened_at = 0.0
        self._size = 0
        self._seq = 0

    # -- writing -------------------------------------------------------------------------------
    def append(self, records: Sequence[dict]) -> None:
        """Append records as whole lines; when durable they are on disk (fsync) when this returns."""
        if not records:
            return
        data = encode_lines(records)
        with self._lock:
            fd = self._fd if self._fd is not None else self._open_locked()
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.durable:
                    os.fsync(fd)
            except OSError:
                self._undo_locked()
                raise
            self._size += len(data)
            if self._size >= self.rotate_bytes:
                try:
                    self._publish_locked()
                except OSError:  # the lines are safe on disk; the file is now an orphan a sweep publishes
                    log.exception("could not publish %s", self.folder)

    def rotate_if_due(self) -> Path | None:
        """Publish the open file if it is older than ``rotate_s``; return where it went."""
        with self._lock:
            if self._fd is not None and self._clock() - self._opened_at >= self.rotate_s:
                return self._publish_locked()
        return None

    def close(self) -> Path | None:
        """Publish the open file now (worker exit); later appends open a new one."""
        with self._lock:
            return self._publish_locked() if self._fd is not None else None

    def housekeeping(self) -> None:
        """Rotate by age and publish other processes' orphans (called periodically)."""
        self.rotate_if_due()
        self.recover_orphans()

    def _open_locked(self) -> int:
        """Create, lock, then name this process's new open file (lock held)."""
        now = self._clock()
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}"
        name = f"{self.prefix}-{stamp}-{_HOST}-{os.getpid()}-{self._seq:06d}{SUFFIX}"
        # Created under a dot-name and locked before it gets its real name: a sweeping sibling
        # must never find an unlocked file of a live process and take it for an orphan.
        temp = self.open_dir / f".{name}.{uuid.uuid4().hex}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = self.open_dir / name
            os.rename(temp, path)
            if self.durable:
                fsync_dir(self.open_dir)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        self._fd, self._path, self._opened_at, self._size = fd, path, now, 0
        return fd

    def _undo_locked(self) -> None:
        """Cut a failed append off the file (lock held); if even that fails, leave it to a sweep."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            log.exception("%s: cannot cut a failed append; handing the file to the orphan sweep", self._path)
            os.close(self._fd)  # releases the lock: any sweep repairs and publishes it
            self._fd = self._path = None

    def _publish_locked(self) -> Path | None:
        """Publish the open file (lock held); an empty one is deleted instead."""
        fd, path, size = self._fd, self._path, self._size
        assert fd is not None and path is not None
        self._fd = self._path = None
        try:
            if size == 0:
                path.unlink()
                return None
            if self.durable:
                os.fsync(fd)
            target = self._move_out(path)
        finally:
            os.close(fd)  # only now: the lock keeps sweepers away until the file is out
        self.prune()
        return target

    def _move_out(self, path: Path) -> Path:
        """Rename an open file into the published folder (atomic; names never collide)."""
        target = self.folder / path.name
        os.rename(path, target)
        if self.durable:
            fsync_dir(self.folder)
            fsync_dir(self.open_dir)
        log.info("published %s", target)
        return target

    # -- orphans of dead processes ---------------------------------------------------------------
    def recover_orphans(self) -> list[Path]:
        """Publish the open files of dead processes (their flock is gone), torn last line cut."""
        published = []
        for path in sorted(self.open_dir.iterdir()):
            if path == self._path or not path.name.startswith((f"{self.prefix}-", f".{self.prefix}-")):
                continue
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except (FileNotFoundError, IsADirectoryError):
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its writer is alive
                try:
                    if os.stat(path).st_ino != os.fstat(fd).st_ino:
                        continue  # its writer published it meanwhile
                except FileNotFoundError:
                    continue
                if path.name.startswith("."):  # debris of a crash between create and rename
                    if self._clock() - os.fstat(fd).st_mtime > STALE_TEMP_S:
                        path.unlink(missing_ok=True)
                    continue
                if _cut_torn_tail(fd, path) == 0:
                    path.unlink()
                    continue
                if self.durable:
                    os.fsync(fd)
                published.append(self._move_out(path))
            finally:
                os.close(fd)
        if published:
            log.warning("published %d file(s) left open by dead processes", len(published))
            self.prune()
        return published

    # -- bounding the folder ---------------------------------------------------------------------
    def prune(self) -> list[Path]:
        """Delete the oldest published files beyond ``max_files`` / ``max_bytes`` (if set)."""
        if self.max_files is None and self.max_bytes is None:
            return []
        files = []
        for path in sorted(self.folder.glob(f"{self.prefix}-*{SUFFIX}")):
            try:
                files.append((path, path.stat().st_size))
            except FileNotFoundError:  # a sibling pruned it
                continue
        count, total = len(files), sum(size for _, size in files)
        removed = []
        for path, size in files:
            if (self.max_files is None or count <= self.max_files) and (
                self.max_bytes is None or total <= self.max_bytes
            ):
                break
            path.unlink(missing_ok=True)
            removed.append(path)
            count, total = count - 1, total - size
        return removed


def _cut_torn_tail(fd: int, path: Path) -> int:
    """Truncate a file after its last newline (a line torn by a crash); return the new size."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    else:
        keep = 0
    if keep < size:
        log.warning("%s: cut a torn last line (%d bytes, never acknowledged)", path, size - keep)
        os.ftruncate(fd, keep)
    return keep


def run_periodically(owner: object, method: str, interval_s: float, name: str) -> threading.Event:
    """Call ``owner.<method>()`` every ``interval_s`` on a daemon thread; set the event to stop.

    The thread holds the owner weakly: when the app owning it is garbage (tests build many apps),
    the thread ends by itself.
    """
    ref = weakref.ref(owner)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            target = ref()
            if target is None:
                return
            try:
                getattr(target, method)()
            except Exception:  # noqa: BLE001 - a full disk must not kill the thread for good
                log.exception("%s failed; retrying in %.1f s", name, interval_s)
            del target

    threading.Thread(target=loop, name=name, daemon=True).start()
    return stop


def close_at_exit(log_file: RotatingLog) -> None:
    """Publish ``log_file``'s open file when the process exits normally (gunicorn worker exit)."""
    ref = weakref.ref(log_file)

    def close() -> None:
        target = ref()
        if target is not None:
            try:
                target.close()
            except OSError:
                log.exception("could not publish %s at exit; the next sweep will", target.folder)

    atexit.register(close)
