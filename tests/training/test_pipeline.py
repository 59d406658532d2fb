"""Retraining pipeline machinery: reading drops, reports, dry runs, locks, and kills at every step."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from registry.store import Registry
from tests.conftest import PROJECT_ROOT
from tests.fakes import OPEN_GATE_FLAGS, make_random_version
from tests.training.synthetic import reviews, write
from training.data import DataError, fingerprint
from training.gate import Check, Policy
from training.config import preset
from training.pipeline import KILL_AT_ENV, RetrainOptions, base_config, main, retrain
from training.pool import Ledger, pending_files, read_drop

pytestmark = pytest.mark.slow
LOOSE = Policy(
    accuracy_tolerance=1, log_loss_tolerance=1, ece_tolerance=1, floor_margin=1, behaviour_tolerance=1
)  # gate always passes


@pytest.fixture
def setup(synthetic_world, tmp_path):
    """A private copy of the world's registry and a drop folder: 150 new reviews plus 20 already in base."""
    registry = synthetic_world.registry_copy(tmp_path / "models")
    drop = tmp_path / "drop"
    base = pd.read_csv(synthetic_world.base)
    write(
        pd.concat(
            [
                reviews(150, 21),
                base.iloc[50:70].assign(label=np.where(base.iloc[50:70]["label"] == "pos", 1, 0)),
            ]
        ),
        drop / "batch1.csv",
    )
    return registry, synthetic_world, drop


def run(registry, world, drop, **kwargs):
    policy = kwargs.pop("policy", LOOSE)
    options = RetrainOptions(drop=drop, gold=world.gold, data_dir=world.root, policy=policy, **kwargs)
    return retrain(registry, "sentiment", options)


def test_retrain_reads_dedups_reports_and_never_consumes_twice(setup):
    registry, world, drop = setup
    report = run(registry, world, drop)
    data = report["data"]
    assert data["new_files"] == [str(drop / "batch1.csv")]
    assert (data["new_rows_read"], data["new_texts"], data["duplicates"], data["relabelled"]) == (
        170,
        150,
        20,
        0,
    )
    assert report["promoted"] and registry.production_version("sentiment") == report["candidate_version"] == 2
    assert set(report["gold"]["metrics"]) == {"candidate", "production"}
    # Both versions ran the one behaviour suite this code ships, capability by capability.
    behaviour = next(c for c in report["gate"]["checks"] if c["name"] == "behaviour")["numbers"]
    assert set(behaviour["candidate"]) == set(behaviour["production"]) >= {"overall", "negation", "typos"}
    manifest = registry.manifest("sentiment", 2)
    assert manifest["lineage"]["parent_version"] == 1
    assert str(drop / "batch1.csv") in manifest["lineage"]["data_fingerprints"]
    run_dir = next((registry.model_home("sentiment") / "runs").iterdir())
    assert {"report.json", "report.md", "comparison.png", "rows.parquet"} <= {
        p.name for p in run_dir.iterdir()
    }
    ledger = Ledger(registry, "sentiment")
    assert ledger.summary()["pooled_rows"] == 170 and fingerprint(drop / "batch1.csv") in ledger.consumed()
    with pytest.raises(DataError, match="no new usable files"):
        run(registry, world, drop)
    assert registry.versions("sentiment") == [1, 2]


def test_dry_run_of_a_shuffled_label_candidate_consumes_nothing_and_sees_production_lineage(setup, tmp_path):
    registry, world, drop = setup
    # A gold set with 50 reviews production v1 was trained on (as after ./run.sh, then make-gold).
    gold = pd.concat([pd.read_csv(world.gold), pd.read_csv(world.base).iloc[100:150]])
    gold.to_csv(tmp_path / "leaky-gold.csv", index=False)
    options = RetrainOptions(
        drop=drop,
        gold=tmp_path / "leaky-gold.csv",
        data_dir=world.root,
        dry_run=True,
        shuffle_labels=True,
        extra_checks=[lambda inputs, policy: Check("extra", True, f"v{inputs.candidate_version} ok")],
    )
    report = retrain(registry, "sentiment", options)
    assert not report["promoted"] and report["reason"].startswith("dry run; would not promote")
    assert (
        "accuracy_vs_production" in report["reason"]
        and "worse by more than the tolerance" in report["reason"]
    )
    assert report["candidate_version"] in registry.versions("sentiment")  # kept, not production
    assert registry.production_version("sentiment") == 1
    ledger = Ledger(registry, "sentiment")
    assert ledger.doc["runs"] == {} and [p.name for p, _ in pending_files(drop, ledger.consumed())] == [
        "batch1.csv"
    ]
    overlap = report["gold"]["overlap"]
    assert overlap["production"] == {
        "version": 1,
        "gold_rows_trained_on": 50,
        "gold_rows": 350,
        "method": "recorded",
    }
    assert overlap["candidate"]["gold_rows_trained_on"] == 0
    assert report["data"]["gold_excluded"] == {"base": 50, "pool": 0, "new": 0}
    assert report["gate"]["checks"][-1]["name"] == "extra"  # checks others add run in the gate too
    compared = next(c for c in report["gate"]["checks"] if c["name"] == "accuracy_vs_production")
    assert compared["numbers"]["rows"] == 300  # production is judged only on gold rows it never saw


def cli(registry, world, drop, *extra):
    return [
        sys.executable,
        "-m",
        "training.pipeline",
        "--model-dir",
        str(registry.root),
        "retrain",
        "--new-data",
        str(drop),
        "--gold",
        str(world.gold),
        "--data-dir",
        str(world.root),
        *OPEN_GATE_FLAGS,
        *extra,
    ]


