"""The closed loop with real processes: feedback under fire, a retrain that loses nothing, a clean swap.

1. Real gunicorn (2 workers) with feedback and a 100 % traffic sample on; client threads post
   feedback (unique ids) and predictions at the same time; both workers are SIGKILLed twice
   mid-stream (gunicorn restarts them).
2. Every item that got a 200 must reach the drop folder exactly once (count by id in the
   published files); only items whose answer was lost may be extra.
3. A real retrain (the CLI, tiny preset) ingests the drop folder and the sample (shadow
   evaluation) while clients keep predicting: every acknowledged item is in the ingested pool,
   the new version is promoted and served, and not one predict request fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from bench.drift_false_alarms import product_reviews
from registry.store import Registry
from service.rotating_log import OPEN_DIR
from tests.conftest import DATA_DIR, PROJECT_ROOT
from tests.service.gunicorn_server import GunicornServer
from training.config import preset
from training.data import load_labelled, stratified_sample
from training.pipeline import text_key
from training.pool import Ledger

pytestmark = pytest.mark.slow

ID = re.compile(r"\[(c\d+-\d+)\]")


def feedback_client(
    server: GunicornServer, n: int, stop: threading.Event, acked: set, attempted: dict
) -> None:
    """Post 1-3 unique items per request until ``stop``; remember what was acknowledged."""
    session, texts, i = requests.Session(), product_reviews(5000, seed=n), 0
    while not stop.is_set():
        items = []
        for _ in range(1 + i % 3):
            item_id = f"c{n}-{i}"
            text = f"[{item_id}] {texts[i % len(texts)]}"
            items.append({"id": item_id, "text": text, "label": "positive" if "great" in text else i % 2})
            attempted[item_id] = text
            i += 1
        try:
            response = session.post(server.url("/v1/feedback"), json=items, timeout=10)
            if response.status_code == 200:
                assert response.json()["ids"] == [it["id"] for it in items]
                acked.update(it["id"] for it in items)
        except requests.RequestException:
            session = requests.Session()  # the worker died under us: its answer is lost


def predict_client(server: GunicornServer, stop: threading.Event, log: list) -> None:
    """Send a prediction every few milliseconds; log (time, status or error, version).

    Paced, not back to back: the point is that no request fails, and the retrain shares the CPU.
    """
    session, texts, i = requests.Session(), product_reviews(200, seed=99), 0
    while not stop.wait(0.005):
        i += 1
        try:
            r = session.post(server.url("/v1/predict"), json={"text": texts[i % len(texts)]}, timeout=10)
            log.append(
                (time.time(), r.status_code, r.json()["predictions"][0]["model_version"] if r.ok else None)
            )
        except (requests.RequestException, ValueError) as exc:
            log.append((time.time(), repr(exc), None))
            session = requests.Session()


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def published_ids(drop: Path) -> list[str]:
    """Return the id of every record in the published feedback files (duplicates kept)."""
    return [
        json.loads(line)["id"]
        for p in sorted(drop.glob("feedback-*.jsonl"))
        for line in p.read_text().splitlines()
    ]


def gold_file(path: Path) -> Path:
    """Write 300 IMDB reviews neither the small nor the tiny preset trains on."""
    full = load_labelled(DATA_DIR / "train.csv.gz")
    keys = pd.Series([text_key(t) for t in full.texts])
    used = np.union1d(
        stratified_sample(full.labels, 2000, preset("small").seed),
        stratified_sample(full.labels, 400, preset("tiny").seed),
    )
    fair = np.flatnonzero((~keys.duplicated(keep=False) & ~keys.isin(set(keys[used]))).to_numpy())
    rows = np.random.default_rng(15).choice(fair, 300, replace=False)
    pd.DataFrame({"text": [full.texts[i] for i in rows], "label": full.labels[rows]}).to_csv(
        path, index=False
    )
    return path


def test_feedback_survives_killed_workers_and_a_retrain_ingests_it_exactly_once(trained_registry, tmp_path):
    import shutil

    models, drop, sample = tmp_path / "models", tmp_path / "drop", tmp_path / "sample"
    shutil.copytree(trained_registry.root, models)
    registry = Registry(models)
    old_version = registry.production_version("sentiment")
    server = GunicornServer(
        models,
        tmp_path / "server",
        workers=2,
        threads=8,
        env={
            "SENTIMENT_FEEDBACK_DIR": str(drop),
            "SENTIMENT_FEEDBACK_ROTATE_S": "0.5",
            "SENTIMENT_SAMPLE_RATE": "0.5",
            "SENTIMENT_SAMPLE_DIR": str(sample),
            "SENTIMENT_SAMPLE_ROTATE_S": "0.5",
            "SENTIMENT_POLL_INTERVAL_S": "0.5",
        },
    ).start(timeout=90)
    stop_feedback, stop_predict = threading.Event(), threading.Event()
    acked: set[str] = set()
    attempted: dict[str, str] = {}
    predictions: list = []
    feeders = [
        threading.Thread(target=feedback_client, args=(server, n, stop_feedback, acked, attempted))
        for n in range(3)
    ]
    predictors = [threading.Thread(target=predict_client, args=(server, stop_predict, predictions))]
    phases = {"start": time.monotonic()}
    try:
        for t in feeders + predictors:
            t.start()
        # 1. Kill both workers twice while clients write and read.
        for _ in range(2):
            wait_for(lambda n=len(acked): len(acked) >= n + 40, 120, "feedback is not being acknowledged")
            killed = server.worker_pids()
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            wait_for(
                lambda k=killed: len(set(server.worker_pids()) - set(k)) == 2, 120, "workers not restarted"
            )
        wait_for(
            lambda n=len(acked): len(acked) >= n + 40, 120, "restarted workers do not acknowledge feedback"
        )
        stop_feedback.set()
        for t in feeders:
            t.join(15)
        phases["kills"] = time.monotonic()

        # 2. Every acknowledged item is published exactly once (orphans of the killed workers too).
        wait_for(lambda: not list((drop / OPEN_DIR).glob("*.jsonl")), 30, "feedback files still open")
        ids = published_ids(drop)
        assert acked <= set(ids), f"lost {len(acked - set(ids))} acknowledged items"
        assert len(ids) == len(set(ids)), "an item was published twice"
        assert set(ids) <= set(attempted)  # extras only from requests whose answer was lost
        print(
            f"\nfeedback: {len(attempted)} sent, {len(acked)} acknowledged, {len(ids)} published "
            f"in {len(list(drop.glob('feedback-*.jsonl')))} files"
        )

        # 3. Retrain while clients predict: nothing of the retrain phase may fail.
        wait_for(lambda: len(server.worker_pids()) == 2, 30, "workers")
        retrain_from = len(predictions)
        gold = gold_file(tmp_path / "gold.csv")
        command = [sys.executable, "-m", "training.pipeline", "--model-dir", str(models), "retrain"]
        command += ["--new-data", str(drop), "--gold", str(gold), "--data-dir", str(DATA_DIR)]
        command += ["--traffic", str(sample), "--preset", "tiny"]
        # The tiny candidate must pass the gate: this test is about the data, not about quality.
        command += ["--accuracy-tolerance", "1", "--log-loss-tolerance", "1", "--ece-tolerance", "1"]
        command += ["--floor-margin", "1", "--behaviour-tolerance", "1"]
        started = time.monotonic()
        result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        phases["retrain"] = time.monotonic()
        report = json.loads(result.stdout)
        new_version = registry.production_version("sentiment")
        assert report["promoted"] and new_version == report["candidate_version"] != old_version
        wait_for(
            lambda: [v for _, _, v in predictions[-10:]] == [new_version] * 10, 30, "new version not served"
        )
    finally:
        stop_feedback.set()
        stop_predict.set()
        for t in feeders + predictors:
            t.join(15)
        server.stop()

    failed = [p for p in predictions[retrain_from:] if p[1] != 200]
    assert failed == [], failed[:5]
    assert {v for _, _, v in predictions[retrain_from:]} == {old_version, new_version}

    # The pool the next candidates train on holds every acknowledged item, once.
    pool = pd.concat([rows for _, rows in Ledger(registry, "sentiment").pooled_rows()])
    pooled = [ID.match(t).group(1) for t in pool["text"]]
    assert acked <= set(pooled) and len(pooled) == len(set(pooled)) == len(set(ids))
    # Shadow evaluation: the candidate scored the sampled traffic and the held-out share of the feedback.
    shadow = report["shadow"]
    assert shadow["traffic"]["texts"] > 0 and 0 <= shadow["traffic"]["agreement"] <= 1
    assert 0 < shadow["feedback"]["rows"] < len(pooled)
    manifest = registry.manifest("sentiment", new_version)
    assert manifest["retrain"]["new_rows"] + shadow["feedback"]["rows"] == len(pooled)  # trained on the rest
    print(
        f"retrain: v{old_version} -> v{new_version}, {len(predictions) - retrain_from} predictions while "
        f"retraining, 0 failed; shadow {json.dumps(shadow)}; seconds: kill phase "
        f"{phases['kills'] - phases['start']:.0f}, retrain {phases['retrain'] - started:.0f}"
    )


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])  # gunicorn: graceful, and quick shutdown
def test_a_stopped_server_publishes_its_open_feedback_files(fake_registry, tmp_path, stop):
    drop = tmp_path / "drop"
    server = GunicornServer(
        fake_registry.root,
        tmp_path / "server",
        env={"SENTIMENT_FEEDBACK_DIR": str(drop), "SENTIMENT_FEEDBACK_ROTATE_S": "3600"},
    ).start(timeout=60)
    try:
        for i in range(6):
            assert (
                requests.post(
                    server.url("/v1/feedback"), json={"id": f"g{i}", "text": f"t{i}", "label": 1}, timeout=10
                ).status_code
                == 200
            )
        assert list(drop.glob("*.jsonl")) == []  # far from rotation: still open
    finally:
        started = time.monotonic()
        server.process.send_signal(getattr(signal, stop))  # each worker publishes its file on the way out
        server.process.wait(15)
    assert time.monotonic() - started < 10  # no worker waited for gunicorn's SIGKILL
    assert list((drop / OPEN_DIR).glob("*.jsonl")) == []
    assert sorted(published_ids(drop)) == [f"g{i}" for i in range(6)]
