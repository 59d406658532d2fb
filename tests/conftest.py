"""Shared fixtures: registries holding a random-weight model (fast) or a tiny trained one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from registry.store import Registry
from tests.fakes import make_random_version

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SENTIMENT_DATA_DIR", PROJECT_ROOT.parent / "shared" / "data" / "imdb"))


@pytest.fixture
def fake_registry(tmp_path: Path) -> Registry:
    """Return a registry with one random-weight production version of model ``sentiment``."""
    registry = Registry(tmp_path / "models")
    make_random_version(registry, "sentiment")
    return registry


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory) -> Registry:
    """Return a registry whose production version was really trained (preset ``small``, ~30 s).

    Trained once per test session from a 2k sample of the IMDB data, through the same
    ``train_version`` the CLI and the retraining pipeline use.
    """
    from training.config import preset
    from training.train import load_inputs, train_version

    registry = Registry(tmp_path_factory.mktemp("trained") / "models")
    config = preset("small")
    train_version(config, load_inputs(config, DATA_DIR), registry, "sentiment", promote="always")
    return registry
