"""Retraining pipeline: new labelled data in, a better model out, promoted only when it earns it.

One ``retrain`` run, unattended-safe, holding the model's registry lock throughout:

0. **Recover**: finish a promotion an earlier run decided but was killed before applying.
1. **Read** new CSV/Parquet/JSONL files from the drop folder (validated like training data). A file
   that cannot be used is moved to ``<drop>/quarantine/`` with a reason file; the run goes on.
2. **Assemble** the candidate's training set (training/pool.py): the base data, the rows of
   promoted or admitted runs and the new rows; per text the newest label wins; gold-set texts are
   left out and counted.
3. **Train** a candidate from production's configuration (the full preset while production is
   a quick first model, see training/quickstart.py); the version records what it trained on.
4. **Evaluate** candidate and production on the same gold set, production only on the gold rows
   its lineage shows it never trained on (training/lineage.py), and on the behaviour suite
   (training/behaviour.py); **decide** with paired statistics, a floor and the behaviour
   regression check (training/gate.py).
5. **Report** (JSON + Markdown + PNG): every check with its numbers, the pool, the quarantine,
   relabels, gold overlaps, the paired test and the floor.
6. **Record** the run in the ledger (one atomic write: its rows pooled if promoted, else
   quarantined; its drop files consumed; gold scores), then **promote**, then prune.

What a run killed at any point leaves (SIGKILL, power cut), by the last step it completed:

- before *record*: production, the pool and the consumed-file record unchanged; a published
  candidate stays as a non-production version; the next run reads the same drop files again
  (bad files already moved to quarantine stay there);
- after *record*, before *promote*: production unchanged until the next ``retrain`` or
  ``recover`` completes the promotion this run decided (its rows already count as pooled);
- after *promote*: the run is complete but for pruning old versions.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from registry.artifact import WORD2VEC_FILE, is_quick
from registry.cli import (
    DocHelpFormatter,
    HelpFormatter,
    add_registry_arguments,
    configure_logging,
    version_number_arg,
)
from registry.store import Registry, RegistryError
from training import drift_check, shadow
from training.config import TrainConfig, preset
from training.data import DataError, LabelledData, default_data_dir, fingerprint, load_labelled
from training.gate import FloorReference, GateInputs, GateResult, Policy, decide
from training.lineage import GoldOverlap, gold_overlap, key_hashes, text_key
from training.metrics import classification_metrics
from training.pool import (
    POOLED,
    QUARANTINED,
    DropBatch,
    Ledger,
    TrainingSet,
    assemble,
    pending_files,
    read_drop,
    store_rows,
)
from training.run_report import METRICS, write_run_report
from training.shadow import ShadowOptions

log = logging.getLogger(__name__)

__all__ = ["Policy", "RetrainOptions", "retrain", "recover", "status", "make_gold", "text_key", "main"]

#: Fault injection for the kill tests: the process SIGKILLs itself when it reaches this named point.
KILL_AT_ENV = "SENTIMENT_PIPELINE_KILL_AT"
KILL_POINTS = ("after-publish", "after-report", "after-record", "after-promote")
#: What the retrain command prints of its report (the whole report is in report_dir).
SUMMARY_KEYS = ("run_id", "promoted", "reason", "candidate_version", "parent_version", "report_dir")


def _reached(point: str) -> None:
    """Die here, like a power cut, if ``$SENTIMENT_PIPELINE_KILL_AT`` names this point (kill tests)."""
    if os.environ.get(KILL_AT_ENV) == point:
        log.warning("%s=%s: killing this process", KILL_AT_ENV, point)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class RetrainOptions:
    """Everything one ``retrain`` run is told (the ``retrain`` subcommand's flags)."""

    drop: Path  # drop folder of new labelled files
    gold: Path  # frozen labelled evaluation file, never trained on
    data_dir: Path  # where the base training files named in the config live
    policy: Policy = field(default_factory=Policy)
    dry_run: bool = False  # train and evaluate; never promote, record, consume or quarantine
    force_promote: bool = False  # promote even if the gate refuses the candidate
    continue_word2vec: bool = False  # continue production's word2vec instead of rebuilding it
    keep_last: int = 5  # versions kept by pruning (0 = keep all)
    allow_empty: bool = False  # retrain even if the drop folder has nothing new
    shuffle_labels: bool = False  # a deliberately broken candidate: proves the promotion gate works
    config_overrides: dict = field(default_factory=dict)  # TrainConfig fields over production's config
    lock_timeout: float = 0.0  # seconds to wait for another run's registry lock
    skip_bad_rows: bool = False  # skip and count unusable rows in new files (else quarantine the file)
    extra_checks: list = field(default_factory=list)  # more gate checks, (GateInputs, Policy) -> Check
    shadow: ShadowOptions = field(default_factory=ShadowOptions)  # sampled traffic, feedback hold-out
    drift: dict | None = None  # the drift check that started this run (--when-drift), for its report


@dataclass
class Gathered:
    """What a run trains on and how it got there: gold set, drop files, pool, assembled training set."""

    gold: LabelledData
    gold_sha: str
    gold_keys: list[str]
    batch: DropBatch
    pooled: list[tuple[str, pd.DataFrame]]  # (run_id, rows) of the pooled runs used
    training: TrainingSet
    inputs: object  # training.train.TrainingInputs, ready for train_version
    held_out: LabelledData | None = None  # new feedback rows kept out of training for the shadow evaluation


@dataclass
class Judged:
    """The gold-set evaluation of a run and the gate's decision."""

    scores: dict[str, dict]  # role -> gold metrics of that version
    overlap: dict[str, GoldOverlap]  # role -> gold rows the version trained on
    gate: GateResult
    floor: dict | None
    promote: bool
    reason: str


def new_run_id() -> str:
    """Return a run id that sorts by start time and never collides."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def recover(registry: Registry, name: str) -> int | None:
    """Complete a promotion a killed run recorded but did not apply; return the version promoted, if any."""
    with registry.lock(name):
        pending = Ledger(registry, name).pending_promotion(registry.production_version(name))
        if pending is None:
            return None
        run_id, entry = pending
        version = entry["candidate_version"]
        if version not in registry.versions(name):
            log.error(
                "run %s decided to promote v%s, which no longer exists; production unchanged", run_id, version
            )
            return None
        log.warning(
            "run %s decided to promote v%s but was stopped before the pointer swap: promoting it now",
            run_id,
            version,
        )
        registry.promote(name, version)
        return version


# -- steps 1-2: data ------------------------------------------------------------------------------
def gather(config: TrainConfig, ledger: Ledger, options: RetrainOptions, run_id: str) -> Gathered:
    """Read the drop folder and the gold set, and assemble the candidate's training set from the pool."""
    from training.train import TrainingInputs, load_inputs

    batch = read_drop(
        pending_files(options.drop, ledger.consumed()),
        run_id=run_id,
        text_column=config.text_column,
        label_column=config.label_column,
        skip_bad_rows=options.skip_bad_rows,
        move_bad_files=not options.dry_run,
    )
    if not batch.files and not options.allow_empty:
        bad = f"; {len(batch.bad_files)} unusable files quarantined" if batch.bad_files else ""
        raise DataError(f"{options.drop}: no new usable files{bad} (use --allow-empty to retrain anyway)")
    gold = load_labelled(options.gold, text_column=config.text_column, label_column=config.label_column)
    gold_keys = [text_key(t) for t in gold.texts]
    base = load_inputs(config, options.data_dir)
    pooled = ledger.pooled_rows()
    # A share of the new /v1/feedback rows waits a run: the shadow evaluation measures accuracy on it.
    new_rows, held_out = shadow.split_feedback(batch.rows, options.shadow.holdout)
    training = assemble(base.labelled, pooled, new_rows, set(gold_keys))
    labels = training.labels
    if options.shuffle_labels:
        labels = np.random.default_rng(0).permutation(labels)
    fingerprints = {
        **base.fingerprints,
        **{e["file"]: sha for sha, e in batch.files.items()},
        **{f"pool:{rid}": ledger.doc["runs"][rid]["rows_file"] for rid, _ in pooled},
    }
    # Gold texts judge the candidate: none may reach it through word2vec or self-training either.
    gold_set = set(gold_keys)
    unlabelled = [t for t in base.unlabelled if text_key(t) not in gold_set]
    inputs = TrainingInputs(
        LabelledData(training.texts, labels, "retrain", ratings=training.ratings), unlabelled, fingerprints
    )
    return Gathered(gold, fingerprint(options.gold), gold_keys, batch, pooled, training, inputs, held_out)


# -- step 3: train --------------------------------------------------------------------------------
def train_candidate(
    registry: Registry,
    name: str,
    config: TrainConfig,
    data: Gathered,
    production: int | None,
    options: RetrainOptions,
    run_id: str,
):
    """Train a candidate version on the gathered data; it is never promoted here."""
    from training.train import train_version

    w2v = None
    if options.continue_word2vec and production is not None:
        w2v = registry.version_dir(name, production) / WORD2VEC_FILE
    extra = {
        "retrain": {
            "run_id": run_id,
            "new_rows": data.training.account["new_rows"],
            "pooled_runs": [rid for rid, _ in data.pooled],
            "shuffled_labels": options.shuffle_labels,
        }
    }
    return train_version(
        config,
        data.inputs,
        registry,
        name,
        promote="never",
        parent_version=production,
        previous_word2vec=w2v,
        extra_manifest=extra,
    )


# -- step 4: judge --------------------------------------------------------------------------------
def gold_scores(
    registry: Registry, name: str, roles: dict[str, int], data: Gathered, options: RetrainOptions, bins: int
) -> tuple[dict, dict, dict, dict]:
    """Return per-role gold probabilities, metrics, gold overlap (what each version trained on) and
    behaviour-suite report (both versions scored now, with the one suite this code ships)."""
    from training.behaviour import load_suite, run_suite
    from training.evaluate import load_predictor

    hashes = key_hashes(data.gold_keys)
    suite = load_suite()
    probs, scores, overlap, behaviour = {}, {}, {}, {}
    for role, version in roles.items():
        predictor = load_predictor(registry, name, version)
        probs[role] = predictor.score_texts(data.gold.texts)
        metrics = classification_metrics(data.gold.labels, probs[role], bins)
        scores[role] = {"version": version, **{k: metrics[k] for k in METRICS}}
        overlap[role] = gold_overlap(registry, name, version, hashes, options.data_dir)
        behaviour[role] = run_suite(predictor.score_texts, suite)
    return probs, scores, overlap, behaviour


def judge(
    registry: Registry,
    name: str,
    ledger: Ledger,
    data: Gathered,
    candidate: int,
    production: int | None,
    options: RetrainOptions,
    bins: int,
) -> Judged:
    """Score both versions on the gold set and apply the gate, then --force-promote, then --dry-run."""
    roles = {"candidate": candidate, **({"production": production} if production is not None else {})}
    probs, scores, overlap, behaviour = gold_scores(registry, name, roles, data, options, bins)
    seen = overlap["production"].seen if production is not None else None
    fair = {role: o.rows == 0 for role, o in overlap.items()}
    extra = (
        {str(production): {**scores["production"], "rows": len(data.gold), "fair": True, "production": True}}
        if fair.get("production")
        else {}
    )
    floor = ledger.floor_reference(data.gold_sha, extra)
    gate = decide(
        GateInputs(
            labels=data.gold.labels,
            candidate=probs["candidate"],
            candidate_version=candidate,
            production=probs.get("production"),
            production_version=production,
            comparable=None if seen is None else ~seen,
            floor=FloorReference(floor["version"], floor["accuracy"], floor["rows"]) if floor else None,
            candidate_behaviour=behaviour["candidate"],
            production_behaviour=behaviour.get("production"),
        ),
        options.policy,
        [shadow.gate_check(registry, name, options.shadow, data.held_out), *options.extra_checks],
    )
    promote, reason = gate.promote, gate.reason
    if options.force_promote and not promote:
        promote, reason = True, f"forced (--force-promote) despite: {reason}"
    if options.dry_run:
        promote, reason = False, f"dry run; would {'promote' if promote else 'not promote'}: {reason}"
    for role, score in scores.items():  # what the ledger keeps for later floors
        score.update(
            rows=len(data.gold),
            fair=fair[role],
            production=role == "production" or (promote and not options.dry_run),
        )
    return Judged(scores, overlap, gate, gate.check("floor").numbers if floor else None, promote, reason)


# -- step 5: report -------------------------------------------------------------------------------
def build_report(
    run_id: str,
    name: str,
    config: TrainConfig,
    data: Gathered,
    result,
    production: int | None,
    judged: Judged,
    ledger: Ledger,
    options: RetrainOptions,
    timings: dict,
) -> dict:
    """Return the run's report: decision and checks, gold set and overlaps, data account, lineage."""
    return {
        "run_id": run_id,
        "model": name,
        "promoted": judged.promote,
        "reason": judged.reason,
        "dry_run": options.dry_run,
        "forced": options.force_promote and not judged.gate.promote,
        "candidate_version": result.version,
        "parent_version": production,
        "gate": judged.gate.to_dict(),
        "floor": judged.floor,
        "shadow": judged.gate.check("shadow").numbers,
        "drift": options.drift,
        "gold": {
            "file": str(options.gold),
            "sha256": data.gold_sha,
            "rows": len(data.gold),
            "metrics": {
                role: {k: v for k, v in s.items() if k in ("version", *METRICS)}
                for role, s in judged.scores.items()
            },
            "overlap": {role: o.to_dict() for role, o in judged.overlap.items()},
        },
        "data": {
            "base_file": config.train_file,
            "pool": {**ledger.summary(), "pooled_runs_used": [rid for rid, _ in data.pooled]},
            "new_files": [e["file"] for e in data.batch.files.values()],
            "bad_files": data.batch.bad_files,
            **data.training.account,
        },
        "config": config.to_dict(),
        "data_fingerprints": data.inputs.fingerprints,
        "timings": timings,
        "validation_metrics": result.manifest["metrics"],
    }


# -- step 6: record, promote, prune ---------------------------------------------------------------
def commit(
    registry: Registry,
    name: str,
    ledger: Ledger,
    run_id: str,
    report: dict,
    data: Gathered,
    judged: Judged,
    rows_file: Path,
) -> None:
    """Record the run (the one atomic write of its outcome), then swap the production pointer."""
    candidate, production = report["candidate_version"], report["parent_version"]
    entry = {
        "seq": ledger.next_seq(),
        "status": POOLED if judged.promote else QUARANTINED,
        "rows": len(data.batch.rows),
        "rows_file": str(rows_file.relative_to(ledger.model_home)),
        "files": [e["file"] for e in data.batch.files.values()],
        "promoted": judged.promote,
        "candidate_version": candidate,
        "parent_version": production,
        "reason": judged.reason,
        "report_dir": report["report_dir"],
        "decided_at": time.time(),
    }
    scores = {
        str(s["version"]): {k: v for k, v in s.items() if k != "version"} for s in judged.scores.values()
    }
    ledger.record_run(run_id, entry, data.batch.files, scores, data.gold_sha)
    _reached("after-record")
    if judged.promote:
        registry.promote(name, candidate)
    _reached("after-promote")


def base_config(registry: Registry, name: str, production: int | None) -> TrainConfig:
    """Return the configuration a candidate starts from: production's, else the full preset.

    A quick production model (``run.sh``'s first minutes, training/quickstart.py) is a placeholder:
    its configuration is not the one to keep, so a candidate trained while it serves starts from
    the full preset.
    """
    manifest = registry.manifest(name, production) if production is not None else None
    if manifest is None or is_quick(manifest):
        return preset("full")
    return TrainConfig.from_dict(manifest["config"])


def retrain(registry: Registry, name: str, options: RetrainOptions) -> dict:
    """Run one retraining cycle; return its report (also written under ``<model>/runs/<run_id>-v<N>``)."""
    started = time.perf_counter()
    run_id = new_run_id()
    timings: dict[str, float] = {}
    with registry.lock(name, timeout=options.lock_timeout):
        recover(registry, name)
        ledger = Ledger(registry, name)
        production = registry.production_version(name)
        config = base_config(registry, name, production).replace(**options.config_overrides)

        # 1-2. The drop files, the gold set, and the training set built from the pool.
        t0 = time.perf_counter()
        data = gather(config, ledger, options, run_id)
        timings["ingest_s"] = time.perf_counter() - t0

        # 3. Train the candidate from production's configuration.
        t0 = time.perf_counter()
        result = train_candidate(registry, name, config, data, production, options, run_id)
        timings["train_s"] = time.perf_counter() - t0
        _reached("after-publish")

        # 4. Both versions on the same gold set (production on the rows it never saw); the gate.
        t0 = time.perf_counter()
        judged = judge(registry, name, ledger, data, result.version, production, options, config.ece_bins)
        timings["evaluate_s"] = time.perf_counter() - t0

        # 5. Report, with the rows this run brought beside it.
        timings["total_s"] = time.perf_counter() - started
        out_dir = registry.model_home(name) / "runs" / f"{run_id}-v{result.version}"
        report = build_report(
            run_id, name, config, data, result, production, judged, ledger, options, timings
        )
        report["report_dir"] = str(out_dir)
        rows_file = store_rows(data.batch.rows, out_dir)
        write_run_report(out_dir, report)
        _reached("after-report")

        # 6. Record, promote, prune.
        if not options.dry_run:
            commit(registry, name, ledger, run_id, report, data, judged, rows_file)
        log.info(
            "candidate v%d %s: %s",
            result.version,
            "PROMOTED" if judged.promote else "kept as non-production",
            judged.reason,
        )
        prune = options.keep_last and not options.dry_run
        report["pruned"] = registry.prune(name, options.keep_last) if prune else []
    return report


# -- status and make-gold -------------------------------------------------------------------------
def _gold_status(
    registry: Registry,
    name: str,
    ledger: Ledger,
    gold: Path,
    data_dir: Path | None,
    last: dict | None,
    policy: Policy,
) -> tuple[dict, dict | None]:
    """Return (gold overlaps of production and the last candidate, the floor) for one gold file."""
    if not Path(gold).is_file():
        return {"file": str(gold), "error": "no such file (make one with make-gold)"}, None
    gold_data = load_labelled(gold)
    gold_sha = fingerprint(gold)
    hashes = key_hashes(map(text_key, gold_data.texts))
    production = registry.production_version(name)
    overlap = {
        "production": None
        if production is None
        else gold_overlap(registry, name, production, hashes, data_dir).to_dict()
    }
    if last is not None and last["gold"]["sha256"] == gold_sha:
        overlap["last_candidate"] = last["gold"]["overlap"]["candidate"]
    reference = ledger.floor_reference(gold_sha)
    floor = (
        None
        if reference is None
        else {
            "reference_version": reference["version"],
            "reference_accuracy": reference["accuracy"],
            "margin": policy.floor_margin,
            "floor": reference["accuracy"] - policy.floor_margin,
        }
    )
    return {"file": str(gold), "sha256": gold_sha, "rows": len(gold_data), "overlap": overlap}, floor


def status(
    registry: Registry, name: str, *, gold: Path | None, data_dir: Path | None, policy: Policy
) -> dict:
    """Return what an operator needs: production, pool, quarantine, gold overlaps, last paired test, floor."""
    ledger = Ledger(registry, name)
    production = registry.production_version(name)
    reports = [
        json.loads(p.read_text()) for p in sorted((registry.model_home(name) / "runs").glob("*/report.json"))
    ]
    last = reports[-1] if reports else None
    pending = ledger.pending_promotion(production)
    summary = ledger.summary()
    doc = {
        "model": name,
        "production": production,
        "versions": registry.versions(name),
        "pending_promotion": {
            "run_id": pending[0],
            "version": pending[1]["candidate_version"],
            "fix": "python -m training.pipeline recover",
        }
        if pending
        else None,
        "pool": {
            "base_file": registry.manifest(name, production)["config"]["train_file"] if production else None,
            "pooled_runs": summary["pooled_runs"],
            "pooled_rows": summary["pooled_rows"],
            "last_training_set_rows": last["data"]["rows"] if last else None,
        },
        "quarantined_runs": summary["quarantined_runs"],
        "gold": None,
        "floor": None,
        "last_run": None,
        "recent_runs": [
            {"run_id": r["run_id"], "promoted": r["promoted"], "reason": r["reason"]} for r in reports[-5:]
        ],
    }
    if last is not None:
        paired = next(
            (c["numbers"] for c in last["gate"]["checks"] if c["name"] == "accuracy_vs_production"), None
        )
        doc["last_run"] = {
            "run_id": last["run_id"],
            "promoted": last["promoted"],
            "reason": last["reason"],
            "candidate_version": last["candidate_version"],
            "paired": paired or None,
            "report": str(Path(last["report_dir"]) / "report.md"),
        }
    if gold is not None:
        doc["gold"], doc["floor"] = _gold_status(registry, name, ledger, gold, data_dir, last, policy)
    return doc


def make_gold(
    source: Path, rows: int, out: Path, remainder: Path, seed: int, text_column: str, label_column: str
) -> dict:
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
    return {
        "gold": str(out),
        "gold_rows": int(is_gold.sum()),
        "remainder": str(remainder),
        "remainder_rows": int((~is_gold).sum()),
        "gold_sha256": fingerprint(out),
    }


# -- command line ---------------------------------------------------------------------------------
def gold_default() -> Path:
    """Return the gold set path: $SENTIMENT_GOLD_FILE (read when the parser is built) or data/gold.csv."""
    return Path(os.environ.get("SENTIMENT_GOLD_FILE", "data/gold.csv"))


DATA_DIR_HELP = (
    "where the base training files named in the production config live "
    "(default: $SENTIMENT_DATA_DIR or ../shared/data/imdb)"
)


def add_policy_flags(r: argparse.ArgumentParser) -> None:
    """Add the promotion gate's flags (training/gate.py explains each check)."""
    d = Policy()
    r.add_argument(
        "--accuracy-tolerance",
        type=float,
        default=d.accuracy_tolerance,
        help="refuse if the confidence interval of (candidate - production) gold accuracy lies "
        "entirely below minus this",
    )
    r.add_argument(
        "--log-loss-tolerance",
        type=float,
        default=d.log_loss_tolerance,
        help="refuse if the confidence interval of the gold log-loss difference lies entirely above this",
    )
    r.add_argument(
        "--ece-tolerance",
        type=float,
        default=d.ece_tolerance,
        help="refuse if gold ECE is more than this above production's",
    )
    r.add_argument(
        "--floor-margin",
        type=float,
        default=d.floor_margin,
        help="refuse if gold accuracy is below the best production score on this gold set minus this",
    )
    r.add_argument(
        "--confidence", type=float, default=d.confidence, help="confidence level of the paired intervals"
    )
    r.add_argument(
        "--behaviour-tolerance",
        type=float,
        default=d.behaviour_tolerance,
        help="refuse if a behaviour-suite pass rate (overall or any capability) is more than this fraction "
        "(0.05 = 5 points) below production's",
    )


def add_retrain_command(sub: argparse._SubParsersAction) -> None:
    """Add the ``retrain`` subcommand and its flags."""
    r = sub.add_parser(
        "retrain",
        help="read new data, train a candidate, promote it if the gate lets it",
        formatter_class=HelpFormatter,
    )
    r.add_argument(
        "--new-data", type=Path, required=True, help="drop folder of new labelled CSV/Parquet/JSONL files"
    )
    r.add_argument(
        "--gold",
        type=Path,
        default=gold_default(),
        help="frozen labelled evaluation file, never trained on (default: $SENTIMENT_GOLD_FILE)",
    )
    r.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    r.add_argument(
        "--train-file",
        default=None,
        help="base labelled file instead of the one in production's config (e.g. the make-gold remainder)",
    )
    r.add_argument(
        "--preset",
        default=None,
        help="train the candidate from this preset instead of production's configuration",
    )
    add_policy_flags(r)
    r.add_argument(
        "--keep-last",
        type=int,
        default=5,
        help="keep this many newest versions (never pruning production or its parent); 0 = keep all",
    )
    r.add_argument(
        "--lock-timeout",
        type=float,
        default=0.0,
        help="seconds to wait if another run holds the registry lock (0 = fail at once)",
    )
    r.add_argument(
        "--every-hours",
        type=float,
        default=None,
        help="keep running: retrain every N hours (for the compose 'trainer' service)",
    )
    switches = {
        "--dry-run": "train and evaluate; never promote, record, consume or quarantine anything",
        "--force-promote": "promote even if the gate refuses the candidate",
        "--allow-empty": "retrain even if the drop folder has nothing new",
        "--skip-bad-rows": "skip and count unusable rows in new files (else such a file is quarantined)",
        "--shuffle-labels": (
            "train on shuffled labels (a deliberately bad candidate, to check the promotion gate)"
        ),
        "--continue-word2vec": "continue training production's word2vec instead of rebuilding it",
    }
    for flag, text in switches.items():
        r.add_argument(flag, action="store_true", help=text)
    r.add_argument(
        "--when-drift",
        action="store_true",
        help="retrain only if the drift check (see the 'drift' command) flags the --traffic window; "
        "otherwise exit 0 and leave the drop folder for a later run",
    )
    r.add_argument(
        "--shadow-holdout",
        type=float,
        default=ShadowOptions.holdout,
        help="share of new /v1/feedback rows kept out of this candidate's training to measure both "
        "versions' accuracy on (they join the pool with the run's other rows); 0 = none",
    )
    r.add_argument(
        "--max-disagreement",
        type=float,
        default=None,
        help="refuse a candidate that changes the label of more than this share of the sampled traffic "
        "(not set: the shadow evaluation only reports)",
    )
    drift_check.add_traffic_arguments(r, gold_default())


def add_drift_command(sub: argparse._SubParsersAction) -> None:
    """Add the ``drift`` subcommand: sampled traffic (or any text file) vs production's reference."""
    d = sub.add_parser(
        "drift",
        formatter_class=HelpFormatter,
        help="compare sampled traffic (or any text file) with production's reference; "
        "exit 1 on drift, 0 if none, 2 on bad input",
        description="PSI of scores and of lengths in the reference's decile bins, change of the "
        "out-of-vocabulary rate, and a cross-validated domain-classifier AUC (mean word2vec vectors, "
        "reference texts vs window). Writes report.json, report.md and drift.png; exits 1 when any "
        "check exceeds its threshold.",
    )
    drift_check.add_traffic_arguments(d, gold_default())
    d.add_argument(
        "--model-version", type=version_number_arg, default=None, help="version to check; not set: production"
    )
    d.add_argument(
        "--since-hours",
        type=float,
        default=None,
        help="only sampled texts of the last N hours (sample folders)",
    )
    d.add_argument(
        "--out", type=Path, default=None, help="report folder; not set: <model-dir>/<name>/drift/<time>-v<N>"
    )


def add_other_commands(sub: argparse._SubParsersAction) -> None:
    """Add the status, admit, recover, rollback, promote and make-gold subcommands."""
    s = sub.add_parser(
        "status", help="print production, pool, quarantine, gold overlaps, last test and floor (JSON)"
    )
    s.add_argument(
        "--gold", type=Path, default=gold_default(), help="gold set to check overlaps and the floor against"
    )
    s.add_argument(
        "--data-dir", type=Path, default=None, help=DATA_DIR_HELP + "; used to rebuild old lineage"
    )
    s.add_argument(
        "--floor-margin", type=float, default=Policy.floor_margin, help="margin of the floor shown"
    )
    a = sub.add_parser(
        "admit", help="move a refused run's quarantined rows into the training pool, on purpose"
    )
    a.add_argument("--run", required=True, help="run id (status lists the quarantined runs)")
    sub.add_parser("recover", help="complete a promotion a killed run recorded but did not apply")
    sub.add_parser("rollback", help="make the previous production version production again")
    p = sub.add_parser(
        "promote", help="make a given version production (by hand; the retrain gate is skipped)"
    )
    p.add_argument(
        "--model-version",
        "--version",
        dest="version",
        type=version_number_arg,
        required=True,
        metavar="N",
        help="version number to promote (--version is the old spelling)",
    )
    g = sub.add_parser(
        "make-gold",
        help="split a labelled file into a frozen gold set and a training remainder",
        formatter_class=HelpFormatter,
    )
    g.add_argument("--source", type=Path, required=True, help="labelled file to split")
    g.add_argument("--rows", type=int, default=2000, help="gold set size")
    g.add_argument("--out", type=Path, default=Path("data/gold.csv"), help="gold set file to write")
    g.add_argument(
        "--remainder", type=Path, default=Path("data/train-without-gold.csv"), help="the rest, to train on"
    )
    g.add_argument("--seed", type=int, default=2024, help="seed of the split")
    g.add_argument("--text-column", default="text", help="text column")
    g.add_argument("--label-column", default="label", help="label column")


def build_parser() -> argparse.ArgumentParser:
    """Return the CLI parser: retrain, status, admit, recover, rollback, promote and make-gold."""
    parser = argparse.ArgumentParser(
        prog="python -m training.pipeline", description=__doc__, formatter_class=DocHelpFormatter
    )
    add_registry_arguments(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    add_retrain_command(sub)
    add_drift_command(sub)
    add_other_commands(sub)
    return parser


def options_from_args(args: argparse.Namespace) -> RetrainOptions:
    """Turn the retrain subcommand's flags into RetrainOptions."""
    overrides = {} if args.train_file is None else {"train_file": args.train_file}
    if args.preset:
        overrides = {**preset(args.preset).to_dict(), **overrides}
    policy = Policy(
        accuracy_tolerance=args.accuracy_tolerance,
        log_loss_tolerance=args.log_loss_tolerance,
        ece_tolerance=args.ece_tolerance,
        floor_margin=args.floor_margin,
        confidence=args.confidence,
        behaviour_tolerance=args.behaviour_tolerance,
    )
    return RetrainOptions(
        drop=args.new_data,
        gold=args.gold,
        data_dir=args.data_dir or default_data_dir(),
        policy=policy,
        dry_run=args.dry_run,
        force_promote=args.force_promote,
        continue_word2vec=args.continue_word2vec,
        keep_last=args.keep_last,
        allow_empty=args.allow_empty,
        shuffle_labels=args.shuffle_labels,
        config_overrides=overrides,
        lock_timeout=args.lock_timeout,
        skip_bad_rows=args.skip_bad_rows,
        shadow=ShadowOptions(
            traffic=args.traffic,
            traffic_size=args.window_size,
            holdout=args.shadow_holdout,
            max_disagreement=args.max_disagreement,
        ),
    )


def retrain_loop(
    registry: Registry,
    name: str,
    options: RetrainOptions,
    every_hours: float | None,
    when_drift: argparse.Namespace | None = None,
) -> None:
    """Retrain once, or every ``every_hours`` for ever (a failed run is logged, production unchanged).

    With ``when_drift`` (the parsed flags), each run first checks the sampled traffic for drift
    and retrains only if it finds some.
    """
    while True:
        try:
            if when_drift is not None:
                options.drift = drift_check.summary(drift_check.check_from_args(when_drift, registry))
            if options.drift is not None and not options.drift["drift"]:
                log.info("no drift (report %s): not retraining", options.drift["report_dir"])
                print(json.dumps({"retrained": False, "drift": options.drift}, indent=2), flush=True)
            else:
                report = retrain(registry, name, options)
                summary = {k: report[k] for k in SUMMARY_KEYS} | {"gold": report["gold"]["metrics"]}
                print(json.dumps(summary | {"shadow": report["shadow"]}, indent=2), flush=True)
        except Exception as exc:  # noqa: BLE001 - a scheduler must outlive one bad run
            if every_hours is None:
                raise
            log.exception("this run failed, production unchanged: %s", exc)
        if every_hours is None:
            return
        log.info("next run in %.1f hours", every_hours)
        time.sleep(every_hours * 3600)


def run_command(args: argparse.Namespace, registry: Registry, name: str) -> int:
    """Carry out one subcommand and print its JSON result; return the exit code (drift: 1 = drift)."""
    if args.command == "drift":
        result = drift_check.check_from_args(
            args, registry, version=args.model_version, out=args.out, since_hours=args.since_hours
        )
        print(json.dumps(drift_check.summary(result), indent=2))
        return 1 if result["drift"] else 0
    if args.command == "rollback":
        print(json.dumps({"production": registry.rollback(name)}))
    elif args.command == "promote":
        registry.promote(name, args.version)
        print(json.dumps({"production": args.version}))
    elif args.command == "recover":
        print(
            json.dumps(
                {"recovered": recover(registry, name), "production": registry.production_version(name)}
            )
        )
    elif args.command == "admit":
        with registry.lock(name):
            print(json.dumps({"run_id": args.run, **Ledger(registry, name).admit(args.run)}, indent=2))
    elif args.command == "status":
        doc = status(
            registry,
            name,
            gold=args.gold,
            data_dir=args.data_dir or default_data_dir(),
            policy=Policy(floor_margin=args.floor_margin),
        )
        print(json.dumps(doc, indent=2, default=str))
    elif args.command == "make-gold":
        print(
            json.dumps(
                make_gold(
                    args.source,
                    args.rows,
                    args.out,
                    args.remainder,
                    args.seed,
                    args.text_column,
                    args.label_column,
                ),
                indent=2,
            )
        )
    else:
        retrain_loop(
            registry, name, options_from_args(args), args.every_hours, args if args.when_drift else None
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline CLI; exit 2 on bad input, 3 if another run holds the lock; drift: 1 on drift."""
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        code = run_command(args, Registry(args.registry_root), args.model_name)
    except RegistryError as exc:
        log.error("%s", exc)
        return 3 if "timed out" in str(exc) else 2
    except DataError as exc:
        log.error("%s", exc)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
