"""A synthetic world for retraining tests: base data, a gold set, and a production version trained once."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from registry.store import Registry
from tests.training.synthetic import CONFIG, reviews, write


@dataclass
class World:
    """Files of the synthetic world and a pristine registry whose v1 is production (trained on base.csv)."""

    root: Path
    models: Path  # registry root holding production v1; copy it, never write to it
    base: Path
    gold: Path
    mislabelled: pd.DataFrame  # base rows whose label is wrong (text, label as stored in base.csv)

    def registry_copy(self, dest: Path) -> Registry:
        """Return a private copy of the pristine registry."""
        shutil.copytree(self.models, dest)
        return Registry(dest)


@pytest.fixture(scope="session")
def synthetic_world(tmp_path_factory) -> World:
    """Build the world and train production v1 on it once per session (~10 s on a quiet machine)."""
    from training.train import load_inputs, train_version

    root = tmp_path_factory.mktemp("world")
    base = reviews(400, 1)
    wrong = base.index[:10]
    base.loc[wrong, "label"] = 1 - base.loc[wrong, "label"]  # ten old mistakes a later drop corrects
    write(base, root / "base.csv")
    write(reviews(300, 2), root / "gold.csv")
    config = CONFIG.replace(train_file=str(root / "base.csv"))
    train_version(config, load_inputs(config, root), Registry(root / "models"), "sentiment", promote="always")
    return World(
        root, root / "models", root / "base.csv", root / "gold.csv", base.loc[wrong].reset_index(drop=True)
    )
