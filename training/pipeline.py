"""Retraining pipeline: new labelled data in, a better model out, promoted only when it earns it.

One ``retrain`` run, unattended-safe:

1. **Ingest** new CSV/Parquet/JSONL files from a drop folder (same validation as training),
   de-duplicate them against every text already used, and remember which files were consumed
   (by sha256) so a rerun never consumes them twice.
2. **Train** a candidate from the production version's configuration on the base data plus all
   ingested data; word2vec is rebuilt, or continued from production's with ``--continue-word2vec``.
3. **Evaluate** candidate and production on the same frozen gold set (refusing to run if the gold
   set overlaps the training data).
4. **Promote** only if the candidate is not worse than production by more than the tolerances on
   accuracy and ECE; otherwise keep it as a non-production version and say why.
5. **Report** (JSON + Markdown + PNG) with lineage, then prune old versions.

The whole run holds the model's registry lock; the consumed-files record and the promotion are
its last, atomic steps, so a run killed at any point leaves the registry valid, production
unchanged and the drop files unconsumed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from embeddings.tokenizer import normalize
from registry.artifact import REPORT_DIR, WORD2VEC_FILE
from registry.store import Registry, RegistryError, write_json_atomic
from training.config import TrainConfig, preset
from training.data import DataError, LabelledData, default_data_dir, fingerprint, load_labelled
from training.behaviour import regression, run_on_version
from training.evaluate import evaluate_labelled

log = logging.getLogger(__name__)

DROP_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".jsonl", ".jsonl.gz")


@dataclass
class Policy:
    """When a candidate may replace production."""

    accuracy_tolerance: float = 0.005  # candidate may be at most this much less accurate on gold
    ece_tolerance: float = 0.01  # and its ECE at most this much higher
    behaviour_tolerance: float = 0.05  # and its behaviour-suite pass rate this much lower (overall and per capability)


def text_key(text: str) -> str:
    """Return the identity of a review for de-duplication (normalised text, hashed)."""
    return hashlib.sha1(" ".join(normalize(text).split()).encode("utf-8")).hexdigest()


def decide(candidate: dict, production: dict | None, policy: Policy) -> tuple[bool, str]:
    """Return (promote?, reason) from gold-set metrics of candidate and production."""
    if not all(np.isfinite([candidate["accuracy"], candidate["ece"]])):
        return False, f"candidate metrics are not finite: {candidate}"
    if production is None:
        return True, "no production version yet"
    acc_drop = production["accuracy"] - candidate["accuracy"]
    ece_rise = candidate["ece"] - production["ece"]
    problems = []
    if not acc_drop <= policy.accuracy_tolerance:
        problems.append(f"accuracy {candidate['accuracy']:.4f} is {acc_drop:.4f} below production's "
                        f"{production['accuracy']:.4f} (tolerance {policy.accuracy_tolerance})")
    if not ece_rise <= policy.ece_tolerance:
        problems.append(f"ECE {candidate['ece']:.4f} is {ece_rise:.4f} above production's "
                        f"{production['ece']:.4f} (tolerance {policy.ece_tolerance})")
    if "behaviour" in candidate and "behaviour" in production:
        behaviour_ok, why = regression(candidate["behaviour"], production["behaviour"], policy.behaviour_tolerance)
        if not behaviour_ok:
            problems.append(why)
    if problems:
        return False, "; ".join(problems)
    return True, (f"accuracy {candidate['accuracy']:.4f} vs {production['accuracy']:.4f}, "
                  f"ECE {candidate['ece']:.4f} vs {production['ece']:.4f}: within tolerance")


class DropFolder:
    """The drop folder of new labelled files and the record of what was already consumed."""

    def __init__(self, folder: Path, state_dir: Path) -> None:
        self.folder = Path(folder)
        self.state_dir = Path(state_dir)
        self.record_path = self.state_dir / "consumed.json"
        self.ingested_dir = self.state_dir / "ingested"

    def consumed(self) -> dict:
        """Return {sha256: {file, rows, consumed_at, ...}} of files consumed by earlier runs."""
        try:
            return json.loads(self.record_path.read_text())
        except FileNotFoundError:
            return {}

    def pending(self) -> list[tuple[Path, str]]:
        """Return (file, sha256) of drop files not consumed yet, oldest name first."""
        if not self.folder.is_dir():
            raise DataError(f"{self.folder}: drop folder does not exist")
        done = self.consumed()
        files = sorted(p for p in self.folder.iterdir() if p.is_file() and p.name.lower().endswith(DROP_SUFFIXES))
        hashed = [(p, fingerprint(p)) for p in files]
        return [(p, sha) for p, sha in hashed if sha not in done]

    def ingested(self) -> LabelledData | None:
        """Return every row ingested by earlier runs (kept even if the drop files are deleted)."""
        parts = sorted(self.ingested_dir.glob("*.parquet")) if self.ingested_dir.is_dir() else []
        if not parts:
            return None
        frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
        return LabelledData(frame["text"].tolist(), frame["label"].to_numpy(np.int8), str(self.ingested_dir))

    def record(self, entries: dict[str, dict], rows: dict[str, pd.DataFrame]) -> None:
        """Store the new rows and mark their files consumed (rows first, record last: atomic)."""
        self.ingested_dir.mkdir(parents=True, exist_ok=True)
        for sha, frame in rows.items():
            tmp = self.ingested_dir / f".{sha}.parquet.tmp"
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, self.ingested_dir / f"{sha}.parquet")
        write_json_atomic(self.record_path, {**self.consumed(), **entries})


def ingest(files: Sequence[tuple[Path, str]], known: set[str], *, text_column: str, label_column: str,
           skip_bad_rows: bool) -> tuple[dict[str, pd.DataFrame], dict[str, dict]]:
    """Load new (file, sha256) pairs, dropping rows whose text was already seen; return rows and records."""
    rows, entries = {}, {}
    for path, sha in files:
        if sha in entries:  # the same bytes under another name: its rows are already in
            log.info("ingest %s: identical to %s, skipped", path.name, entries[sha]["file"])
            continue
        data = load_labelled(path, text_column=text_column, label_column=label_column, skip_bad_rows=skip_bad_rows)
        keep_text, keep_label, duplicates = [], [], 0
        for text, label in zip(data.texts, data.labels):
            key = text_key(text)
            if key in known:
                duplicates += 1
                continue
            known.add(key)
            keep_text.append(text)
            keep_label.append(int(label))
        rows[sha] = pd.DataFrame({"text": keep_text, "label": np.asarray(keep_label, dtype=np.int8)})
        entries[sha] = {"file": str(path), "rows_read": len(data) + sum(data.skipped.values()),
                        "rows_added": len(keep_text), "duplicates": duplicates, "skipped": data.skipped,
                        "consumed_at": time.time()}
        log.info("ingest %s: %d new rows, %d duplicates, skipped %s", path.name, len(keep_text), duplicates,
                 data.skipped or "none")
    return rows, entries


def write_comparison(out_dir: Path, report: dict) -> None:
    """Write report.json, report.md and a PNG comparing candidate and production on gold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    models = {k: v for k, v in (("production", report["gold"].get("production")),
                                ("candidate", report["gold"]["candidate"])) if v}
    metrics = ("accuracy", "f1", "roc_auc", "ece", "log_loss")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(1, len(models))
    for i, (label, m) in enumerate(models.items()):
        ax.bar(np.arange(len(metrics)) + i * width, [m[k] or 0 for k in metrics], width,
               label=f"{label} v{m['version']}")
    ax.set_xticks(np.arange(len(metrics)) + width * (len(models) - 1) / 2, metrics)
    ax.set_title("gold set: candidate vs production")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "comparison.png", dpi=100)
    plt.close(fig)
    lines = [f"# Retrain run {report['run_id']}", "",
             f"- **decision**: {'promoted' if report['promoted'] else 'not promoted'} — {report['reason']}",
             f"- **candidate**: version {report['candidate_version']} (parent {report['parent_version']})",
             f"- **gold set**: `{report['gold_file']}` sha256 `{report['gold_sha256'][:16]}…`",
             f"- **new data**: {report['ingest']['rows_added']} rows from {len(report['ingest']['files'])} files "
             f"({report['ingest']['duplicates']} duplicates dropped)",
             f"- **timings**: {json.dumps({k: round(v, 1) for k, v in report['timings'].items()})}", "",
             "| metric | " + " | ".join(f"{k} v{m['version']}" for k, m in models.items()) + " |",
             "| --- |" + " --- |" * len(models)]
    for key in metrics:
        lines.append(f"| {key} | " + " | ".join(f"{m[key]:.4f}" for m in models.values()) + " |")
    lines += ["", "Behaviour suite pass rates: " + ", ".join(
        f"{k} v{m['version']} {100 * m['behaviour']['pass_rate']:.1f} %" for k, m in models.items() if "behaviour" in m)]
    lines += ["", "![comparison](comparison.png)", ""]
    (out_dir / "report.md").write_text("\n".join(lines))


