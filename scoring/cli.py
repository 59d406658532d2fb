"""Command line of the batch scorer: parse flags into a JobConfig, run it, map errors to exit codes.

Exit codes: 0 done (also when the output was already complete), 2 the job cannot run as asked
(unreadable input, missing column, unknown model version, output folder of another job, bad flag;
nothing was written), 1 the job failed while running (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from tqdm.contrib.logging import logging_redirect_tqdm

from registry.cli import HelpFormatter, add_registry_arguments, configure_logging
from scoring.config import ENGINES, INPUT_FORMATS, OUTPUT_FORMATS, JobConfig, ScoringError, available_cores
from scoring.config import JobFailed, byte_size
from scoring.score import ERROR_CODES

log = logging.getLogger("scoring")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser; every flag says what it does and its default."""
    cores = available_cores()
    parser = argparse.ArgumentParser(
        prog="python -m scoring",
        description=(
            "Score a file (or folder) of texts with a registered sentiment model. Writes numbered part "
            "files, a manifest that makes the job resumable (rerun the same command after a crash), "
            "and a summary. Rows that cannot be scored are kept with an 'error' value: "
            + ", ".join(ERROR_CODES)
            + "."
        ),
        formatter_class=HelpFormatter,
    )
    io = parser.add_argument_group("input and output")
    io.add_argument(
        "--input",
        required=True,
        help="CSV (.csv, .csv.gz), Parquet or JSON Lines file, or a folder of such files (read in name "
        "order); a local path (relative to this directory) or a URL such as s3://bucket/key",
    )
    io.add_argument(
        "--output",
        required=True,
        help="output folder: part-NNNNN files, _manifest.json, _summary.json; local path or s3:// URL",
    )
    io.add_argument("--text-column", default="text", help="input column holding the text to score")
    io.add_argument(
        "--id-column", default="id", help="input column identifying each row; copied to the output"
    )
    io.add_argument(
        "--input-format",
        default="auto",
        choices=INPUT_FORMATS,
        help="input format; 'auto' reads it from the file extensions",
    )
    io.add_argument(
        "--format",
        dest="output_format",
        default="parquet",
        choices=OUTPUT_FORMATS,
        help="format of the output part files",
    )
    io.add_argument(
        "--keep-columns",
        action="store_true",
        help="copy every input column to the output, not only the id "
        "(a column named like a result column, e.g. probability or label, becomes input_<name>)",
    )
    io.add_argument(
        "--max-chars",
        type=int,
        default=100_000,
        help="longer texts are not scored and get error 'text_too_long'",
    )
    io.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the output of a different job in --output instead of refusing "
        "(deletes only the scorer's own files)",
    )
    add_registry_arguments(
        parser,
        version_help="version to score with: a number, or 'production' (the version "
        "production names when the job starts)",
        root_type=str,  # a local folder or a URL such as s3://bucket/models (Path would mangle it)
    )
    run = parser.add_argument_group("execution")
    run.add_argument(
        "--chunk-size",
        type=int,
        default=5_000,
        help="rows read, scored and written per part; bounds memory and the work lost to a crash",
    )
    run.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="max texts per model call (texts of similar length are batched together)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=cores,
        help="local engine: scoring processes, each loads the model once (1 = score in this process)",
    )
    run.add_argument(
        "--threads", type=int, default=1, help="ONNX Runtime intra-op threads per scoring process"
    )
    run.add_argument(
        "--engine",
        default="local",
        choices=ENGINES,
        help="'local' (this machine) or 'dask' (a Dask cluster; see --scheduler)",
    )
    run.add_argument(
        "--scheduler",
        default=None,
        help="Dask scheduler address, e.g. tcp://host:8786 (default: start a LocalCluster)",
    )
    run.add_argument(
        "--dask-workers",
        type=int,
        default=cores,
        help="LocalCluster size when --engine dask has no --scheduler (one process each)",
    )
    run.add_argument(
        "--partition-size",
        type=byte_size,
        default="8MiB",
        help="--engine dask: input bytes per task (one task writes one part); CSV and JSON Lines "
        "files are cut into byte ranges of this size at record ends, Parquet files into runs "
        "of row groups; compressed files are read here and sent in --chunk-size row chunks",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar and only warnings/errors (cron)")
    return parser


def config_from_args(args: argparse.Namespace) -> JobConfig:
    """Turn parsed flags into a JobConfig (validates combinations)."""
    return JobConfig(
        input=args.input,
        output=args.output,
        text_column=args.text_column,
        id_column=args.id_column,
        input_format=args.input_format,
        output_format=args.output_format,
        keep_columns=args.keep_columns,
        max_chars=args.max_chars,
        overwrite=args.overwrite,
        model_dir=args.registry_root,
        model_name=args.model_name,
        model_version=args.model_version,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        workers=args.workers,
        threads=args.threads,
        engine=args.engine,
        scheduler=args.scheduler,
        dask_workers=args.dask_workers,
        partition_size=args.partition_size,
        quiet=args.quiet,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scorer with command-line arguments; return the process exit code."""
    from scoring.job import run_job  # after argument parsing: --help stays fast

    args = build_parser().parse_args(argv)
    configure_logging(quiet=args.quiet)
    if args.engine == "dask":
        import distributed  # noqa: F401 - configures its loggers on import; override that below

        # Dask logs every worker start/stop at INFO through its own handler: keep the job's log readable.
        logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        config = config_from_args(args)
        with logging_redirect_tqdm():
            run_job(config)
    except ScoringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JobFailed as exc:  # one line naming the part, the worker and the cause; parts are kept
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        log.error("interrupted; rerun the same command to resume")
        return EXIT_FAILED
    except Exception:  # noqa: BLE001 - log the traceback, exit non-zero, keep completed parts
        log.exception("scoring failed; rerun the same command to resume")
        return EXIT_FAILED
    return EXIT_OK
