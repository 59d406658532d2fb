"""Unit tests of the model manager: initial load, hot reload, refusal of broken versions."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from inference.predictor import Predictor
from registry.artifact import ONNX_FILE, TOKENIZER_FILE
from registry.store import Registry
from service.model_manager import ModelManager, ModelUnavailable
from tests.fakes import make_random_version


class Events:
    """Records what the manager reports to its observer."""

    def __init__(self) -> None:
        self.loaded: list[int] = []
        self.failed: list[int] = []

    def model_loaded(self, name: str, version: int) -> None:
        self.loaded.append(version)

    def model_load_failed(self, name: str, version: int) -> None:
        self.failed.append(version)


def load(path: str) -> Predictor:
    return Predictor.load(path)


def make_manager(registry: Registry, loader=load, poll: float = 10.0) -> tuple[ModelManager, Events]:
    events = Events()
    return ModelManager(registry, "sentiment", loader=loader, poll_interval_s=poll, observer=events), events


def corrupt_version(registry: Registry, seed: int) -> int:
    """Publish a version whose ONNX file is garbage, unpromoted; return its number."""
    version = make_random_version(registry, seed=seed, promote=False)
    Path(registry.version_dir("sentiment", version), ONNX_FILE).write_bytes(b"this is not an onnx model")
    return version


def test_nothing_promoted_means_unavailable_until_a_promotion(tmp_path):
    registry = Registry(tmp_path / "models")
    manager, events = make_manager(registry)
    assert manager.refresh() is False
    assert not manager.ready
    with pytest.raises(ModelUnavailable):
        manager.current()
    make_random_version(registry)
    assert manager.refresh() is True
    assert manager.current().version == 1
    assert events.loaded == [1]


def test_refresh_swaps_on_promotion_and_rollback(fake_registry):
    manager, events = make_manager(fake_registry)
    manager.refresh()
    old = manager.current()
    v2 = make_random_version(fake_registry, seed=1)
    assert manager.refresh() is True
    assert manager.current().version == v2
    assert manager.refresh() is False  # unchanged pointer: nothing to do
    fake_registry.rollback("sentiment")
    assert manager.refresh() is True
    assert manager.current().version == old.version
    assert events.loaded == [1, 2, 1]


def test_broken_version_is_refused_and_old_keeps_serving(fake_registry):
    manager, events = make_manager(fake_registry)
    manager.refresh()
    broken = corrupt_version(fake_registry, seed=1)
    fake_registry.promote("sentiment", broken)
    assert manager.refresh() is False
    assert manager.current().version == 1
    assert events.failed == [broken]
    failure = manager.state().last_failure
    assert failure is not None and failure.version == broken and failure.stage == "load"
    assert "/" not in failure.error  # an exception type, not a message with paths
    assert manager.refresh() is False
    assert events.failed == [broken]  # the same promotion is not retried on every poll
    fixed = make_random_version(fake_registry, seed=2)
    assert manager.refresh() is True
    assert manager.current().version == fixed
    assert manager.state().last_failure is None


@pytest.mark.parametrize("temperature", [-1.0, 0.0, float("nan"), float("inf"), "1.0", None, True])
def test_version_with_an_invalid_temperature_is_refused(fake_registry, temperature, caplog):
    """A negative temperature would silently invert every label: such a version is never served."""
    manager, events = make_manager(fake_registry)
    manager.refresh()
    before = manager.current().score_texts(["a wonderful film"])
    bad = make_random_version(fake_registry, seed=1, temperature=temperature)  # and promote it
    with caplog.at_level(logging.ERROR, logger="service.model_manager"):
        assert manager.refresh() is False
    assert manager.current().version == 1
    assert manager.current().score_texts(["a wonderful film"]) == pytest.approx(before)
    assert events.failed == [bad] and events.loaded == [1]  # counted (the metrics observer's hook)
    failure = manager.state().last_failure
    assert (failure.version, failure.stage, failure.error) == (bad, "load", "InvalidArtifact")
    assert f"refused version {bad}" in caplog.text and "temperature" in caplog.text
    assert "still serving version 1" in caplog.text


def test_version_with_an_unknown_tokenizer_is_refused(fake_registry, caplog):
    manager, events = make_manager(fake_registry)
    manager.refresh()
    bad = make_random_version(fake_registry, seed=1, promote=False)
    path = Path(fake_registry.version_dir("sentiment", bad), TOKENIZER_FILE)
    doc = json.loads(path.read_text())
    doc["tokenizer"]["version"] = 99
    path.write_text(json.dumps(doc))
    fake_registry.promote("sentiment", bad)
    with caplog.at_level(logging.ERROR, logger="service.model_manager"):
        assert manager.refresh() is False
    assert manager.current().version == 1 and events.failed == [bad]
    assert manager.state().last_failure.error == "UnknownTokenizer"
    assert "version 99 is unknown to this code" in caplog.text


def test_version_failing_warm_up_is_refused(fake_registry):
    def failing_warm_up(path: str) -> Predictor:
        predictor = Predictor.load(path)
        if predictor.version == 2:

            def warm_up() -> None:
                raise ValueError("non-finite scores")

            predictor.warm_up = warm_up  # type: ignore[method-assign]
        return predictor

    manager, events = make_manager(fake_registry, loader=failing_warm_up)
    manager.refresh()
    make_random_version(fake_registry, seed=1)
    assert manager.refresh() is False
    assert manager.current().version == 1
    assert manager.state().last_failure.stage == "warm_up"
    assert events.failed == [2]


def test_unreadable_pointer_keeps_serving(fake_registry):
    manager, _ = make_manager(fake_registry)
    manager.refresh()
    (fake_registry.root / "sentiment" / "production.json").write_text("{not json")
    assert manager.refresh() is False
    assert manager.current().version == 1


def test_background_thread_picks_up_a_promotion(fake_registry):
    manager, _ = make_manager(fake_registry, poll=0.05)
    manager.refresh()
    manager.start()
    try:
        make_random_version(fake_registry, seed=3)
        deadline = time.monotonic() + 5
        while manager.current().version != 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert manager.current().version == 2
    finally:
        manager.stop()


def test_failed_first_load_is_retried_while_nothing_is_served(tmp_path):
    registry = Registry(tmp_path / "models")
    make_random_version(registry)
    calls = []

    def flaky(path: str) -> Predictor:  # the first attempt fails, as a passing I/O error would
        calls.append(path)
        if len(calls) == 1:
            raise OSError("transient read error")
        return Predictor.load(path)

    manager, events = make_manager(registry, loader=flaky)
    assert manager.refresh() is False and not manager.ready
    assert manager.refresh() is True and manager.current().version == 1
    assert events.failed == [1] and events.loaded == [1]
