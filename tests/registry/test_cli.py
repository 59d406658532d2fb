"""The CLI plumbing every command shares: one env reading, one version type, one help style."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from registry.cli import PRODUCTION, HelpFormatter, add_registry_arguments, version_arg
from tests.conftest import PROJECT_ROOT

#: Every command line that reads or writes the model registry (``training.fetch`` writes data only).
REGISTRY_CLIS = ["training.train", "training.evaluate", "training.pipeline", "training.quickstart", "scoring"]
CLIS = [*REGISTRY_CLIS, "training.fetch"]


def _parser(**kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    add_registry_arguments(parser, **kwargs)
    return parser


def test_registry_flags_read_the_environment_once_and_flags_win(monkeypatch, tmp_path):
    monkeypatch.setenv("SENTIMENT_MODEL_DIR", str(tmp_path / "reg"))
    monkeypatch.setenv("SENTIMENT_MODEL_NAME", "reviews")
    args = _parser(version_help="which version").parse_args([])
    assert (args.registry_root, args.model_name, args.model_version) == (
        tmp_path / "reg",
        "reviews",
        PRODUCTION,
    )
    args = _parser(version_help="which version").parse_args(
        ["--model-dir", "x", "--model-name", "y", "--model-version", "3"]
    )
    assert (args.registry_root, args.model_name, args.model_version) == (Path("x"), "y", 3)
    monkeypatch.delenv("SENTIMENT_MODEL_DIR")
    monkeypatch.delenv("SENTIMENT_MODEL_NAME")
    assert (_parser().parse_args([]).registry_root, _parser().parse_args([]).model_name) == (
        Path("models"),
        "sentiment",
    )


@pytest.mark.parametrize("text, expected", [("production", PRODUCTION), ("Production", PRODUCTION), ("7", 7)])
def test_version_type_accepts_production_or_a_number(text, expected):
    assert version_arg(text) == expected


@pytest.mark.parametrize("text", ["0", "-1", "latest", "1.5", ""])
def test_version_type_refuses_anything_else(text):
    with pytest.raises(argparse.ArgumentTypeError, match="production"):
        version_arg(text)


@pytest.mark.parametrize("module", CLIS)
def test_every_cli_help_says_each_default_once_and_honours_the_registry_env(module, tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "SENTIMENT_MODEL_DIR": str(tmp_path / "reg"),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for line in text.split(" --")[1:]:
        assert line.count("(default:") <= 1 and line.count("default:") <= 1, line
    if module != "training.fetch":  # fetch writes data, not models
        assert "$SENTIMENT_MODEL_DIR" in text


@pytest.mark.parametrize("module", REGISTRY_CLIS)
def test_every_registry_cli_takes_its_registry_and_model_from_the_environment(module, monkeypatch):
    """Not only the help text: the parsed registry root and model name are the variables' values."""
    monkeypatch.setenv("SENTIMENT_MODEL_DIR", "/srv/registry")
    monkeypatch.setenv("SENTIMENT_MODEL_NAME", "reviews")
    parser = importlib.import_module("scoring.cli" if module == "scoring" else module).build_parser()
    actions = {a.dest: a for a in parser._actions}
    root, name = actions["registry_root"], actions["model_name"]
    assert str((root.type or str)(root.default)) == "/srv/registry"
    assert name.default == "reviews"


def test_the_plumbing_imports_neither_tensorflow_nor_flask():
    code = (
        "import sys, registry.cli, registry.files, registry.store, scoring.cli; "
        "bad = {'tensorflow', 'keras', 'flask'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True, timeout=60)
