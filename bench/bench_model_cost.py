"""Compare the in-process serving cost of model versions: ONNX Runtime time per 1,000 reviews.

Loads each version with the service's Predictor (ONNX Runtime, one intra-op thread: one gunicorn
worker's view) and scores the same texts with each, interleaving the versions round by round so
that load on a shared machine hits them alike. Two workloads: ``reviews`` (IMDB reviews, the
realistic mix of lengths) and ``sentences`` (one sentence each, the short-text traffic). Reports
the median wall and CPU time per 1,000 texts and each version's ratio to the first one.

    .venv/bin/python bench/bench_model_cost.py --version /work/models-baseline/sentiment/1 \\
        --version /work/models-12/sentiment/1
    .venv/bin/python bench/bench_model_cost.py --version models/sentiment/1 --texts 200 --rounds 2   # smoke
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.predictor import Predictor  # noqa: E402
from training.data import default_data_dir  # noqa: E402
from training.short_texts import split_sentences  # noqa: E402


def workloads(data_file: Path, count: int, seed: int) -> dict[str, list[str]]:
    """Return ``count`` reviews and ``count`` sentences drawn from the labelled IMDB file."""
    reviews = pd.read_csv(data_file)["text"].sample(count, random_state=seed).tolist()
    sentences = [s for r in reviews for s in split_sentences(r) if len(s.split()) >= 4]
    return {"reviews": reviews, "sentences": (sentences * (count // max(1, len(sentences)) + 1))[:count]}


def measure(predictors: dict[str, Predictor], texts: list[str], rounds: int) -> dict[str, dict]:
    """Time each predictor on ``texts`` for ``rounds`` interleaved rounds; return medians per 1,000 texts."""
    walls: dict[str, list[float]] = {name: [] for name in predictors}
    cpus: dict[str, list[float]] = {name: [] for name in predictors}
    for _ in range(rounds):
        for name, predictor in predictors.items():
            w0, c0 = time.perf_counter(), time.process_time()
            predictor.score_texts(texts)
            walls[name].append(time.perf_counter() - w0)
            cpus[name].append(time.process_time() - c0)
    per_k = 1000 / len(texts)
    return {
        name: {
            "wall_ms_per_1000": 1000 * per_k * statistics.median(walls[name]),
            "cpu_ms_per_1000": 1000 * per_k * statistics.median(cpus[name]),
        }
        for name in predictors
    }


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--version",
        action="append",
        type=Path,
        required=True,
        help="a model version directory (repeat; the first is the reference)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="labelled CSV the texts come from (default: train.csv.gz in $SENTIMENT_DATA_DIR)",
    )
    parser.add_argument("--texts", type=int, default=1000, help="texts per workload")
    parser.add_argument(
        "--rounds", type=int, default=7, help="interleaved timing rounds (the median is reported)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the review sample")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    data = args.data or default_data_dir() / "train.csv.gz"
    predictors = {
        f"[{i}] {path}": Predictor.load(path, intra_op_threads=1) for i, path in enumerate(args.version)
    }
    reference = next(iter(predictors))
    result: dict = {"texts": args.texts, "rounds": args.rounds, "workloads": {}}
    for workload, texts in workloads(data, args.texts, args.seed).items():
        for predictor in predictors.values():  # warm-up: first calls allocate
            predictor.score_texts(texts[:64])
        timings = measure(predictors, texts, args.rounds)
        for row in timings.values():
            row["cpu_ratio_to_first"] = row["cpu_ms_per_1000"] / timings[reference]["cpu_ms_per_1000"]
            row["wall_ratio_to_first"] = row["wall_ms_per_1000"] / timings[reference]["wall_ms_per_1000"]
        result["workloads"][workload] = timings
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
