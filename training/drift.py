"""Has the traffic moved away from what the model was trained on? Pure statistics, no I/O.

A *profile* summarises texts as the model sees them: how many tokens it read per text (after
truncation), the share of tokens outside its vocabulary, and its calibrated scores. Training
saves the profile of the validation split beside the model (``drift_reference.json``); a window
of traffic is profiled the same way and compared with it:

- **PSI** (population stability index, ``sum((a - e) * ln(a / e))`` over bins) of the score and
  of the length, in the reference's decile bins. Rule of thumb: < 0.1 stable, > 0.2 shifted.
  Two samples of the *same* distribution still differ by about ``(bins - 1) * (1/n_ref + 1/n_win)``
  (PSI is a symmetrised chi-square), so the threshold is raised to 3x that noise for small samples.
- **OOV-rate change**: the window's share of unknown tokens minus the reference's.
- **Domain-classifier AUC**: a logistic regression tries to tell reference texts from window
  texts by their mean word2vec vector, cross-validated; 0.5 means it cannot (same domain), 1.0
  means the window is a different kind of text. It catches shifts the score does not show.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embeddings.vocabulary import OOV_ID

#: Inner decile cut points: 9 edges, 10 bins.
DECILES = np.linspace(0.1, 0.9, 9)
REFERENCE_FORMAT = 1


@dataclass(frozen=True)
class Thresholds:
    """When a window counts as drifted (any one check suffices)."""

    psi: float = 0.2  # PSI of scores or of lengths, in the reference's decile bins
    noise_factor: float = 3.0  # the PSI threshold is at least this many times the same-distribution noise
    oov_change: float = 0.02  # absolute change of the share of out-of-vocabulary tokens
    auc: float = 0.7  # cross-validated domain-classifier ROC-AUC, reference vs window
    min_texts: int = 100  # a window with fewer texts gets no verdict (the check refuses to run)

    def to_dict(self) -> dict:
        """Return the thresholds as JSON-ready values (for reports)."""
        return dataclasses.asdict(self)


def decile_edges(values: Sequence[float]) -> list[float]:
    """Return the distinct decile cut points of ``values`` (ties merge bins)."""
    return sorted({float(x) for x in np.quantile(np.asarray(values, dtype=np.float64), DECILES)})


def bin_fractions(values: Sequence[float], edges: Sequence[float]) -> np.ndarray:
    """Return the share of ``values`` in each bin ``(-inf, e0], (e0, e1], ..., (e_last, inf)``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no values to bin")
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left")
    return np.bincount(index, minlength=len(edges) + 1) / values.size


def psi(expected: Sequence[float], actual: Sequence[float], floor: float = 1e-4) -> float:
    """Return the population stability index of two bin-share vectors (empty bins floored)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    a = np.maximum(np.asarray(actual, dtype=np.float64), floor)
    if e.shape != a.shape:
        raise ValueError(f"bin counts differ: {e.shape} vs {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def psi_noise(bins: int, n_reference: int, n_window: int) -> float:
    """Return the PSI two same-distribution samples of these sizes show on average."""
    return (bins - 1) * (1.0 / n_reference + 1.0 / n_window)


def profile(lengths: Sequence[int], oov_counts: Sequence[int], scores: Sequence[float]) -> dict:
    """Summarise texts (tokens read, unknown tokens among them, score) as a reference document."""
    lengths = np.asarray(lengths, dtype=np.float64)
    oov = np.asarray(oov_counts, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if not (lengths.size == oov.size == scores.size) or lengths.size == 0:
        raise ValueError("a profile needs as many lengths, OOV counts and scores, at least one")

    def distribution(values: np.ndarray) -> dict:
        edges = decile_edges(values)
        return {
            "edges": edges,
            "fractions": bin_fractions(values, edges).tolist(),
            "mean": float(values.mean()),
        }

    return {
        "format": REFERENCE_FORMAT,
        "texts": int(lengths.size),
        "length": distribution(lengths),
        "score": distribution(scores),
        "oov": {"token_rate": float(oov.sum() / lengths.sum()), "text_mean": float((oov / lengths).mean())},
    }


def id_stats(sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Return each encoded text's length (tokens the model reads) and count of out-of-vocabulary ids."""
    lengths = np.fromiter((len(x) for x in sequences), dtype=np.int64, count=len(sequences))
    oov = np.fromiter(
        (np.count_nonzero(np.asarray(x) == OOV_ID) for x in sequences), dtype=np.int64, count=len(sequences)
    )
    return lengths, oov


