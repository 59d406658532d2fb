"""bench/bench_request_path.py runs end to end on a small model and reports every figure."""

from __future__ import annotations

import json

from bench.bench_request_path import main
from tests.conftest import DATA_DIR


def test_the_request_path_bench_reports_each_cost(module_fake_registry, tmp_path, capsys):
    out = tmp_path / "path.json"
    args = ["--model-dir", str(module_fake_registry.root), "--data", str(DATA_DIR / "train.csv.gz")]
    assert main([*args, "--texts", "20", "--repeats", "1", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    keys = ["encode_us_per_text", "healthz_us", "predict_flask_us", "predict_fast_path_us"]
    assert sorted(results) == sorted(keys)
    assert all(results[k] > 0 for k in keys)
    printed = capsys.readouterr().out
    assert "POST /v1/predict, fast path" in printed and "20 texts" in printed
