"""Check a window of traffic against the production version's reference and write a report.

``python -m training.pipeline drift`` and ``retrain --when-drift`` call :func:`check_drift`:

1. **Window**: the newest texts of the service's traffic sample (a folder of published JSONL
   files, ``SENTIMENT_SAMPLE_DIR``), or of any text file (``.txt`` one text per line, or
   CSV/Parquet/JSONL with a text column).
2. **Profile** it with the production version (the service's Predictor: same tokenizer,
   truncation and calibration): tokens read, unknown tokens, score per text.
3. **Reference**: the version's ``drift_reference.json`` (written at training time from its
   validation split); a version trained before those existed gets one computed now from the
   reference texts (``--reference``, by default the gold set), and the report says so.
4. **Compare** (``training.drift``): PSI of scores and lengths, OOV-rate change, and the
   domain-classifier AUC on mean word2vec vectors (reference texts vs window texts), then write
   ``report.json``, ``report.md`` and ``drift.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from embeddings.tokenizer import tokenize
from inference.predictor import Predictor
from registry.artifact import DRIFT_REFERENCE_FILE, WORD2VEC_FILE
from registry.store import Registry, RegistryError
from training import drift
from training.data import DataError, load_unlabelled

log = logging.getLogger(__name__)

#: Most texts per side the domain classifier is trained on (enough for a stable AUC, quick).
AUC_MAX_TEXTS = 1000


def read_window(
    path: Path, limit: int, *, since_s: float | None = None, text_column: str = "text"
) -> list[str]:
    """Return the newest ``limit`` texts of a sample folder or a text file (oldest first)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        return read_texts(path, text_column)[-limit:]
    cutoff = None if since_s is None else time.time() - since_s
    newest_first: list[str] = []
    files = sorted((p for p in path.glob("*.jsonl") if not p.name.startswith(".")), reverse=True)
    for file in files:
        records = []
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            try:
                record = json.loads(line)
            except ValueError:
                log.warning("%s line %d: not JSON, skipped", file, number)
                continue
            if isinstance(record.get(text_column), str) and record[text_column].strip():
                if cutoff is None or float(record.get("time", 0)) >= cutoff:
                    records.append(record[text_column])
        newest_first += reversed(records)
        if len(newest_first) >= limit:
            break
    return newest_first[:limit][::-1]


def read_texts(path: Path, text_column: str = "text") -> list[str]:
    """Return the texts of a file: ``.txt`` one per line, else a CSV/Parquet/JSONL text column."""
    path = Path(path)
    if path.name.lower().endswith(".txt"):
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return load_unlabelled(path, text_column=text_column)


