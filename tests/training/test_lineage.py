"""What a version trained on: recorded identities, rebuilt ones for old versions, gold overlap (no fit)."""

import json

import numpy as np
import pandas as pd

from registry.store import MANIFEST, Registry
from training.data import fingerprint
from training.lineage import gold_overlap, key_hashes, text_key, write_training_data


def test_text_key_ignores_case_width_and_spacing_but_not_words():
    assert text_key("A  great\nfilm") == text_key("a great film") == text_key("Ａ great film")
    assert text_key("a great film") != text_key("a grate film")
    assert key_hashes([text_key("x")]).dtype == np.uint64


def version(registry, number, manifest):
    path = registry.model_home("sentiment") / str(number)
    path.mkdir(parents=True)
    (path / MANIFEST).write_text(json.dumps(manifest))
    return path


def test_gold_overlap_recorded_rebuilt_or_unknown(tmp_path):
    registry = Registry(tmp_path / "models")
    base = tmp_path / "base.csv"
    pd.DataFrame({"text": ["one", "two", "three", "four"], "label": [1, 0, 1, 0]}).to_csv(base, index=False)
    gold = key_hashes(map(text_key, ["two", "FOUR", "five"]))
    # Recorded: the file every new version writes.
    write_training_data(version(registry, 1, {"config": {}}), ["one", "two"], np.array([1, 0]))
    recorded = gold_overlap(registry, "sentiment", 1, gold, None)
    assert (recorded.method, recorded.seen.tolist(), recorded.rows) == ("recorded", [True, False, False], 1)
    # An old version without the record: rebuilt from its config while the base file is unchanged.
    old = {
        "config": {"train_file": str(base)},
        "lineage": {"data_fingerprints": {str(base): fingerprint(base)}},
    }
    version(registry, 2, old)
    rebuilt = gold_overlap(registry, "sentiment", 2, gold, None)
    assert (rebuilt.method, rebuilt.rows) == ("reconstructed", 2)
    assert rebuilt.to_dict() == {
        "version": 2,
        "gold_rows_trained_on": 2,
        "gold_rows": 3,
        "method": "reconstructed",
    }
    base.write_text("text,label\nchanged,1\n")  # the file moved on: no honest answer
    assert gold_overlap(registry, "sentiment", 2, gold, None).method == "unknown"
    version(registry, 3, {**old, "retrain": {"run_id": "r"}})  # an old pipeline candidate: drops unknown
    assert gold_overlap(registry, "sentiment", 3, gold, None).rows is None
