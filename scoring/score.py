"""Score one chunk of rows: check every text, score the valid ones with the Predictor, keep all rows.

:func:`score_chunk` is the single per-chunk function of the job: the local engine calls it on
chunks (in-process or in worker processes) and the Dask engine maps it over ``dask.dataframe``
partitions. It never drops a row: a text that cannot be scored gets a null score and an ``error``
code instead. Tokenisation, length-bucketing and calibration all happen in
:class:`inference.predictor.Predictor`; nothing here re-implements them.

The model is loaded at most once per process (a Dask worker, a pool worker, or the CLI process),
on first use, and cached by version directory: partitions never reload it. A version at a URL is
copied to the machine's local model cache first (``scoring.models.local_copy``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from inference.predictor import Predictor
from scoring.models import local_copy

log = logging.getLogger(__name__)

NULL_TEXT = "null_text"  # the text is missing (null / NaN / empty CSV field)
NOT_A_STRING = "not_a_string"  # the value is a number, list, object... (JSON Lines, typed Parquet)
EMPTY_TEXT = "empty_text"  # the text is empty or only whitespace
TEXT_TOO_LONG = "text_too_long"  # longer than max_chars: refused rather than tokenised at length
NON_FINITE_SCORE = "non_finite_score"  # the model returned NaN/inf (never expected; never hidden)
ERROR_CODES = (NULL_TEXT, NOT_A_STRING, EMPTY_TEXT, TEXT_TOO_LONG, NON_FINITE_SCORE)

#: ``score`` is a copy of ``probability`` under its old name, written for one more release
#: so that readers of the old column keep working, then removed (docs/scoring.md says so).
DEPRECATED_SCORE_COLUMN = "score"
RESULT_COLUMNS = ("probability", DEPRECATED_SCORE_COLUMN, "label", "model_version", "error")
#: Input columns whose names clash with a result column are written as ``input_<name>``.
RENAME_PREFIX = "input_"


@dataclass(frozen=True)
class ScoreSpec:
    """What scoring a chunk needs; small and picklable, so it travels to processes and Dask workers."""

    version_dir: str  # model version directory: absolute path (seen by every worker) or URL
    model_version: int
    text_column: str
    carry: tuple[str, ...]  # input columns copied to the output, in order (the id at least)
    max_chars: int = 100_000
    batch_size: int = 32  # Predictor.max_batch_size
    threads: int = 1  # ONNX Runtime intra-op threads

    def output_name(self, column: str) -> str:
        """Return the output name of a carried input column (renamed if it clashes with a result)."""
        return RENAME_PREFIX + column if column in RESULT_COLUMNS else column

    @property
    def output_columns(self) -> list[str]:
        """Return the output column names in order."""
        return [self.output_name(c) for c in self.carry] + list(RESULT_COLUMNS)


# -- one model per process ---------------------------------------------------------------------
_predictors: dict[tuple[str, int, int], Predictor] = {}
_loads: Counter[str] = Counter()
_lock = threading.Lock()  # Dask workers may run several threads: load once, not once per thread


def get_predictor(spec: ScoreSpec) -> Predictor:
    """Return this process's Predictor for the spec's model, loading it on first use only."""
    key = (spec.version_dir, spec.threads, spec.batch_size)
    with _lock:
        predictor = _predictors.get(key)
        if predictor is None:
            predictor = Predictor.load(
                local_copy(spec.version_dir),
                runtime="onnx",
                intra_op_threads=spec.threads,
                max_batch_size=spec.batch_size,
            )
            _predictors[key] = predictor
            _loads[spec.version_dir] += 1
        return predictor


def model_loads() -> dict[str, int]:
    """Return how many times this process loaded each model version directory (for tests/ops)."""
    with _lock:
        return dict(_loads)


def warm_worker(spec: ScoreSpec) -> None:
    """Load and run the model before the first chunk arrives (pool initializer, Dask worker check)."""
    get_predictor(spec).warm_up()


# -- the per-chunk function --------------------------------------------------------------------
def _is_null(value: Any) -> bool:
    """Return True for the scalar spellings of "missing" that pandas and Arrow produce."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def text_error(value: Any, max_chars: int) -> str | None:
    """Return why a value cannot be scored, or None when it is a scorable text."""
    if isinstance(value, str):
        if len(value) > max_chars:
            return TEXT_TOO_LONG
        if not value.strip():
            return EMPTY_TEXT
        return None
    return NULL_TEXT if _is_null(value) else NOT_A_STRING


def score_chunk(frame: pd.DataFrame, spec: ScoreSpec) -> pd.DataFrame:
    """Return one output row per input row: carried columns, then the RESULT_COLUMNS."""
    texts = frame[spec.text_column].tolist()
    n = len(texts)
    errors: list[str | None] = [text_error(v, spec.max_chars) for v in texts]
    scores = np.full(n, np.nan, dtype=np.float64)
    labels: list[str | None] = [None] * n
    valid = [i for i, e in enumerate(errors) if e is None]
    if valid:  # an all-bad (or empty, e.g. Dask's meta) chunk never loads the model
        predictor = get_predictor(spec)
        probabilities = predictor.score_texts([texts[i] for i in valid])
        for i, p in zip(valid, probabilities):
            if math.isfinite(p):
                scores[i] = p
                labels[i] = predictor.label_for(float(p))
            else:
                errors[i] = NON_FINITE_SCORE
    out = pd.DataFrame({spec.output_name(c): frame[c].to_numpy() for c in spec.carry})
    out["probability"] = scores
    out[DEPRECATED_SCORE_COLUMN] = scores
    out["label"] = pd.Series(labels, dtype=object)
    out["model_version"] = np.full(n, spec.model_version, dtype=np.int64)
    out["error"] = pd.Series(errors, dtype=object)
    return out