def retrain(
    registry: Registry,
    name: str,
    *,
    drop: Path,
    gold: Path,
    data_dir: Path,
    policy: Policy,
    dry_run: bool = False,
    force_promote: bool = False,
    continue_word2vec: bool = False,
    keep_last: int = 5,
    allow_empty: bool = False,
    shuffle_labels: bool = False,
    config_overrides: dict | None = None,
    lock_timeout: float = 0.0,
    skip_bad_rows: bool = False,
) -> dict:
    """Run one retraining cycle; return its report (also written under ``<model>/runs/<run_id>``)."""
    from training.train import TrainingInputs, load_inputs, train_version

    started = time.perf_counter()
    run_id = time.strftime("%Y%m%d-%H%M%S")
    timings: dict[str, float] = {}
    with registry.lock(name, timeout=lock_timeout):
        state = registry.model_dir(name) / "pipeline"
        folder = DropFolder(drop, state)
        production = registry.production_version(name)
        base_config = (TrainConfig.from_dict(registry.manifest(name, production)["config"])
                       if production is not None else preset("full"))
        config = base_config.replace(**(config_overrides or {}))

        # 1. Ingest: base data + earlier drops + new drops, de-duplicated by normalised text.
        t0 = time.perf_counter()
        inputs = load_inputs(config, data_dir)
        previous = folder.ingested()
        known = {text_key(t) for t in inputs.labelled.texts}
        if previous is not None:
            known |= {text_key(t) for t in previous.texts}
        pending = folder.pending()
        if not pending and not allow_empty:
            raise DataError(f"{drop}: no new files to ingest (use --allow-empty to retrain anyway)")
        new_rows, entries = ingest(pending, known, text_column=config.text_column,
                                   label_column=config.label_column, skip_bad_rows=skip_bad_rows)
        parts = [inputs.labelled] + ([previous] if previous else []) + [
            LabelledData(f["text"].tolist(), f["label"].to_numpy(np.int8), sha) for sha, f in new_rows.items()]
        texts = [t for p in parts for t in p.texts]
        labels = np.concatenate([p.labels for p in parts])
        ratings = LabelledData.concat(parts, "retrain").ratings  # star ratings (where known) give short-text crops
        if shuffle_labels:  # a deliberately broken candidate: proves the promotion gate works
            labels = np.random.default_rng(0).permutation(labels)
        timings["ingest_s"] = time.perf_counter() - t0

        # 2. The gold set must never be trained on.
        gold_data = load_labelled(gold, text_column=config.text_column, label_column=config.label_column)
        gold_sha = fingerprint(gold)
        overlap = len({text_key(t) for t in gold_data.texts} & {text_key(t) for t in texts})
        if overlap:
            raise DataError(f"{gold}: {overlap} gold reviews also appear in the training data; refusing to run "
                            "(make the gold set with 'python -m training.pipeline make-gold')")

        # 3. Train the candidate from production's configuration.
        t0 = time.perf_counter()
        fingerprints = {**inputs.fingerprints, **{e["file"]: sha for sha, e in entries.items()}}
        if previous is not None:
            fingerprints[str(folder.ingested_dir)] = fingerprint(folder.ingested_dir)
        w2v = (registry.version_dir(name, production) / WORD2VEC_FILE
               if continue_word2vec and production is not None else None)
        result = train_version(
            config, TrainingInputs(LabelledData(texts, labels, "retrain", ratings=ratings), inputs.unlabelled,
                                   fingerprints),
            registry, name, promote="never", parent_version=production, previous_word2vec=w2v,
            extra_manifest={"retrain": {"run_id": run_id, "new_rows": sum(len(f) for f in new_rows.values()),
                                        "shuffled_labels": shuffle_labels}},
        )
        timings["train_s"] = time.perf_counter() - t0

        # 4. Evaluate both on the same gold set.
        t0 = time.perf_counter()
        gold_metrics = {}
        for role, version in (("candidate", result.version), ("production", production)):
            if version is not None:
                ev, _ = evaluate_labelled(registry, name, version, gold_data)  # loaded once, above
                gold_metrics[role] = {"version": version, **{k: ev["calibrated"][k] for k in
                                                             ("accuracy", "f1", "roc_auc", "ece", "log_loss")}}
                gold_metrics[role]["behaviour"] = run_on_version(registry.version_dir(name, version))
        timings["evaluate_s"] = time.perf_counter() - t0
        promote, reason = decide(gold_metrics["candidate"], gold_metrics.get("production"), policy)
        if force_promote and not promote:
            promote, reason = True, f"forced (--force-promote) despite: {reason}"
        if dry_run:
            promote, reason = False, f"dry run; would {'promote' if promote else 'not promote'}: {reason}"

        # 5. Report, then the atomic steps: consumed files, promotion, pruning.
        timings["total_s"] = time.perf_counter() - started
        report = {
            "run_id": run_id, "model": name, "promoted": promote, "reason": reason,
            "candidate_version": result.version, "parent_version": production,
            "gold_file": str(gold), "gold_sha256": gold_sha, "gold": gold_metrics,
            "ingest": {"files": [e["file"] for e in entries.values()],
                       "rows_added": sum(e["rows_added"] for e in entries.values()),
                       "duplicates": sum(e["duplicates"] for e in entries.values())},
            "config": config.to_dict(), "data_fingerprints": fingerprints, "timings": timings,
            "validation_metrics": result.manifest["metrics"], "dry_run": dry_run,
        }
        out_dir = registry.model_dir(name) / "runs" / f"{run_id}-v{result.version}"
        write_comparison(out_dir, report)
        report["report_dir"] = str(out_dir)
        # Promote before recording the files: killed in between, the next run re-ingests them and
        # de-duplication turns them into no-ops; the other order could lose a promotion for good.
        if promote:
            registry.promote(name, result.version)
        if not dry_run:
            folder.record(entries, new_rows)
        log.info("candidate v%d %s: %s", result.version, "PROMOTED" if promote else "kept as non-production",
                 reason)
        report["pruned"] = registry.prune(name, keep_last) if keep_last and not dry_run else []
    return report


