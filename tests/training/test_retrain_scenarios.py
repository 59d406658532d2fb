"""Retraining scenarios with real training (tiny preset) through the real CLI (``training.pipeline.main``).

One story, shared by scenarios (a), (c), (d) and (e) to keep training to two runs:

1. a drop whose labels are all flipped arrives: its candidate is refused and its rows quarantined;
2. a later drop brings a good file of 125 reviews (5 of them gold-set reviews), a file that
   corrects ten old wrong labels of the base data, and a file with an unusable label: the bad file
   is quarantined, the gold reviews are left out, the labels are corrected, and the candidate,
   trained without the flipped rows, is promoted.

Scenario (b) runs its own chain of candidates that each lose a little, until the floor stops it.
The README's first-deployment path (make-gold, then production trained on the remainder) and a
run judged on a one-class gold set (no ROC-AUC) run on their own copies too.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from registry.store import Registry
from tests.training.synthetic import reviews, write
from training import pipeline
from training.lineage import key_hashes, read_training_data, text_key
from training.pool import Ledger

pytestmark = pytest.mark.slow


def cli(*argv: str) -> dict:
    """Run the pipeline CLI in this process (no TensorFlow start-up per run); return its JSON output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = pipeline.main([str(a) for a in argv])
    assert code == 0, f"exit {code}: {argv}"
    return json.loads(out.getvalue())


def retrain(models: Path, drop: Path, world, *flags: str) -> dict:
    """Run one retrain through the CLI; return the full run report."""
    printed = cli(
        "--model-dir",
        models,
        "retrain",
        "--new-data",
        drop,
        "--gold",
        world.gold,
        "--data-dir",
        world.root,
        # The synthetic world is not English: the behaviour suite measures nothing here (its gate
        # check is tested in test_gate.py and test_pipeline.py).
        "--behaviour-tolerance",
        "1",
        *flags,
    )
    return json.loads((Path(printed["report_dir"]) / "report.json").read_text())


def trained_on(registry: Registry, version: int) -> dict[int, int]:
    """Return {key hash: label} of every labelled row a version recorded it was given."""
    keys, labels = read_training_data(registry.version_dir("sentiment", version))
    return dict(zip(keys.tolist(), labels.tolist()))


def hashed(texts) -> list[int]:
    return key_hashes(map(text_key, texts)).tolist()


@dataclass
class Story:
    registry: Registry
    drop: Path
    flipped: pd.DataFrame
    gold_in_drop: list[str]
    run1: dict
    run2: dict


@pytest.fixture(scope="module")
def story(synthetic_world, tmp_path_factory) -> Story:
    root = tmp_path_factory.mktemp("story")
    registry = synthetic_world.registry_copy(root / "models")
    drop = root / "drop"
    flipped = reviews(500, 11, flip=True)  # every word taught backwards, more rows than the base
    write(flipped, drop / "flipped.csv")
    # Tolerances sized for a 300-row gold set and a tiny model's run-to-run noise; the flipped
    # candidate loses far more than any of them.
    flags = ("--log-loss-tolerance", "0.05", "--floor-margin", "0.05")
    run1 = retrain(registry.root, drop, synthetic_world, *flags)

    gold = pd.read_csv(synthetic_world.gold)
    good = pd.concat(
        [reviews(120, 12), gold.head(5).assign(label=np.where(gold.head(5)["label"] == "pos", 1, 0))]
    )
    write(good.sample(frac=1, random_state=0), drop / "good.csv")  # 125 reviews, 5 from the gold set
    fixed = synthetic_world.mislabelled.assign(label=1 - synthetic_world.mislabelled["label"])
    write(fixed, drop / "corrections.csv")
    pd.DataFrame({"text": ["a fine film", "a dull film"], "label": ["pos", "so-so"]}).to_csv(
        drop / "bad.csv", index=False
    )
    run2 = retrain(registry.root, drop, synthetic_world, *flags)
    return Story(registry, drop, flipped, gold.head(5)["text"].tolist(), run1, run2)


def test_a_flipped_drop_is_refused_and_the_next_good_drop_is_promoted_without_it(story):
    run1, run2, registry = story.run1, story.run2, story.registry
    assert not run1["promoted"], run1["reason"]
    accuracy = run1["gate"]["checks"][1]
    assert accuracy["name"] == "accuracy_vs_production" and not accuracy["passed"]
    assert accuracy["numbers"]["accuracy_diff"]["high"] < 0  # the whole interval says "worse"
    assert run2["promoted"], run2["reason"]
    assert registry.production_version("sentiment") == run2["candidate_version"] == 3
    # The flipped rows are quarantined with run 1's report and absent from v3's training data.
    assert run2["data"]["pool"]["quarantined_runs"][0]["run_id"] == run1["run_id"]
    assert run2["data"]["pool"]["pooled_runs_used"] == []
    assert (Path(run1["report_dir"]) / "rows.parquet").is_file()
    v3 = trained_on(registry, 3)
    assert not set(hashed(story.flipped["text"])) & set(v3)
    assert len(v3) == run2["data"]["rows"]


