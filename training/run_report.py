"""Write a retrain run's report: report.json, a Markdown summary a person can read, and a PNG comparison."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from training import shadow

log = logging.getLogger(__name__)

METRICS = ("accuracy", "f1", "roc_auc", "ece", "log_loss")


def fmt(value, digits: int = 4) -> str:
    """Format a metric for people: fixed decimals, ``n/a`` when undefined (e.g. ROC-AUC on one class)."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def plot_comparison(models: dict[str, dict], path: Path) -> None:
    """Draw the gold-set metrics of candidate and production side by side (undefined ones as gaps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(1, len(models))
    for i, (label, m) in enumerate(models.items()):
        values = [m[k] if m.get(k) is not None else np.nan for k in METRICS]
        ax.bar(np.arange(len(METRICS)) + i * width, values, width, label=f"{label} v{m['version']}")
    ax.set_xticks(np.arange(len(METRICS)) + width * (len(models) - 1) / 2, METRICS)
    ax.set_title("gold set: candidate vs production")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def data_lines(data: dict) -> list[str]:
    """Return the report's Data section: training set make-up, quarantines, relabels, gold rows left out."""
    lines: list[str] = []
    pool = data["pool"]
    lines += [
        "",
        "## Data",
        "",
        f"- **training set**: {data['rows']} rows = {data['base_rows']} base (`{data['base_file']}`) + "
        f"{data['pool_rows']} from {len(pool['pooled_runs_used'])} pooled runs + {data['new_rows']} new",
        f"- **new files**: {len(data['new_files'])} ({data['new_rows_read']} rows read: "
        f"{data['new_texts']} new "
        f"texts, {data['duplicates']} duplicates, {data['relabelled']} relabelled)",
        f"- **gold overlap excluded from training**: {json.dumps(data['gold_excluded'])}",
        "- **quarantined runs** (not trained on; `python -m training.pipeline admit --run ID`): "
        + (", ".join(f"{q['run_id']} ({q['rows']} rows)" for q in pool["quarantined_runs"]) or "none"),
    ]
    for bad in data["bad_files"]:
        lines.append(f"- **quarantined file** `{bad['file']}` → `{bad['quarantined_to']}`: {bad['reason']}")
    if data["relabels"]:
        lines += [
            "",
            "### Relabelled texts (newest label wins)",
            "",
            "| text | old | new | from | to |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {r['text'][:60]} | {r['old_label']} | {r['new_label']} | {r['old_origin']} | {r['origin']} |"
            for r in data["relabels"]
        ]
    if data["gold_excluded_rows"]:
        lines += ["", "### Gold-set texts left out of training", ""]
        lines += [f"- {r['origin']}: {r['text'][:60]}" for r in data["gold_excluded_rows"]]
    return lines


def behaviour_lines(checks: list[dict]) -> list[str]:
    """Return the behaviour suite's pass rates per capability, candidate beside production (if scored)."""
    numbers = next((c["numbers"] for c in checks if c["name"] == "behaviour"), {})
    if "candidate" not in numbers:
        return []
    roles = [r for r in ("production", "candidate") if r in numbers]
    lines = ["", f"## Behaviour suite ({numbers.get('suite', 'not compared')})", ""]
    lines += ["| capability | " + " | ".join(roles) + " |", "| --- |" + " --- |" * len(roles)]
    for capability in numbers["candidate"]:
        rates = [numbers[r].get(capability) for r in roles]
        lines.append(
            f"| {capability} | " + " | ".join(fmt(None if v is None else 100 * v, 1) for v in rates) + " |"
        )
    return lines


def markdown(report: dict) -> str:
    """Return the run report as Markdown: decision, checks, data, gold-set lineage, metrics."""
    gold, data = report["gold"], report["data"]
    models = {k: gold["metrics"][k] for k in ("production", "candidate") if k in gold["metrics"]}
    decision = "promoted" if report["promoted"] else "not promoted"
    lines = [
        f"# Retrain run {report['run_id']}",
        "",
        f"- **decision**: {decision} — {report['reason']}",
        f"- **candidate**: version {report['candidate_version']} (parent {report['parent_version']})",
        f"- **gold set**: `{gold['file']}` ({gold['rows']} rows) sha256 `{gold['sha256'][:16]}…`",
    ]
    for role, o in gold["overlap"].items():
        seen = (
            "unknown lineage"
            if o["gold_rows_trained_on"] is None
            else f"trained on {o['gold_rows_trained_on']} of {o['gold_rows']} gold reviews ({o['method']})"
        )
        lines.append(f"- **{role} v{o['version']}**: {seen}")
    floor = report.get("floor")
    lines.append(
        f"- **floor**: {fmt(floor['floor'])} = best production v{floor['reference_version']} "
        f"{fmt(floor['reference_accuracy'])} − {floor['margin']}"
        if floor
        else "- **floor**: none yet (no fairly measured production score on this gold set)"
    )
    lines.append(f"- **timings**: {json.dumps({k: round(v, 1) for k, v in report['timings'].items()})}")
    lines += ["", "## Gate", "", "| check | passed | detail |", "| --- | --- | --- |"]
    lines += [
        f"| {c['name']} | {'yes' if c['passed'] else '**no**'} | {c['detail']} |"
        for c in report["gate"]["checks"]
    ]
    lines += behaviour_lines(report["gate"]["checks"])
    lines += data_lines(data)
    lines += ["", *shadow.markdown(report.get("shadow"))]
    if report.get("drift"):
        drift = report["drift"]
        lines += [
            f"- **drift check** (`--when-drift`): {'; '.join(drift['reasons'])} (`{drift['report_dir']}`)"
        ]
    lines += [
        "",
        "## Gold-set metrics",
        "",
        "| metric | " + " | ".join(f"{k} v{m['version']}" for k, m in models.items()) + " |",
        "| --- |" + " --- |" * len(models),
    ]
    lines += [f"| {key} | " + " | ".join(fmt(m.get(key)) for m in models.values()) + " |" for key in METRICS]
    lines += ["", "![comparison](comparison.png)", ""]
    return "\n".join(lines)


def write_run_report(out_dir: Path, report: dict) -> None:
    """Write report.json, report.md and comparison.png into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    models = {
        k: report["gold"]["metrics"][k] for k in ("production", "candidate") if k in report["gold"]["metrics"]
    }
    plot_comparison(models, out_dir / "comparison.png")
    (out_dir / "report.md").write_text(markdown(report), encoding="utf-8")
    log.info("run report written to %s", out_dir / "report.md")
