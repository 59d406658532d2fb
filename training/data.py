"""Load labelled and unlabelled reviews from the formats users have, and split them reproducibly.

Accepted inputs: CSV (optionally gzipped), Parquet, JSON Lines, the official ``aclImdb`` folder,
or the ``aclImdb_v1.tar.gz`` archive. Labels may be 0/1, pos/neg, positive/negative (any case) or
booleans. Bad input fails with a message naming the file, the column and the offending rows,
unless ``skip_bad_rows`` is set, in which case those rows are skipped and counted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from registry.files import TABLE_SUFFIXES, file_sha256, table_format

log = logging.getLogger(__name__)

DATA_DIR_ENV = "SENTIMENT_DATA_DIR"
_LABELS = {
    "1": 1,
    "pos": 1,
    "positive": 1,
    "true": 1,
    "1.0": 1,
    "0": 0,
    "neg": 0,
    "negative": 0,
    "false": 0,
    "0.0": 0,
}
_ACLIMDB_NAME = re.compile(r"^(\d+)_(\d+)\.txt$")
#: The table file endings we read, for messages.
TABLE_KINDS = ", ".join(suffix for suffixes in TABLE_SUFFIXES.values() for suffix in suffixes)


class DataError(ValueError):
    """The input cannot be used; the message says which file, column and rows."""


@dataclass
class LabelledData:
    """Texts with 0/1 labels, optional star ratings, where they came from, and what was skipped."""

    texts: list[str]
    labels: np.ndarray  # int8, 1 = positive
    source: str
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows skipped
    ratings: np.ndarray | None = None  # float 1-10 stars, NaN where unknown; None = no rating column

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: np.ndarray) -> "LabelledData":
        """Return the rows at ``index`` (same source)."""
        ratings = None if self.ratings is None else self.ratings[index]
        return LabelledData(
            [self.texts[i] for i in index], self.labels[index], self.source, dict(self.skipped), ratings
        )

    def ratings_or_unknown(self) -> np.ndarray:
        """Return the ratings, NaN for every row when the source had none."""
        return np.full(len(self), np.nan) if self.ratings is None else self.ratings


def default_data_dir() -> Path:
    """Return ``$SENTIMENT_DATA_DIR`` or ``../shared/data/imdb`` next to the project."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "imdb"


def resolve(path: str | Path, data_dir: Path | None = None) -> Path:
    """Resolve a path relative to the data dir unless it is absolute or exists as given."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return (data_dir or default_data_dir()) / path


def fingerprint(path: str | Path) -> str:
    """Return the sha256 of a file, or of a folder's files (names and bytes, sorted)."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            hashlib.file_digest(fh, lambda: digest)  # feeds the folder's one running digest
    return digest.hexdigest()