def test_a_refused_run_can_be_admitted_on_purpose(story, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(story.registry.root, models)
    admitted = cli("--model-dir", models, "admit", "--run", story.run1["run_id"])
    assert admitted["status"] == "pooled" and admitted["rows"] == 500
    status = cli("--model-dir", models, "status")
    assert status["pool"]["pooled_runs"] == 2 and status["quarantined_runs"] == []


def test_c_a_drop_overlapping_the_gold_set_completes_and_reports_the_overlap(story):
    data = story.run2["data"]
    assert data["gold_excluded"] == {"base": 0, "pool": 0, "new": 5}
    assert sorted(r["text"] for r in data["gold_excluded_rows"]) == sorted(t[:80] for t in story.gold_in_drop)
    assert all(r["origin"].startswith("new:good.csv:") for r in data["gold_excluded_rows"])
    assert story.run2["gold"]["overlap"]["candidate"] == {
        "version": 3,
        "gold_rows_trained_on": 0,
        "gold_rows": 300,
        "method": "recorded",
    }
    assert not set(hashed(story.gold_in_drop)) & set(trained_on(story.registry, 3))
    assert "Gold-set texts left out of training" in (Path(story.run2["report_dir"]) / "report.md").read_text()


def test_d_a_relabelled_text_is_trained_on_with_its_new_label(story, synthetic_world):
    wrong = synthetic_world.mislabelled
    data = story.run2["data"]
    assert data["relabelled"] == len(wrong) == 10
    assert {(r["old_label"], r["new_label"]) for r in data["relabels"]} <= {(0, 1), (1, 0)}
    assert all(
        r["old_origin"] == "base" and r["origin"].startswith("new:corrections.csv:") for r in data["relabels"]
    )
    old = wrong["label"].to_numpy()
    v1, v3 = trained_on(story.registry, 1), trained_on(story.registry, 3)
    for key, label in zip(hashed(wrong["text"]), old):
        assert (
            v1[key] == label and v3[key] == 1 - label
        )  # the old version learnt the mistake, the new one not
    assert "Relabelled texts" in (Path(story.run2["report_dir"]) / "report.md").read_text()


def test_e_a_bad_file_is_quarantined_and_the_run_goes_on(story):
    bad = story.run2["data"]["bad_files"]
    assert [Path(b["file"]).name for b in bad] == ["bad.csv"] and "unknown label" in bad[0]["reason"]
    assert not (story.drop / "bad.csv").exists()
    assert (story.drop / "quarantine" / "bad.csv").is_file()
    reason = (story.drop / "quarantine" / "bad.csv.reason.txt").read_text()
    assert "so-so" in reason and story.run2["run_id"] in reason
    assert sorted(Path(f).name for f in story.run2["data"]["new_files"]) == ["corrections.csv", "good.csv"]
    assert story.run2["promoted"]


def test_status_and_report_show_pool_quarantine_overlap_paired_test_and_floor(story, synthetic_world):
    status = cli(
        "--model-dir",
        story.registry.root,
        "status",
        "--gold",
        synthetic_world.gold,
        "--data-dir",
        synthetic_world.root,
    )
    assert status["production"] == 3 and status["pending_promotion"] is None
    assert (
        status["pool"]["pooled_runs"] == 1 and status["pool"]["pooled_rows"] == 135
    )  # good.csv + corrections.csv
    assert [q["run_id"] for q in status["quarantined_runs"]] == [story.run1["run_id"]]
    assert status["gold"]["overlap"]["production"]["gold_rows_trained_on"] == 0
    paired = status["last_run"]["paired"]
    assert (
        paired["accuracy_diff"]["low"] <= paired["accuracy_diff"]["diff"] <= paired["accuracy_diff"]["high"]
    )
    assert paired["min_detectable_difference"] > 0 and "mcnemar" in paired
    assert (
        status["floor"]["reference_version"] in (1, 3)
        and status["floor"]["floor"] <= status["floor"]["reference_accuracy"]
    )
    md = (Path(story.run2["report_dir"]) / "report.md").read_text()
    for text in (
        "accuracy_vs_production",
        "floor",
        "quarantined runs",
        "trained on 0 of 300 gold reviews",
        "smallest detectable difference",
    ):
        assert text in md


def test_b_a_chain_of_slightly_worse_candidates_is_stopped_by_the_floor(synthetic_world, tmp_path):
    registry = synthetic_world.registry_copy(tmp_path / "models")
    drop = tmp_path / "drop"
    # Generous tolerances: every candidate is "within tolerance" of its parent; only the floor
    # (best production minus 0.12) remembers where quality started.
    flags = (
        "--accuracy-tolerance",
        "0.25",
        "--log-loss-tolerance",
        "1",
        "--ece-tolerance",
        "1",
        "--floor-margin",
        "0.12",
    )
    history = []
    for step in range(5):  # drop `step` teaches one more positive word backwards (~5% of gold each)
        write(reviews(60, 100 + step, words=[step], label=1, flip=True), drop / f"drift-{step}.csv")
        report = retrain(registry.root, drop, synthetic_world, *flags)
        checks = {c["name"]: c for c in report["gate"]["checks"]}
        history.append((report["promoted"], checks["floor"]["numbers"]["candidate_accuracy"]))
        assert checks["accuracy_vs_production"]["passed"], checks["accuracy_vs_production"]["detail"]
        if not report["promoted"]:
            break
    print("chain (promoted, gold accuracy):", history)  # shown with pytest -s
    assert not report["promoted"], f"the floor never stopped the chain: {history}"
    assert [c["name"] for c in report["gate"]["checks"] if not c["passed"]] == ["floor"]
    promoted = [acc for was_promoted, acc in history if was_promoted]
    assert promoted, f"the first candidate was already below the floor: {history}"  # a chain, not one step
    floor = report["floor"]
    production = registry.production_version("sentiment")
    assert production == 1 + len(promoted)
    assert floor["reference_version"] in range(1, production + 1)
    assert floor["floor"] == pytest.approx(floor["reference_accuracy"] - 0.12)
    assert all(acc >= floor["floor"] for acc in promoted)  # nothing below the floor ever went live
    assert history[-1][1] < floor["floor"] < floor["reference_accuracy"]


def test_status_says_when_production_was_trained_on_the_gold_set(story, synthetic_world, tmp_path):
    # As after ./run.sh trained on everything and a gold set was carved out afterwards.
    leaky = tmp_path / "leaky-gold.csv"
    pd.read_csv(synthetic_world.base).iloc[100:140].to_csv(leaky, index=False)
    status = cli("--model-dir", story.registry.root, "status", "--gold", leaky)
    assert status["gold"]["overlap"]["production"] == {
        "version": 3,
        "gold_rows_trained_on": 40,
        "gold_rows": 40,
        "method": "recorded",
    }
    assert status["floor"] is None  # no fair score on this gold set: no floor to show


def test_the_first_deployment_path_trains_a_production_that_never_saw_the_gold_set(synthetic_world, tmp_path):
    """README "First deployment": make-gold, train production on the rest; status says 0 gold rows seen."""
    from training import train

    gold, rest = tmp_path / "gold.csv", tmp_path / "train-without-gold.csv"
    made = cli(
        "make-gold", "--source", synthetic_world.base, "--rows", 100, "--out", gold, "--remainder", rest
    )
    assert (made["gold_rows"], made["remainder_rows"]) == (100, 300)
    models = tmp_path / "models"
    argv = ["--preset", "tiny", "--sample", "none", "--train-file", str(rest), "--promote", "always"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert train.main([*argv, "--model-dir", str(models), "--data-dir", str(synthetic_world.root)]) == 0
    status = cli("--model-dir", models, "status", "--gold", gold)
    assert status["gold"]["overlap"]["production"] == {
        "version": 1,
        "gold_rows_trained_on": 0,
        "gold_rows": 100,
        "method": "recorded",
    }
    # The check can fail: production trained on the whole file (as ./run.sh does) saw every gold review.
    leaky = synthetic_world.registry_copy(tmp_path / "leaky")
    overlap = cli("--model-dir", leaky.root, "status", "--gold", gold)["gold"]["overlap"]["production"]
    assert overlap["gold_rows_trained_on"] == 100


def test_a_one_class_gold_set_completes_the_run_and_reports_roc_auc_as_n_a(synthetic_world, tmp_path):
    """Issue #10 item 7 end to end: no ROC-AUC on a one-class gold set must not crash a published run."""
    registry = synthetic_world.registry_copy(tmp_path / "models")
    gold = pd.read_csv(synthetic_world.gold)
    positive = tmp_path / "gold-positive.csv"
    gold[gold["label"] == "pos"].to_csv(positive, index=False)
    write(reviews(60, 31), tmp_path / "drop" / "new.csv")
    printed = cli(
        "--model-dir", registry.root, "retrain", "--new-data", tmp_path / "drop", "--gold", positive,
        "--data-dir", synthetic_world.root, "--log-loss-tolerance", "0.05", "--floor-margin", "0.05",
    )  # fmt: skip
    report = json.loads((Path(printed["report_dir"]) / "report.json").read_text())
    assert report["candidate_version"] == 2 and report["gold"]["rows"] == (gold["label"] == "pos").sum()
    assert {m["roc_auc"] for m in report["gold"]["metrics"].values()} == {None}
    assert "| roc_auc | n/a | n/a |" in (Path(printed["report_dir"]) / "report.md").read_text()
    (run,) = Ledger(registry, "sentiment").runs()  # recorded: the run got past its report
    assert run[1]["candidate_version"] == 2
    status = cli("--model-dir", registry.root, "status", "--gold", positive)
    assert status["last_run"]["run_id"] == report["run_id"]
