"""Classification and calibration metrics, and temperature scaling (numpy/scipy only)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_auc_score, roc_curve


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Return the mean binary cross-entropy (probabilities clipped away from 0 and 1)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Return the ECE of positive-class probabilities with equal-width bins over [0, 1]."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    # Confidence of the predicted class, as in Guo et al. 2017.
    confidence = np.where(probs >= 0.5, probs, 1 - probs)
    correct = ((probs >= 0.5) == (labels == 1)).astype(np.float64)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def reliability_table(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> list[dict]:
    """Return per-bin mean predicted probability, observed positive rate and count (for plots)."""
    probs = np.asarray(probs, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            rows.append({"predicted": float(probs[in_bin].mean()), "observed": float(labels[in_bin].mean()),
                         "count": int(in_bin.sum())})
    return rows


def fit_temperature(labels: np.ndarray, logits: np.ndarray) -> float:
    """Return the temperature T minimising the log loss of sigmoid(logit / T) (Guo et al. 2017)."""
    labels = np.asarray(labels, dtype=np.float64)
    logits = np.asarray(logits, dtype=np.float64)
    result = minimize_scalar(
        lambda log_t: log_loss(labels, _sigmoid(logits / np.exp(log_t))), bounds=(-3.0, 3.0), method="bounded"
    )
    return float(np.exp(result.x))


def classification_metrics(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> dict:
    """Return accuracy, precision, recall, F1, ROC-AUC, log loss, ECE and the confusion matrix."""
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    pred = (probs >= 0.5).astype(int)
    tp = int(((pred == 1) & (labels == 1)).sum())
    tn = int(((pred == 0) & (labels == 0)).sum())
    fp = int(((pred == 1) & (labels == 0)).sum())
    fn = int(((pred == 0) & (labels == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "n": int(len(labels)),
        "accuracy": (tp + tn) / len(labels),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "roc_auc": float(roc_auc_score(labels, probs)) if len(set(labels)) == 2 else None,
        "log_loss": log_loss(labels, probs),
        "ece": expected_calibration_error(labels, probs, bins),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def evaluate_logits(labels: np.ndarray, logits: np.ndarray, temperature: float, bins: int = 15) -> dict:
    """Return metrics before and after temperature scaling, plus the ROC curve and reliability bins."""
    raw = _sigmoid(np.asarray(logits, dtype=np.float64))
    scaled = _sigmoid(np.asarray(logits, dtype=np.float64) / temperature)
    fpr, tpr, _ = roc_curve(labels, scaled) if len(set(np.asarray(labels).tolist())) == 2 else ([], [], [])
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
