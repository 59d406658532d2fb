"""Every hyperparameter of the training pipeline, with its default and meaning, in one place.

Presets are named instances: ``small`` is CI-sized (a 2k sample, seconds per epoch), ``full`` is
the quality configuration reported in the README, ``quick`` the model ``run.sh`` serves first while
the full one trains. A CLI flag overrides any single field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from embeddings.vocabulary import DEFAULT_HEAD, DEFAULT_MAX_LEN


@dataclass
class TrainConfig:
    """Hyperparameters and data options; saved verbatim in every model artifact."""

    # -- data --------------------------------------------------------------------------------
    train_file: str = "train.csv.gz"  # labelled file, relative to the data dir unless absolute
    unlabelled_file: str | None = "train_unsup.csv.gz"  # extra word2vec text; None = labelled only
    text_column: str = "text"  # column holding the review text
    label_column: str = "label"  # column holding 0/1, pos/neg or positive/negative
    rating_column: str = "rating"  # optional 1-10 stars; clearly rated reviews give short-text crops
    skip_bad_rows: bool = False  # skip (and count) unusable rows instead of failing
    sample: int | None = None  # use a stratified random sample of this many labelled rows
    unlabelled_sample: int | None = None  # cap on unlabelled rows used for word2vec
    val_fraction: float = 0.1  # share of labelled rows held out (epoch selection + calibration)
    calibration_fraction: float = 0.5  # of those, the share kept for the temperature (never picks the epoch)
    seed: int = 1337  # seeds the split, word2vec, weight init and batch order

    # -- vocabulary / truncation -------------------------------------------------------------
    max_vocab: int = 60_000  # ids kept (including <pad> and <oov>); rarer words map to <oov>
    min_count: int = 2  # a word needs this many occurrences to get its own id
    max_len: int = DEFAULT_MAX_LEN  # tokens kept per review (head + tail): 600
    head_len: int = DEFAULT_HEAD  # of which the first ones (150); the rest come from the end of the review

    # -- word2vec (gensim) -------------------------------------------------------------------
    w2v_dim: int = 200  # embedding dimensions
    w2v_window: int = 5  # context window
    w2v_epochs: int = 5  # passes over the corpus
    w2v_sg: bool = False  # skip-gram (True) or CBOW (False: 75 s vs 406 s in issue #12's measurements)
    w2v_negative: int = 5  # negative samples
    w2v_workers: int = (
        2  # gensim worker threads (more than 1 makes word2vec, hence the run, non-reproducible)
    )

    # -- model: Embedding → (Bi)LSTM → pooling → Dropout → Dense(1, sigmoid) ------------------
    units: int = 64  # LSTM units per direction (the earlier preset had 96: more CPU per step)
    bidirectional: bool = True  # run a second LSTM right-to-left and concatenate
    pooling: str = "meanmax"  # last | mean | max | meanmax (masked pooling over time)
    dropout: float = 0.4  # dropout before the dense layer (no recurrent_dropout: keeps cuDNN)
    spatial_dropout: float = 0.1  # dropout on embedding vectors (whole vectors)

    # -- n-gram branch: NBSVM over the review's distinct hashed n-grams, inside the graph --------
    ngram_order: int = 2  # n-grams of 1..this many tokens (0 = no n-gram branch)
    ngram_buckets: int = 1 << 20  # hash buckets for n-grams of 2+ tokens (unigrams keep their id)
    ngram_c: float = 1.0  # inverse L2 strength of the NBSVM logistic regression
    ngram_alpha: float = 1.0  # naive-Bayes smoothing of the log-count ratios
    ngram_negation_window: int = (
        3  # unigrams this many tokens after "not", "didn't"... get own weights (0 = off)
    )

    # -- short texts: train on sentences/snippets of clearly rated reviews too ------------------
    # snippets (1-3 sentences) per clearly rated training review; 0 = none. 4 rather than 2: short
    # texts 84.87 / 84.77 % vs 83.85 / 83.85 %, two full-preset runs each, ~+100 s (README)
    crops_per_review: int = 4
    crop_weight: float = 0.5  # loss weight of a snippet (a whole review weighs 1)
    # single opinionated sentences per clearly rated review (holding a word one class of the training
    # reviews uses far more than the other), at crop_weight; 0 = none. 2: short texts 85.12 / 85.22 /
    # 85.09 % against 84.87 / 84.77 / 84.04 % without, 4: 84.84 % (full-preset runs, README)
    opinion_crops_per_review: int = 2
    # self-training: snippets per unlabelled review the n-gram teacher reads with most confidence,
    # labelled by it (weighing crop_weight); needs ngram_order >= 1; 0 = none
    pseudo_crops_per_review: int = 0
    pseudo_share: float = 0.5  # in (0, 1]: share of unlabelled reviews kept, the most extreme half per side
    negation_weight: float = 0.5  # loss weight of each of "was good" / "was not good" (flipped); 0 = none

    # -- optimisation ------------------------------------------------------------------------
    optimizer: str = "adam"  # adam | rmsprop | sgd
    learning_rate: float = 2e-3  # while the embedding is frozen
    finetune_learning_rate: float = 5e-4  # once the embedding is unfrozen
    frozen_epochs: int = 2  # epochs with the word2vec embedding frozen (0 = fine-tune from start)
    finetune_epochs: int = 2  # epochs with the embedding trainable (0 = keep frozen)
    lr_decay: float = 0.7  # learning rate multiplied by this after each epoch within a phase
    batch_size: int = 64  # reviews per step
    bucket_chunk: int = 50  # batches sorted by length together (bigger = less padding, less shuffle)
    patience: int = 1  # early stopping: epochs without val-loss improvement before stopping
    clipnorm: float = 1.0  # gradient clipping

    # -- export / checks ---------------------------------------------------------------------
    parity_reviews: int = 256  # real reviews used for the ONNX/SavedModel vs Keras parity check
    parity_tolerance: float = 1e-5  # max abs difference allowed between runtimes
    ece_bins: int = 15  # bins of the expected calibration error

    def replace(self, **changes) -> "TrainConfig":
        """Return a copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Return the config as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> "TrainConfig":
        """Rebuild a config from :meth:`to_dict` output, ignoring keys this version does not know.

        A field the document predates takes its :data:`ABSENT_MEANS` value, the one that trains as
        before the field existed: a retrain keeps its production model's settings.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**ABSENT_MEANS, **{k: v for k, v in doc.items() if k in names}})


#: Fields added after models were first saved, with the value an older saved config means.
ABSENT_MEANS: dict[str, object] = {"opinion_crops_per_review": 0}


PRESETS: dict[str, TrainConfig] = {
    # Quality run on 25k labelled + 50k unlabelled reviews (see README for time and accuracy).
    "full": TrainConfig(),
    # CI-sized: a 2k sample, tiny word2vec and LSTM; the whole pipeline in well under a minute.
    "small": TrainConfig(
        sample=2000,
        unlabelled_sample=2000,
        max_vocab=5000,
        max_len=128,
        head_len=32,
        w2v_dim=50,
        w2v_epochs=5,
        w2v_sg=False,
        units=16,
        frozen_epochs=3,
        finetune_epochs=2,
        parity_reviews=256,
        learning_rate=1e-2,
        finetune_learning_rate=3e-3,
        ngram_buckets=1 << 16,
        crops_per_review=2,  # as before full went to 4: CI and run.sh's first model keep their time
        opinion_crops_per_review=0,  # likewise
    ),
}
# For tests of the machinery (registry, pipeline) where model quality does not matter: ~10 s.
PRESETS["tiny"] = PRESETS["small"].replace(
    sample=400,
    unlabelled_sample=0,
    max_vocab=2000,
    units=8,
    w2v_dim=16,
    max_len=64,
    head_len=16,
    parity_reviews=64,
    frozen_epochs=1,
    finetune_epochs=1,
    ngram_buckets=1 << 12,
)
# First model of ./run.sh, served while the full one trains behind it: a 10k-review sample, no
# unlabelled text, 3 word2vec and 3 LSTM epochs (~0.84 validation accuracy; README for its time).
PRESETS["quick"] = PRESETS["small"].replace(
    sample=10000,
    unlabelled_sample=0,
    max_vocab=20000,
    max_len=200,
    head_len=50,
    w2v_epochs=3,
    frozen_epochs=1,
    finetune_epochs=2,
)


def preset(name: str) -> TrainConfig:
    """Return a copy of a named preset."""
    try:
        return dataclasses.replace(PRESETS[name])
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
