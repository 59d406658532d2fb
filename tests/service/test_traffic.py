"""Drift metrics and the traffic sample: what each scored request leaves behind, and at what cost."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.settings import Settings
from service.traffic import TrafficSample, TrafficTap

KNOWN = "great film and the acting was superb"  # every word is in the fake model's vocabulary
HALF_UNKNOWN = "great zzyzx film qwxv"


def eventually(check, timeout: float = 10.0):
    """Return ``check()`` once it holds (the tap's own thread may be draining at the same time)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, KeyError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def samples(folder: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(folder.rglob("*.jsonl")) for line in p.read_text().splitlines()]


def metric(client, name: str, **labels) -> float:
    """Return one sample of /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True)):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    raise KeyError(name, labels)


def test_drift_histograms_count_every_text_with_its_length_oov_share_and_score(make_app):
    app = make_app()
    client = app.test_client()
    answer = client.post("/v1/predict", json={"texts": [KNOWN, HALF_UNKNOWN]}).get_json()
    client.post("/v1/models/sentiment:predict", json={"instances": [KNOWN]})
    app.extensions["sentiment"].tap.drain()

    def counted() -> None:
        assert metric(client, "sentiment_input_tokens_count", version="1") == 3

    eventually(counted)
    assert metric(client, "sentiment_input_tokens_sum", version="1") == 7 + 4 + 7
    assert metric(client, "sentiment_input_oov_ratio_sum", version="1") == pytest.approx(0.5)
    assert metric(client, "sentiment_input_oov_ratio_bucket", version="1", le="0.0") == 2
    probabilities = [p["probability"] for p in answer["predictions"]]
    assert metric(client, "sentiment_score_sum", version="1") == pytest.approx(
        probabilities[0] * 2 + probabilities[1]
    )


def test_with_no_metrics_and_no_sample_there_is_no_tap(make_app):
    app = make_app(DRIFT_METRICS=0, SAMPLE_RATE=0)
    assert app.extensions["sentiment"].tap is None
    assert app.test_client().post("/v1/predict", json={"text": KNOWN}).status_code == 200


def test_every_text_is_sampled_at_rate_one_with_its_score_and_version(make_app, tmp_path):
    app = make_app(SAMPLE_RATE=1.0, SAMPLE_DIR=str(tmp_path / "sample"), DRIFT_METRICS=0)
    client = app.test_client()
    answer = client.post("/v1/predict", json={"texts": [KNOWN, HALF_UNKNOWN]}).get_json()["predictions"]
    app.extensions["sentiment"].tap.drain()

    def written() -> list[dict]:
        records = samples(tmp_path / "sample")
        assert len(records) == 2
        return records

    records = eventually(written)
    assert [r["text"] for r in records] == [KNOWN, HALF_UNKNOWN]
    assert [r["probability"] for r in records] == [p["probability"] for p in answer]
    assert {(r["model_name"], r["model_version"]) for r in records} == {("sentiment", 1)}
    assert [(r["tokens"], r["oov"]) for r in records] == [(7, 0), (4, 2)]
    assert all(r["time"] > 1.7e9 for r in records)


def test_the_sample_rate_is_honoured_and_the_folder_bounded(tmp_path):
    settings = Settings(
        sample_rate=0.25, sample_dir=str(tmp_path), sample_rotate_bytes=2000, sample_max_files=3
    )
    sample = TrafficSample(settings, CollectorRegistry(), rng=random.Random(7))
    item = SimpleNamespace(ids=np.array([5, 1, 7]))
    p = SimpleNamespace(probability=0.7, label="positive", model_name="sentiment", model_version=2)
    for i in range(400):
        sample.observe([f"text {i}"], [item], [p])
    sample.log.close()
    published = sorted(tmp_path.glob("sample-*.jsonl"))
    assert len(published) == 3  # older files pruned
    assert sample.written._value.get() == pytest.approx(100, abs=30)  # binomial(400, 0.25): sd 8.7
    kept = samples(tmp_path)
    assert 0 < len(kept) < sample.written._value.get()
    numbers = [int(r["text"].split()[1]) for r in kept]
    assert numbers == sorted(numbers) and numbers[-1] >= 350  # the newest texts survive


def test_the_tap_is_bounded_and_survives_a_failing_consumer():
    seen = []

    def broken(*args):
        raise OSError("disk full")

    tap = TrafficTap([broken, lambda texts, items, preds: seen.append(texts)], max_pending=2, interval_s=3600)
    for i in range(3):
        tap([f"t{i}"], [], [])
    assert tap.dropped == 1
    assert tap.drain() == 2 and seen == [["t0"], ["t1"]]
    assert tap.dropped == 0


def test_settings_refuse_a_sample_without_a_folder_or_out_of_range(tmp_path):
    from service.settings import SettingsError

    for bad in (
        {"sample_rate": 0.5},
        {"sample_rate": 1.5, "sample_dir": "x"},
        {"sample_rate": -0.1},
        {"drift_metrics": 2},
        {"feedback_dir": str(tmp_path), "sample_dir": str(tmp_path)},
    ):
        with pytest.raises(SettingsError):
            Settings(**bad)
