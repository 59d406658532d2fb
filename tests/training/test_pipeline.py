"""Retraining pipeline: ingest, de-duplicate, gate promotion on a gold set, survive kills and races."""

import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from registry.store import Registry
from tests.conftest import DATA_DIR, PROJECT_ROOT
from training.config import preset
from training.data import DataError, load_labelled, stratified_sample
from training.pipeline import Policy, decide, retrain, text_key

pytestmark = pytest.mark.slow
TINY = preset("tiny").to_dict()


def test_decide_applies_both_tolerances():
    prod = {"accuracy": 0.90, "ece": 0.02}
    assert decide({"accuracy": 0.897, "ece": 0.025}, prod, Policy(0.005, 0.01))[0]
    ok, reason = decide({"accuracy": 0.89, "ece": 0.02}, prod, Policy(0.005, 0.01))
    assert not ok and "accuracy 0.8900 is 0.0100 below" in reason
    ok, reason = decide({"accuracy": 0.95, "ece": 0.05}, prod, Policy(0.005, 0.01))
    assert not ok and "ECE" in reason
    assert decide({"accuracy": 0.1, "ece": 0.5}, None, Policy())[0]


def test_decide_refuses_a_behaviour_regression():
    from training.behaviour import run_suite

    def reads_negation(texts):
        return np.array([0.2 if ("not" in t) == any(w in t for w in ("good", "great", "superb", "loved"))
                         else 0.8 for t in texts])

    good = run_suite(reads_negation)
    deaf = run_suite(lambda texts: np.full(len(texts), 0.9))  # everything positive
    prod = {"accuracy": 0.90, "ece": 0.02, "behaviour": good}
    ok, reason = decide({"accuracy": 0.91, "ece": 0.02, "behaviour": deaf}, prod, Policy(0.005, 0.01, 0.05))
    assert not ok and "behaviour pass rate" in reason
    assert decide({"accuracy": 0.91, "ece": 0.02, "behaviour": deaf}, prod, Policy(0.005, 0.01, 1.0))[0]
    assert decide({"accuracy": 0.91, "ece": 0.02, "behaviour": good}, prod, Policy(0.005, 0.01, 0.0))[0]


@pytest.fixture
def setup(trained_registry, tmp_path):
    """A private copy of the trained registry, a gold set disjoint from its data, and a drop folder."""
    registry = Registry(tmp_path / "models")
    shutil.copytree(trained_registry.root, registry.root)
    full = load_labelled(DATA_DIR / "train.csv.gz")
    used = stratified_sample(full.labels, preset("small").sample, preset("small").seed)
    used_by_candidate = stratified_sample(full.labels, TINY["sample"], TINY["seed"])
    used_keys = {text_key(full.texts[i]) for i in np.union1d(used, used_by_candidate)}
    keys = pd.Series([text_key(t) for t in full.texts])
    # IMDB has duplicate reviews: only rows whose text occurs once and is not trained on are fair game.
    unique = (~keys.duplicated(keep=False)) & ~keys.isin(used_keys)
    unused = np.flatnonzero(unique.to_numpy())
    rng = np.random.default_rng(5)
    gold_rows = rng.choice(unused, 300, replace=False)
    new_rows = rng.choice(np.setdiff1d(unused, gold_rows), 150, replace=False)
    gold = tmp_path / "gold.csv"
    pd.DataFrame({"text": [full.texts[i] for i in gold_rows], "label": full.labels[gold_rows]}).to_csv(gold, index=False)
    drop = tmp_path / "drop"
    drop.mkdir()
    # New data: 150 unseen reviews plus 20 the candidate already trains on (to be de-duplicated).
    once = [i for i in used_by_candidate if (keys == keys[i]).sum() == 1][:20]
    rows = list(new_rows) + once
    pd.DataFrame({"text": [full.texts[i] for i in rows],
                  "label": ["pos" if full.labels[i] else "neg" for i in rows]}).to_csv(drop / "batch1.csv", index=False)
    return registry, gold, drop


def run(registry, gold, drop, **kwargs):
    return retrain(registry, "sentiment", drop=drop, gold=gold, data_dir=DATA_DIR, policy=kwargs.pop("policy", Policy()),
                   config_overrides={**TINY, **kwargs.pop("overrides", {})}, **kwargs)


