"""The whole product: retrain on extra data while the live service is under load.

Real gunicorn, real HTTP clients, the real retraining CLI in its own process. The service must
switch to the new version within its poll interval (plus load time) and no request may fail.
"""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bench.retrain_under_load import run
from tests.conftest import DATA_DIR
from tests.fakes import OPEN_GATE_FLAGS
from training.config import preset
from training.data import load_labelled, stratified_sample
from training.pipeline import text_key

pytestmark = pytest.mark.slow


def test_retrain_under_load_switches_version_with_zero_failed_requests(trained_registry, tmp_path):
    shutil.copytree(trained_registry.root, tmp_path / "models")
    full = load_labelled(DATA_DIR / "train.csv.gz")
    keys = pd.Series([text_key(t) for t in full.texts])
    trained_on = set(
        keys[
            np.union1d(
                stratified_sample(full.labels, 2000, preset("small").seed),
                stratified_sample(full.labels, 400, preset("tiny").seed),
            )
        ]
    )
    fair = np.flatnonzero((~keys.duplicated(keep=False) & ~keys.isin(trained_on)).to_numpy())
    rows = np.random.default_rng(11).choice(fair, 500, replace=False)
    gold = tmp_path / "gold.csv"
    pd.DataFrame({"text": [full.texts[i] for i in rows[:300]], "label": full.labels[rows[:300]]}).to_csv(
        gold, index=False
    )
    drop = tmp_path / "drop"
    drop.mkdir()
    pd.DataFrame({"text": [full.texts[i] for i in rows[300:]], "label": full.labels[rows[300:]]}).to_csv(
        drop / "extra.csv", index=False
    )

    summary = run(
        tmp_path / "models",
        drop,
        gold,
        tmp_path,
        data_dir=DATA_DIR,
        preset="tiny",
        clients=3,
        poll_interval=0.5,
        extra_args=OPEN_GATE_FLAGS,
    )

    print(json.dumps(summary, indent=2))  # shown with `pytest -s`: the numbers the README reports
    assert summary["failed"] == 0, summary["failures"]
    assert summary["promoted"] and (summary["old_version"], summary["new_version"]) == (1, 2)
    assert summary["responses_with_old_version"] > 0 and summary["responses_with_new_version"] > 0
    assert summary["versions_in_order"][0] == 1 and summary["versions_in_order"][-1] == 2
    # Poll interval 0.5 s plus loading and warming the new ONNX model.
    assert summary["old_version_served_after_promotion_s"] <= 0.5 + 5.0
