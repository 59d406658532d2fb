"""Train word2vec with gensim and align its vectors with the project vocabulary.

The classifier's Embedding layer is initialised from these vectors, so words the labelled set
rarely shows (but the 50k unlabelled reviews do) still start near their synonyms.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from embeddings.vocabulary import OOV_ID, PAD_ID, Vocabulary

log = logging.getLogger(__name__)


def train_word2vec(
    token_lists: Sequence[Sequence[str]],
    *,
    dim: int = 200,
    window: int = 5,
    min_count: int = 2,
    epochs: int = 5,
    sg: bool = True,
    negative: int = 5,
    workers: int = 2,
    seed: int = 1337,
    previous: str | Path | None = None,
    callbacks: Sequence = (),
):
    """Return a trained ``gensim.models.Word2Vec``; with ``previous``, continue training that model.

    ``callbacks`` are gensim ``CallbackAny2Vec`` objects (the trainer's progress lines per epoch).
    """
    from gensim.models import Word2Vec

    started = time.perf_counter()
    n_tokens = sum(len(t) for t in token_lists)
    if previous is not None:
        model = Word2Vec.load(str(previous))
        model.build_vocab(token_lists, update=True)
        model.train(token_lists, total_examples=len(token_lists), epochs=epochs, callbacks=list(callbacks))
    else:
        model = Word2Vec(
            sentences=token_lists,
            vector_size=dim,
            window=window,
            min_count=min_count,
            epochs=epochs,
            sg=int(sg),
            negative=negative,
            workers=workers,
            seed=seed,
            callbacks=list(callbacks),
        )
    log.info(
        "word2vec: %d texts, %.1fM tokens, %d words, %d dims, %.0f s",
        len(token_lists),
        n_tokens / 1e6,
        len(model.wv),
        model.vector_size,
        time.perf_counter() - started,
    )
    return model


def embedding_matrix(vocab: Vocabulary, keyed_vectors, seed: int = 1337) -> tuple[np.ndarray, dict]:
    """Return a [len(vocab), dim] matrix aligned with ``vocab`` and hit/miss statistics.

    Words word2vec knows get its vector; the others (and <oov>) get small random vectors with the
    same scale; <pad> stays zero (it is masked anyway, zero keeps that obvious).
    """
    dim = keyed_vectors.vector_size
    rng = np.random.default_rng(seed)
    scale = float(np.std(keyed_vectors.vectors)) if len(keyed_vectors) else 0.1
    matrix = rng.normal(0.0, scale, (len(vocab), dim)).astype(np.float32)
    matrix[PAD_ID] = 0.0
    hits = 0
    for i, token in enumerate(vocab.tokens):
        if i in (PAD_ID, OOV_ID):
            continue
        if token in keyed_vectors.key_to_index:
            matrix[i] = keyed_vectors[token]
            hits += 1
    stats = {"vocab_size": len(vocab), "word2vec_hits": hits, "word2vec_misses": len(vocab) - 2 - hits}
    log.info("embedding matrix: %d of %d words from word2vec", hits, len(vocab) - 2)
    return matrix, stats
