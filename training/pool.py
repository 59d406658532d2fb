"""The retraining data pool: which rows a candidate trains on, and the ledger that says why.

Rules:

- The **pool** is the base training file plus the rows of every *pooled* run: a run whose
  candidate was promoted, or one admitted by hand (``python -m training.pipeline admit --run ID``).
- A run whose candidate was refused keeps its rows **quarantined** beside its report; they never
  reach a later candidate unless admitted.
- A text already known with another label is **relabelled**: the newest label wins (runs in the
  order they ran, base data oldest), each change is listed in the run report, and the old rows stay
  on disk (lineage).
- Rows whose text is in the gold set are **excluded** from training wherever they come from, and
  counted; they never stop a run.
- A drop file that cannot be used (unreadable, missing columns, bad rows without
  ``--skip-bad-rows``) is moved to ``<drop>/quarantine/`` with a ``.reason.txt`` beside it; the run
  goes on with the other files.

On disk::

    <model>/pipeline/ledger.json       runs (status, decision, rows), consumed drop files, gold scores;
                                       one JSON document replaced atomically, once per run
    <model>/runs/<run>/rows.parquet    the rows a run brought: text, label, key, file, row, sha256
    <drop>/quarantine/<file>           a drop file that could not be used, and <file>.reason.txt
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from registry.files import atomic_path, table_format, write_json_atomic
from registry.store import Registry
from training.data import DataError, LabelledData, fingerprint, load_labelled
from training.lineage import text_key

log = logging.getLogger(__name__)

LEDGER = "ledger.json"
ROWS_FILE = "rows.parquet"
QUARANTINE_DIR = "quarantine"
POOLED, QUARANTINED = "pooled", "quarantined"
LIST_LIMIT = 50  # relabels / gold overlaps listed one by one in a report (all are counted)
ROW_COLUMNS = ["text", "label", "key", "file", "row", "sha256"]


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(dtype="int8" if c == "label" else "int64" if c == "row" else object)
            for c in ROW_COLUMNS
        }
    )


# -- the ledger -----------------------------------------------------------------------------------
class Ledger:
    """The pipeline's record of runs, consumed drop files and gold scores (one atomic JSON file)."""

    def __init__(self, registry: Registry, name: str) -> None:
        self.model_home = registry.model_home(name)
        self.state_dir = self.model_home / "pipeline"
        self.path = self.state_dir / LEDGER
        self.doc = self._load()

    def _load(self) -> dict:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            doc = {"runs": {}, "consumed": {}, "gold_scores": {}}
            self._migrate(doc)
        return doc

    def _migrate(self, doc: dict) -> None:
        """Adopt the state of the pipeline before the ledger: consumed files kept, old rows quarantined."""
        old_record = self.state_dir / "consumed.json"
        old_rows = sorted((self.state_dir / "ingested").glob("*.parquet"))
        if old_record.is_file():
            doc["consumed"] = json.loads(old_record.read_text(encoding="utf-8"))
        if old_rows:
            frame = pd.concat([pd.read_parquet(p) for p in old_rows], ignore_index=True)
            frame["key"] = frame["text"].map(text_key)
            frame["file"], frame["row"], frame["sha256"] = "ingested/", np.arange(1, len(frame) + 1), ""
            rows_file = self.state_dir / "legacy-rows.parquet"
            frame[ROW_COLUMNS].to_parquet(rows_file, index=False)
            doc["runs"]["legacy"] = {
                "seq": 0,
                "status": QUARANTINED,
                "rows": len(frame),
                "rows_file": str(rows_file.relative_to(self.model_home)),
                "files": [],
                "promoted": False,
                "candidate_version": None,
                "parent_version": None,
                "reason": "ingested before the ledger existed (refused runs' rows were kept then): "
                "admit on purpose",
                "decided_at": time.time(),
            }
            log.warning(
                "pipeline state from before the ledger: %d old rows quarantined as run 'legacy' "
                "(python -m training.pipeline admit --run legacy to train on them again)",
                len(frame),
            )

    def save(self) -> None:
        """Replace the ledger file atomically."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, self.doc)

    # -- runs ------------------------------------------------------------------------------------
    def runs(self) -> list[tuple[str, dict]]:
        """Return (run_id, entry) of every recorded run, oldest first."""
        return sorted(self.doc["runs"].items(), key=lambda item: item[1]["seq"])

    def next_seq(self) -> int:
        """Return the sequence number of the next run."""
        return max((r["seq"] for r in self.doc["runs"].values()), default=0) + 1

    def with_status(self, status: str) -> list[tuple[str, dict]]:
        """Return the runs in one status, oldest first."""
        return [(rid, r) for rid, r in self.runs() if r["status"] == status]

    def rows_of(self, run_id: str) -> pd.DataFrame:
        """Return the rows a recorded run brought."""
        entry = self.doc["runs"][run_id]
        return (
            pd.read_parquet(self.model_home / entry["rows_file"]) if entry.get("rows_file") else _empty_rows()
        )

    def pooled_rows(self) -> list[tuple[str, pd.DataFrame]]:
        """Return (run_id, rows) of every pooled run, oldest first."""
        return [(rid, self.rows_of(rid)) for rid, _ in self.with_status(POOLED)]

    def admit(self, run_id: str) -> dict:
        """Move a quarantined run's rows into the pool (the caller holds the registry lock)."""
        entry = self.doc["runs"].get(run_id)
        if entry is None:
            known = ", ".join(rid for rid, _ in self.with_status(QUARANTINED)) or "none"
            raise DataError(f"no run {run_id!r} in {self.path}; quarantined runs: {known}")
        if entry["status"] != QUARANTINED:
            raise DataError(f"run {run_id} is {entry['status']}, not quarantined: nothing to admit")
        entry.update(status=POOLED, admitted_at=time.time())
        self.save()
        log.info("run %s admitted: its %d rows join the training pool", run_id, entry["rows"])
        return entry

    def consumed(self) -> dict:
        """Return {sha256: record} of drop files already used by a run."""
        return self.doc["consumed"]

    # -- gold scores and the floor ---------------------------------------------------------------
    def scores(self, gold_sha: str) -> dict:
        """Return {version: score} recorded on one gold set."""
        return self.doc["gold_scores"].get(gold_sha, {})

    def floor_reference(self, gold_sha: str, extra: dict | None = None) -> dict | None:
        """Return the best fairly measured production score on this gold set (with ``extra`` scores)."""
        scores = {**self.scores(gold_sha), **(extra or {})}
        fair = [(v, s) for v, s in scores.items() if s.get("fair") and s.get("production")]
        if not fair:
            return None
        version, best = max(fair, key=lambda item: (item[1]["accuracy"], -int(item[0])))
        return {"version": int(version), **best}

    def record_run(
        self,
        run_id: str,
        entry: dict,
        consumed: dict,
        scores: dict[str, dict] | None = None,
        gold_sha: str | None = None,
    ) -> None:
        """Record a finished run, the drop files it consumed and its gold scores, all in one write."""
        self.doc["runs"][run_id] = entry
        self.doc["consumed"].update(consumed)
        if gold_sha and scores:
            stored = self.doc["gold_scores"].setdefault(gold_sha, {})
            for version, score in scores.items():
                stored[str(version)] = {
                    **stored.get(str(version), {}),
                    **score,
                    "production": score.get("production")
                    or stored.get(str(version), {}).get("production", False),
                }
        self.save()

    def pending_promotion(self, production: int | None) -> tuple[str, dict] | None:
        """Return the newest run if it decided to promote but was killed before the pointer swap."""
        runs = self.runs()
        if not runs:
            return None
        run_id, entry = runs[-1]
        if (
            entry.get("promoted")
            and entry.get("candidate_version") is not None
            and entry["candidate_version"] != production
            and entry.get("parent_version") == production
        ):
            return run_id, entry
        return None

    def summary(self) -> dict:
        """Return the pool and quarantine as counts and lists for status and run reports."""
        pooled = self.with_status(POOLED)
        return {
            "pooled_runs": len(pooled),
            "pooled_rows": sum(r["rows"] for _, r in pooled),
            "quarantined_runs": [
                {
                    "run_id": rid,
                    "rows": r["rows"],
                    "candidate_version": r.get("candidate_version"),
                    "reason": r.get("reason", ""),
                }
                for rid, r in self.with_status(QUARANTINED)
            ],
        }


