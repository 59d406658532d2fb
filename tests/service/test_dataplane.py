"""The data plane: scores through the batcher, and a hot swap never mixes versions within a text."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from inference.predictor import Predictor
from registry.store import Registry
from service.dataplane import DataPlane, InferenceError, NonFiniteScore
from service.model_manager import ModelManager
from service.settings import Settings
from tests.fakes import make_random_version

TEXTS = ["a wonderful film", "the worst acting ever", "not great, not terrible !", "loved it"]


@pytest.fixture
def plane(fake_registry: Registry):
    settings = Settings(model_dir=str(fake_registry.root), poll_interval_s=60)
    manager = ModelManager(fake_registry, "sentiment", loader=Predictor.load, poll_interval_s=60)
    plane = DataPlane(settings, manager).start()
    yield plane
    plane.stop()


def later() -> float:
    return time.monotonic() + 5


def test_predictions_match_the_predictor(plane: DataPlane):
    expected = plane.manager.current().score_texts(TEXTS)
    predictions = plane.predict(TEXTS, later())
    assert [p.probability for p in predictions] == pytest.approx(list(expected), abs=1e-6)
    assert [p.label for p in predictions] == ["positive" if p >= 0.5 else "negative" for p in expected]
    assert {(p.model_name, p.model_version) for p in predictions} == {("sentiment", 1)}


def test_in_flight_batch_finishes_on_the_old_version(plane: DataPlane, fake_registry: Registry):
    old = plane.manager.current()
    held, release = threading.Event(), threading.Event()
    original = old.score_together

    def slow_score(sequences):
        held.set()
        release.wait(5)
        return original(sequences)

    old.score_together = slow_score  # type: ignore[method-assign]
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(plane.predict, TEXTS[:1], later())
        assert held.wait(5)
        make_random_version(fake_registry, seed=7)
        assert plane.manager.refresh()
        release.set()
        assert in_flight.result(5)[0].model_version == 1
    new = plane.predict(TEXTS[:1], later())[0]
    assert new.model_version == 2
    assert new.probability == pytest.approx(
        float(plane.manager.current().score_texts(TEXTS[:1])[0]), abs=1e-6
    )


def test_text_encoded_before_a_swap_is_scored_by_the_new_version(plane: DataPlane, fake_registry: Registry):
    old = plane.manager.current()
    make_random_version(fake_registry, seed=8)
    original_submit = plane.batcher.submit

    def swap_then_submit(items, deadline):
        plane.manager.refresh()  # the swap lands between encoding and scoring
        return original_submit(items, deadline)

    plane.batcher.submit = swap_then_submit  # type: ignore[method-assign]
    prediction = plane.predict(TEXTS[:2], later())
    new = plane.manager.current()
    assert new is not old
    assert [p.model_version for p in prediction] == [2, 2]
    assert [p.probability for p in prediction] == pytest.approx(list(new.score_texts(TEXTS[:2])), abs=1e-6)


def test_non_finite_scores_fail_the_request(plane: DataPlane):
    predictor = plane.manager.current()
    predictor.score_together = lambda seqs: np.full(len(seqs), np.nan)  # type: ignore[method-assign]
    with pytest.raises(NonFiniteScore):
        plane.predict(TEXTS[:1], later())


def test_runtime_errors_become_inference_errors(plane: DataPlane):
    plane.manager.current().score_together = lambda seqs: 1 / 0  # type: ignore[method-assign]
    with pytest.raises(InferenceError) as err:
        plane.predict(TEXTS[:1], later())
    assert isinstance(err.value.__cause__, ZeroDivisionError)


def test_explanation_is_scored_by_one_version_outside_the_batcher(plane: DataPlane, fake_registry: Registry):
    predictor = plane.manager.current()
    original = predictor.score_together

    def swap_then_score(sequences):
        make_random_version(fake_registry, seed=9)
        plane.manager.refresh()  # a hot reload lands while the explanation is being scored
        return original(sequences)

    predictor.score_together = swap_then_score  # type: ignore[method-assign]
    plane.batcher._submit = lambda *args: pytest.fail("explanations bypass the batcher")  # type: ignore
    result = plane.explain(TEXTS[2], later())
    assert plane.manager.current().version == 2
    assert result.prediction.model_version == 1  # every occlusion was scored by version 1
    assert result.prediction.probability == pytest.approx(
        float(predictor.score_texts(TEXTS[2:3])[0]), abs=1e-6
    )
    assert [t.token for t in result.explanation.tokens] == ["not", "great", "not", "terrible", "!"]


def test_status_lists_served_loading_and_refused_versions(plane: DataPlane):
    status = plane.model_status()
    assert status["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
    assert status["metrics"] == {"accuracy": 0.5}
    assert status["model"]["name"] == "sentiment" and status["model"]["version"] == 1
