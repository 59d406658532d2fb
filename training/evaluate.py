"""Evaluate a model version on any labelled file and print its metrics as JSON.

Scores go through the same :class:`inference.predictor.Predictor` the service uses, so the
numbers describe what users get. The temperature applied is the one fitted on the version's
calibration split at training time, never one fitted on the evaluated file.

Example (the official IMDB test split, straight from the archive)::

    python -m training.evaluate --data aclImdb_v1.tar.gz --aclimdb-split test --model-version production
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Sequence


from inference import RUNTIMES
from inference.predictor import Predictor
from registry.cli import HelpFormatter, add_registry_arguments, configure_logging
from registry.store import Registry, RegistryError
from training.data import DataError, LabelledData, fingerprint, load_labelled
from training.metrics import evaluate_logits
from training.report import write_report

log = logging.getLogger(__name__)


def load_predictor(registry: Registry, name: str, version: int, runtime: str = "onnx") -> Predictor:
    """Load one version the way the service does, using every core of this machine."""
    return Predictor.load(
        registry.version_dir(name, version), runtime=runtime, intra_op_threads=os.cpu_count() or 1
    )


def evaluate_labelled(
    registry: Registry,
    name: str,
    version: int,
    labelled: LabelledData,
    *,
    runtime: str = "onnx",
    bins: int = 15,
) -> tuple[dict, dict]:
    """Score already-loaded labelled data with one version; return (summary, evaluation with curves)."""
    predictor = load_predictor(registry, name, version, runtime)
    started = time.perf_counter()
    logits = predictor.logits_for_ids(predictor.encode(labelled.texts))
    evaluation = evaluate_logits(labelled.labels, logits, predictor.temperature, bins)
    summary = {
        "model": name,
        "version": version,
        "runtime": runtime,
        "rows": len(labelled),
        "skipped_rows": labelled.skipped,
        "seconds": round(time.perf_counter() - started, 2),
        **{k: v for k, v in evaluation.items() if k != "curves"},
    }
    return summary, evaluation


def evaluate_file(
    registry: Registry,
    name: str,
    version: int,
    data: Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    skip_bad_rows: bool = False,
    aclimdb_split: str = "test",
    runtime: str = "onnx",
    out_dir: Path | None = None,
    bins: int = 15,
) -> dict:
    """Score a labelled file with one version; return metrics (and write a report if ``out_dir``)."""
    labelled = load_labelled(
        data,
        text_column=text_column,
        label_column=label_column,
        skip_bad_rows=skip_bad_rows,
        aclimdb_split=aclimdb_split,
    )
    summary, evaluation = evaluate_labelled(registry, name, version, labelled, runtime=runtime, bins=bins)
    result = {**summary, "data": str(data), "data_sha256": fingerprint(data)}
    if out_dir is not None:
        write_report(
            out_dir,
            f"Model {name} v{version} on {Path(data).name}",
            evaluation,
            context={"data": str(data), "rows": len(labelled), "runtime": runtime},
        )
        result["report"] = str(Path(out_dir) / "report.md")
    return result


def build_parser() -> argparse.ArgumentParser:
    """Return the CLI parser."""
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description="Evaluate a model version on a labelled CSV/Parquet/JSONL file or aclImdb "
        "folder/archive; "
        "prints metrics JSON (accuracy, precision, recall, F1, ROC-AUC, log loss, ECE before and "
        "after temperature scaling, confusion matrix) and writes a Markdown report with plots.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, help="labelled file or aclImdb folder/archive")
    parser.add_argument("--text-column", default="text", help="column holding the texts")
    parser.add_argument(
        "--label-column", default="label", help="column holding 0/1, pos/neg or positive/negative"
    )
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="skip (and count) empty/non-text rows and unknown labels instead of failing",
    )
    parser.add_argument(
        "--aclimdb-split",
        default="test",
        choices=("train", "test"),
        help="which split to read when --data is an aclImdb folder or archive",
    )
    parser.add_argument("--runtime", default="onnx", choices=RUNTIMES, help="inference runtime to score with")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="report folder (default: reports/<name>-v<version>-<data name>)",
    )
    parser.add_argument("--bins", type=int, default=15, help="bins of the expected calibration error")
    add_registry_arguments(parser, version_help="version to evaluate: a number, or 'production'")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation CLI; exit 2 on bad input."""
    args = build_parser().parse_args(argv)
    configure_logging()
    registry, name = Registry(args.registry_root), args.model_name
    try:
        version = registry.resolve_version(name, args.model_version)
        out = args.out or Path("reports") / f"{name}-v{version}-{args.data.name.split('.')[0]}"
        result = evaluate_file(
            registry,
            name,
            version,
            args.data,
            text_column=args.text_column,
            label_column=args.label_column,
            skip_bad_rows=args.skip_bad_rows,
            aclimdb_split=args.aclimdb_split,
            runtime=args.runtime,
            out_dir=out,
            bins=args.bins,
        )
    except (DataError, RegistryError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
