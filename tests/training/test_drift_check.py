"""The drift check end to end: windows from sample folders or files, the CLI's verdicts and reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import drift_false_alarms
from bench.drift_false_alarms import product_reviews
from tests.conftest import DATA_DIR
from training.config import preset
from training.data import DataError, load_labelled, stratified_sample
from training.drift_check import read_window
from training.pipeline import main


def write_sample(folder: Path, name: str, records: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))


def test_a_window_is_the_newest_texts_of_the_published_sample_files(tmp_path):
    sample = tmp_path / "sample"
    write_sample(
        sample,
        "sample-20260101T000000000-h-1-000001.jsonl",
        [{"text": f"old {i}", "time": 100} for i in range(3)],
    )
    write_sample(
        sample,
        "sample-20260102T000000000-h-1-000002.jsonl",
        [{"text": f"new {i}", "time": 200} for i in range(3)],
    )
    write_sample(sample / ".open", "sample-20260103T000000000-h-1-000003.jsonl", [{"text": "in progress"}])
    (sample / "sample-20260102T000000000-h-2-000001.jsonl").write_text(
        '{"text": "other worker", "time": 150}\n{"tex'
    )
    assert read_window(sample, 100) == ["old 0", "old 1", "old 2", "new 0", "new 1", "new 2", "other worker"]
    # Newest file name last (time, then host and pid); a torn line is skipped with a warning.
    assert read_window(sample, 4) == ["new 0", "new 1", "new 2", "other worker"]
    assert read_window(sample, 2) == ["new 2", "other worker"]


def test_windows_are_cut_by_age_and_read_from_text_files(tmp_path):
    sample = tmp_path / "sample"
    now = pd.Timestamp.now().timestamp()
    write_sample(
        sample, "sample-1.jsonl", [{"text": "stale", "time": now - 7200}, {"text": "fresh", "time": now - 60}]
    )
    assert read_window(sample, 10, since_s=3600) == ["fresh"]
    txt = tmp_path / "texts.txt"
    txt.write_text("first review\n\n  second review  \n")
    assert read_window(txt, 10) == ["first review", "second review"]
    csv = tmp_path / "texts.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": [1, 0, 1]}).to_csv(csv, index=False)
    assert read_window(csv, 2) == ["b", "c"]
    with pytest.raises(DataError):
        read_window(tmp_path / "missing", 10)


@pytest.fixture(scope="module")
def imdb_files(tmp_path_factory) -> dict[str, Path]:
    """Reference texts and a fresh window of IMDB reviews the small model never saw, and product reviews."""
    folder = tmp_path_factory.mktemp("drift")
    data = load_labelled(DATA_DIR / "train.csv.gz")
    used = set(stratified_sample(data.labels, preset("small").sample, preset("small").seed).tolist())
    fresh = np.random.default_rng(5).permutation([i for i in range(len(data)) if i not in used])
    files = {
        "reference": folder / "reference.csv",
        "imdb": folder / "imdb.csv",
        "products": folder / "products.txt",
    }
    pd.DataFrame({"text": [data.texts[i] for i in fresh[:1000]]}).to_csv(files["reference"], index=False)
    pd.DataFrame({"text": [data.texts[i] for i in fresh[1000:1400]]}).to_csv(files["imdb"], index=False)
    files["products"].write_text("\n".join(product_reviews(400, seed=3)))
    return files


@pytest.mark.slow
def test_the_cli_flags_product_reviews_and_stays_quiet_on_fresh_imdb(
    trained_registry, imdb_files, tmp_path, capsys
):
    common = ["--model-dir", str(trained_registry.root), "drift", "--reference", str(imdb_files["reference"])]
    assert main([*common, "--traffic", str(imdb_files["imdb"]), "--out", str(tmp_path / "imdb")]) == 0
    quiet = json.loads(capsys.readouterr().out)
    assert quiet["drift"] is False and quiet["domain_auc"] < 0.7
    assert main([*common, "--traffic", str(imdb_files["products"]), "--out", str(tmp_path / "products")]) == 1
    shifted = json.loads(capsys.readouterr().out)
    assert shifted["drift"] is True and shifted["length_psi"] > 1 and shifted["domain_auc"] > 0.9
    report = json.loads((tmp_path / "products" / "report.json").read_text())
    assert (
        report["window"]["texts"] == 400 and report["reference"]["texts"] == 200
    )  # small: 200 validation rows
    assert report["reference"]["source"] == "drift_reference.json of version 1"  # saved at training time
    assert (tmp_path / "products" / "drift.png").stat().st_size > 1000
    assert "DRIFT" in (tmp_path / "products" / "report.md").read_text()


@pytest.mark.slow
def test_the_false_alarm_bench_counts_quiet_imdb_windows_and_flagged_product_windows(trained_registry):
    """bench/drift_false_alarms.py measures the rates the README reports: run it small, check its counting."""
    result = drift_false_alarms.run(trained_registry.root, resamples=3, window=500, data_dir=DATA_DIR)
    assert result["version"] == 1 and result["resamples"] == 3 and result["window"] == 500
    assert len(result["imdb"]) == len(result["products"]) == 3
    assert result["false_alarm_rate"] == sum(w["drift"] for w in result["imdb"]) / 3
    assert result["detection_rate"] == sum(w["drift"] for w in result["products"]) / 3
    # The README's margins are wide (0 of 30 / 30 of 30 at these sizes): three windows of each agree.
    assert (result["false_alarm_rate"], result["detection_rate"]) == (0.0, 1.0), result
    assert all(w["domain_auc"] < 0.7 for w in result["imdb"]) and all(
        w["domain_auc"] > 0.9 for w in result["products"]
    )


def test_a_version_without_any_reference_is_a_clear_error(fake_registry, tmp_path, caplog):
    texts = tmp_path / "window.txt"
    texts.write_text("\n".join(product_reviews(150)))
    argv = [
        "--model-dir",
        str(fake_registry.root),
        "drift",
        "--traffic",
        str(texts),
        "--reference",
        str(tmp_path / "none.csv"),
    ]
    assert main(argv) == 2
    assert "no drift_reference.json" in caplog.text and "--reference" in caplog.text


def test_a_window_too_small_for_a_verdict_is_refused(fake_registry, tmp_path, caplog):
    texts = tmp_path / "window.txt"
    texts.write_text("\n".join(product_reviews(20)))
    reference = tmp_path / "reference.txt"
    reference.write_text("\n".join(product_reviews(200, seed=9)))
    argv = [
        "--model-dir",
        str(fake_registry.root),
        "drift",
        "--traffic",
        str(texts),
        "--reference",
        str(reference),
    ]
    assert main(argv) == 2
    assert "a verdict needs at least 100" in caplog.text


@pytest.mark.slow
def test_retrain_when_drift_runs_only_on_drift(trained_registry, imdb_files, tmp_path, monkeypatch, capsys):
    import shutil

    from training import pipeline

    models = tmp_path / "models"
    shutil.copytree(trained_registry.root, models)
    calls = []

    def fake_retrain(registry, name, options):
        calls.append(options)
        return {
            "run_id": "r",
            "promoted": False,
            "reason": "stub",
            "candidate_version": 2,
            "parent_version": 1,
            "gold": {"metrics": {}},
            "shadow": {},
            "report_dir": "x",
        }

    monkeypatch.setattr(pipeline, "retrain", fake_retrain)
    drop = tmp_path / "drop"
    drop.mkdir()
    argv = [
        "--model-dir",
        str(models),
        "retrain",
        "--new-data",
        str(drop),
        "--when-drift",
        "--reference",
        str(imdb_files["reference"]),
        "--traffic",
    ]
    assert main([*argv, str(imdb_files["imdb"])]) == 0
    assert calls == [] and json.loads(capsys.readouterr().out)["retrained"] is False
    assert main([*argv, str(imdb_files["products"])]) == 0
    (options,) = calls
    assert options.drift["drift"] is True and options.drift["domain_auc"] > 0.9
    assert str(options.shadow.traffic) == str(imdb_files["products"])
