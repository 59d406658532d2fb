"""Reference point: TF-IDF (word 1-2 grams) + logistic regression on the same train/validation split.

The LSTM must beat this to earn its keep. Uses the project's split (same seed and fraction as the
``full`` preset) so the numbers compare with a model version's validation metrics.

    .venv/bin/python bench/baseline_tfidf.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from embeddings.tokenizer import normalize  # noqa: E402
from training.config import preset  # noqa: E402
from training.data import default_data_dir, load_labelled, train_validation_split  # noqa: E402


def main() -> int:
    """Fit and score the baseline; print JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="folder with train.csv.gz")
    args = parser.parse_args()
    config = preset("full")
    data = load_labelled((args.data_dir or default_data_dir()) / config.train_file)
    train, val = train_validation_split(data.labels, config.val_fraction, config.seed)
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(
        preprocessor=normalize, ngram_range=(1, 2), min_df=2, max_features=300_000, sublinear_tf=True
    )
    x_train = vectorizer.fit_transform([data.texts[i] for i in train])
    model = LogisticRegression(C=4.0, max_iter=2000).fit(x_train, data.labels[train])
    accuracy = model.score(vectorizer.transform([data.texts[i] for i in val]), data.labels[val])
    print(
        json.dumps(
            {
                "baseline": "tfidf-1-2gram+logreg",
                "train_rows": len(train),
                "validation_rows": len(val),
                "validation_accuracy": round(float(accuracy), 4),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
