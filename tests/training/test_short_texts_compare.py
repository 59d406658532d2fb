"""bench/short_texts_compare.py scores versions on the held-out sentences and shows misreadings."""

from __future__ import annotations

import re

from bench.short_texts_compare import main
from tests.conftest import DATA_DIR


def test_compare_prints_each_versions_accuracy_and_a_sample_of_its_errors(fake_registry, capsys):
    version = fake_registry.root / "sentiment" / "1"
    data = DATA_DIR / "train.csv.gz"
    args = ["--version", str(version), "--preset", "small", "--data", str(data), "--show-errors", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^\d+ sentences from \d+ held-out reviews \(small split\)$", printed, re.M)
    assert re.search(rf"^{re.escape(str(version))}: accuracy \d+\.\d\d %, ROC-AUC 0\.\d{{4}}$", printed, re.M)
    shown = re.findall(r"^  label ([01]) score (\d\.\d\d)  \S", printed, re.M)
    assert len(shown) == 3 and all((float(score) >= 0.5) != (label == "1") for label, score in shown)