def test_retrain_ingests_dedups_reports_and_never_consumes_twice(setup):
    registry, gold, drop = setup
    report = run(registry, gold, drop, policy=Policy(1.0, 1.0, 1.0))
    assert report["ingest"] == {"files": [str(drop / "batch1.csv")], "rows_added": 150, "duplicates": 20}
    assert report["promoted"] and registry.production_version("sentiment") == report["candidate_version"] == 2
    assert set(report["gold"]) == {"candidate", "production"}
    assert report["gold"]["candidate"]["behaviour"]["cases"] == report["gold"]["production"]["behaviour"]["cases"]
    manifest = registry.manifest("sentiment", 2)
    assert manifest["lineage"]["parent_version"] == 1
    assert str(drop / "batch1.csv") in manifest["lineage"]["data_fingerprints"]
    out = registry.model_dir("sentiment") / "runs"
    run_dir = next(out.iterdir())
    assert {"report.json", "report.md", "comparison.png"} <= {p.name for p in run_dir.iterdir()}
    with pytest.raises(DataError, match="no new files"):
        run(registry, gold, drop)
    assert registry.versions("sentiment") == [1, 2]


def test_dry_run_neither_promotes_nor_consumes(setup):
    registry, gold, drop = setup
    report = run(registry, gold, drop, dry_run=True, policy=Policy(1.0, 1.0, 1.0))
    assert not report["promoted"] and report["reason"].startswith("dry run; would promote")
    assert registry.production_version("sentiment") == 1
    assert len(list((drop).iterdir())) == 1
    report = run(registry, gold, drop, policy=Policy(1.0, 1.0, 1.0))  # the files are still pending
    assert report["ingest"]["rows_added"] == 150


def test_shuffled_label_candidate_is_not_promoted(setup):
    registry, gold, drop = setup
    report = run(registry, gold, drop, shuffle_labels=True)
    assert not report["promoted"]
    assert "below production's" in report["reason"]
    assert registry.production_version("sentiment") == 1
    assert report["candidate_version"] in registry.versions("sentiment")  # kept, not production


def test_gold_overlapping_training_data_is_refused(setup, tmp_path):
    registry, gold, drop = setup
    leaky = tmp_path / "leaky.csv"
    pd.read_csv(drop / "batch1.csv").head(30).to_csv(leaky, index=False)
    with pytest.raises(DataError, match="30 gold reviews also appear in the training data"):
        run(registry, leaky, drop)
    assert registry.versions("sentiment") == [1]


def cli(registry, gold, drop, *extra):
    return [sys.executable, "-m", "training.pipeline", "--model-dir", str(registry.root), "retrain",
            "--new-data", str(drop), "--gold", str(gold), "--data-dir", str(DATA_DIR), "--preset", "tiny",
            "--accuracy-tolerance", "1", "--ece-tolerance", "1", *extra]


def test_two_concurrent_runs_cannot_both_write(setup):
    registry, gold, drop = setup
    # The first run waits for the lock (our probe below takes it for an instant); the second must not.
    first = subprocess.Popen(cli(registry, gold, drop, "--lock-timeout", "60"), cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lock_file = registry.model_dir("sentiment") / ".lock"
    deadline = time.time() + 60
    # Wait until the first run has the lock (it logs its first step after taking it).
    while time.time() < deadline and first.poll() is None:
        probe = subprocess.run(["flock", "-n", str(lock_file), "true"])
        if probe.returncode != 0:
            break
        time.sleep(0.2)
    second = subprocess.run(cli(registry, gold, drop), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 3 and "timed out waiting for the lock" in second.stderr
    assert registry.versions("sentiment") == [1, 2] and registry.production_version("sentiment") == 2


def test_run_killed_midway_leaves_production_and_drop_untouched(setup):
    registry, gold, drop = setup
    proc = subprocess.Popen(cli(registry, gold, drop), cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # kill it in the middle of training
        if "epoch 1" in line or "word2vec:" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert registry.versions("sentiment") == [1] and registry.production_version("sentiment") == 1
    assert not (registry.model_dir("sentiment") / "pipeline" / "consumed.json").exists()
    again = subprocess.run(cli(registry, gold, drop), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["candidate_version"] == 2


def test_identical_drop_files_are_ingested_once(tmp_path):
    from training.data import fingerprint
    from training.pipeline import ingest

    frame = pd.DataFrame({"text": ["a fine film", "a dull film"], "label": [1, 0]})
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_csv(tmp_path / "b.csv", index=False)
    files = [(p, fingerprint(p)) for p in (tmp_path / "a.csv", tmp_path / "b.csv")]
    rows, entries = ingest(files, set(), text_column="text",
                           label_column="label", skip_bad_rows=False)
    assert [len(f) for f in rows.values()] == [2]
    assert [e["file"] for e in entries.values()] == [str(tmp_path / "a.csv")]


def test_decide_refuses_non_finite_metrics():
    assert not decide({"accuracy": float("nan"), "ece": 0.01}, {"accuracy": 0.9, "ece": 0.02}, Policy())[0]
    assert not decide({"accuracy": 0.9, "ece": float("nan")}, None, Policy())[0]