def make_gold(source: Path, rows: int, out: Path, remainder: Path, seed: int, text_column: str,
              label_column: str) -> dict:
    """Split a labelled file into a frozen gold set and the remainder to train on (disjoint by text)."""
    data = load_labelled(source, text_column=text_column, label_column=label_column)
    frame = pd.DataFrame({"text": data.texts, "label": data.labels})
    frame["key"] = frame["text"].map(text_key)
    frame = frame.drop_duplicates("key")
    gold_idx = np.random.default_rng(seed).choice(len(frame), size=min(rows, len(frame) // 2), replace=False)
    is_gold = np.zeros(len(frame), dtype=bool)
    is_gold[gold_idx] = True
    for path, part in ((out, frame[is_gold]), (remainder, frame[~is_gold])):
        path.parent.mkdir(parents=True, exist_ok=True)
        part[["text", "label"]].to_csv(path, index=False)
    return {"gold": str(out), "gold_rows": int(is_gold.sum()), "remainder": str(remainder),
            "remainder_rows": int((~is_gold).sum()), "gold_sha256": fingerprint(out)}


# -- command line ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """Return the CLI parser with the retrain, rollback, status and make-gold commands."""
    parser = argparse.ArgumentParser(prog="python -m training.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("SENTIMENT_MODEL_DIR", "models")),
                        help="model registry root (default: $SENTIMENT_MODEL_DIR or ./models)")
    parser.add_argument("--model-name", default=os.environ.get("SENTIMENT_MODEL_NAME", "sentiment"),
                        help="model name inside the registry")
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("retrain", help="ingest new data, train a candidate, promote it if it is not worse",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("--new-data", type=Path, required=True, help="drop folder of new labelled CSV/Parquet/JSONL files")
    r.add_argument("--gold", type=Path, default=Path(os.environ.get("SENTIMENT_GOLD_FILE", "data/gold.csv")),
                   help="frozen labelled evaluation file, never trained on (default: $SENTIMENT_GOLD_FILE)")
    r.add_argument("--data-dir", type=Path, default=None,
                   help="where the base training files named in the production config live "
                        "(default: $SENTIMENT_DATA_DIR or ../shared/data/imdb)")
    r.add_argument("--train-file", default=None,
                   help="base labelled file instead of the one in production's config (e.g. the make-gold remainder)")
    r.add_argument("--preset", default=None,
                   help="train the candidate from this preset instead of production's configuration")
    r.add_argument("--accuracy-tolerance", type=float, default=Policy.accuracy_tolerance,
                   help="promote only if gold accuracy is at most this much below production's")
    r.add_argument("--ece-tolerance", type=float, default=Policy.ece_tolerance,
                   help="promote only if gold ECE is at most this much above production's")
    r.add_argument("--behaviour-tolerance", type=float, default=Policy.behaviour_tolerance,
                   help="promote only if the behaviour suite's pass rate (overall and on every capability) is at "
                        "most this much (a fraction: 0.05 = 5 points) below production's")
    r.add_argument("--dry-run", action="store_true", help="train and evaluate, never promote or consume files")
    r.add_argument("--force-promote", action="store_true", help="promote even if the candidate is worse")
    r.add_argument("--continue-word2vec", action="store_true",
                   help="continue training production's word2vec instead of rebuilding it")
    r.add_argument("--keep-last", type=int, default=5,
                   help="keep this many newest versions (never pruning production or its parent); 0 = keep all")
    r.add_argument("--allow-empty", action="store_true", help="retrain even if the drop folder has nothing new")
    r.add_argument("--skip-bad-rows", action="store_true", help="skip and count unusable rows in new files")
    r.add_argument("--shuffle-labels", action="store_true",
                   help="train on shuffled labels (a deliberately bad candidate, to check the promotion gate)")
    r.add_argument("--lock-timeout", type=float, default=0.0,
                   help="seconds to wait if another run holds the registry lock (0 = fail at once)")
    r.add_argument("--every-hours", type=float, default=None,
                   help="keep running: retrain every N hours (for the compose 'trainer' service)")

    sub.add_parser("rollback", help="make the previous production version production again")
    p = sub.add_parser("promote", help="make a given version production (by hand; the retrain gate is skipped)")
    p.add_argument("--version", type=int, required=True, help="version number to promote")
    sub.add_parser("status", help="print versions, production and the last runs as JSON")

    g = sub.add_parser("make-gold", help="split a labelled file into a frozen gold set and a training remainder",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g.add_argument("--source", type=Path, required=True, help="labelled file to split")
    g.add_argument("--rows", type=int, default=2000, help="gold set size")
    g.add_argument("--out", type=Path, default=Path("data/gold.csv"), help="gold set file to write")
    g.add_argument("--remainder", type=Path, default=Path("data/train-without-gold.csv"),
                   help="the rest, to train on")
    g.add_argument("--seed", type=int, default=2024, help="seed of the split")
    g.add_argument("--text-column", default="text", help="text column")
    g.add_argument("--label-column", default="label", help="label column")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline CLI; exit 2 on bad input, 3 if another run holds the lock."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    registry = Registry(args.model_dir)
    try:
        if args.command == "rollback":
            print(json.dumps({"production": registry.rollback(args.model_name)}))
        elif args.command == "promote":
            registry.promote(args.model_name, args.version)
            print(json.dumps({"production": args.version}))
        elif args.command == "status":
            name = args.model_name
            runs = sorted((registry.model_dir(name) / "runs").glob("*/report.json"))[-5:]
            print(json.dumps({"versions": registry.versions(name), "production": registry.production_version(name),
                              "recent_runs": [json.loads(p.read_text())["reason"] for p in runs]}, indent=2))
        elif args.command == "make-gold":
            print(json.dumps(make_gold(args.source, args.rows, args.out, args.remainder, args.seed,
                                       args.text_column, args.label_column), indent=2))
        else:
            overrides = {} if args.train_file is None else {"train_file": args.train_file}
            if args.preset:
                overrides = {**preset(args.preset).to_dict(), **overrides}
            while True:
                try:
                    report = retrain(
                        registry, args.model_name, drop=args.new_data, gold=args.gold,
                        data_dir=args.data_dir or default_data_dir(),
                        policy=Policy(args.accuracy_tolerance, args.ece_tolerance, args.behaviour_tolerance), dry_run=args.dry_run,
                        force_promote=args.force_promote, continue_word2vec=args.continue_word2vec,
                        keep_last=args.keep_last, allow_empty=args.allow_empty, shuffle_labels=args.shuffle_labels,
                        config_overrides=overrides, lock_timeout=args.lock_timeout, skip_bad_rows=args.skip_bad_rows,
                    )
                    print(json.dumps({k: report[k] for k in ("run_id", "promoted", "reason", "candidate_version",
                                                             "parent_version", "gold", "report_dir")}, indent=2))
                except Exception as exc:  # noqa: BLE001 - a scheduler must outlive one bad run
                    if args.every_hours is None:
                        raise
                    log.exception("this run failed, production unchanged: %s", exc)
                if args.every_hours is None:
                    break
                log.info("next run in %.1f hours", args.every_hours)
                time.sleep(args.every_hours * 3600)
    except RegistryError as exc:
        log.error("%s", exc)
        return 3 if "timed out" in str(exc) else 2
    except DataError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