# -- reading tables ------------------------------------------------------------------------------
def read_table(path: str | Path, *, aclimdb_splits: tuple[str, ...] = ("train",)) -> pd.DataFrame:
    """Read a CSV / Parquet / JSON Lines file or an aclImdb folder/archive into a DataFrame.

    From an aclImdb folder/archive only ``aclimdb_splits`` are read, so training never sees the
    official test reviews by accident.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    name = path.name.lower()
    try:
        if is_aclimdb(path):
            return read_aclimdb(path, aclimdb_splits)
        fmt = table_format(path)
        if fmt == "parquet":
            return pd.read_parquet(path)
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        if fmt == "csv":
            sep = "\t" if ".tsv" in name else ","
            return pd.read_csv(path, sep=sep, dtype=object, keep_default_na=False, na_values=[""])
    except DataError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types; the user needs the file name
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc
    raise DataError(f"{path}: unknown format (expected {TABLE_KINDS}, an aclImdb folder or .tar.gz)")


def is_aclimdb(path: str | Path) -> bool:
    """Tell whether ``path`` is an aclImdb folder or archive rather than a table file."""
    path = Path(path)
    return path.is_dir() or path.name.lower().endswith((".tar.gz", ".tgz", ".tar"))


def read_aclimdb(
    path: Path,
    splits: tuple[str, ...] = ("train", "test"),
    polarities: tuple[str, ...] = ("pos", "neg", "unsup"),
) -> pd.DataFrame:
    """Read the official layout ``aclImdb/{train,test}/{pos,neg,unsup}/<id>_<rating>.txt``.

    Returns columns id, split, rating, label (NaN for unsup), text.
    """
    rows = []

    def add(member: str, read) -> None:
        parts = member.split("/")
        if len(parts) < 3 or parts[-3] not in splits or parts[-2] not in polarities:
            return
        m = _ACLIMDB_NAME.match(parts[-1])
        if not m:
            return
        split, polarity = parts[-3], parts[-2]
        label = {"pos": 1, "neg": 0}.get(polarity)
        rows.append(
            {
                "id": f"{split}_{polarity}_{m.group(1)}",
                "split": split,
                "rating": int(m.group(2)),
                "label": label,
                "text": read().decode("utf-8"),
            }
        )

    if path.is_dir():
        for f in sorted(path.rglob("*.txt")):
            add(f.relative_to(path).as_posix(), f.read_bytes)
    else:
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".txt"):
                    add(member.name, lambda m=member: tar.extractfile(m).read())
    if not rows:
        raise DataError(f"{path}: no aclImdb review files (expected aclImdb/train/pos/<id>_<rating>.txt)")
    return pd.DataFrame(rows)


# -- validating ----------------------------------------------------------------------------------
def _rows(mask: pd.Series, limit: int = 5) -> str:
    """Return the first offending row numbers (1-based data rows) as text."""
    rows = (np.flatnonzero(mask.to_numpy()) + 1).tolist()
    shown = ", ".join(map(str, rows[:limit]))
    return f"{shown}{', …' if len(rows) > limit else ''} ({len(rows)} rows)"


def _require_column(frame: pd.DataFrame, column: str, source: str) -> None:
    if column not in frame.columns:
        raise DataError(f"{source}: no column {column!r}; columns are {list(frame.columns)}")


def _bad_texts(frame: pd.DataFrame, column: str) -> pd.Series:
    texts = frame[column]
    is_str = texts.map(lambda t: isinstance(t, str))
    return ~is_str | ~texts.where(is_str, "").str.strip().astype(bool)


def normalize_labels(values: pd.Series) -> pd.Series:
    """Map 0/1, pos/neg, positive/negative, booleans to 1/0; unknown values become NaN."""
    as_text = values.map(lambda v: str(v).strip().lower() if v is not None and v == v else "")
    return as_text.map(_LABELS)


def load_labelled(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    skip_bad_rows: bool = False,
    aclimdb_split: str = "train",
    rating_column: str = "rating",
) -> LabelledData:
    """Load a labelled file; fail (or skip and count) empty/non-text rows and unknown labels.

    A ``rating_column`` (1-10 stars, as in IMDB) is read when present; unreadable ratings become NaN.
    """
    source = str(path)
    if is_aclimdb(path):
        frame = read_aclimdb(Path(path), (aclimdb_split,), polarities=("pos", "neg"))
    else:
        frame = read_table(path)
    _require_column(frame, text_column, source)
    _require_column(frame, label_column, source)
    frame = frame.reset_index(drop=True)
    bad_text = _bad_texts(frame, text_column)
    labels = normalize_labels(frame[label_column])
    bad_label = labels.isna()
    skipped = {}
    for mask, column, what in (
        (bad_text, text_column, "empty or non-text"),
        (bad_label, label_column, "unknown label"),
    ):
        if mask.any():
            if not skip_bad_rows:
                example = "" if column == text_column else f"; e.g. {frame.loc[mask, column].iloc[0]!r}"
                raise DataError(
                    f"{source}: column {column!r} has {what} values in data rows {_rows(mask)}{example}. "
                    "Fix them or pass --skip-bad-rows to skip them."
                )
            skipped[what] = int(mask.sum())
    keep = ~(bad_text | bad_label)
    if skipped:
        log.warning("%s: skipped %s", source, ", ".join(f"{n} rows with {k}" for k, n in skipped.items()))
    if not keep.any():
        raise DataError(f"{source}: no usable rows")
    ratings = None
    if rating_column in frame.columns:  # optional: star ratings let training cut short texts (short_texts.py)
        ratings = pd.to_numeric(frame.loc[keep, rating_column], errors="coerce").to_numpy(dtype=np.float64)
    return LabelledData(
        texts=frame.loc[keep, text_column].tolist(),
        labels=labels[keep].to_numpy(dtype=np.int8),
        source=source,
        skipped=skipped,
        ratings=ratings,
    )


def load_unlabelled(path: str | Path, *, text_column: str = "text") -> list[str]:
    """Load the texts of a file whose labels (if any) are ignored; empty/non-text rows are dropped."""
    frame = read_table(path)
    _require_column(frame, text_column, str(path))
    return frame.loc[~_bad_texts(frame, text_column), text_column].tolist()


# -- splitting -----------------------------------------------------------------------------------
def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Return ``n`` sorted row indices keeping the label ratio, reproducible for a seed.

    Hand-written rather than ``sklearn.model_selection.train_test_split(stratify=...)`` on purpose:
    scikit-learn draws other rows for the same seed, which would change every model's training and
    validation data (and the tests' trained fixtures) for no gain in what the split guarantees.
    """
    rng = np.random.default_rng(seed)
    if n >= len(labels):
        return np.arange(len(labels))
    picked = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        picked.append(rng.choice(idx, size=round(n * len(idx) / len(labels)), replace=False))
    return np.sort(np.concatenate(picked))


def calibration_split(
    labels: np.ndarray, index: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split validation rows into (epoch selection, calibration), stratified: the temperature never sees
    the rows that picked the epoch."""
    if not 0 < fraction < 1:
        raise ValueError(f"calibration_fraction must be in (0, 1), got {fraction}")
    n = min(len(index) - 1, max(1, int(round(len(index) * fraction))))
    picked = stratified_sample(labels[index], n, seed + 2)
    if not 0 < len(picked) < len(index):  # per-class rounding can take none or all of a tiny split
        picked = np.random.default_rng(seed + 2).choice(len(index), n, replace=False)
    calibration = np.asarray(index)[picked]
    return np.setdiff1d(index, calibration), calibration


def train_validation_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (train, validation), stratified by label and reproducible."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    val = stratified_sample(labels, max(2, int(round(len(labels) * val_fraction))), seed + 1)
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


def labelled_rows(config, path: Path) -> LabelledData:
    """Load the labelled rows a TrainConfig trains on from ``path`` (its sample, if it has one)."""
    labelled = load_labelled(
        path,
        text_column=config.text_column,
        label_column=config.label_column,
        skip_bad_rows=config.skip_bad_rows,
        rating_column=config.rating_column,
    )
    if config.sample:
        labelled = labelled.subset(stratified_sample(labelled.labels, config.sample, config.seed))
    return labelled
