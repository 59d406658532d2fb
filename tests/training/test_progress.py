"""training.progress: the progress lines of word2vec and the LSTM, with honest time-left estimates."""

from __future__ import annotations

import logging
import math

import pytest

from training.progress import LstmProgress, Word2VecProgress, format_duration, time_left


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0 s"),
        (44.6, "45 s"),
        (65, "1 min 05 s"),
        (3599, "59 min 59 s"),
        (4380, "1 h 13 min"),
        (math.inf, "unknown"),
        (-3, "0 s"),
    ],
)
def test_durations_read_like_a_person_says_them(seconds, text):
    assert format_duration(seconds) == text


def test_time_left_follows_the_pace_so_far():
    assert time_left(30.0, 3, 5) == pytest.approx(20.0)
    assert time_left(0.0, 0, 5) == math.inf
    assert time_left(50.0, 5, 5) == 0.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_word2vec_logs_every_epoch_with_the_time_left(caplog):
    from gensim.models import Word2Vec

    clock = FakeClock()
    progress = Word2VecProgress(3, clock=clock)
    original = progress.on_epoch_end

    def ten_seconds_per_epoch(model):
        clock.now += 10
        original(model)

    progress.on_epoch_end = ten_seconds_per_epoch
    with caplog.at_level(logging.INFO, logger="training.progress"):
        Word2Vec(
            [["good", "film"], ["bad", "film"]] * 20,
            vector_size=4,
            min_count=1,
            epochs=3,
            workers=1,
            callbacks=[progress],
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "training.progress"]
    assert lines[0].startswith("word2vec: 3 epochs over 40 texts (80 words)")
    assert lines[1:] == [
        "word2vec epoch 1/3 done in 10 s; about 20 s left",
        "word2vec epoch 2/3 done in 10 s; about 10 s left",
        "word2vec epoch 3/3 done in 10 s; about 0 s left",
    ]


def test_lstm_lines_every_interval_and_per_epoch_with_epoch_and_total_time_left(caplog):
    clock = FakeClock()
    progress = LstmProgress(epochs=2, steps=10, interval_s=15, clock=clock)
    with caplog.at_level(logging.INFO, logger="training.progress"):
        progress.phase = "frozen"  # first fit call: one epoch
        progress.on_epoch_begin(0)
        for step in range(10):
            clock.now += 4  # 4 s per step: a line after steps 4 and 8 (16 s and 32 s), then the epoch's
            progress.on_train_batch_end(step, {"loss": 0.5, "accuracy": 0.75})
        progress.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.75})
        progress.phase = "finetune"  # second fit call: Keras counts from 0 again
        progress.on_epoch_begin(0)
        clock.now += 20
        progress.on_epoch_end(0, {"loss": 0.25})
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "LSTM epoch 1/2 (frozen): step 4/10 (40%), loss 0.5000, accuracy 0.7500; "
        "epoch ends in 24 s, 1 min 04 s left if all 2 epochs run",
        "LSTM epoch 1/2 (frozen): step 8/10 (80%), loss 0.5000, accuracy 0.7500; "
        "epoch ends in 8 s, 48 s left if all 2 epochs run",
        "LSTM epoch 1/2 (frozen): step 10/10 (100%), loss 0.5000, accuracy 0.7500; "
        "epoch ends in 0 s, 40 s left if all 2 epochs run",
        "LSTM epoch 2/2 (finetune): step 10/10 (100%), loss 0.2500; "
        "epoch ends in 0 s, 0 s left if all 2 epochs run",
    ]
