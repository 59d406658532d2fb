"""The training loop: embedding frozen, then fine-tuned; learning rate decayed; best epoch kept.

Keras runs each phase (``model.fit`` with a ``LearningRateScheduler``). A :class:`ValidationMonitor`
callback scores the validation split after every epoch and stops early; it counts patience across
both phases and keeps the best weights, which Keras's own ``EarlyStopping`` cannot do: it starts
afresh at every ``fit`` call, and switching the embedding to trainable needs a recompile, hence a
second call. Imports TensorFlow: the trainer loads this module only when it trains.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402 - after quieting TensorFlow's C++ logging

from embeddings.vocabulary import pad_batch  # noqa: E402
from inference.predictor import sigmoid  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.metrics import log_loss  # noqa: E402
from training.model import set_embedding_trainable  # noqa: E402
from training.progress import LstmProgress  # noqa: E402

log = logging.getLogger(__name__)


# -- batching -------------------------------------------------------------------------------------
def length_bucketed_batches(
    sequences: Sequence[np.ndarray],
    labels: np.ndarray,
    batch_size: int,
    chunk: int,
    rng: np.random.Generator | None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (right-padded ids, labels, row indices) batches of similar-length reviews.

    Shuffle, cut into chunks of ``chunk`` batches, sort each chunk by length, then shuffle the
    batch order: padding stays small while every epoch still sees a different mix.
    With ``rng=None`` the whole set is sorted once (for evaluation).
    """
    n = len(sequences)
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=n)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    size = batch_size * chunk if rng is not None else n
    batches = []
    for start in range(0, n, size):
        idx = order[start : start + size]
        idx = idx[np.argsort(lengths[idx], kind="stable")]
        batches += [idx[j : j + batch_size] for j in range(0, len(idx), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    for b in batches:
        yield pad_batch([sequences[i] for i in b]), labels[b].astype(np.float32), b


def as_dataset(
    make_batches: Callable[[], Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]],
    steps: int,
    sample_weight: np.ndarray | None = None,
):
    """Wrap a batch generator factory (``steps`` batches per call) in a tf.data pipeline, (B, T) shapes vary.

    Keras starts a fresh generator (a new shuffle) at the start of every epoch. The declared
    length keeps it from asking for a batch past the last one, which would still draw dropout
    seeds and so change the next epoch. With ``sample_weight`` (one per row) each batch also
    carries its rows' loss weights.
    """
    import tensorflow as tf

    spec = (tf.TensorSpec((None, None), tf.int64), tf.TensorSpec((None,), tf.float32))
    if sample_weight is None:
        dataset = tf.data.Dataset.from_generator(
            lambda: ((x, y) for x, y, _ in make_batches()), output_signature=spec
        )
    else:
        weights = np.asarray(sample_weight, dtype=np.float32)
        dataset = tf.data.Dataset.from_generator(
            lambda: ((x, y, weights[idx]) for x, y, idx in make_batches()),
            output_signature=(*spec, tf.TensorSpec((None,), tf.float32)),
        )
    return dataset.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(4)


def logit_function(serving_model: keras.Model) -> Callable:
    """Return a compiled (graph-mode) function ids → logits; eager LSTM calls are ~10x slower."""
    import tensorflow as tf

    return tf.function(
        lambda ids: serving_model(ids, training=False)["logit"],
        reduce_retracing=True,
        input_signature=[tf.TensorSpec((None, None), tf.int64)],
    )


def predict_logits(logits_fn: Callable, sequences: Sequence[np.ndarray], batch_size: int = 128) -> np.ndarray:
    """Return the Keras model's logits for encoded sequences (length-sorted batches, order kept)."""
    out = np.empty(len(sequences), dtype=np.float64)
    if not len(sequences):  # e.g. no short texts: a data file without star ratings
        return out
    dummy = np.zeros(len(sequences), dtype=np.float32)
    for x, _, idx in length_bucketed_batches(sequences, dummy, batch_size, 1, None):
        out[idx] = np.asarray(logits_fn(x)).reshape(-1)
    return out


# -- the loop -------------------------------------------------------------------------------------
@dataclass
class FitResult:
    """One row per epoch run, and the epoch whose weights the model now holds."""

    history: list[dict]
    best_epoch: int


class ValidationMonitor(keras.callbacks.Callback):
    """Score the validation split after each epoch; keep the best weights; stop when patience runs out."""

    def __init__(
        self, logits_fn: Callable, x_val: Sequence[np.ndarray], y_val: np.ndarray, patience: int
    ) -> None:
        super().__init__()
        self.logits_fn, self.x_val, self.y_val, self.patience = logits_fn, x_val, y_val, patience
        self.history: list[dict] = []
        self.best_loss, self.best_weights, self.best_epoch = np.inf, None, 0
        self.since_best = 0
        self.stopped = False
        self.phase, self.schedule = "", lambda epoch: 0.0
        self._started = 0.0

    def start_phase(self, phase: str, schedule: Callable[[int], float]) -> None:
        """Name the phase the next epochs belong to and the learning rate schedule they follow."""
        self.phase, self.schedule = phase, schedule

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        probs = sigmoid(predict_logits(self.logits_fn, self.x_val))
        row = {
            "epoch": len(self.history) + 1,
            "phase": self.phase,
            "lr": self.schedule(epoch),
            "loss": float(logs["loss"]),
            "accuracy": float(logs["accuracy"]),
            "val_loss": log_loss(self.y_val, probs),
            "val_accuracy": float(((probs >= 0.5) == (self.y_val == 1)).mean()),
            "seconds": time.perf_counter() - self._started,
        }
        self.history.append(row)
        rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
        log.info("epoch %d (%s): %s", row["epoch"], self.phase, json.dumps(rounded))
        if row["val_loss"] < self.best_loss:
            self.best_loss, self.best_weights, self.best_epoch = (
                row["val_loss"],
                self.model.get_weights(),
                row["epoch"],
            )
            self.since_best = 0
        else:
            self.since_best += 1
            if self.since_best > self.patience:
                log.info("early stopping after epoch %d (best epoch %d)", row["epoch"], self.best_epoch)
                self.stopped = self.model.stop_training = True


def fit(
    model: keras.Model,
    logits_fn: Callable,
    train: tuple[Sequence[np.ndarray], np.ndarray],
    validation: tuple[Sequence[np.ndarray], np.ndarray],
    config: TrainConfig,
    rng: np.random.Generator,
    sample_weight: np.ndarray | None = None,
) -> FitResult:
    """Train with the word2vec embedding frozen, then fine-tuned; leave the best epoch's weights in place.

    Within a phase the learning rate is multiplied by ``lr_decay`` after each epoch;
    ``sample_weight`` (one per training row) weighs each row's loss.
    """
    x_train, y_train = train
    steps = -(-len(x_train) // config.batch_size)
    dataset = as_dataset(
        lambda: length_bucketed_batches(x_train, y_train, config.batch_size, config.bucket_chunk, rng),
        steps,
        sample_weight,
    )
    monitor = ValidationMonitor(logits_fn, *validation, config.patience)
    progress = LstmProgress(config.frozen_epochs + config.finetune_epochs, steps)  # lines with the time left
    phases = (
        ("frozen", False, config.learning_rate, config.frozen_epochs),
        ("finetune", True, config.finetune_learning_rate, config.finetune_epochs),
    )
    for phase, trainable, base_lr, epochs in phases:
        if epochs == 0 or monitor.stopped:
            continue
        set_embedding_trainable(model, trainable, config)

        def schedule(epoch: int, _lr: float | None = None, base: float = base_lr) -> float:
            return base * config.lr_decay**epoch

        monitor.start_phase(phase, schedule)
        progress.phase = phase
        scheduler = keras.callbacks.LearningRateScheduler(schedule)
        # Progress as log lines (terminal or a background run's log file), before the monitor's
        # validation line of each epoch; Keras's own progress bar stays off.
        model.fit(dataset, epochs=epochs, verbose=0, callbacks=[scheduler, progress, monitor])
    model.set_weights(monitor.best_weights)
    return FitResult(monitor.history, monitor.best_epoch)
