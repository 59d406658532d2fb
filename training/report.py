"""Write an evaluation report: metrics JSON, PNG plots and a Markdown summary a person can read."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)


def plot_learning_curves(history: list[dict], path: Path) -> None:
    """Plot per-epoch train/validation loss and accuracy."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, [h[key] for h in history], "o-", label="train")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_roc(curves: dict, auc: float | None, path: Path) -> None:
    """Plot the ROC curve."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(curves["roc"]["fpr"], curves["roc"]["tpr"], label=f"AUC = {auc:.4f}" if auc else "ROC")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(curves: dict, metrics: dict, path: Path) -> None:
    """Plot the reliability diagram before and after temperature scaling."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    for key, name in (("uncalibrated", "before"), ("calibrated", "after")):
        rows = curves[f"reliability_{key}"]
        ax.plot(
            [r["predicted"] for r in rows],
            [r["observed"] for r in rows],
            "o-",
            label=f"{name} scaling (ECE {metrics[key]['ece'] * 100:.2f}%)",
        )
    ax.set_xlabel("predicted probability positive")
    ax.set_ylabel("observed fraction positive")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_report(
    out_dir: Path,
    title: str,
    evaluation: dict,
    *,
    history: list[dict] | None = None,
    context: dict | None = None,
    sections: list[str] | None = None,
    extra: dict | None = None,
) -> Path:
    """Write metrics.json, PNG plots and report.md into ``out_dir``; return the Markdown path.

    ``sections`` are Markdown blocks (short texts, behaviour suite) placed before the plots;
    ``extra`` joins the evaluation in metrics.json.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in evaluation.items() if k != "curves"}
    doc = {**summary, **(extra or {}), "context": context or {}}
    (out_dir / "metrics.json").write_text(json.dumps(doc, indent=2))
    plots = []
    if history:
        plot_learning_curves(history, out_dir / "learning_curves.png")
        plots.append(("Learning curves", "learning_curves.png"))
    if evaluation["curves"]["roc"]["fpr"]:
        plot_roc(evaluation["curves"], evaluation["calibrated"]["roc_auc"], out_dir / "roc.png")
        plots.append(("ROC curve", "roc.png"))
    plot_reliability(evaluation["curves"], evaluation, out_dir / "reliability.png")
    plots.append(("Reliability diagram", "reliability.png"))

    lines = [f"# {title}", ""]
    for key, value in (context or {}).items():
        lines.append(f"- **{key}**: {value}")
    lines += [
        "",
        "Temperature (fitted at training time on the calibration split): "
        f"**{evaluation['temperature']:.4f}**; "
        "the 'after scaling' column is out of sample",
        "",
        "| metric | before scaling | after scaling |",
        "| --- | --- | --- |",
    ]
    for metric in ("n", "accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "ece"):
        lines.append(
            f"| {metric} | {_fmt(evaluation['uncalibrated'][metric])} | "
            f"{_fmt(evaluation['calibrated'][metric])} |"
        )
    cm = evaluation["calibrated"]["confusion_matrix"]
    lines += [
        "",
        "Confusion matrix (rows: true, columns: predicted):",
        "",
        "| | predicted negative | predicted positive |",
        "| --- | --- | --- |",
        f"| **negative** | {cm['tn']} | {cm['fp']} |",
        f"| **positive** | {cm['fn']} | {cm['tp']} |",
        "",
    ]
    if history:
        lines += [
            "| epoch | phase | lr | loss | accuracy | val_loss | val_accuracy | seconds |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for h in history:
            lines.append(
                f"| {h['epoch']} | {h['phase']} | {h['lr']:.2e} | {h['loss']:.4f} | {h['accuracy']:.4f} | "
                f"{h['val_loss']:.4f} | {h['val_accuracy']:.4f} | {h['seconds']:.0f} |"
            )
        lines.append("")
    for section in sections or []:
        lines += [section.rstrip("\n"), ""]
    for caption, name in plots:
        lines += [f"## {caption}", "", f"![{caption}]({name})", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    log.info("report written to %s", path)
    return path


def quality_section(short_metrics: dict | None, ablation: dict, combination: dict) -> str:
    """Return the report's Markdown on short texts and on what each branch contributes."""
    lines = ["## Short texts and branches", ""]
    if short_metrics:
        lines += [
            f"Short-text validation (v{short_metrics['version']}): {short_metrics['sentences']} opinionated "
            f"sentences of 5-30 tokens from {short_metrics['reviews']} clearly rated held-out reviews "
            f"(training/short_texts.py): accuracy **{short_metrics['accuracy']:.4f}**, "
            f"ECE {short_metrics['ece']:.4f}.",
            "",
        ]
    else:
        lines += ["No short-text validation: the training data has no star ratings.", ""]
    lines += [
        "Accuracy of each branch alone and of the exported model, on the calibration split (no branch "
        "and no combination was fitted on it):",
        "",
        "| branch | calibration-split accuracy | short-text accuracy |",
        "| --- | --- | --- |",
    ]
    for branch, accuracy in ablation["calibration"].items():
        short = ablation["short_texts"].get(branch)
        lines.append(f"| {branch} | {accuracy:.4f} | {'' if short is None else f'{short:.4f}'} |")
    if combination:
        lines += [
            "",
            f"Combined = {combination['lstm_weight']:.3f} × LSTM + {combination['ngram_weight']:.3f} × "
            f"n-grams + {combination['bias']:.3f} (fitted on the epoch-selection split; 2-fold cross-fitted "
            f"accuracy there {combination['accuracy_crossfit']:.4f}).",
        ]
    return "\n".join(lines) + "\n"
