"""The data pool: relabelling, gold exclusion, bad-file quarantine and the ledger (no training)."""

import json

import numpy as np
import pandas as pd
import pytest

from registry.store import Registry
from training.data import DataError, LabelledData, fingerprint
from training.lineage import text_key
from training.pool import POOLED, QUARANTINED, Ledger, assemble, pending_files, read_drop


def rows(pairs, file="f.csv"):
    frame = pd.DataFrame(
        {"text": [t for t, _ in pairs], "label": np.array([y for _, y in pairs], dtype=np.int8)}
    )
    frame["key"] = frame["text"].map(text_key)
    frame["file"], frame["row"], frame["sha256"] = file, np.arange(1, len(frame) + 1), "x"
    return frame


def test_assemble_newest_label_wins_gold_is_excluded_and_everything_is_counted():
    base = LabelledData(
        ["Alpha film", "beta film", "gamma film", "gold one"], np.array([1, 0, 1, 0], np.int8), "base.csv"
    )
    pooled = [("run1", rows([("Beta   FILM", 1), ("delta film", 0)], "d1.csv"))]  # relabels beta (same text)
    new = rows(
        [("delta film", 1), ("epsilon film", 1), ("alpha film", 1), ("gold two", 1), ("epsilon film", 1)],
        "d2.csv",
    )
    gold = {text_key("gold one"), text_key("gold two")}
    ts = assemble(base, pooled, new, gold)
    final = dict(zip([text_key(t) for t in ts.texts], ts.labels.tolist()))
    assert final == {
        text_key("alpha film"): 1,
        text_key("beta film"): 1,
        text_key("gamma film"): 1,
        text_key("delta film"): 1,
        text_key("epsilon film"): 1,
    }
    a = ts.account
    assert a["gold_excluded"] == {"base": 1, "pool": 0, "new": 1}
    assert [r["origin"] for r in a["gold_excluded_rows"]] == ["new:d2.csv:4"]
    assert (a["relabelled"], a["duplicates"], a["new_texts"]) == (
        1,
        2,
        1,
    )  # delta relabel; alpha, epsilon dups
    assert a["relabels"] == [
        {
            "text": "delta film",
            "key": text_key("delta film"),
            "origin": "new:d2.csv:1",
            "old_label": 0,
            "old_origin": "run1:d1.csv:2",
            "new_label": 1,
        }
    ]
    assert a["pool_relabels_in_effect"] == 1  # run1 relabelled beta
    assert a["rows"] == 5 and a["new_rows_read"] == 5


def test_base_star_ratings_survive_assembly_and_a_relabel_drops_them():
    base = LabelledData(
        ["alpha film", "beta film", "gamma film"],
        np.array([1, 0, 1], np.int8),
        "base.csv",
        ratings=np.array([10.0, 1.0, 9.0]),
    )
    new = rows([("beta film", 1), ("delta film", 0)])  # relabels beta; delta is new
    ts = assemble(base, [], new, set())
    ratings = dict(zip(ts.texts, ts.ratings.tolist()))
    assert ratings["alpha film"] == 10.0 and ratings["gamma film"] == 9.0
    assert np.isnan(ratings["beta film"]) and np.isnan(ratings["delta film"])  # no stars known for them
    assert assemble(LabelledData(["x"], np.array([1], np.int8), "b.csv"), [], new, set()).ratings is None


