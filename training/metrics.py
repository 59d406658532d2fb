"""Classification and calibration metrics, and temperature scaling.

scikit-learn computes the standard metrics; only the expected calibration error (which it does
not provide) is written here.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from inference.predictor import sigmoid

#: Probabilities are clipped this far from 0 and 1 before the log loss, so one confident mistake
#: costs at most -log(1e-7) ≈ 16 instead of infinity.
PROBABILITY_EPS = 1e-7


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Return the mean binary cross-entropy (probabilities clipped away from 0 and 1)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), PROBABILITY_EPS, 1 - PROBABILITY_EPS)
    return float(skm.log_loss(np.asarray(labels, dtype=np.int64), p, labels=[0, 1]))


def _bins(probs: np.ndarray, lower: float, bins: int) -> np.ndarray:
    """Return each probability's equal-width bin over [lower, 1] (a value on an edge goes below)."""
    edges = np.linspace(lower, 1.0, bins + 1)
    return np.searchsorted(edges[1:-1], probs, side="left")


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Return the ECE of positive-class probabilities (Guo et al. 2017; scikit-learn has none).

    Bins the confidence of the predicted class over [0.5, 1] and averages |accuracy - confidence|
    weighted by the share of rows in each bin.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    confidence = np.where(probs >= 0.5, probs, 1 - probs)
    correct = ((probs >= 0.5) == (labels == 1)).astype(np.float64)
    which = _bins(confidence, 0.5, bins)
    ece = 0.0
    for b in np.unique(which):
        in_bin = which == b
        ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def reliability_table(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> list[dict]:
    """Return per-bin mean predicted probability, observed positive rate and count (for plots)."""
    probs = np.asarray(probs, dtype=np.float64)
    observed, predicted = calibration_curve(np.asarray(labels).astype(int), probs, n_bins=bins)
    counts = np.bincount(_bins(probs, 0.0, bins), minlength=bins)
    return [
        {"predicted": float(p), "observed": float(o), "count": int(c)}
        for p, o, c in zip(predicted, observed, counts[counts > 0])
    ]


def fit_temperature(labels: np.ndarray, logits: np.ndarray) -> float:
    """Return the temperature T minimising the log loss of sigmoid(logit / T) (Guo et al. 2017)."""
    logits = np.asarray(logits, dtype=np.float64)
    result = minimize_scalar(
        lambda log_t: log_loss(labels, sigmoid(logits / np.exp(log_t))), bounds=(-3.0, 3.0), method="bounded"
    )
    return float(np.exp(result.x))


def cross_fitted_probabilities(
    labels: np.ndarray, logits: np.ndarray, folds: int = 2, seed: int = 0
) -> tuple[float, np.ndarray, list[float]]:
    """Return the temperature fitted on all rows, and each row's probability under one fitted without it.

    The first is the one to serve; the second gives honest (out-of-sample) calibration metrics,
    since no row is judged by a temperature it helped fit. Also returns the per-fold temperatures.
    """
    labels = np.asarray(labels, dtype=np.float64)
    logits = np.asarray(logits, dtype=np.float64)
    fold_of = np.empty(len(labels), dtype=np.int64)
    fold_of[np.random.default_rng(seed).permutation(len(labels))] = np.arange(len(labels)) % folds
    probs = np.empty(len(labels))
    temperatures = []
    for f in range(folds):
        held_out = fold_of == f
        temperatures.append(fit_temperature(labels[~held_out], logits[~held_out]))
        probs[held_out] = sigmoid(logits[held_out] / temperatures[-1])
    return fit_temperature(labels, logits), probs, temperatures


def classification_metrics(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> dict:
    """Return accuracy, precision, recall, F1, ROC-AUC, log loss, ECE and the confusion matrix."""
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    pred = (probs >= 0.5).astype(int)
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(labels, pred, labels=[0, 1]).ravel())
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        labels, pred, average="binary", zero_division=0.0
    )
    return {
        "n": int(len(labels)),
        "accuracy": float(skm.accuracy_score(labels, pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": float(skm.roc_auc_score(labels, probs)) if len(set(labels)) == 2 else None,
        "log_loss": log_loss(labels, probs),
        "ece": expected_calibration_error(labels, probs, bins),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def evaluate_logits(
    labels: np.ndarray,
    logits: np.ndarray,
    temperature: float,
    bins: int = 15,
    calibrated_probs: np.ndarray | None = None,
) -> dict:
    """Return metrics before and after temperature scaling, plus the ROC curve and reliability bins.

    ``calibrated_probs`` (e.g. cross-fitted ones) replaces ``sigmoid(logits / temperature)`` as the
    "after" probabilities, so calibration is judged out of sample.
    """
    logits = np.asarray(logits, dtype=np.float64)
    raw = sigmoid(logits)
    scaled = (
        sigmoid(logits / temperature) if calibrated_probs is None else np.asarray(calibrated_probs, float)
    )
    both_classes = len(set(np.asarray(labels).tolist())) == 2
    fpr, tpr, _ = skm.roc_curve(labels, scaled) if both_classes else ([], [], [])
    return {
        "temperature": temperature,
        "uncalibrated": classification_metrics(labels, raw, bins),
        "calibrated": classification_metrics(labels, scaled, bins),
        "curves": {
            "roc": {"fpr": np.asarray(fpr).tolist(), "tpr": np.asarray(tpr).tolist()},
            "reliability_uncalibrated": reliability_table(labels, raw, bins),
            "reliability_calibrated": reliability_table(labels, scaled, bins),
        },
    }
