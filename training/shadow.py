"""Shadow evaluation: before the gate decides, the candidate scores what production really serves.

The gold set says whether the candidate is better on the data the gate was built for; the shadow
evaluation says what would change for today's users:

- **agreement**: the share of sampled-traffic texts (``SENTIMENT_SAMPLE_DIR``) on which candidate
  and production give the same label, and the mean absolute difference of their scores;
- **score shift**: PSI of the candidate's scores against production's on those texts, in
  production's decile bins;
- **feedback accuracy**: both models' accuracy on the labels clients sent with ``/v1/feedback``.
  The candidate must not have trained on them, so a run holds out a fixed share of its *new*
  feedback rows (chosen by a hash of the text, reproducible); held-out rows still join the
  ingested pool, so the next candidate trains on them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from inference.predictor import Predictor
from registry.store import Registry
from training import drift
from training.data import DataError, LabelledData
from training.gate import Check, GateInputs, Policy

log = logging.getLogger(__name__)

#: Drop files written by the service's feedback endpoint start with this (service/feedback.py).
FEEDBACK_PREFIX = "feedback-"


@dataclass(frozen=True)
class ShadowOptions:
    """What a retrain run's shadow evaluation reads, and whether it may stop a promotion."""

    traffic: Path | None = None  # sampled traffic folder (the service's SENTIMENT_SAMPLE_DIR) or a text file
    traffic_size: int = 1000  # newest sampled texts scored by both versions
    holdout: float = 0.2  # share of new feedback rows kept out of training to measure accuracy on
    max_disagreement: float | None = None  # refuse a candidate changing more labels of the traffic than this


def run(
    registry: Registry,
    name: str,
    candidate: int,
    production: int | None,
    options: ShadowOptions,
    feedback: LabelledData | None,
) -> dict:
    """Load both versions and the traffic window, and compare them (see :func:`compare`)."""
    from training.drift_check import read_window

    traffic = None
    if options.traffic is not None:
        try:
            traffic = read_window(options.traffic, options.traffic_size)
        except DataError as exc:
            log.warning("shadow evaluation without traffic: %s", exc)
    threads = os.cpu_count() or 1
    load = lambda v: Predictor.load(registry.version_dir(name, v), intra_op_threads=threads)  # noqa: E731
    result = compare(load(candidate), None if production is None else load(production), traffic, feedback)
    result["traffic_source"] = None if options.traffic is None else str(options.traffic)
    return result


def held_out(text: str, fraction: float) -> bool:
    """Tell whether a text belongs to the evaluation share (stable across runs and processes)."""
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def split_feedback(rows: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, LabelledData | None]:
    """Split a run's new rows into (rows to train on, held-out feedback rows).

    ``rows`` has the drop batch's columns (``text``, ``label``, ``file``, ...); only rows of
    feedback files (``feedback-*``) are split.
    """
    if fraction <= 0 or rows.empty:
        return rows, None
    feedback = rows["file"].astype(str).map(_is_feedback).to_numpy(dtype=bool)
    chosen = rows["text"].map(lambda t: held_out(t, fraction)).to_numpy(dtype=bool)
    mask = feedback & chosen
    if not mask.any():
        return rows, None
    kept = rows.loc[mask]
    labels = kept["label"].to_numpy(dtype=np.int8)
    return rows.loc[~mask].reset_index(drop=True), LabelledData(
        kept["text"].tolist(), labels, "feedback hold-out"
    )


def _is_feedback(path: str) -> bool:
    return path.replace("\\", "/").rsplit("/", 1)[-1].startswith(FEEDBACK_PREFIX)


def gate_check(
    registry: Registry, name: str, options: ShadowOptions, feedback: LabelledData | None
) -> Callable[[GateInputs, Policy], Check]:
    """Return the gate check ``shadow``: the shadow evaluation, passing unless the disagreement cap is hit."""

    def shadow(inputs: GateInputs, policy: Policy) -> Check:
        result = run(registry, name, inputs.candidate_version, inputs.production_version, options, feedback)
        ok, why = verdict(result, options.max_disagreement)
        return Check("shadow", ok, why or summary(result), result)

    return shadow