def reference(sequences: Sequence[np.ndarray], scores: Sequence[float], source: str) -> dict:
    """Return the reference document training saves beside a model (``drift_reference.json``)."""
    return {**profile(*id_stats(sequences), scores), "source": source}


def compare(
    reference: dict,
    lengths: Sequence[int],
    oov_counts: Sequence[int],
    scores: Sequence[float],
    *,
    auc: float | None = None,
    thresholds: Thresholds = Thresholds(),
) -> dict[str, Any]:
    """Compare a window with a reference profile; return each check and the overall verdict."""
    window = profile(lengths, oov_counts, scores)
    n_ref, n_win = int(reference["texts"]), window["texts"]
    checks: dict[str, dict] = {}
    for key in ("score", "length"):
        ref = reference[key]
        actual = bin_fractions(lengths if key == "length" else scores, ref["edges"])
        limit = max(thresholds.psi, thresholds.noise_factor * psi_noise(len(ref["fractions"]), n_ref, n_win))
        value = psi(ref["fractions"], actual)
        checks[f"{key}_psi"] = {
            "value": value,
            "threshold": limit,
            "drift": value > limit,
            "reference_mean": ref["mean"],
            "window_mean": window[key]["mean"],
            "edges": ref["edges"],
            "reference_fractions": ref["fractions"],
            "window_fractions": actual.tolist(),
        }
    change = window["oov"]["token_rate"] - reference["oov"]["token_rate"]
    checks["oov_rate"] = {
        "value": change,
        "threshold": thresholds.oov_change,
        "drift": abs(change) > thresholds.oov_change,
        "reference": reference["oov"]["token_rate"],
        "window": window["oov"]["token_rate"],
    }
    if auc is not None:
        checks["domain_auc"] = {"value": auc, "threshold": thresholds.auc, "drift": auc > thresholds.auc}
    reasons = [
        f"{name} {c['value']:.3f} > {c['threshold']:.3f}"
        if name != "oov_rate"
        else f"OOV rate {c['window']:.3f} vs reference {c['reference']:.3f} (change {c['value']:+.3f}, "
        f"threshold ±{c['threshold']:.3f})"
        for name, c in checks.items()
        if c["drift"]
    ]
    return {
        "drift": bool(reasons),
        "reasons": reasons,
        "window_texts": n_win,
        "reference_texts": n_ref,
        "checks": checks,
        "thresholds": thresholds.to_dict(),
    }


def mean_vectors(token_lists: Sequence[Sequence[str]], vectors: Any) -> np.ndarray:
    """Return each text's mean word vector (zeros when no token is known), from gensim ``KeyedVectors``."""
    index = vectors.key_to_index
    matrix = vectors.vectors
    out = np.zeros((len(token_lists), matrix.shape[1]), dtype=np.float32)
    for i, tokens in enumerate(token_lists):
        rows = [index[t] for t in tokens if t in index]
        if rows:
            out[i] = matrix[rows].mean(axis=0)
    return out


def domain_auc(reference: np.ndarray, window: np.ndarray, *, folds: int = 5, seed: int = 0) -> float:
    """Return the cross-validated ROC-AUC of a logistic regression telling window rows from reference rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if min(len(reference), len(window)) < folds:
        raise ValueError(
            f"need at least {folds} reference and window texts, got {len(reference)} and {len(window)}"
        )
    x = np.vstack([reference, window])
    y = np.r_[np.zeros(len(reference)), np.ones(len(window))]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    p = cross_val_predict(model, x, y, cv=split, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))
