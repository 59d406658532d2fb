"""Registry: versions, atomic publication, promotion, rollback, pruning, locking."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from inference.predictor import Predictor
from registry.store import MANIFEST, Registry, RegistryError
from tests.conftest import PROJECT_ROOT
from tests.fakes import make_random_version


def test_versions_are_numbered_and_promotion_is_recorded(tmp_path):
    registry = Registry(tmp_path)
    assert registry.versions("sentiment") == [] and registry.production_version("sentiment") is None
    v1 = make_random_version(registry)
    v2 = make_random_version(registry, promote=False)
    assert (v1, v2) == (1, 2)
    assert registry.versions("sentiment") == [1, 2]
    assert registry.production_version("sentiment") == 1
    registry.promote("sentiment", 2)
    assert registry.pointer("sentiment")["history"] == [1, 2]
    assert registry.rollback("sentiment") == 1
    assert registry.production_version("sentiment") == 1
    with pytest.raises(RegistryError):
        registry.rollback("sentiment")


def test_unknown_versions_and_names_are_refused(tmp_path):
    registry = Registry(tmp_path)
    make_random_version(registry)
    with pytest.raises(RegistryError, match="no version 7"):
        registry.promote("sentiment", 7)
    with pytest.raises(RegistryError):
        registry.model_home("../etc")


def test_failed_staging_leaves_nothing_behind(tmp_path):
    registry = Registry(tmp_path)
    with pytest.raises(ZeroDivisionError):
        with registry.staging_dir("sentiment") as staging:
            (staging / "model.onnx").write_bytes(b"half")
            1 / 0
    assert registry.versions("sentiment") == []
    assert [p.name for p in (tmp_path / "sentiment").iterdir() if not p.name.startswith(".lock")] == []


def test_staging_without_manifest_cannot_be_published(tmp_path):
    registry = Registry(tmp_path)
    with registry.staging_dir("sentiment") as staging:
        with pytest.raises(RegistryError, match="manifest"):
            registry.commit_version("sentiment", staging)


# A writer process that publishes version 2, promotes it and prunes version 1, pausing (printing
# the point's name, then sleeping until killed) at one named point on the way.
WRITER = textwrap.dedent("""
    import os, shutil, sys, time
    sys.path.insert(0, {root!r})
    from registry.store import Registry
    from tests.fakes import make_random_version

    point = sys.argv[1]

    def pause(name):
        if name == point:
            print(name, flush=True)
            time.sleep(3600)

    real_rename, real_replace, real_rmtree, real_fsync = os.rename, os.replace, shutil.rmtree, os.fsync

    def rename(src, dst, *args, **kwargs):
        publishing = ".staging-" in str(src) and os.path.basename(str(dst)).isdigit()
        pruning = ".deleting-" in str(dst)
        pause("before-publish" if publishing else "before-prune-rename" if pruning else "")
        real_rename(src, dst, *args, **kwargs)
        pause("after-publish" if publishing else "")

    def replace(src, dst, *args, **kwargs):
        pointer = str(dst).endswith("production.json")
        pause("before-pointer-swap" if pointer else "")
        real_replace(src, dst, *args, **kwargs)
        pause("after-pointer-swap" if pointer else "")

    def rmtree(path, *args, **kwargs):
        if ".deleting-" in str(path):  # half-deleted: a few files gone, the rest still there
            for name in sorted(os.listdir(path))[:1]:
                os.remove(os.path.join(path, name))
            pause("mid-prune-delete")
        real_rmtree(path, *args, **kwargs)

    def fsync(fd):
        real_fsync(fd)
        if os.readlink(f"/proc/self/fd/{{fd}}").endswith("model.onnx"):
            pause("mid-fsync")

    os.rename, os.replace, shutil.rmtree, os.fsync = rename, replace, rmtree, fsync
    registry = Registry({models!r})
    pause("start")
    version = make_random_version(registry, seed=7, promote=False)
    registry.promote("sentiment", version)
    registry.prune("sentiment", keep_last=1)
    pause("done")
