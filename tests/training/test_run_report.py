"""The retrain run report: readable with undefined metrics (a one-class gold set has no ROC-AUC)."""

import json

from training.run_report import fmt, write_run_report


def report(roc_auc):
    metrics = {"accuracy": 0.9, "f1": 0.95, "roc_auc": roc_auc, "ece": 0.05, "log_loss": 0.3}
    return {
        "run_id": "20261127-000000-abcdef",
        "promoted": False,
        "reason": "floor: accuracy below the floor",
        "candidate_version": 3,
        "parent_version": 2,
        "gate": {
            "promote": False,
            "reason": "…",
            "checks": [
                {
                    "name": "accuracy_vs_production",
                    "passed": True,
                    "detail": "difference +0.0100, smallest detectable difference 0.0300",
                    "numbers": {},
                },
                {"name": "floor", "passed": False, "detail": "accuracy 0.9 < floor 0.92", "numbers": {}},
            ],
        },
        "floor": {"floor": 0.92, "reference_version": 1, "reference_accuracy": 0.94, "margin": 0.02},
        "gold": {
            "file": "gold.csv",
            "sha256": "f" * 64,
            "rows": 40,
            "metrics": {"candidate": {"version": 3, **metrics}, "production": {"version": 2, **metrics}},
            "overlap": {
                "candidate": {"version": 3, "gold_rows_trained_on": 0, "gold_rows": 40, "method": "recorded"},
                "production": {
                    "version": 2,
                    "gold_rows_trained_on": None,
                    "gold_rows": None,
                    "method": "unknown",
                },
            },
        },
        "data": {
            "base_file": "base.csv",
            "rows": 10,
            "base_rows": 8,
            "pool_rows": 0,
            "new_rows": 2,
            "new_rows_read": 3,
            "new_texts": 2,
            "duplicates": 0,
            "relabelled": 1,
            "relabels": [
                {
                    "text": "x",
                    "key": "k",
                    "origin": "new:a.csv:1",
                    "old_label": 0,
                    "old_origin": "base",
                    "new_label": 1,
                }
            ],
            "gold_excluded": {"base": 0, "pool": 0, "new": 1},
            "gold_excluded_rows": [{"text": "g", "key": "k2", "origin": "new:a.csv:3"}],
            "new_files": ["a.csv"],
            "bad_files": [
                {
                    "file": "b.csv",
                    "sha256": "0",
                    "reason": "no column 'text'",
                    "quarantined_to": "drop/quarantine/b.csv",
                }
            ],
            "pool": {
                "pooled_runs": 0,
                "pooled_rows": 0,
                "pooled_runs_used": [],
                "quarantined_runs": [{"run_id": "r0", "rows": 5, "candidate_version": 2, "reason": "x"}],
            },
        },
        "timings": {"total_s": 1.0},
    }


def test_report_with_a_one_class_gold_set_says_n_a(tmp_path):
    write_run_report(tmp_path, report(None))  # crashed with TypeError (None formatted as float) before
    md = (tmp_path / "report.md").read_text()
    assert "| roc_auc | n/a | n/a |" in md
    assert (tmp_path / "comparison.png").stat().st_size > 0
    assert (
        json.loads((tmp_path / "report.json").read_text())["gold"]["metrics"]["candidate"]["roc_auc"] is None
    )
    for text in (
        "| floor | **no** |",
        "floor**: 0.9200 = best production v1",
        "unknown lineage",
        "trained on 0 of 40 gold reviews (recorded)",
        "r0 (5 rows)",
        "drop/quarantine/b.csv",
        "| x | 0 | 1 | base | new:a.csv:1 |",
        "new:a.csv:3",
    ):
        assert text in md, text


def test_fmt():
    assert fmt(None) == fmt(float("nan")) == "n/a"
    assert fmt(0.123456) == "0.1235" and fmt(3) == "3"


def test_report_lists_behaviour_pass_rates_of_both_versions(tmp_path):
    doc = report(0.9)
    numbers = {
        "candidate": {"overall": 0.8, "negation": 0.61},
        "production": {"overall": 0.82, "negation": 0.24},
        "suite": "sentiment-behaviour v2",
    }
    doc["gate"]["checks"].append({"name": "behaviour", "passed": True, "detail": "ok", "numbers": numbers})
    write_run_report(tmp_path, doc)
    md = (tmp_path / "report.md").read_text()
    for text in ("## Behaviour suite (sentiment-behaviour v2)", "| capability | production | candidate |"):
        assert text in md, text
    assert "| negation | 24.0 | 61.0 |" in md and "| overall | 82.0 | 80.0 |" in md
    write_run_report(tmp_path, report(0.9))  # no behaviour numbers (not scored): no section
    assert "Behaviour suite" not in (tmp_path / "report.md").read_text()
