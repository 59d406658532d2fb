"""How often does the drift check cry wolf, and does it catch a real shift?

Draws ``--resamples`` windows of fresh IMDB reviews (labelled rows the production version never
trained on) and checks each against the version's reference: every flagged window is a false
alarm. Then checks as many windows of short product reviews (another domain: other words, a
tenth of the length), each of which must be flagged. Prints both rates and each check's values.

    python bench/drift_false_alarms.py --model-dir models --resamples 20 --window 500

Fresh reviews: when the version trained on a sample (``config.sample``, e.g. the small preset),
the rows of its training file outside that sample; otherwise pass ``--fresh FILE`` (e.g. the
official test split, which no version trains on). The domain classifier's reference texts are
``--reference FILE`` or, by default, ``--reference-rows`` further fresh reviews disjoint from
every window.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from registry.store import Registry  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import default_data_dir, load_labelled, resolve, stratified_sample  # noqa: E402
from training.drift import Thresholds  # noqa: E402
from training.drift_check import DriftChecker  # noqa: E402

PRODUCTS = [
    "phone",
    "charger",
    "blender",
    "vacuum",
    "kettle",
    "headset",
    "keyboard",
    "backpack",
    "lamp",
    "toaster",
    "router",
    "mattress",
    "jacket",
    "drill",
    "printer",
    "watch",
    "speaker",
    "mouse",
]
GOOD = [
    "works great",
    "arrived quickly",
    "is sturdy and well made",
    "was easy to set up",
    "does exactly what it says",
    "feels premium",
    "has excellent battery life",
    "is worth every penny",
    "fits perfectly",
    "is very quiet",
]
BAD = [
    "stopped working after a week",
    "arrived damaged",
    "feels cheap",
    "was a pain to set up",
    "broke on the second day",
    "is way too loud",
    "drains the battery fast",
    "does not fit",
    "is overpriced for what you get",
    "smells of plastic",
]
OPENERS = [
    "",
    "Bought this for my wife. ",
    "Second one I ordered. ",
    "Update: ",
    "Honestly, ",
    "As described. ",
]
CLOSERS = [
    "",
    " Would buy again.",
    " Returned it.",
    " Five stars.",
    " One star.",
    " Shipping was fast.",
    " Customer service never replied.",
    " Recommended!",
]


def product_reviews(n: int, seed: int = 0) -> list[str]:
    """Return ``n`` short product-review-like texts (1-2 sentences, shop vocabulary)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        product = rng.choice(PRODUCTS)
        verdict = rng.choice(GOOD if rng.random() < 0.6 else BAD)
        extra = f" and {rng.choice(GOOD + BAD)}" if rng.random() < 0.4 else ""
        texts.append(f"{rng.choice(OPENERS)}The {product} {verdict}{extra}.{rng.choice(CLOSERS)}")
    return texts


def fresh_reviews(
    registry: Registry, name: str, version: int, data_dir: Path, fresh: Path | None
) -> list[str]:
    """Return labelled reviews the version never trained on (see module doc)."""
    if fresh is not None:
        return load_labelled(fresh).texts
    config = TrainConfig.from_dict(registry.manifest(name, version)["config"])
    if not config.sample:
        raise SystemExit(
            f"version {version} trained on all of {config.train_file}: pass --fresh FILE "
            "with reviews it never saw (e.g. the official test split)"
        )
    data = load_labelled(resolve(config.train_file, data_dir))
    used = set(stratified_sample(data.labels, config.sample, config.seed).tolist())
    return [t for i, t in enumerate(data.texts) if i not in used]


def run(
    model_dir: Path,
    *,
    name: str = "sentiment",
    resamples: int = 20,
    window: int = 500,
    reference: Path | None = None,
    reference_rows: int = 2000,
    fresh: Path | None = None,
    data_dir: Path | None = None,
    thresholds: Thresholds = Thresholds(),
    seed: int = 0,
) -> dict:
    """Run the experiment; return the false-alarm and detection rates with every check's values."""
    registry = Registry(model_dir)
    version = registry.production_version(name)
    pool = fresh_reviews(registry, name, version, data_dir or default_data_dir(), fresh)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    with tempfile.TemporaryDirectory() as tmp:
        if reference is None:
            reference = Path(tmp) / "reference.csv"
            pd.DataFrame({"text": [pool[i] for i in order[:reference_rows]]}).to_csv(reference, index=False)
            order = order[reference_rows:]
        checker = DriftChecker(
            registry, name, version, reference_path=reference, thresholds=thresholds, seed=seed
        )
        imdb, shifted = [], []
        for r in range(resamples):
            texts = [pool[i] for i in rng.choice(order, window, replace=False)]
            imdb.append(summary(checker.check(texts, f"imdb resample {r}")))
            shifted.append(summary(checker.check(product_reviews(window, seed=1000 + r), f"products {r}")))
    return {
        "model": name,
        "version": version,
        "window": window,
        "resamples": resamples,
        "reference": checker.reference_source,
        "domain_auc": checker.auc_note or "on",
        "thresholds": thresholds.to_dict(),
        "false_alarm_rate": sum(s["drift"] for s in imdb) / resamples,
        "detection_rate": sum(s["drift"] for s in shifted) / resamples,
        "imdb": imdb,
        "products": shifted,
    }


def summary(result: dict) -> dict:
    """Keep a check's verdict and values (not its bins)."""
    return {"drift": result["drift"], **{k: round(c["value"], 4) for k, c in result["checks"].items()}}


def main() -> int:
    """Run the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="registry root (read only)")
    parser.add_argument("--model-name", default="sentiment", help="model name in the registry")
    parser.add_argument("--resamples", type=int, default=20, help="windows of each kind to check")
    parser.add_argument("--window", type=int, default=500, help="texts per window")
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="reference texts of the domain classifier (default: fresh reviews held apart)",
    )
    parser.add_argument(
        "--reference-rows", type=int, default=2000, help="fresh reviews held apart as reference"
    )
    parser.add_argument(
        "--fresh",
        type=Path,
        default=None,
        help="reviews the version never saw (needed when it trained on its whole file)",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="data dir of the version's training file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    parser.add_argument("--out", type=Path, default=None, help="also write the result JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(
        args.model_dir,
        name=args.model_name,
        resamples=args.resamples,
        window=args.window,
        reference=args.reference,
        reference_rows=args.reference_rows,
        fresh=args.fresh,
        data_dir=args.data_dir,
        seed=args.seed,
    )
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
