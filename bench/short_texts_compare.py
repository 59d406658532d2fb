"""Compare model versions on the short-text validation set of a training configuration.

The set is the one ``training.train`` reports as ``short_text_metrics``: opinionated sentences
(5-30 tokens) of the clearly rated reviews the configuration holds out (never trained on), at most
three per review. Any version can be scored on it, including one trained before the set existed,
as long as it held out the same reviews (same ``val_fraction`` and ``seed``: every preset so far).
This is how issue #12's "short texts improve by >= 4 points over today's model" is measured.

    .venv/bin/python bench/short_texts_compare.py --version /work/models-old/sentiment/1 \\
        --version models/sentiment/2
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.predictor import Predictor  # noqa: E402
from training.config import preset  # noqa: E402
from training.data import calibration_split, default_data_dir, labelled_rows, train_validation_split  # noqa: E402
from training.short_texts import short_text_set  # noqa: E402

log = logging.getLogger("short_texts_compare")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--version",
        action="append",
        required=True,
        type=Path,
        help="a model version directory (repeat to compare several)",
    )
    p.add_argument(
        "--preset", default="full", help="configuration whose held-out reviews to use (default: full)"
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="labelled file with ratings (default: $SENTIMENT_DATA_DIR/train.csv.gz)",
    )
    p.add_argument(
        "--show-errors",
        type=int,
        default=0,
        metavar="N",
        help="also print N misread sentences per version, drawn at random (seed 0), with label and score:"
        " to judge how many misreadings are the model's and how many the inherited label's",
    )
    return p.parse_args(argv)


def held_out_sentences(config, path: Path):
    """Return the short-text set cut from the configuration's held-out reviews."""
    labelled = labelled_rows(config, path)
    _, held = train_validation_split(labelled.labels, config.val_fraction, config.seed)
    val_idx, cal_idx = calibration_split(labelled.labels, held, config.calibration_fraction, config.seed)
    held = np.concatenate([val_idx, cal_idx])
    return short_text_set(
        [labelled.texts[i] for i in held],
        labelled.labels[held],
        labelled.ratings_or_unknown()[held],
        seed=config.seed,
    )


def main(argv: list[str] | None = None) -> int:
    """Score every version on the same sentences; print accuracy and ROC-AUC."""
    from sklearn.metrics import roc_auc_score

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = preset(args.preset)
    short = held_out_sentences(config, args.data or default_data_dir() / config.train_file)
    labels = np.asarray(short.labels)
    print(
        f"{len(short)} sentences from {len(np.unique(short.source))} held-out reviews ({args.preset} split)"
    )
    for path in args.version:
        probabilities = Predictor.load(path).score_texts(list(short.texts))
        accuracy = float(np.mean((probabilities >= 0.5) == labels))
        print(f"{path}: accuracy {100 * accuracy:.2f} %, ROC-AUC {roc_auc_score(labels, probabilities):.4f}")
        wrong = np.flatnonzero((probabilities >= 0.5) != labels)
        shown = np.random.default_rng(0).choice(wrong, min(args.show_errors, len(wrong)), replace=False)
        for i in shown:
            print(f"  label {labels[i]} score {probabilities[i]:.2f}  {short.texts[i]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
