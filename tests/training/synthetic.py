"""A synthetic review world whose quality a tiny model can learn in seconds, for retraining scenarios.

Every review is 20 random filler words plus exactly one sentiment word; ten words are positive,
ten negative. A tiny model learns the twenty words in a few epochs and then scores 100% on a gold
set from the same world, so what data does to quality is visible, not buried in noise:

- a drop whose labels are all flipped teaches every word backwards (gold accuracy collapses);
- a drop that flips only positive word ``k`` (more rows than the base has for it) costs about
  1/20 of the gold reviews, so a chain of such drops makes each candidate slightly worse.

On IMDB the tiny preset scores near chance, where such effects cannot be told from noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training.config import preset

POSITIVE = "great wonderful excellent superb moving brilliant delightful charming masterful touching".split()
NEGATIVE = "awful terrible boring dull tedious dreadful clumsy lifeless bland painful".split()
FILLER = [f"w{i}" for i in range(300)]

#: The tiny preset, made to learn: one training phase (no retrace), small batches, enough epochs.
CONFIG = preset("tiny").replace(
    batch_size=16,
    frozen_epochs=0,
    finetune_epochs=8,
    finetune_learning_rate=1e-2,
    lr_decay=0.9,
    patience=8,
    parity_reviews=32,
)


def reviews(
    n: int, seed: int, *, words: list[int] | None = None, label: int | None = None, flip: bool = False
) -> pd.DataFrame:
    """Return ``n`` reviews (text, label).

    ``words`` restricts the sentiment word's index, ``label`` its polarity (1 = positive), and
    ``flip`` stores the opposite label.
    """
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        k = int(rng.integers(0, 10)) if words is None else int(rng.choice(words))
        y = int(rng.integers(0, 2)) if label is None else label
        tokens = list(rng.choice(FILLER, 20))
        tokens.insert(int(rng.integers(0, 21)), (POSITIVE if y else NEGATIVE)[k])
        texts.append(" ".join(tokens))
        labels.append(1 - y if flip else y)
    return pd.DataFrame({"text": texts, "label": labels})


def write(frame: pd.DataFrame, path: Path) -> Path:
    """Write reviews as CSV with pos/neg labels (as users drop them); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.assign(label=np.where(frame["label"] == 1, "pos", "neg")).to_csv(path, index=False)
    return path
