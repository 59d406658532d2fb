"""Input, output and model registry on S3 (a real S3 protocol server on loopback), local engine."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pandas as pd
import pytest

from registry.store import Registry
from scoring.cli import main
from scoring.writer import MANIFEST_FILE, SUMMARY_FILE, read_output
from tests.scoring.conftest import assert_same_rows, cli_args, upload, write_input


@pytest.fixture(autouse=True)
def model_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep this test's copies of remote models in its own folder."""
    monkeypatch.setenv("SENTIMENT_MODEL_CACHE", str(tmp_path / "model-cache"))
    return tmp_path / "model-cache"


def test_input_output_and_model_on_s3_equal_local_files(
    tmp_path: Path, registry: Registry, messy: pd.DataFrame, bucket: str, model_cache: Path
) -> None:
    folder = tmp_path / "in"
    write_input(messy.iloc[:100], folder / "a.parquet")
    write_input(messy.iloc[100:], folder / "sub" / "b.parquet")
    assert main(cli_args(folder, tmp_path / "local", registry, "--keep-columns")) == 0
    expected = read_output(tmp_path / "local")
    upload(folder, f"{bucket}/in")
    upload(registry.root, f"{bucket}/models")
    fs = fsspec.filesystem("s3")
    fs.pipe_file(f"{bucket}/in/_SUCCESS", b"")  # skipped like a local marker file

    assert main(cli_args(f"{bucket}/in", f"{bucket}/scored", f"{bucket}/models", "--keep-columns")) == 0

    assert_same_rows(read_output(f"{bucket}/scored"), expected)
    summary = json.loads(fs.cat_file(f"{bucket}/scored/{SUMMARY_FILE}"))
    assert summary["model"]["path"] == f"{bucket}/models/sentiment/1" and summary["input"] == f"{bucket}/in"
    assert summary["rows_read"] == len(messy) and summary["complete"]
    assert not any(name.endswith(".tmp") for name in fs.ls(f"{bucket}/scored"))
    (copy,) = model_cache.glob("*/1")  # the model was copied once, under its version number
    assert sorted(p.name for p in copy.iterdir()) == ["manifest.json", "model.onnx", "tokenizer.json"]

    # Resume on S3: forget the last part, rerun the same command, get the same rows back.
    manifest = json.loads(fs.cat_file(f"{bucket}/scored/{MANIFEST_FILE}"))
    last = manifest["parts"].pop()
    manifest["complete"] = False
    fs.pipe_file(f"{bucket}/scored/{MANIFEST_FILE}", json.dumps(manifest).encode())
    fs.rm_file(f"{bucket}/scored/{last['file']}")
    assert main(cli_args(f"{bucket}/in", f"{bucket}/scored", f"{bucket}/models", "--keep-columns")) == 0
    assert_same_rows(read_output(f"{bucket}/scored"), expected)
    assert json.loads(fs.cat_file(f"{bucket}/scored/{SUMMARY_FILE}"))["run"]["rows"] == last["rows"]


def test_s3_problems_fail_fast_with_one_line(
    tmp_path: Path, registry: Registry, reviews: pd.DataFrame, bucket: str, capsys: pytest.CaptureFixture
) -> None:
    upload(write_input(reviews, tmp_path / "in.csv"), f"{bucket}/in.csv")
    upload(registry.root, f"{bucket}/models")
    cases = [
        (cli_args(f"{bucket}/absent.csv", f"{bucket}/out", f"{bucket}/models"), "does not exist"),
        (
            cli_args(f"{bucket}/in.csv", f"{bucket}/out", f"{bucket}/models", "--model-version", "4"),
            f"has no version 4 (registry {bucket}/models; versions available: [1])",
        ),
        (cli_args(f"{bucket}/in.csv", f"{bucket}/out", f"{bucket}/nothing"), "has no production version"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not fsspec.filesystem("s3").exists(f"{bucket}/out")  # nothing written
