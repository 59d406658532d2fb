"""Progress lines for the long steps of a training run: what runs, how far it got, how long is left.

They are log records, not redrawn bars, so they read the same on a terminal and in the log file
of a background run (``run.sh`` trains the full model in the background). gensim calls
:class:`Word2VecProgress` after each word2vec epoch; Keras calls :class:`LstmProgress` after
each step and writes a line at most every ``interval_s`` seconds and at the end of each epoch.
Imported by the training run only: it needs gensim and Keras.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import keras
from gensim.models.callbacks import CallbackAny2Vec

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def format_duration(seconds: float) -> str:
    """Return a duration the way a person says it: ``45 s``, ``3 min 05 s``, ``1 h 12 min``."""
    if not math.isfinite(seconds):
        return "unknown"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def time_left(elapsed: float, done: float, total: float) -> float:
    """Return the seconds left to reach ``total`` at the pace of ``done`` units in ``elapsed`` seconds."""
    if done <= 0:
        return math.inf
    return elapsed / done * max(0.0, total - done)


class Word2VecProgress(CallbackAny2Vec):
    """Log each word2vec epoch: its duration and the time left for the remaining epochs."""

    def __init__(self, epochs: int, clock: Clock = time.monotonic) -> None:
        self.epochs = epochs
        self.clock = clock
        self.epoch = 0
        self.started = self.epoch_started = 0.0

    def on_train_begin(self, model) -> None:
        """Say what starts: word2vec is silent for minutes otherwise."""
        self.started = self.clock()
        log.info(
            "word2vec: %d epochs over %d texts (%s words), %d threads",
            self.epochs,
            model.corpus_count,
            f"{model.corpus_total_words:,}",
            model.workers,
        )

    def on_epoch_begin(self, model) -> None:
        """Start the epoch's clock."""
        self.epoch_started = self.clock()

    def on_epoch_end(self, model) -> None:
        """Log the finished epoch and the estimate for the rest."""
        self.epoch += 1
        now = self.clock()
        left = time_left(now - self.started, self.epoch, self.epochs)
        log.info(
            "word2vec epoch %d/%d done in %s; about %s left",
            self.epoch,
            self.epochs,
            format_duration(now - self.epoch_started),
            format_duration(left),
        )


class LstmProgress(keras.callbacks.Callback):
    """Log the classifier's training: steps, loss and time left, every ``interval_s`` and per epoch.

    One instance follows the whole run across ``fit`` calls (one per phase: frozen, then
    fine-tuned embedding), counting epochs itself; the loop sets :attr:`phase` before each call.
    Time left is the epoch's pace per step (its first step, which may build the graph, left out) times
    the steps left in every planned epoch (early stopping may end the run sooner).
    """

    def __init__(
        self, epochs: int, steps: int, interval_s: float = 15.0, clock: Clock = time.monotonic
    ) -> None:
        super().__init__()
        self.epochs = epochs
        self.steps = steps
        self.interval_s = interval_s
        self.clock = clock
        self.phase = ""
        self.epoch = 0  # epochs begun so far, across fit calls
        self.epoch_started = self.last_line = 0.0
        self.first_step_done: float | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Start the epoch's clock."""
        now = self.clock()
        self.epoch += 1
        self.epoch_started = self.last_line = now
        self.first_step_done = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Log a progress line when ``interval_s`` passed since the last one."""
        now = self.clock()
        if batch == 0:  # an epoch's first step may include building the graph: not its pace
            self.first_step_done = now
        elif now - self.last_line >= self.interval_s and batch + 1 < self.steps:
            self.last_line = now
            self._line(batch + 1, now, logs or {})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Log the epoch's last line (the training loop adds its validation numbers after it)."""
        self._line(self.steps, self.clock(), logs or {})

    def _pace(self, step: int, now: float) -> float:
        """Return seconds per step in this epoch, leaving out its first step when there are others."""
        if step > 1 and self.first_step_done is not None:
            return (now - self.first_step_done) / (step - 1)
        return (now - self.epoch_started) / step

    def _line(self, step: int, now: float, logs: dict) -> None:
        pace = self._pace(step, now)
        epoch_left = pace * (self.steps - step)
        total_left = pace * (self.epochs * self.steps - (self.epoch - 1) * self.steps - step)
        metrics = ", ".join(f"{k} {float(v):.4f}" for k, v in logs.items() if k in ("loss", "accuracy"))
        log.info(
            "LSTM epoch %d/%d (%s): step %d/%d (%d%%)%s; epoch ends in %s, %s left if all %d epochs run",
            self.epoch,
            self.epochs,
            self.phase,
            step,
            self.steps,
            100 * step // self.steps,
            f", {metrics}" if metrics else "",
            format_duration(epoch_left),
            format_duration(total_left),
            self.epochs,
        )