# -- the drop folder ------------------------------------------------------------------------------
@dataclass
class DropBatch:
    """The rows read from a run's new drop files, and what happened to each file."""

    rows: pd.DataFrame  # ROW_COLUMNS
    files: dict[str, dict] = field(default_factory=dict)  # sha256 -> record of a usable file
    bad_files: list[dict] = field(default_factory=list)  # {file, sha256, reason, quarantined_to}


def pending_files(folder: Path, consumed: dict) -> list[tuple[Path, str]]:
    """Return (file, sha256) of drop files no run has consumed yet, by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: drop folder does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and table_format(p) is not None)
    return [(p, sha) for p, sha in ((p, fingerprint(p)) for p in files) if sha not in consumed]


def quarantine_file(path: Path, reason: str, run_id: str) -> Path:
    """Move an unusable drop file to ``<drop>/quarantine/`` and write why beside it; return the new path."""
    target_dir = path.parent / QUARANTINE_DIR
    target_dir.mkdir(exist_ok=True)
    target = target_dir / path.name
    if target.exists():
        target = target_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{path.name}"
    reason_file = target.with_name(target.name + ".reason.txt")
    reason_file.write_text(
        f"{path.name} was not used by retrain run {run_id} ({time.strftime('%Y-%m-%d %H:%M:%S')}):"
        f"\n\n{reason}\n\n"
        "Fix the file and put it back into the drop folder to have it ingested "
        "(the other files were used).\n",
        encoding="utf-8",
    )
    os.replace(path, target)
    log.warning("quarantined %s → %s: %s", path.name, target, reason)
    return target


def read_drop(
    files: Sequence[tuple[Path, str]],
    *,
    run_id: str,
    text_column: str,
    label_column: str,
    skip_bad_rows: bool,
    move_bad_files: bool = True,
) -> DropBatch:
    """Read new drop files; quarantine the unusable ones (unless ``move_bad_files`` is off, for dry runs)."""
    parts, records, bad = [], {}, []
    for path, sha in files:
        if sha in records:  # the same bytes under another name: its rows are already in
            log.info("drop %s: identical to %s, skipped", path.name, records[sha]["file"])
            continue
        try:
            data = load_labelled(
                path, text_column=text_column, label_column=label_column, skip_bad_rows=skip_bad_rows
            )
        except DataError as exc:
            moved = None
            if move_bad_files:
                try:
                    moved = quarantine_file(path, str(exc), run_id)
                except OSError as move_error:  # a read-only drop folder: skip the file, say so, go on
                    log.error("cannot quarantine %s (%s); skipped in this run", path, move_error)
            bad.append(
                {
                    "file": str(path),
                    "sha256": sha,
                    "reason": str(exc),
                    "quarantined_to": str(moved) if moved else None,
                }
            )
            continue
        frame = pd.DataFrame({"text": data.texts, "label": data.labels.astype(np.int8)})
        frame["key"] = frame["text"].map(text_key)
        frame["file"], frame["row"], frame["sha256"] = path.name, np.arange(1, len(frame) + 1), sha
        parts.append(frame)
        records[sha] = {
            "file": str(path),
            "rows_read": len(data) + sum(data.skipped.values()),
            "rows": len(data),
            "skipped": data.skipped,
            "run_id": run_id,
            "consumed_at": time.time(),
        }
        log.info("drop %s: %d rows, skipped %s", path.name, len(data), data.skipped or "none")
    rows = pd.concat(parts, ignore_index=True) if parts else _empty_rows()
    return DropBatch(rows[ROW_COLUMNS], records, bad)


# -- assembling a candidate's training set --------------------------------------------------------
@dataclass
class TrainingSet:
    """The rows a candidate trains on, and an account of every row left out or changed."""

    texts: list[str]
    labels: np.ndarray
    keys: list[str]
    account: dict
    ratings: np.ndarray | None = (
        None  # base rows' star ratings (NaN for pooled and new rows); None = none known
    )


def _origin(source: str, file: str, row: int) -> str:
    return "base" if source == "base" else f"{source}:{file}:{row}"


def _listed(frame: pd.DataFrame, previous: pd.DataFrame | None = None) -> list[dict]:
    """Describe the first LIST_LIMIT rows for a report (with the row each one replaced, if given)."""
    out = []
    for idx, r in frame.head(LIST_LIMIT).iterrows():
        item = {"text": r["text"][:80], "key": r["key"], "origin": _origin(r["source"], r["file"], r["row"])}
        if previous is not None:
            p = previous.loc[idx]
            item.update(
                old_label=int(p["label"]),
                old_origin=_origin(p["source"], p["file"], int(p["row"])),
                new_label=int(r["label"]),
            )
        out.append(item)
    return out


def assemble(
    base: LabelledData,
    pooled: Sequence[tuple[str, pd.DataFrame]],
    new: pd.DataFrame,
    gold_keys: set[str],
    new_source: str = "new",
) -> TrainingSet:
    """Return base + pooled + new rows with gold texts excluded and, per text, the newest label.

    Order is age: base first, then pooled runs in the order they ran, then the new rows; a later
    row for a known text replaces the earlier one (a relabel if the label differs, else a duplicate).
    """
    base_frame = pd.DataFrame({"text": base.texts, "label": np.asarray(base.labels, dtype=np.int8)})
    base_frame["key"] = base_frame["text"].map(text_key)
    base_frame["file"], base_frame["row"], base_frame["sha256"] = Path(base.source).name, 0, ""
    base_frame["rating"] = base.ratings_or_unknown()  # survives into retraining: short-text crops need it
    frames = [base_frame.assign(source="base")]
    frames += [rows.assign(source=run_id) for run_id, rows in pooled]
    frames.append(new.assign(source=new_source))
    rows = pd.concat(frames, ignore_index=True)
    rows["kind"] = np.where(
        rows["source"] == "base", "base", np.where(rows["source"] == new_source, "new", "pool")
    )

    in_gold = rows["key"].isin(gold_keys).to_numpy()
    gold_rows = rows[in_gold]
    rows = rows[~in_gold]
    previous = rows.groupby("key", sort=False)[["label", "source", "file", "row"]].shift()
    seen = previous["label"].notna().to_numpy()
    changed = seen & (previous["label"].to_numpy(dtype=float) != rows["label"].to_numpy(dtype=float))
    kept = rows.drop_duplicates("key", keep="last")

    is_new = (rows["kind"] == "new").to_numpy()
    relabels_new = rows[changed & is_new]
    account = {
        "rows": len(kept),
        "base_rows": int((kept["kind"] == "base").sum()),
        "pool_rows": int((kept["kind"] == "pool").sum()),
        "new_rows": int((kept["kind"] == "new").sum()),
        "new_rows_read": int((rows["kind"] == "new").sum() + (gold_rows["kind"] == "new").sum()),
        "new_texts": int((is_new & ~seen).sum()),
        "duplicates": int((is_new & seen & ~changed).sum()),
        "relabelled": len(relabels_new),
        "relabels": _listed(relabels_new, previous),
        "pool_relabels_in_effect": int((changed & (rows["kind"] == "pool").to_numpy()).sum()),
        "base_duplicates": int(((rows["kind"] == "base").to_numpy() & seen).sum()),
        "gold_excluded": {k: int((gold_rows["kind"] == k).sum()) for k in ("base", "pool", "new")},
        "gold_excluded_rows": _listed(gold_rows[gold_rows["kind"] != "base"]),
    }
    log.info(
        "training set: %d rows (%d base, %d pool, %d new); %d duplicates, %d relabelled, gold excluded %s",
        account["rows"],
        account["base_rows"],
        account["pool_rows"],
        account["new_rows"],
        account["duplicates"],
        account["relabelled"],
        account["gold_excluded"],
    )
    ratings = None if base.ratings is None else kept["rating"].to_numpy(np.float64)
    return TrainingSet(
        kept["text"].tolist(), kept["label"].to_numpy(np.int8), kept["key"].tolist(), account, ratings
    )


def store_rows(rows: pd.DataFrame, run_dir: Path) -> Path:
    """Write a run's new rows beside its report (atomically); return the file."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / ROWS_FILE) as tmp:
        rows[ROW_COLUMNS].to_parquet(tmp, index=False)
    return run_dir / ROWS_FILE