def test_bad_drop_file_is_quarantined_with_a_reason_and_the_rest_is_read(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    pd.DataFrame({"text": ["good one", "bad one"], "label": ["pos", "neg"]}).to_csv(
        drop / "a.csv", index=False
    )
    pd.DataFrame({"text": ["x", "y"], "label": ["pos", "maybe"]}).to_csv(drop / "b.csv", index=False)
    (drop / "c.csv").write_bytes(b"\x00\x01 not a table")
    (drop / "notes.txt").write_text("ignored")
    files = pending_files(drop, {})
    batch = read_drop(files, run_id="r1", text_column="text", label_column="label", skip_bad_rows=False)
    assert batch.rows["text"].tolist() == ["good one", "bad one"]
    assert batch.rows["label"].tolist() == [1, 0]
    assert [b["file"] for b in batch.bad_files] == [str(drop / "b.csv"), str(drop / "c.csv")]
    assert "unknown label" in batch.bad_files[0]["reason"] and "data rows 2" in batch.bad_files[0]["reason"]
    assert sorted(p.name for p in drop.iterdir()) == ["a.csv", "notes.txt", "quarantine"]
    reason = (drop / "quarantine" / "b.csv.reason.txt").read_text()
    assert "retrain run r1" in reason and "unknown label" in reason
    assert (drop / "quarantine" / "c.csv").exists()
    # A dry run reads the same way but moves nothing.
    pd.DataFrame({"text": ["z"], "label": ["??"]}).to_csv(drop / "d.csv", index=False)
    dry = read_drop(
        pending_files(drop, {}),
        run_id="r2",
        text_column="text",
        label_column="label",
        skip_bad_rows=False,
        move_bad_files=False,
    )
    assert dry.bad_files[0]["quarantined_to"] is None and (drop / "d.csv").exists()


def test_pending_files_skips_consumed_ones(tmp_path):
    pd.DataFrame({"text": ["a"], "label": [1]}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"text": ["b"], "label": [1]}).to_csv(tmp_path / "b.csv", index=False)
    consumed = {fingerprint(tmp_path / "a.csv"): {}}
    assert [p.name for p, _ in pending_files(tmp_path, consumed)] == ["b.csv"]
    with pytest.raises(DataError, match="does not exist"):
        pending_files(tmp_path / "missing", {})


def test_ledger_records_admits_and_finds_a_pending_promotion(tmp_path):
    registry = Registry(tmp_path / "models")
    ledger = Ledger(registry, "sentiment")
    run_dir = registry.model_home("sentiment") / "runs" / "r1"
    run_dir.mkdir(parents=True)
    rows([("a", 1)]).to_parquet(run_dir / "rows.parquet")
    entry = {
        "seq": ledger.next_seq(),
        "status": QUARANTINED,
        "rows": 1,
        "rows_file": "runs/r1/rows.parquet",
        "promoted": False,
        "candidate_version": 2,
        "parent_version": 1,
        "reason": "worse",
    }
    ledger.record_run(
        "r1",
        entry,
        {"sha-a": {"file": "a.csv"}},
        {
            2: {"accuracy": 0.7, "fair": True, "production": False},
            1: {"accuracy": 0.8, "fair": True, "production": True},
        },
        "gold-sha",
    )
    again = Ledger(registry, "sentiment")  # read back from disk
    assert again.pooled_rows() == [] and again.summary()["quarantined_runs"][0]["run_id"] == "r1"
    assert again.floor_reference("gold-sha")["version"] == 1  # v2 was never production
    assert again.floor_reference("other-gold") is None
    with pytest.raises(DataError, match="no run 'r9'"):
        again.admit("r9")
    again.admit("r1")
    assert [rid for rid, _ in Ledger(registry, "sentiment").pooled_rows()] == ["r1"]
    with pytest.raises(DataError, match="pooled, not quarantined"):
        again.admit("r1")
    assert again.pending_promotion(1) is None  # r1 did not promote
    again.record_run(
        "r2",
        {
            "seq": again.next_seq(),
            "status": POOLED,
            "rows": 0,
            "promoted": True,
            "candidate_version": 3,
            "parent_version": 1,
        },
        {},
    )
    assert again.pending_promotion(1)[0] == "r2"  # killed before the pointer swap
    assert again.pending_promotion(3) is None  # swapped
    assert again.pending_promotion(2) is None  # someone promoted another version since: leave it


def test_ledger_adopts_the_old_pipeline_state(tmp_path):
    registry = Registry(tmp_path / "models")
    state = registry.model_home("sentiment") / "pipeline"
    (state / "ingested").mkdir(parents=True)
    (state / "consumed.json").write_text(json.dumps({"abc": {"file": "old.csv"}}))
    pd.DataFrame({"text": ["old row"], "label": np.array([1], np.int8)}).to_parquet(
        state / "ingested" / "abc.parquet"
    )
    ledger = Ledger(registry, "sentiment")
    assert "abc" in ledger.consumed()
    assert ledger.doc["runs"]["legacy"]["status"] == QUARANTINED
    assert ledger.rows_of("legacy")["text"].tolist() == ["old row"]
