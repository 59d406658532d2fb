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


def test_process_killed_mid_write_leaves_registry_valid(tmp_path):
    """SIGKILL a real process while it writes a version: old versions and production survive."""
    registry = Registry(tmp_path)
    make_random_version(registry)
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(PROJECT_ROOT)!r})
        from registry.store import Registry
        registry = Registry({str(tmp_path)!r})
        with registry.staging_dir("sentiment") as staging:
            with open(staging / "model.onnx", "wb") as fh:
                print("writing", flush=True)
                while True:
                    fh.write(b"x" * 65536); fh.flush(); time.sleep(0.01)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert registry.versions("sentiment") == [1]
    assert registry.production_version("sentiment") == 1
    assert make_random_version(registry, seed=3) == 2  # the registry is still writable


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