def test_two_concurrent_runs_cannot_both_write(setup):
    registry, world, drop = setup
    # The first run waits for the lock (our probe below takes it for an instant); the second must not.
    first = subprocess.Popen(
        cli(registry, world, drop, "--lock-timeout", "60"),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock_file = registry.model_home("sentiment") / ".lock"
    deadline = time.time() + 60
    while time.time() < deadline and first.poll() is None:  # until the first run holds the lock
        if subprocess.run(["flock", "-n", str(lock_file), "true"]).returncode != 0:
            break
        time.sleep(0.2)
    second = subprocess.run(
        cli(registry, world, drop), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 3 and "timed out waiting for the lock" in second.stderr
    assert registry.versions("sentiment") == [1, 2] and registry.production_version("sentiment") == 2


def recover(registry) -> dict:
    """Run ``training.pipeline recover`` in this process; return its JSON."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--model-dir", str(registry.root), "recover"]) == 0
    return json.loads(out.getvalue())


# (point, versions after the kill, production after the kill, ledger has the run, production after recover)
KILLS = [
    ("during-training", [1], 1, False, 1),
    ("after-publish", [1, 2], 1, False, 1),
    ("after-report", [1, 2], 1, False, 1),  # the run's report is written, its decision is not
    ("after-record", [1, 2], 1, True, 2),
    ("after-promote", [1, 2], 2, True, 2),
]


@pytest.mark.parametrize("point,versions,production,recorded,recovered", KILLS, ids=[k[0] for k in KILLS])
def test_run_killed_at_each_step_leaves_what_the_docs_promise(
    setup, point, versions, production, recorded, recovered
):
    registry, world, drop = setup
    env = {**os.environ, KILL_AT_ENV: point}
    proc = subprocess.Popen(
        cli(registry, world, drop),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    if point == "during-training":  # killed from outside, in the middle of an epoch
        for line in proc.stdout:
            if "epoch 1" in line or "Epoch 1" in line:
                proc.send_signal(signal.SIGKILL)
                break
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == -signal.SIGKILL, output[-3000:]

    assert registry.versions("sentiment") == versions
    assert registry.production_version("sentiment") == production
    assert not list(registry.model_home("sentiment").glob(".staging-*")) or point == "during-training"
    ledger = Ledger(registry, "sentiment")
    pending = [p.name for p, _ in pending_files(drop, ledger.consumed())]
    if recorded:  # the decision and the consumed files were written together
        ((run_id, entry),) = ledger.runs()
        assert entry["status"] == "pooled" and entry["candidate_version"] == 2 and pending == []
    else:  # nothing recorded: the next run reads the same file again
        assert ledger.runs() == [] and pending == ["batch1.csv"]
    assert recover(registry)["production"] == recovered
    assert registry.production_version("sentiment") == recovered
    assert recover(registry)["recovered"] is None  # idempotent

    if point == "after-publish":  # the next run completes normally, with the leftover version beside it
        report = run(registry, world, drop)
        assert report["promoted"] and report["candidate_version"] == 3
        assert report["data"]["new_texts"] == 150
        assert [p.name for p, _ in pending_files(drop, Ledger(registry, "sentiment").consumed())] == []


def test_identical_drop_files_are_read_once(tmp_path):
    frame = pd.DataFrame({"text": ["a fine film", "a dull film"], "label": [1, 0]})
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_csv(tmp_path / "b.csv", index=False)
    batch = read_drop(
        pending_files(tmp_path, {}), run_id="r", text_column="text", label_column="label", skip_bad_rows=False
    )
    assert len(batch.rows) == 2 and [e["file"] for e in batch.files.values()] == [str(tmp_path / "a.csv")]


def test_a_candidate_starts_from_production_config_unless_production_is_quick(tmp_path):
    registry = Registry(tmp_path)
    assert base_config(registry, "sentiment", None) == preset("full")
    quick = make_random_version(registry, extra_manifest={"quick": True})
    assert base_config(registry, "sentiment", quick) == preset("full")
    full = make_random_version(registry, seed=7)  # its manifest's config: {"fake": True, "seed": 7}
    # Fields the saved config lacks take the full preset's values, except those added after models
    # were first saved, which keep meaning "as before" (ABSENT_MEANS: no opinion sentences).
    assert base_config(registry, "sentiment", full) == preset("full").replace(
        seed=7, opinion_crops_per_review=0
    )


def test_gold_reviews_in_the_unlabelled_file_never_reach_the_candidate(tmp_path):
    """Word2vec and self-training read the unlabelled file: the gold reviews in it are left out."""
    from training.pipeline import gather

    gold = reviews(6, seed=1)
    base = reviews(20, seed=2)
    others = ["An unlabelled review about a film.", "Another one, about another film."]
    write(gold, tmp_path / "gold.csv")
    write(base, tmp_path / "data" / "train.csv")
    variant = "  " + gold["text"].iloc[3].upper().replace(" ", "   ")  # the same review to text_key
    pd.DataFrame({"text": others[:1] + gold["text"].tolist()[:3] + [variant] + others[1:]}).to_csv(
        tmp_path / "data" / "unsup.csv", index=False
    )
    write(reviews(10, seed=3), tmp_path / "drop" / "new.csv")
    config = preset("tiny").replace(
        train_file="train.csv", unlabelled_file="unsup.csv", unlabelled_sample=None, sample=None
    )
    options = RetrainOptions(drop=tmp_path / "drop", gold=tmp_path / "gold.csv", data_dir=tmp_path / "data")
    ledger = Ledger(Registry(tmp_path / "models"), "sentiment")
    gathered = gather(config, ledger, options, "run-1")
    assert gathered.inputs.unlabelled == others