""")

# point → (versions, production) the registry must show after a SIGKILL there
KILL_POINTS = {
    "mid-fsync": ([1], 1),
    "before-publish": ([1], 1),
    "after-publish": ([1, 2], 1),
    "before-pointer-swap": ([1, 2], 1),
    "after-pointer-swap": ([1, 2], 2),
    "before-prune-rename": ([1, 2], 2),
    "mid-prune-delete": ([2], 2),
    "done": ([2], 2),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_process_killed_mid_write_leaves_registry_valid(tmp_path, point):
    """SIGKILL a real writer at each step of publish, promote and prune: the registry stays valid."""
    registry = Registry(tmp_path / "models")
    make_random_version(registry)
    script = WRITER.format(root=str(PROJECT_ROOT), models=str(registry.root))
    proc = subprocess.Popen(
        [sys.executable, "-c", script, point], stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT
    )
    try:
        assert proc.stdout.readline().strip() == point, f"the writer never reached {point}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    versions, production = KILL_POINTS[point]
    assert registry.versions("sentiment") == versions
    assert registry.production_version("sentiment") == production
    for v in versions:  # every listed version is complete and loads
        assert Predictor.load(registry.version_dir("sentiment", v)).score_texts(["fine"]).shape == (1,)
    # The next writer removes what the killed one left (once old enough) and publishes normally.
    for leftover in set(registry.model_home("sentiment").glob(".*")) - {
        registry.model_home("sentiment") / ".lock"
    }:
        os.utime(leftover, (time.time() - 3600, time.time() - 3600))
    new = make_random_version(registry, seed=3)
    assert new == max(versions) + 1 and registry.production_version("sentiment") == new
    hidden = sorted(p.name for p in registry.model_home("sentiment").iterdir() if p.name.startswith("."))
    assert hidden == [".lock"], hidden


def _pausing_writer(registry: Registry) -> subprocess.Popen:
    """Start a writer that fills a staging directory, then waits for a line on stdin to publish it."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(PROJECT_ROOT)!r})
        from registry.store import Registry
        from tests.fakes import make_random_version
        registry = Registry({str(registry.root)!r})
        real = registry.commit_version
        def commit(name, staging):
            print("filled", flush=True)
            sys.stdin.readline()
            return real(name, staging)
        registry.commit_version = commit
        print(make_random_version(registry, seed=5, promote=False), flush=True)
    """)
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )


def test_leftovers_of_killed_writers_are_removed_but_a_live_writer_is_left_alone(tmp_path):
    registry = Registry(tmp_path / "models")
    make_random_version(registry)
    model_dir = registry.model_home("sentiment")
    dead = _pausing_writer(registry)
    assert dead.stdout.readline().strip() == "filled"
    dead.send_signal(signal.SIGKILL)
    dead.wait(timeout=10)
    [orphan] = [p.name for p in model_dir.glob(".staging-*")]
    (model_dir / ".deleting-4-abc").mkdir()  # a prune killed mid-delete
    (model_dir / ".deleting-4-abc" / "model.onnx").write_bytes(b"half")
    (model_dir / ".production.json.0123.tmp").write_text("{")  # a promote killed before its replace
    live = _pausing_writer(registry)
    try:
        assert live.stdout.readline().strip() == "filled"
        assert len(list(model_dir.glob(".staging-*"))) == 2
        assert registry.clean_leftovers("sentiment") == []  # all younger than the grace period
        removed = registry.clean_leftovers("sentiment", min_age_s=0)
        assert sorted(removed) == sorted([".deleting-4-abc", ".production.json.0123.tmp", orphan])
        assert len(list(model_dir.glob(".staging-*"))) == 1  # the live writer's directory survived
        live.stdin.write("go\n")
        live.stdin.flush()
        assert live.stdout.readline().strip() == "2"  # and it publishes normally
    finally:
        live.kill()
        live.wait(timeout=10)
    assert registry.versions("sentiment") == [1, 2]
    assert sorted(p.name for p in model_dir.iterdir() if p.name.startswith(".")) == [".lock"]


def test_promote_checks_the_version_under_the_lock(tmp_path):
    """A prune that runs while promote waits for the lock must not leave production on a missing version."""

    class PrunedWhileWaiting(Registry):
        def lock(self, name, **kwargs):
            if not self._held.get(name):  # another writer prunes version 2 before we get the lock
                Registry(self.root).prune(name, keep_last=1)
            return super().lock(name, **kwargs)

    setup = Registry(tmp_path)
    for seed in range(3):
        make_random_version(setup, seed=seed, promote=seed == 0)
    with pytest.raises(RegistryError, match="no version 2"):
        PrunedWhileWaiting(tmp_path).promote("sentiment", 2)
    assert setup.production_version("sentiment") == 1 and setup.versions("sentiment") == [1, 3]


def test_files_are_flushed_to_disk_before_the_version_is_published(tmp_path, monkeypatch):
    registry = Registry(tmp_path)
    events = []
    real_fsync, real_rename = os.fsync, os.rename
    monkeypatch.setattr(
        os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or real_fsync(fd)
    )
    monkeypatch.setattr(
        os, "rename", lambda src, dst: events.append(("rename", str(src), str(dst))) or real_rename(src, dst)
    )
    with registry.staging_dir("sentiment") as staging:
        (staging / "sub").mkdir()
        (staging / "sub" / "weights.bin").write_bytes(b"w" * 100)
        (staging / "model.onnx").write_bytes(b"m" * 100)
        (staging / MANIFEST).write_text('{"format": 1}')
        files = {str(p) for p in staging.rglob("*")} | {str(staging)}
        version = registry.commit_version("sentiment", staging)
    publish = next(i for i, e in enumerate(events) if e[0] == "rename" and e[2].endswith(f"/{version}"))
    flushed_before = {e[1] for e in events[:publish] if e[0] == "fsync"}
    assert files <= flushed_before, files - flushed_before
    assert ("fsync", str(registry.model_home("sentiment"))) in events[publish:]  # the rename itself


def test_pointer_is_always_readable_during_promotions(tmp_path):
    registry = Registry(tmp_path)
    for seed in range(3):
        make_random_version(registry, seed=seed, promote=False)
    stop = threading.Event()
    errors = []

    def read_forever():
        while not stop.is_set():
            try:
                assert registry.production_version("sentiment") in (None, 1, 2, 3)
            except Exception as exc:  # noqa: BLE001 - any failure is the test's failure
                errors.append(exc)

    reader = threading.Thread(target=read_forever)
    reader.start()
    for i in range(300):
        registry.promote("sentiment", 1 + i % 3)
    stop.set()
    reader.join()
    assert errors == []


def test_concurrent_publishers_get_distinct_versions(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(PROJECT_ROOT)!r})
        from registry.store import Registry
        from tests.fakes import make_random_version
        print(make_random_version(Registry({str(tmp_path)!r}), promote=False))
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
        for _ in range(4)
    ]
    numbers = sorted(int(p.communicate(timeout=60)[0]) for p in procs)
    assert numbers == [1, 2, 3, 4]
    assert Registry(tmp_path).versions("sentiment") == [1, 2, 3, 4]


def test_prune_keeps_production_and_its_parent(tmp_path):
    registry = Registry(tmp_path)
    for seed in range(5):
        make_random_version(registry, seed=seed, promote=False)
    manifest_path = registry.version_dir("sentiment", 2) / MANIFEST
    doc = json.loads(manifest_path.read_text())
    doc["lineage"] = {"parent_version": 1}
    manifest_path.write_text(json.dumps(doc))
    registry.promote("sentiment", 2)
    assert registry.prune("sentiment", keep_last=1) == [3, 4]
    assert registry.versions("sentiment") == [1, 2, 5]


def test_lock_excludes_a_second_holder(tmp_path):
    registry, other = Registry(tmp_path), Registry(tmp_path)
    with registry.lock("sentiment"):
        with pytest.raises(RegistryError, match="timed out"):
            with other.lock("sentiment", timeout=0.3):
                pass
    with other.lock("sentiment", timeout=0.3):
        pass
    assert os.path.exists(tmp_path / "sentiment" / ".lock")


def test_lock_is_reentrant_for_the_same_registry_object(tmp_path):
    registry = Registry(tmp_path)
    with registry.lock("sentiment"):
        with registry.lock("sentiment", timeout=0.3):
            make_random_version(registry)
    assert registry.versions("sentiment") == [1]
