"""Write scored chunks as numbered part files plus the manifest that makes a job resumable.

Output folder layout::

    part-00000.parquet   one file per chunk / Dask partition, in input order
    part-00001.parquet
    _manifest.json       what this folder is (input fingerprint, model, columns, partitioning) and
                         which parts are complete, with their row ranges and counts
    _summary.json        written when the job completes: rows read/scored/errored, labels

Why it survives ``kill -9`` at any instant: a part is written to a hidden temporary file, fsynced,
and renamed into place (``os.replace`` is atomic), and only then recorded in the manifest, which
is itself replaced atomically. A part on disk but missing from the manifest is simply scored and
written again on resume (scoring is deterministic, so the rewrite is identical). The leading
underscore/dot keep the manifest, summary and temp files out of ``pd.read_parquet("scored/")``.
On an object store (``s3://...``) every file is one PUT, atomic by itself (``scoring.storage``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from scoring import storage
from scoring.config import ScoringError
from scoring.score import ScoreSpec

log = logging.getLogger(__name__)

MANIFEST_FILE = "_manifest.json"
SUMMARY_FILE = "_summary.json"
MANIFEST_FORMAT = 1
PART_PREFIX = "part-"
EXTENSIONS = {"parquet": ".parquet", "csv": ".csv"}

RESULT_FIELDS = [
    pa.field("probability", pa.float64()),  # calibrated P(positive); null when the row has an error
    pa.field("score", pa.float64()),  # the same, under its deprecated name (one more release)
    pa.field("label", pa.string()),  # "positive" / "negative"; null when the row has an error
    pa.field("model_version", pa.int64()),
    pa.field("error", pa.string()),  # null when scored, else one of scoring.score.ERROR_CODES
]


def output_schema(input_schema: pa.Schema, spec: ScoreSpec) -> pa.Schema:
    """Return the Arrow schema every part is written with (fixed for the whole job)."""
    carried = [pa.field(spec.output_name(c), input_schema.field(c).type) for c in spec.carry]
    return pa.schema(carried + RESULT_FIELDS)


def _as_text(value: Any) -> str | None:
    """Render a value for a text column; JSON values keep their JSON spelling."""
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Convert a scored frame to the job's schema, so every part has identical column types."""
    arrays = []
    for field in schema:
        column = frame[field.name]
        try:
            arrays.append(pa.array(column, type=field.type, from_pandas=True))
        except (pa.ArrowException, TypeError, ValueError) as exc:
            if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
                arrays.append(pa.array([_as_text(v) for v in column], type=field.type))
            else:  # a failure mid-run (exit 1), not a refusal to start: parts may exist already
                raise ValueError(
                    f"column {field.name!r} holds values that are not {field.type} "
                    f"(its type was fixed from the first rows of the input): {exc}"
                ) from exc
    return pa.Table.from_arrays(arrays, schema=schema)


def count_part(frame: pd.DataFrame) -> dict:
    """Return the counts a part contributes to the summary."""
    errors = frame["error"]
    has_error = errors.notna()
    return {
        "rows": int(len(frame)),
        "scored": int((~has_error).sum()),
        "errors": {str(k): int(v) for k, v in sorted(Counter(errors[has_error]).items())},
        "labels": {str(k): int(v) for k, v in sorted(Counter(frame["label"][~has_error]).items())},
    }


@dataclass(frozen=True)
class PartWriter:
    """Writes one part file atomically; picklable, so Dask workers write their own partitions."""

    directory: str
    format: str
    schema: pa.Schema

    def file_name(self, index: int) -> str:
        """Return the file name of part ``index``."""
        return f"{PART_PREFIX}{index:05d}{EXTENSIONS[self.format]}"

    def write(self, index: int, frame: pd.DataFrame, start: int | None = None) -> dict:
        """Write part ``index`` atomically (temp file, fsync, rename; or one PUT) and return its record."""
        table = to_arrow(frame, self.schema)
        name = self.file_name(index)
        with storage.atomic_writer(storage.join(self.directory, name)) as fh:
            if self.format == "parquet":
                pq.write_table(table, fh, compression="zstd")
            else:
                pacsv.write_csv(table, fh)
        record = {"part": index, "file": name, **count_part(frame)}
        if start is not None:
            record["start"], record["stop"] = start, start + len(frame)
        return record