def summary(result: dict) -> str:
    """Return one line saying what the shadow evaluation found (the gate's detail)."""
    traffic, feedback = result["traffic"], result["feedback"]
    parts = [
        f"traffic skipped ({traffic['skipped']})"
        if "skipped" in traffic
        else f"{traffic['agreement']:.1%} label agreement on {traffic['texts']} sampled texts "
        f"(score PSI {traffic['score_psi']:.3f})"
    ]
    if "skipped" not in feedback:
        production = f" vs production {feedback['production']:.1%}" if "production" in feedback else ""
        parts.append(
            f"feedback accuracy {feedback['candidate']:.1%}{production} on {feedback['rows']} held-out rows"
        )
    return "; ".join(parts)


def compare(
    candidate: Predictor,
    production: Predictor | None,
    traffic: Sequence[str] | None,
    feedback: LabelledData | None,
) -> dict:
    """Score the traffic sample and the held-out feedback with both versions; return the comparison."""
    result: dict = {
        "candidate_version": candidate.version,
        "production_version": None if production is None else production.version,
    }
    if production is not None and traffic:
        cand = candidate.score_texts(traffic)
        prod = production.score_texts(traffic)
        edges = drift.decile_edges(prod)
        result["traffic"] = {
            "texts": len(traffic),
            "agreement": float(np.mean((cand >= 0.5) == (prod >= 0.5))),
            "mean_abs_score_diff": float(np.mean(np.abs(cand - prod))),
            "score_psi": drift.psi(drift.bin_fractions(prod, edges), drift.bin_fractions(cand, edges)),
            "positive_share": {
                "production": float(np.mean(prod >= 0.5)),
                "candidate": float(np.mean(cand >= 0.5)),
            },
        }
    else:
        result["traffic"] = {
            "skipped": "no production version"
            if production is None
            else "no sampled traffic (pass --traffic, or set SENTIMENT_SAMPLE_DIR)"
        }
    if feedback is not None and len(feedback):
        accuracy = {"rows": len(feedback), "candidate": _accuracy(candidate, feedback)}
        if production is not None:
            accuracy["production"] = _accuracy(production, feedback)
        result["feedback"] = accuracy
    else:
        result["feedback"] = {"skipped": "no held-out feedback rows in this run"}
    return result


def _accuracy(predictor: Predictor, data: LabelledData) -> float:
    return float(np.mean((predictor.score_texts(data.texts) >= 0.5) == (data.labels == 1)))


def verdict(result: dict, max_disagreement: float | None) -> tuple[bool, str]:
    """Return (may promote?, reason) under the optional cap on disagreement with production."""
    traffic = result.get("traffic", {})
    if max_disagreement is None or "agreement" not in traffic:
        return True, ""
    disagreement = 1.0 - traffic["agreement"]
    if disagreement > max_disagreement:
        return False, (
            f"shadow: the candidate changes the label of {disagreement:.1%} of sampled traffic "
            f"(limit {max_disagreement:.1%})"
        )
    return True, f"shadow: {disagreement:.1%} of sampled traffic changes label (limit {max_disagreement:.1%})"


def markdown(result: dict | None) -> list[str]:
    """Return the run report's shadow section."""
    if not result:
        return []
    lines = ["## Shadow evaluation", ""]
    traffic, feedback = result["traffic"], result["feedback"]
    if "skipped" in traffic:
        lines.append(f"- **sampled traffic**: skipped ({traffic['skipped']})")
    else:
        lines += [
            f"- **sampled traffic**: {traffic['texts']} texts; label agreement with production "
            f"**{traffic['agreement']:.1%}**, mean |score difference| {traffic['mean_abs_score_diff']:.3f}, "
            f"score PSI {traffic['score_psi']:.3f}; "
            f"positive share {traffic['positive_share']['production']:.1%}"
            f" → {traffic['positive_share']['candidate']:.1%}"
        ]
    if "skipped" in feedback:
        lines.append(f"- **feedback labels**: skipped ({feedback['skipped']})")
    else:
        prod = f", production {feedback['production']:.1%}" if "production" in feedback else ""
        lines.append(
            f"- **feedback labels** ({feedback['rows']} held-out rows, never trained on): accuracy "
            f"candidate **{feedback['candidate']:.1%}**{prod}"
        )
    return lines + [""]
