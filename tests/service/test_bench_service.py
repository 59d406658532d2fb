"""bench/bench_service.py runs end to end against real gunicorn, round after round, and sums up honestly."""

from __future__ import annotations

import json

from bench.bench_service import main, median_of_rounds
from tests.conftest import DATA_DIR


def _row(connections: int, texts_per_s: float, ratio: float, non_2xx: int = 0) -> dict:
    return {
        "endpoint": "/v1/predict",
        "connections": connections,
        "texts_per_request": 1,
        "texts_per_s": texts_per_s,
        "ratio_sorted": ratio,
        "ratio_batch1": ratio * 1.2,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "requests": 100,
        "non_2xx": non_2xx,
        "socket_errors": 0,
        "mean_batch": 1.0,
        "server_cpu_cores": 1.0,
        "outside_model_us_per_request": 300.0,
    }


def test_the_median_of_rounds_takes_ratios_per_round_and_sums_the_errors():
    # Round 2 ran on a host 20 % slower: its ceiling and its level fell alike, so its ratio holds.
    rounds = [[_row(64, 1000.0, 0.50)], [_row(64, 800.0, 0.52, non_2xx=1)], [_row(64, 900.0, 0.48)]]
    (row,) = median_of_rounds(rounds)
    assert row["ratio_sorted"] == 0.50 and row["texts_per_s"] == 900.0
    assert row["ratio_sorted_range"] == (0.48, 0.52)
    assert row["non_2xx"] == 1 and row["requests"] == 300


def test_the_service_bench_runs_two_rounds_next_to_the_bare_app_and_reports_medians(
    module_fake_registry, tmp_path, capsys
):
    out = tmp_path / "service.json"
    args = [
        "--model-dir",
        str(module_fake_registry.root),
        "--data",
        str(DATA_DIR / "train.csv.gz"),
        "--texts",
        "40",
        "--duration",
        "0.6",
        "--warmup",
        "0",
        "--concurrency",
        "1,8,16",
        "--multi-concurrency",
        "2",
        "--texts-per-request",
        "4",
        "--batch-sizes",
        "4",
        "--ceiling-seconds",
        "0.3",
        "--client",
        "python",
        "--rounds",
        "2",
        "--compare-bare",
        "--json",
        str(out),
    ]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert len(report["rounds"]) == 2
    assert [r["connections"] for r in report["levels"]] == [1, 8, 16, 2]
    for level in report["levels"]:
        assert level["texts_per_s"] > 0 and level["non_2xx"] == 0 and level["socket_errors"] == 0
        low, high = level["ratio_sorted_range"]
        assert low <= level["ratio_sorted"] <= high
    assert all(r["ceiling"]["best"] > 0 and r["ceiling"]["batch1"] > 0 for r in report["rounds"])
    # The bare app ran the same /v1/predict levels in both rounds; it has no metrics to report.
    bare = report["bare_levels"]
    assert [r["connections"] for r in bare] == [1, 8, 16, 2] and len(report["rounds"][1]["bare_levels"]) == 4
    assert all(r["texts_per_s"] > 0 and r["non_2xx"] == 0 and r["mean_batch"] is None for r in bare)
    printed = capsys.readouterr().out
    assert "[round 2] (2) bare" in printed and "service, median of 2 rounds" in printed
    assert printed.count("c=16 ") == 2 and "vs c=8" in printed  # one rise-with-load line per server