def _is_ours(name: str) -> bool:
    """Return True for file names this module writes (the only ones ``--overwrite`` may delete)."""
    if name in (MANIFEST_FILE, SUMMARY_FILE):
        return True
    if name.startswith(PART_PREFIX) and name.endswith(tuple(EXTENSIONS.values())):
        return True
    return name.startswith(f".{PART_PREFIX}") and name.endswith(".tmp")


class Manifest:
    """The job identity and completed parts of one output folder; every change is written atomically."""

    def __init__(self, directory: str | os.PathLike, doc: dict) -> None:
        self.directory = str(directory)
        self.doc = doc

    @property
    def path(self) -> str:
        """Return the manifest file path."""
        return storage.join(self.directory, MANIFEST_FILE)

    @classmethod
    def read(cls, directory: str | os.PathLike) -> "Manifest | None":
        """Return the folder's manifest, or None when there is none."""
        path = storage.join(directory, MANIFEST_FILE)
        try:
            doc = json.loads(storage.read_bytes(path).decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ScoringError(f"cannot read {path}: {exc}; use --overwrite to start again") from exc
        if doc.get("format") != MANIFEST_FORMAT:
            raise ScoringError(f"{path} has manifest format {doc.get('format')}, expected {MANIFEST_FORMAT}")
        return cls(directory, doc)

    @classmethod
    def create(cls, directory: str | os.PathLike, job: dict) -> "Manifest":
        """Start a new manifest for ``job`` (no parts yet)."""
        now = time.time()
        manifest = cls(
            directory,
            {
                "format": MANIFEST_FORMAT,
                "job": job,
                "parts": [],
                "complete": False,
                "created_at": now,
                "updated_at": now,
            },
        )
        manifest.save()
        return manifest

    @property
    def job(self) -> dict:
        """Return the job identity this folder belongs to."""
        return self.doc["job"]

    @property
    def complete(self) -> bool:
        """Return True once every part was written."""
        return bool(self.doc.get("complete"))

    @property
    def done(self) -> dict[int, dict]:
        """Return the records of completed parts by part number."""
        return {int(p["part"]): p for p in self.doc["parts"]}

    def rows_done(self) -> int:
        """Return the number of input rows in completed parts."""
        return sum(int(p["rows"]) for p in self.doc["parts"])

    def save(self) -> None:
        """Write the manifest atomically."""
        self.doc["updated_at"] = time.time()
        write_json(self.path, self.doc)

    def record(self, part: dict) -> None:
        """Mark one part complete (after its file was renamed into place)."""
        parts = [p for p in self.doc["parts"] if int(p["part"]) != int(part["part"])] + [part]
        self.doc["parts"] = sorted(parts, key=lambda p: int(p["part"]))
        self.save()

    def finish(self) -> None:
        """Mark the job complete and fill in row ranges the engine could not know (Dask)."""
        start = 0
        for part in self.doc["parts"]:
            part.setdefault("start", start)
            part.setdefault("stop", part["start"] + int(part["rows"]))
            start = int(part["stop"])
        self.doc["complete"] = True
        self.save()

    def summary(self) -> dict:
        """Return rows read/scored/errored and the label distribution over all completed parts."""
        errors: Counter[str] = Counter()
        labels: Counter[str] = Counter()
        for part in self.doc["parts"]:
            errors.update(part["errors"])
            labels.update(part["labels"])
        rows = self.rows_done()
        scored = sum(int(p["scored"]) for p in self.doc["parts"])
        return {
            "rows_read": rows,
            "rows_scored": scored,
            "rows_errored": rows - scored,
            "errors": dict(sorted(errors.items())),
            "labels": dict(sorted(labels.items())),
            "parts": len(self.doc["parts"]),
            "complete": self.complete,
            "model": dict(self.job["model"]),
            "input": self.job["input"]["path"],
            "output": self.directory,
        }


#: Job fields that may differ on a rerun without making the folder belong to another job.
_INFORMATIONAL = {"path"}


def _differences(old: dict, new: dict) -> list[str]:
    """Return human-readable differences between two job identities (paths are informational)."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{key}.{d}" for d in _differences(a, b)]
        elif a != b and key not in _INFORMATIONAL:
            diffs.append(f"{key}: {json.dumps(a)} -> {json.dumps(b)}")
    return diffs


def write_json(path: str, doc: dict) -> None:
    """Write a JSON document atomically (readers see the old one or the new one, never a mix)."""
    storage.write_bytes(path, json.dumps(doc, indent=2, sort_keys=True).encode("utf-8"))


def prepare_output(directory: str | os.PathLike, job: dict, *, overwrite: bool = False) -> Manifest:
    """Return the manifest to continue, after refusing a folder that belongs to another job.

    This is the first function of a run that writes anything.
    """
    directory = str(directory)
    if storage.is_file(directory):
        raise ScoringError(f"output {directory} exists and is not a folder")
    existing = Manifest.read(directory)
    if existing is not None:
        diffs = _differences(existing.job, job)
        only_partitioning = all(d.startswith("partitioning") for d in diffs)
        if not diffs or (only_partitioning and existing.complete):
            _remove_temp_files(directory)
            return existing
        if not overwrite:
            raise ScoringError(
                f"output folder {directory} holds another job ({'; '.join(diffs)}); "
                "use another --output, rerun with the original options, or pass --overwrite"
            )
        _clear(directory)
    elif storage.listdir(directory):
        if not overwrite:
            raise ScoringError(
                f"output folder {directory} is not empty and has no {MANIFEST_FILE}; "
                "use an empty or new folder, or pass --overwrite"
            )
        _clear(directory)
    storage.makedirs(directory)
    return Manifest.create(directory, job)


def _remove_temp_files(directory: str) -> None:
    """Delete temp files a killed run left behind."""
    for name in storage.listdir(directory):
        if name.startswith(f".{PART_PREFIX}") and name.endswith(".tmp"):
            storage.remove(storage.join(directory, name))


def _clear(directory: str) -> None:
    """Delete this module's files from ``directory`` (never anything else)."""
    removed = 0
    for name in storage.listdir(directory):
        path = storage.join(directory, name)
        if _is_ours(name) and storage.is_file(path):
            storage.remove(path)
            removed += 1
    log.warning("--overwrite: removed %d file(s) of a previous job from %s", removed, directory)


def write_summary(directory: str | os.PathLike, summary: dict) -> str:
    """Write the end-of-job summary next to the parts and return its path."""
    path = storage.join(directory, SUMMARY_FILE)
    write_json(path, summary)
    return path


def read_output(directory: str | os.PathLike) -> pd.DataFrame:
    """Read every completed part of an output folder, in order (for tests, checks and notebooks)."""
    manifest = Manifest.read(directory)
    if manifest is None:
        raise ScoringError(f"{directory} has no {MANIFEST_FILE}")
    frames = []
    for part in manifest.doc["parts"]:
        with storage.open_file(storage.join(directory, part["file"])) as fh:
            if part["file"].endswith(".parquet"):
                frames.append(pq.read_table(fh).to_pandas())
            else:  # CSV has no types: read each column back as the manifest's type
                types = {}
                for name, type_name in manifest.job["columns"]:
                    try:
                        types[name] = pa.type_for_alias(type_name)
                    except ValueError:
                        pass
                options = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
                frames.append(pacsv.read_csv(fh, convert_options=options).to_pandas())
    if not frames:
        return pd.DataFrame(columns=[c[0] for c in manifest.job["columns"]])
    return pd.concat(frames, ignore_index=True)
