"""End to end: a small real training run yields an artifact every runtime agrees on."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from embeddings.vocabulary import pad_batch
from inference.predictor import Predictor
from registry.artifact import Artifact
from tests.cli_help import undocumented_arguments
from tests.conftest import DATA_DIR, PROJECT_ROOT
from training.train import build_parser

pytestmark = pytest.mark.slow

REVIEWS = [
    "An absolute masterpiece. The acting was superb and I loved every minute of it!",
    "Terrible. Boring plot, awful acting, the worst film I have seen this year.",
    "ok",
    "It was not bad, but I wouldn't watch it again? " * 30,
    "🙂",
]


@pytest.fixture(scope="module")
def version_dir(trained_registry):
    return trained_registry.production_dir("sentiment")


def test_artifact_is_complete_and_describes_itself(version_dir):
    names = {p.name for p in version_dir.iterdir()}
    assert {
        "manifest.json",
        "tokenizer.json",
        "model.onnx",
        "model.keras",
        "saved_model",
        "word2vec.model",
        "report",
    } <= names
    manifest = Artifact.open(version_dir).manifest
    assert manifest["parity"]["passed"] and manifest["parity"]["onnx_vs_keras_max_abs_diff"] <= 1e-5
    assert manifest["parity"]["reviews"] >= 128
    assert set(manifest["lineage"]) == {"parent_version", "data_fingerprints", "git_commit"}
    assert all(len(h) == 64 for h in manifest["lineage"]["data_fingerprints"].values())
    assert {"keras", "onnxruntime", "gensim", "numpy"} <= set(manifest["packages"])
    assert manifest["timings"]["total_s"] > 0
    assert 0.05 < manifest["calibration"]["temperature"] < 20
    # The temperature is fitted on rows that never picked the epoch, and judged out of sample.
    assert manifest["calibration"]["fitted_on"] == "calibration split"
    assert manifest["data"]["calibration_rows"] == manifest["calibration"]["rows"] > 0
    assert "training_data.npz" in names  # lineage: the identity of every labelled row it was given
    assert 0.5 < manifest["metrics"]["accuracy"] <= 1.0
    parity = manifest["parity"]
    for key in (
        "onnx_probability_vs_keras_max_abs_diff",
        "savedmodel_probability_vs_keras_max_abs_diff",
        "onnx_probability_vs_service_calibration_max_abs_diff",
    ):
        assert parity[key] <= 1e-5
    short = manifest["short_text_metrics"]
    assert short["sentences"] > 20 and 0 <= short["accuracy"] <= 1
    assert set(manifest["ablation"]["calibration"]) == set(manifest["ablation"]["short_texts"])
    assert set(manifest["ablation"]["calibration"]) == {"lstm", "ngrams", "combined"}
    assert manifest["ablation"]["calibration"]["combined"] == pytest.approx(manifest["metrics"]["accuracy"])
    assert manifest["combination"]["ngram_weight"] != 0 and manifest["data"]["training_snippets"] > 0
    assert manifest["data"]["negation_pairs"] > 0
    behaviour = manifest["behaviour"]
    assert behaviour["cases"] > 400 and {"negation", "typos"} <= set(behaviour["capabilities"])
    report = (version_dir / "report" / "report.md").read_text()
    assert "Short-text validation" in report and "| negation |" in report
    assert {"report.md", "reliability.png", "roc.png", "learning_curves.png"} <= {
        p.name for p in (version_dir / "report").iterdir()
    }


def test_onnx_savedmodel_and_keras_agree_on_raw_texts(version_dir):
    import keras

    import training.model  # noqa: F401 - registers the custom layer for loading

    onnx_predictor = Predictor.load(version_dir, runtime="onnx")
    saved_predictor = Predictor.load(version_dir, runtime="savedmodel")
    ids = onnx_predictor.encode(REVIEWS)
    keras_model = keras.saving.load_model(version_dir / "model.keras")
    keras_logits = np.array(
        [
            np.log(p / (1 - p))
            for p in (keras_model.predict(pad_batch([s]), verbose=0).reshape(-1)[0] for s in ids)
        ]
    )
    onnx_scores = onnx_predictor.score_ids(ids)
    np.testing.assert_allclose(onnx_scores, saved_predictor.score_ids(ids), atol=1e-5)
    np.testing.assert_allclose(onnx_scores, onnx_predictor.calibrate(keras_logits), atol=1e-5)
    # The graphs' own probability outputs (what TF Serving returns) are the calibrated scores too.
    for backend in (onnx_predictor.backend, saved_predictor.backend):
        baked = np.array([backend.probabilities(pad_batch([s]))[0] for s in ids])
        np.testing.assert_allclose(baked, onnx_scores, atol=1e-5)


def test_score_does_not_depend_on_batch_or_padding(version_dir):
    predictor = Predictor.load(version_dir)
    texts = pd.read_csv(DATA_DIR / "train.csv.gz", nrows=64)["text"].tolist()
    ids = predictor.encode(texts)
    alone = np.array([predictor.backend.logits(pad_batch([s]))[0] for s in ids])
    # One batch padded to the longest review, and the same reviews padded far beyond it.
    together = predictor.backend.logits(pad_batch(ids))
    over_padded = predictor.backend.logits(pad_batch(ids, length=max(map(len, ids)) + 50))
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(over_padded, alone, atol=1e-5)


def test_evaluation_cli_prints_metrics_and_writes_report(trained_registry, tmp_path):
    frame = pd.read_csv(DATA_DIR / "train.csv.gz").sample(200, random_state=7)
    frame["sentiment"] = frame["label"].map({1: "positive", 0: "negative"})
    data = tmp_path / "eval.parquet"
    frame[["text", "sentiment"]].to_parquet(data)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.evaluate",
            "--data",
            str(data),
            "--label-column",
            "sentiment",
            "--model-dir",
            str(trained_registry.root),
            "--model-version",
            "1",
            "--out",
            str(tmp_path / "rep"),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["rows"] == 200 and result["version"] == 1
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "ece", "confusion_matrix"):
        assert key in result["calibrated"] and key in result["uncalibrated"]
    cm = result["calibrated"]["confusion_matrix"]
    assert sum(cm.values()) == 200
    assert (tmp_path / "rep" / "report.md").read_text().count("|") > 20
    assert (tmp_path / "rep" / "reliability.png").stat().st_size > 1000


def test_evaluation_cli_fails_clearly_on_unknown_version_and_bad_column(trained_registry, tmp_path):
    data = tmp_path / "e.csv"
    pd.DataFrame({"text": ["good"], "label": [1]}).to_csv(data, index=False)
    base = [
        sys.executable,
        "-m",
        "training.evaluate",
        "--data",
        str(data),
        "--model-dir",
        str(trained_registry.root),
    ]
    out = subprocess.run(base + ["--model-version", "42"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "no version 42" in out.stderr
    out = subprocess.run(base + ["--text-column", "review"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "no column 'review'" in out.stderr


def test_train_cli_help_documents_every_flag():
    assert build_parser()._actions, "no arguments at all"
    assert undocumented_arguments(build_parser()) == []


@pytest.mark.parametrize(
    "module",
    [
        "training.train",
        "training.evaluate",
        "training.pipeline",
        "training.quickstart",
        "training.fetch",
        "scoring.cli",
    ],
)
def test_every_cli_help_documents_every_flag(module):
    import importlib

    assert undocumented_arguments(importlib.import_module(module).build_parser()) == []


def test_the_help_check_catches_an_undocumented_flag():
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--documented", help="what it does")
    parser.add_argument("--bare")
    parser.add_argument("--terse", help="x")
    sub = parser.add_subparsers(dest="command").add_parser("run", help="run the thing")
    sub.add_argument("--hidden", help=argparse.SUPPRESS)
    sub.add_argument("path", help="where to run")
    assert undocumented_arguments(parser) == [
        "--bare: no help text",
        "--terse: no help text",
        "run --hidden: no help text",
    ]


def test_train_cli_reports_bad_data_without_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"text": ["good", ""], "label": [1, 0]}).to_csv(bad, index=False)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.train",
            "--preset",
            "tiny",
            "--train-file",
            str(bad),
            "--unlabelled-file",
            "none",
            "--model-dir",
            str(tmp_path / "m"),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "bad.csv: column 'text' has empty or non-text values in data rows 2" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_drift_reference_describes_the_held_out_rows_as_served(version_dir):
    from training.config import TrainConfig
    from training.data import calibration_split, train_validation_split
    from training.drift import id_stats
    from training.train import load_inputs

    reference = json.loads((version_dir / "drift_reference.json").read_text())
    manifest = Artifact.open(version_dir).manifest
    assert reference["source"].startswith("held-out rows")
    assert reference["texts"] == manifest["data"]["validation_rows"] + manifest["data"]["calibration_rows"]
    # Recompute it from the same held-out rows through the service's Predictor: the same numbers.
    config = TrainConfig.from_dict(manifest["config"])
    labelled = load_inputs(config.replace(unlabelled_sample=0), DATA_DIR).labelled
    _, held = train_validation_split(labelled.labels, config.val_fraction, config.seed)
    val, cal = calibration_split(labelled.labels, held, config.calibration_fraction, config.seed)
    predictor = Predictor.load(version_dir)
    ids = predictor.encode([labelled.texts[i] for i in np.concatenate([val, cal])])
    lengths, oov = id_stats(ids)
    assert reference["length"]["mean"] == pytest.approx(lengths.mean())
    assert reference["oov"]["token_rate"] == pytest.approx(oov.sum() / lengths.sum())
    assert abs(reference["score"]["mean"] - predictor.score_ids(ids).mean()) < 1e-5
    assert sum(reference["score"]["fractions"]) == pytest.approx(1.0)
