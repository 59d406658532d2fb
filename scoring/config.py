"""Every option of a batch scoring job, with its default and meaning, in one place.

The CLI builds a :class:`JobConfig` from its flags; tests and notebooks build one directly and
call :func:`scoring.job.run_job`. :class:`ScoringError` is the exception the CLI turns into a clean
message and exit code 2 (bad input, missing column, unknown model, conflicting output);
:class:`JobFailed` into one line and exit code 1 (a part failed while running; rerun to resume).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

from scoring import storage

INPUT_FORMATS = ("auto", "csv", "parquet", "jsonl")
OUTPUT_FORMATS = ("parquet", "csv")
ENGINES = ("local", "dask")


class ScoringError(Exception):
    """The job cannot start (or continue) as asked; the message says what to change."""


class JobFailed(Exception):
    """A part failed while the job ran; the message is one line, and the parts written are kept."""


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
}


def byte_size(text: str) -> int:
    """Parse a size such as ``8MiB``, ``500kB`` or ``1048576`` into bytes (ValueError if it is none)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 8MiB, 500kB, 1048576)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def available_cores() -> int:
    """Return the CPU cores this process may run on (respects taskset/cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class JobConfig:
    """One scoring job: what to read, which model, where to write, and how to parallelise."""

    # Paths may be local (relative ones are made absolute by the client before anything is sent
    # to a worker) or fsspec URLs such as s3://bucket/key (see scoring.storage).
    # -- input ---------------------------------------------------------------------------------
    input: str | Path  # a CSV (.csv, .csv.gz), Parquet or JSON Lines file, or a folder of such parts
    text_column: str = "text"  # column holding the text to score
    id_column: str = "id"  # column identifying each row; copied to the output unchanged
    input_format: str = "auto"  # auto (from the file extension) | csv | parquet | jsonl
    # -- model ---------------------------------------------------------------------------------
    model_dir: str | Path = Path("models")  # registry root (the folder holding <model_name>/<version>/)
    model_name: str = "sentiment"  # model name inside the registry
    model_version: int | str = "production"  # a version number, or "production" (read once at start)
    # -- output --------------------------------------------------------------------------------
    output: str | Path = Path("scored")  # folder receiving part files, _manifest.json and _summary.json
    output_format: str = "parquet"  # parquet | csv
    keep_columns: bool = False  # copy every input column to the output, not only the id
    max_chars: int = 100_000  # longer texts are not scored (error "text_too_long")
    overwrite: bool = False  # replace a previous job's output instead of refusing
    # -- execution -----------------------------------------------------------------------------
    chunk_size: int = 5_000  # rows per chunk = per output part (local engine); bounds memory
    batch_size: int = 32  # max reviews per model call (the predictor length-buckets them); see docs
    workers: int = dataclasses.field(default_factory=available_cores)  # local scoring processes
    threads: int = 1  # ONNX Runtime intra-op threads per scoring process
    engine: str = "local"  # local | dask
    partition_size: int = 8 * 2**20  # dask: input bytes per partition (= task = part); see readers.py
    scheduler: str | None = None  # Dask scheduler address; None = start a LocalCluster
    dask_workers: int = dataclasses.field(default_factory=available_cores)  # LocalCluster size
    dask_processes: bool = True  # LocalCluster workers as processes (False: threads, for tests)
    quiet: bool = False  # no progress bar (cron)

    def __post_init__(self) -> None:
        if self.input_format not in INPUT_FORMATS:
            raise ScoringError(f"--input-format must be one of {INPUT_FORMATS}, not {self.input_format!r}")
        if self.output_format not in OUTPUT_FORMATS:
            raise ScoringError(f"--format must be one of {OUTPUT_FORMATS}, not {self.output_format!r}")
        if self.engine not in ENGINES:
            raise ScoringError(f"--engine must be one of {ENGINES}, not {self.engine!r}")
        for name in (
            "chunk_size",
            "batch_size",
            "workers",
            "threads",
            "dask_workers",
            "max_chars",
            "partition_size",
        ):
            if getattr(self, name) < 1:
                raise ScoringError(f"--{name.replace('_', '-')} must be at least 1")
        if self.id_column == self.text_column:
            raise ScoringError("--id-column and --text-column must name different columns")
        if self.scheduler and self.engine != "dask":
            raise ScoringError("--scheduler needs --engine dask")

    def replace(self, **changes) -> "JobConfig":
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def resolved(self) -> "JobConfig":
        """Return a copy whose local paths are absolute: a worker's working directory is not ours."""
        return self.replace(
            input=storage.absolute(self.input),
            output=storage.absolute(self.output),
            model_dir=storage.absolute(self.model_dir),
        )