def encode_and_score(predictor: Predictor, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return per-text token counts, OOV counts and calibrated scores, as the service computes them."""
    ids = predictor.encode(texts)
    return (*drift.id_stats(ids), predictor.score_ids(ids))


class DriftChecker:
    """One version's reference, model and word vectors, loaded once, to check any number of windows."""

    def __init__(
        self,
        registry: Registry,
        name: str,
        version: int | None = None,
        *,
        reference_path: Path | None = None,
        thresholds: drift.Thresholds = drift.Thresholds(),
        seed: int = 0,
    ) -> None:
        version = registry.production_version(name) if version is None else version
        if version is None:
            raise RegistryError(f"model {name!r} has no production version to check drift against")
        self.name, self.version, self.thresholds, self.seed = name, version, thresholds, seed
        folder = registry.version_dir(name, version)
        self.predictor = Predictor.load(folder, intra_op_threads=os.cpu_count() or 1)
        self.reference_path = reference_path
        self.reference_texts = None
        if reference_path is not None and Path(reference_path).exists():
            self.reference_texts = read_texts(reference_path)
        self.reference, self.reference_source = self._load_reference(folder / DRIFT_REFERENCE_FILE)
        self.vectors = None
        w2v_path = folder / WORD2VEC_FILE
        if not self.reference_texts:
            self.auc_note = "skipped: no reference texts (pass --reference FILE)"
        elif not w2v_path.is_file():
            self.auc_note = f"skipped: version {version} has no {WORD2VEC_FILE}"
        else:
            from gensim.models import Word2Vec

            self.vectors = Word2Vec.load(str(w2v_path)).wv
            self.auc_note = ""

    def _load_reference(self, stored: Path) -> tuple[dict, str]:
        """Return the version's reference profile and where it came from."""
        if stored.is_file():
            return json.loads(
                stored.read_text(encoding="utf-8")
            ), f"{DRIFT_REFERENCE_FILE} of version {self.version}"
        if not self.reference_texts:
            raise DataError(
                f"version {self.version} has no {DRIFT_REFERENCE_FILE} "
                "(trained before drift references existed) "
                "and no reference texts were found: pass --reference FILE (e.g. the gold set)"
            )
        log.warning(
            "version %d has no %s: computing the reference from %s",
            self.version,
            DRIFT_REFERENCE_FILE,
            self.reference_path,
        )
        return (
            drift.profile(*encode_and_score(self.predictor, self.reference_texts)),
            f"computed now from {self.reference_path} (version {self.version} has no {DRIFT_REFERENCE_FILE})",
        )

    def domain_auc(self, window: Sequence[str]) -> tuple[float | None, str]:
        """Return the domain-classifier AUC of reference vs ``window`` texts (None if impossible), a note."""
        if self.vectors is None or self.reference_texts is None:
            return None, self.auc_note
        rng = np.random.default_rng(self.seed)
        n = min(len(self.reference_texts), len(window), AUC_MAX_TEXTS)
        pick = [
            [texts[i] for i in rng.choice(len(texts), n, replace=False)]
            for texts in (self.reference_texts, window)
        ]
        ref_x, win_x = (drift.mean_vectors([tokenize(t) for t in texts], self.vectors) for texts in pick)
        return drift.domain_auc(ref_x, win_x, seed=self.seed), f"{n} reference vs {n} window texts, 5-fold"

    def check(self, window: Sequence[str], source: str) -> dict:
        """Compare window texts with the reference; return the result (no report written)."""
        _require_enough(window, self.thresholds, source)
        auc, auc_note = self.domain_auc(window)
        result = drift.compare(
            self.reference, *encode_and_score(self.predictor, window), auc=auc, thresholds=self.thresholds
        )
        result.update(
            {
                "model": self.name,
                "version": self.version,
                "checked_at": time.time(),
                "window": {"source": source, "texts": len(window)},
                "reference": {
                    "source": self.reference_source,
                    "texts": self.reference["texts"],
                    "texts_file": None if self.reference_path is None else str(self.reference_path),
                },
                "domain_auc_note": auc_note,
            }
        )
        return result


def _require_enough(window: Sequence[str], thresholds: drift.Thresholds, source: str) -> None:
    """Refuse a verdict on a window too small to support one."""
    if len(window) < thresholds.min_texts:
        raise DataError(
            f"{source}: the window holds {len(window)} texts; a verdict needs at least "
            f"{thresholds.min_texts} (sample more traffic, or lower --min-texts)"
        )


def check_drift(
    registry: Registry,
    name: str,
    window_path: Path,
    *,
    reference_path: Path | None = None,
    window_size: int = 1000,
    since_hours: float | None = None,
    thresholds: drift.Thresholds = drift.Thresholds(),
    out_dir: Path | None = None,
    version: int | None = None,
    seed: int = 0,
) -> dict:
    """Compare a traffic window with a version's reference (production by default); write the report."""
    window = read_window(
        window_path, window_size, since_s=None if since_hours is None else since_hours * 3600
    )
    _require_enough(window, thresholds, str(window_path))  # before loading anything
    checker = DriftChecker(
        registry, name, version, reference_path=reference_path, thresholds=thresholds, seed=seed
    )
    result = checker.check(window, str(window_path))
    result["window"]["since_hours"] = since_hours
    out_dir = (
        out_dir
        or registry.model_home(name) / "drift" / f"{time.strftime('%Y%m%d-%H%M%S')}-v{checker.version}"
    )
    write_report(Path(out_dir), result)
    result["report_dir"] = str(out_dir)
    log.info(
        "drift check of v%d on %d texts: %s",
        checker.version,
        len(window),
        "DRIFT: " + "; ".join(result["reasons"]) if result["drift"] else "no drift",
    )
    return result


def write_report(out_dir: Path, result: dict) -> None:
    """Write report.json, report.md and drift.png (score and length bins, OOV rates, AUC)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(result, indent=2, default=str))
    checks = result["checks"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, title in ((axes[0], "score_psi", "score"), (axes[1], "length_psi", "tokens read")):
        c = checks[key]
        x = np.arange(len(c["reference_fractions"]))
        ax.bar(x - 0.2, c["reference_fractions"], 0.4, label=f"reference (v{result['version']})")
        ax.bar(x + 0.2, c["window_fractions"], 0.4, label="window")
        ax.set_xticks(
            x,
            [f"≤{e:.0f}" if key == "length_psi" else f"≤{e:.2f}" for e in c["edges"]] + ["more"],
            rotation=45,
            fontsize=7,
        )
        ax.set_title(f"{title}: PSI {c['value']:.3f} (limit {c['threshold']:.2f})")
        ax.set_ylabel("share of texts")
        ax.legend(fontsize=8)
    oov = checks["oov_rate"]
    bars = {"OOV ref": oov["reference"], "OOV window": oov["window"]}
    if "domain_auc" in checks:
        bars["domain AUC"] = checks["domain_auc"]["value"]
    axes[2].bar(list(bars), list(bars.values()), color=["C0", "C1", "C2"][: len(bars)])
    if "domain_auc" in checks:
        axes[2].axhline(checks["domain_auc"]["threshold"], color="C2", ls="--", lw=1)
    axes[2].set_title("OOV share and domain-classifier AUC")
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"drift check: {'DRIFT' if result['drift'] else 'no drift'}", fontsize=11)
    fig.tight_layout()
    fig.savefig(out_dir / "drift.png", dpi=100)
    plt.close(fig)
    lines = [
        f"# Drift check of {result['model']} v{result['version']}",
        "",
        f"- **verdict**: {'DRIFT — ' + '; '.join(result['reasons']) if result['drift'] else 'no drift'}",
        f"- **window**: {result['window']['texts']} texts from `{result['window']['source']}`",
        f"- **reference**: {result['reference']['texts']} texts, {result['reference']['source']}",
        f"- **domain classifier**: {result['domain_auc_note']}",
        "",
        "| check | value | threshold | drift |",
        "| --- | --- | --- | --- |",
    ]
    for key, c in checks.items():
        lines.append(f"| {key} | {c['value']:.4f} | {c['threshold']:.4f} | {'yes' if c['drift'] else 'no'} |")
    lines += ["", "![drift](drift.png)", ""]
    (out_dir / "report.md").write_text("\n".join(lines))


# -- command line (python -m training.pipeline drift, retrain --when-drift) -----------------------
def add_traffic_arguments(parser: argparse.ArgumentParser, gold_default: Path) -> None:
    """Add the options naming the traffic window and the drift thresholds (drift, retrain)."""
    parser.add_argument(
        "--traffic",
        type=Path,
        default=os.environ.get("SENTIMENT_SAMPLE_DIR") or None,
        help="sampled traffic: the service's sample folder, or any text file (.txt one text per line, or "
        "CSV/Parquet/JSONL with a 'text' column) (default: $SENTIMENT_SAMPLE_DIR)",
    )
    parser.add_argument("--window-size", type=int, default=1000, help="newest texts of --traffic to use")
    parser.add_argument(
        "--reference",
        type=Path,
        default=gold_default,
        help="reference texts of the domain classifier, and of the whole check for versions without "
        f"{DRIFT_REFERENCE_FILE} (default: $SENTIMENT_GOLD_FILE)",
    )
    d = drift.Thresholds()
    parser.add_argument("--psi", type=float, default=d.psi, help="drift if a PSI exceeds this")
    parser.add_argument(
        "--oov-change", type=float, default=d.oov_change, help="drift if the OOV rate moves by more than this"
    )
    parser.add_argument(
        "--auc", type=float, default=d.auc, help="drift if the domain-classifier AUC exceeds this"
    )
    parser.add_argument(
        "--min-texts", type=int, default=d.min_texts, help="refuse a verdict on fewer window texts"
    )


def check_from_args(
    args: argparse.Namespace,
    registry: Registry,
    *,
    version: int | None = None,
    out: Path | None = None,
    since_hours: float | None = None,
) -> dict:
    """Run the drift check the command line describes."""
    if args.traffic is None:
        raise DataError(
            "no traffic to check: pass --traffic (the service's SENTIMENT_SAMPLE_DIR, or a text file)"
        )
    thresholds = drift.Thresholds(
        psi=args.psi, oov_change=args.oov_change, auc=args.auc, min_texts=args.min_texts
    )
    return check_drift(
        registry,
        args.model_name,
        args.traffic,
        reference_path=args.reference,
        window_size=args.window_size,
        since_hours=since_hours,
        out_dir=out,
        version=version,
        thresholds=thresholds,
    )


def summary(result: dict) -> dict:
    """Return the part of a drift check worth printing and keeping in a run report."""
    return {
        "drift": result["drift"],
        "reasons": result["reasons"],
        "version": result["version"],
        "window_texts": result["window_texts"],
        "report_dir": result["report_dir"],
        **{k: round(c["value"], 4) for k, c in result["checks"].items()},
    }
