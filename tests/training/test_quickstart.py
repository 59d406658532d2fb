"""training.quickstart: which version serves, when the full model replaces the quick one, resuming."""

from __future__ import annotations

import os
import time

import pytest

from registry.store import Registry
from tests.fakes import make_random_version
from training import quickstart
from training.quickstart import needs_full, serve_best_present

NAME = "sentiment"
CHECKED = {"parity": {"passed": True}}


def publish(registry: Registry, *, quick: bool, promote: bool = False, accuracy: float = 0.8, **extra) -> int:
    """Publish a random-weight version marked quick or full, with passed parity unless ``extra`` says."""
    return make_random_version(
        registry,
        NAME,
        seed=len(registry.versions(NAME)),
        promote=promote,
        metrics={"accuracy": accuracy, "ece": 0.03, "n": 200},
        extra_manifest={"quick": quick, "preset": "tiny", **CHECKED, **extra},
    )


# -- serving the best version present (a rerun after Ctrl-C) -----------------------------------------
def test_a_full_version_published_but_never_promoted_replaces_the_quick_production(tmp_path):
    registry = Registry(tmp_path)
    publish(registry, quick=True, promote=True)
    publish(registry, quick=False)  # e.g. the trainer was killed between publishing and promoting
    publish(registry, quick=False, parity={"passed": False})  # newer, but refused by the gate
    assert needs_full(registry, NAME)
    assert serve_best_present(registry, NAME) == 2
    assert registry.production_version(NAME) == 2 and not needs_full(registry, NAME)


def test_a_full_production_version_is_left_alone(tmp_path):
    registry = Registry(tmp_path)
    publish(registry, quick=False, promote=True, accuracy=0.7)
    publish(registry, quick=False, accuracy=0.9)  # a retrain candidate its gold-set gate refused
    assert serve_best_present(registry, NAME) == 1
    assert registry.pointer(NAME)["history"] == [1]


def test_without_production_the_newest_full_version_wins_then_a_quick_one(tmp_path):
    registry = Registry(tmp_path)
    assert serve_best_present(registry, NAME) is None and needs_full(registry, NAME)
    publish(registry, quick=True)
    assert serve_best_present(registry, NAME) == 1
    other = Registry(tmp_path / "other")
    for quick in (False, False, True):
        publish(other, quick=quick)
    assert serve_best_present(other, NAME) == 2


# -- the steps -------------------------------------------------------------------------------------
@pytest.fixture
def trainings(monkeypatch) -> list[tuple[str, bool]]:
    """Replace training by publishing a random-weight version; record (preset, quick) of each call."""
    calls: list[tuple[str, bool]] = []

    def fake_train(registry, name, preset_name, *, quick, data_dir, overrides):
        calls.append((preset_name, quick))
        version = publish(registry, quick=quick)
        return version, registry.manifest(name, version)

    monkeypatch.setattr(quickstart, "train_and_publish", fake_train)
    return calls


def test_first_start_trains_quick_then_full_and_a_rerun_trains_nothing(tmp_path, trainings):
    registry = Registry(tmp_path)
    assert quickstart.quick_step(registry, NAME, "tiny", None, {}) == 0
    assert registry.production_version(NAME) == 1 and registry.manifest(NAME, 1)["quick"] is True
    assert quickstart.full_step(registry, NAME, "small", None, {}) == 0
    assert registry.production_version(NAME) == 2 and registry.manifest(NAME, 2)["quick"] is False
    assert trainings == [("tiny", True), ("small", False)]
    assert quickstart.quick_step(registry, NAME, "tiny", None, {}) == 0
    assert quickstart.full_step(registry, NAME, "small", None, {}) == 0
    assert len(trainings) == 2 and registry.versions(NAME) == [1, 2]


def test_a_rerun_with_only_the_quick_model_trains_the_full_one_only(tmp_path, trainings):
    registry = Registry(tmp_path)
    publish(registry, quick=True, promote=True)
    assert quickstart.quick_step(registry, NAME, "tiny", None, {}) == 0
    assert trainings == []
    assert quickstart.main(["needs-full", "--model-dir", str(tmp_path)]) == 0
    assert quickstart.main(["full", "--model-dir", str(tmp_path), "--preset", "tiny"]) == 0
    assert trainings == [("tiny", False)] and registry.production_version(NAME) == 2
    assert quickstart.main(["needs-full", "--model-dir", str(tmp_path)]) == 1


def test_a_full_model_the_gate_refuses_is_published_but_not_promoted(tmp_path, monkeypatch):
    registry = Registry(tmp_path)
    publish(registry, quick=True, promote=True)

    def broken_training(registry, name, preset_name, *, quick, data_dir, overrides):
        version = publish(registry, quick=False, parity={"passed": False})
        return version, registry.manifest(name, version)

    monkeypatch.setattr(quickstart, "train_and_publish", broken_training)
    assert quickstart.full_step(registry, NAME, "tiny", None, {}) == quickstart.NOT_PROMOTED
    assert registry.versions(NAME) == [1, 2] and registry.production_version(NAME) == 1


def test_steps_clean_what_a_killed_trainer_left(tmp_path, trainings):
    registry = Registry(tmp_path)
    publish(registry, quick=True, promote=True)
    leftover = registry.model_home(NAME) / ".staging-killed"
    leftover.mkdir()  # its writer is gone: nobody holds its lock
    os.utime(leftover, (time.time() - 3600,) * 2)  # and it is older than a live writer's could be
    assert quickstart.quick_step(registry, NAME, "tiny", None, {}) == 0
    assert not leftover.exists() and trainings == []
