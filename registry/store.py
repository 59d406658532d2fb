"""Versioned model registry on a plain directory tree (the layout TF Serving reads).

::

    <root>/<name>/1/                 one complete artifact per version (see registry.artifact)
    <root>/<name>/2/
    <root>/<name>/production.json    {"version": 2, "history": [1, 2], "updated_at": ...}
    <root>/<name>/.lock              advisory lock for writers (promote, retrain, prune)
    <root>/<name>/.staging-<uuid>/   a version being written (locked by its writer while it lives)
    <root>/<name>/.deleting-<...>/   a version being deleted by prune (under the writer lock)

Why it can never expose a half-written model: a version is assembled in a hidden temporary
directory, every file and directory in it is fsynced, and only then is it renamed to its number
(``rename`` is atomic on POSIX; the parent directory is fsynced after it), and the production
pointer is replaced with ``os.replace`` the same way. Readers therefore see either the old state
or the new one, also after a crash or power loss. A writer killed half-way leaves a hidden
directory behind; :meth:`Registry.clean_leftovers` removes those whose writer is gone.
Only the standard library is imported here: the service reads the registry without TensorFlow.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterator

from registry.files import fsync_dir, fsync_tree, write_json_atomic

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
POINTER = "production.json"
STAGING_PREFIX = ".staging-"
DELETING_PREFIX = ".deleting-"
#: Leftovers younger than this are never removed: a writer holds its staging directory's lock only
#: from just after creating it, and a pointer's temporary file belongs to a writer for a moment.
LEFTOVER_MIN_AGE_S = 60.0


class RegistryError(Exception):
    """A registry operation cannot be carried out (unknown model or version, bad pointer)."""


class Registry:
    """Lists, creates, promotes, rolls back and prunes model versions under one root directory."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._held: dict[str, int] = {}  # locks this object holds, so nested lock() calls re-enter

    # -- reading -----------------------------------------------------------------------------
    def model_home(self, name: str) -> Path:
        """Return ``<root>/<name>``: every version of ``name``, its production pointer, lock and runs."""
        if not name or "/" in name or name.startswith("."):
            raise RegistryError(f"invalid model name {name!r}")
        return self.root / name

    def versions(self, name: str) -> list[int]:
        """Return the complete versions of ``name``, oldest first."""
        d = self.model_home(name)
        if not d.is_dir():
            return []
        return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit() and (p / MANIFEST).is_file())

    def version_dir(self, name: str, version: int) -> Path:
        """Return the directory of one complete version, or raise RegistryError."""
        path = self.model_home(name) / str(int(version))
        if not (path / MANIFEST).is_file():
            raise RegistryError(f"model {name!r} has no version {version}")
        return path

    def manifest(self, name: str, version: int) -> dict:
        """Return the manifest (config, metrics, lineage) of one version."""
        return json.loads((self.version_dir(name, version) / MANIFEST).read_text(encoding="utf-8"))

    def pointer(self, name: str) -> dict | None:
        """Return the production pointer document, or None when nothing was promoted yet."""
        path = self.model_home(name) / POINTER
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def production_version(self, name: str) -> int | None:
        """Return the version currently marked production, or None."""
        doc = self.pointer(name)
        return None if doc is None else int(doc["version"])

    def resolve_version(self, name: str, version: int | str | None) -> int:
        """Return the version number ``version`` stands for; "production" (or None) reads the pointer once.

        Raises RegistryError when there is no production version or no such version.
        """
        if version is None or version == "production":
            number = self.production_version(name)
            if number is None:
                raise RegistryError(f"model {name!r} has no production version in {self.root}")
            version = number
        self.version_dir(name, int(version))
        return int(version)

    def production_dir(self, name: str) -> Path:
        """Return the production version's directory, or raise RegistryError."""
        return self.version_dir(name, self.resolve_version(name, "production"))

    # -- writing -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str, *, timeout: float = 600.0) -> Iterator[None]:
        """Hold the model's writer lock (cross-process, released if the holder dies; re-entrant)."""
        if self._held.get(name):
            self._held[name] += 1
            try:
                yield
            finally:
                self._held[name] -= 1
            return
        d = self.model_home(name)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / ".lock", "a+") as fh:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RegistryError(f"timed out waiting for the lock of model {name!r}")
                    time.sleep(0.2)
            self._held[name] = 1
            try:
                yield
            finally:
                self._held[name] = 0
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def staging_dir(self, name: str) -> Iterator[Path]:
        """Yield a private directory to fill; :meth:`commit_version` turns it into a version.

        The directory stays locked (``flock``) while this block runs, so :meth:`clean_leftovers`
        can tell it from one whose writer died. If the block raises, the directory is deleted and
        the registry is untouched.
        """
        d = self.model_home(name)
        d.mkdir(parents=True, exist_ok=True)
        self.clean_leftovers(name, wait=False)
        tmp = d / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        tmp.mkdir()
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)  # nobody else knows the name yet: never blocks
        try:
            yield tmp
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            os.close(fd)  # releases the lock (after the rename it locked the published version)

    def commit_version(self, name: str, staging: Path) -> int:
        """Durably and atomically publish a filled staging directory as the next version number."""
        if not (Path(staging) / MANIFEST).is_file():
            raise RegistryError(f"{staging} has no {MANIFEST}: refusing to publish it")
        d = self.model_home(name)
        fsync_tree(Path(staging))  # the rename must never publish files still in the page cache
        while True:
            existing = [int(p.name) for p in d.iterdir() if p.name.isdigit()]
            version = max(existing, default=0) + 1
            try:
                os.rename(staging, d / str(version))
                break
            except OSError:  # another writer took this number first: take the next one
                if not (d / str(version)).exists():
                    raise
        fsync_dir(d)
        return version

    def clean_leftovers(
        self, name: str, *, wait: bool = True, min_age_s: float = LEFTOVER_MIN_AGE_S
    ) -> list[str]:
        """Delete what killed writers left in the model's directory; return the names removed.

        Under the writer lock (skipped, returning [], when ``wait`` is False and another process
        holds it): ``.deleting-*`` directories (only prune and this method make them, both under
        the lock), ``.staging-*`` directories whose writer no longer holds their ``flock`` (a live
        writer keeps its own), and temporary files of the production pointer. Nothing younger
        than ``min_age_s`` seconds is touched.
        """
        d = self.model_home(name)
        if not d.is_dir():
            return []
        try:
            with self.lock(name, timeout=600.0 if wait else 0.0):
                return self._clean_leftovers_locked(d, min_age_s)
        except RegistryError:
            if wait:
                raise
            log.debug("model %s: writer lock busy; leftovers are cleaned another time", name)
            return []

    def _clean_leftovers_locked(self, d: Path, min_age_s: float) -> list[str]:
        removed = []
        now = time.time()
        for path in sorted(d.iterdir()):
            try:
                if now - path.lstat().st_mtime < min_age_s:
                    continue
                if path.name.startswith(DELETING_PREFIX) and path.is_dir():
                    shutil.rmtree(path)
                elif path.name.startswith(STAGING_PREFIX) and path.is_dir():
                    if not _orphaned(path):
                        continue
                    victim = d / f"{DELETING_PREFIX}{path.name[1:]}"
                    os.rename(path, victim)
                    shutil.rmtree(victim)
                elif path.name.startswith(f".{POINTER}.") and path.name.endswith(".tmp"):
                    path.unlink()
                else:
                    continue
            except FileNotFoundError:  # its writer finished (or cleaned up) meanwhile
                continue
            removed.append(path.name)
        if removed:
            log.warning("model %s: removed leftovers of interrupted writers: %s", d.name, removed)
        return removed

    def promote(self, name: str, version: int) -> None:
        """Mark ``version`` as production (atomic pointer swap); keeps a history for rollback."""
        with self.lock(name):  # read-modify-write of the pointer: never interleave two writers
            # Checked under the lock: a prune waiting for it could otherwise delete the version
            # between this check and the pointer swap, leaving production on a missing version.
            self.version_dir(name, version)
            old = self.pointer(name) or {"history": []}
            history = [v for v in old.get("history", []) if v != version] + [int(version)]
            write_json_atomic(
                self.model_home(name) / POINTER,
                {"version": int(version), "history": history, "updated_at": time.time()},
            )
        log.info("model %s: version %s is now production", name, version)

    def rollback(self, name: str) -> int:
        """Make the previous production version production again; return it."""
        with self.lock(name):
            return self._rollback_locked(name)

    def _rollback_locked(self, name: str) -> int:
        doc = self.pointer(name)
        if not doc:
            raise RegistryError(f"model {name!r} has no production version to roll back")
        history = [v for v in doc.get("history", []) if (self.model_home(name) / str(v) / MANIFEST).is_file()]
        if len(history) < 2:
            raise RegistryError(f"model {name!r} has no earlier production version")
        previous = history[-2]
        write_json_atomic(
            self.model_home(name) / POINTER,
            {"version": previous, "history": history[:-1], "updated_at": time.time()},
        )
        log.info("model %s: rolled back from %s to %s", name, history[-1], previous)
        return previous

    def prune(self, name: str, keep_last: int) -> list[int]:
        """Delete old versions beyond the newest ``keep_last``; never production or its parent.

        Also removes what killed writers left behind (:meth:`clean_leftovers`).
        """
        with self.lock(name):
            self.clean_leftovers(name)
            return self._prune_locked(name, keep_last)

    def _prune_locked(self, name: str, keep_last: int) -> list[int]:
        production = self.production_version(name)
        protected = {production} if production is not None else set()
        if production is not None:
            parent = self.manifest(name, production).get("lineage", {}).get("parent_version")
            if parent is not None:
                protected.add(int(parent))
        versions = self.versions(name)
        doomed = [v for v in versions[: max(0, len(versions) - keep_last)] if v not in protected]
        for v in doomed:
            # Rename first so a reader never sees a half-deleted version as complete.
            victim = self.model_home(name) / f"{DELETING_PREFIX}{v}-{uuid.uuid4().hex}"
            os.rename(self.model_home(name) / str(v), victim)
            shutil.rmtree(victim, ignore_errors=True)
        if doomed:
            log.info("model %s: pruned versions %s", name, doomed)
        return doomed


def _orphaned(staging: Path) -> bool:
    """Return whether no live writer holds the ``flock`` of a staging directory."""
    fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also releases the lock if we got it
    return True
