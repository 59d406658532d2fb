"""A trained classifier's weights as plain numpy arrays, the hand-over from Keras to ONNX.

training/model.py extracts them from the Keras model; training/onnx_export.py builds the inference
graph from them. Neither module imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training.ngrams import Negation, table_size


@dataclass
class LstmWeights:
    """Weights of one LSTM direction in Keras layout (gate order i, f, c, o)."""

    kernel: np.ndarray  # [E, 4H]
    recurrent_kernel: np.ndarray  # [H, 4H]
    bias: np.ndarray  # [4H]


@dataclass
class ClassifierWeights:
    """Everything the inference graph needs, extracted from a trained Keras model."""

    embedding: np.ndarray  # [V, E]
    directions: list[LstmWeights]  # forward (, backward)
    dense_kernel: np.ndarray  # [F, 1] (F = pooled LSTM features, + 1 for the n-gram score)
    dense_bias: np.ndarray  # [1]
    pooling: str
    ngram_table: np.ndarray | None = None  # [V + buckets + 1, 1]; None = no n-gram branch
    ngram_buckets: int = 0
    ngram_orders: tuple[int, ...] = ()
    ngram_negation: Negation = field(default_factory=Negation)  # negation scope of the n-gram unigrams


def random_weights(
    vocab_size: int,
    embed_dim: int,
    units: int,
    *,
    bidirectional: bool = True,
    pooling: str = "meanmax",
    seed: int = 0,
    ngram_buckets: int = 0,
    ngram_orders: tuple[int, ...] = (1, 2),
    ngram_negation: Negation = Negation(),
) -> ClassifierWeights:
    """Return random weights of the right shapes (for tests of the graph and of consumers).

    ``ngram_buckets`` > 0 adds the n-gram branch (hashed n-grams into that many rows).
    """
    rng = np.random.default_rng(seed)
    dirs = [
        LstmWeights(
            rng.normal(0, 0.2, (embed_dim, 4 * units)),
            rng.normal(0, 0.2, (units, 4 * units)),
            rng.normal(0, 0.1, (4 * units,)),
        )
        for _ in range(2 if bidirectional else 1)
    ]
    features = units * len(dirs) * (2 if pooling == "meanmax" else 1) + (1 if ngram_buckets else 0)
    return ClassifierWeights(
        embedding=rng.normal(0, 0.5, (vocab_size, embed_dim)),
        directions=dirs,
        dense_kernel=rng.normal(0, 0.3, (features, 1)),
        dense_bias=np.zeros(1),
        pooling=pooling,
        ngram_table=rng.normal(0, 0.2, (table_size(vocab_size, ngram_buckets), 1)) if ngram_buckets else None,
        ngram_buckets=ngram_buckets,
        ngram_orders=tuple(ngram_orders) if ngram_buckets else (),
        ngram_negation=ngram_negation,
    )
