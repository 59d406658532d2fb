"""Run one batch scoring job from a :class:`~scoring.config.JobConfig`: check, score, summarise.

Reads top to bottom: 0. make every local path absolute (workers have their own working
directories), 1. check the input and its columns, 2. resolve and load the model, 3. describe the
job (its identity decides whether an output folder may be resumed), 4. claim the output folder,
5. score the parts not done yet, 6. write and log the summary. Steps 1-3 write nothing, so a bad
input, a missing column or an unknown model version fails before any output.
"""

from __future__ import annotations

import logging
import time

from tqdm import tqdm

from scoring import storage
from scoring.config import JobConfig, JobFailed, ScoringError
from scoring.engines import DaskEngine, LocalEngine, make_engine
from scoring.models import resolve_model
from scoring.readers import InputSource, open_input
from scoring.score import RESULT_COLUMNS, ScoreSpec, get_predictor
from scoring.writer import Manifest, PartWriter, output_schema, prepare_output, write_summary

log = logging.getLogger(__name__)


def build_spec(config: JobConfig, source: InputSource, version_dir: str, version: int) -> ScoreSpec:
    """Return the per-chunk scoring spec: which columns to carry and how to score."""
    carry = tuple(source.columns) if config.keep_columns else (config.id_column,)
    spec = ScoreSpec(
        version_dir=version_dir,
        model_version=version,
        text_column=config.text_column,
        carry=carry,
        max_chars=config.max_chars,
        batch_size=config.batch_size,
        threads=config.threads,
    )
    names = spec.output_columns
    if len(set(names)) != len(names):
        raise ScoringError(f"output column names would repeat: {names}; rename the input columns")
    renamed = [c for c in carry if c in RESULT_COLUMNS]
    if renamed:
        log.warning("input column(s) %s written as %s", renamed, [spec.output_name(c) for c in renamed])
    return spec


def describe_job(
    config: JobConfig, source: InputSource, spec: ScoreSpec, columns: list[list[str]], partitioning: dict
) -> dict:
    """Return the job identity stored in the manifest; a rerun must match it to resume."""
    return {
        "input": {
            "path": source.root,
            "format": source.format,
            "files": len(source.files),
            "rows": source.total_rows,
            "fingerprint": source.fingerprint(),
        },
        "model": {"name": config.model_name, "version": spec.model_version, "path": spec.version_dir},
        "text_column": config.text_column,
        "id_column": config.id_column,
        "keep_columns": config.keep_columns,
        "max_chars": config.max_chars,
        "output_format": config.output_format,
        "columns": columns,
        "partitioning": partitioning,
    }


def score_remaining(
    engine: LocalEngine | DaskEngine, manifest: Manifest, *, total_rows: int | None, quiet: bool, label: str
) -> float:
    """Score the parts the manifest lacks, recording each as it lands; return the seconds it took.

    The seconds run from the moment workers are ready to the last recorded part, so that start-up
    and pool shutdown do not count against the rate.
    """
    if manifest.complete:
        log.info("output %s is already complete: nothing to do", manifest.directory)
        return 0.0
    if manifest.done:
        log.info("resuming: %d part(s), %d rows already done", len(manifest.done), manifest.rows_done())
    last_part_at = None
    with tqdm(
        total=total_rows,
        initial=manifest.rows_done(),
        unit="rows",
        unit_scale=True,
        desc=label,
        disable=quiet,
        smoothing=0.1,
    ) as bar:

        def on_part(record: dict) -> None:
            """Record a written part (the resume point) and advance the bar."""
            nonlocal last_part_at
            manifest.record(record)
            bar.update(record["rows"])
            last_part_at = time.perf_counter()

        try:
            engine.run(set(manifest.done), on_part)
        except JobFailed as exc:
            raise JobFailed(
                f"{exc}; the {len(manifest.done)} part(s) done are kept in {manifest.directory}: "
                "fix the cause and rerun the same command to resume"
            ) from None
    manifest.finish()
    if engine.ready_at is None or last_part_at is None:
        return 0.0
    return last_part_at - engine.ready_at


def run_job(config: JobConfig) -> dict:
    """Score ``config.input`` into ``config.output`` (resuming a killed run) and return the summary."""
    started = time.perf_counter()
    # 0. Paths: absolute before any task is sent (a worker resolves relative paths in its own cwd).
    config = config.resolved()
    # 1. Input: files, format, columns.
    source = open_input(config.input, config.input_format)
    source.require([config.id_column, config.text_column])
    if storage.is_dir(source.root) and f"{config.output}/".startswith(f"{source.root}/"):
        raise ScoringError(
            f"--output {config.output} is inside the input folder {source.root}: "
            "its parts would be read as input on the next run"
        )
    # 2. Model: resolve the version and load it once here, so a broken model fails now.
    version_dir, version = resolve_model(config.model_dir, config.model_name, config.model_version)
    spec = build_spec(config, source, version_dir, version)
    try:
        get_predictor(spec).warm_up()
    except Exception as exc:  # noqa: BLE001 - whatever breaks loading, the job must not start
        raise ScoringError(
            f"cannot use model {config.model_name} v{version} at {version_dir}: {exc}"
        ) from exc
    # 3. Job identity and engine (a Dask cluster is reached here, still before writing).
    schema = output_schema(source.schema, spec)
    writer = PartWriter(config.output, config.output_format, schema)
    read_columns = list(spec.carry) + ([config.text_column] if config.text_column not in spec.carry else [])
    with make_engine(config, source, spec, writer, read_columns) as engine:
        job = describe_job(
            config, source, spec, [[f.name, str(f.type)] for f in schema], engine.partitioning()
        )
        # 4. Claim the output folder: the first write of the run.
        manifest = prepare_output(config.output, job, overwrite=config.overwrite)
        resumed_rows = manifest.rows_done()
        # 5. Score what is left.
        scoring_seconds = score_remaining(
            engine,
            manifest,
            total_rows=source.total_rows,
            quiet=config.quiet,
            label=f"scoring {config.model_name} v{version}",
        )
    # 6. Summary over every part (this run's and earlier runs'), plus this run's speed.
    summary = manifest.summary()
    rows_this_run = summary["rows_read"] - resumed_rows
    summary["run"] = {
        "engine": config.engine,
        "workers": config.dask_workers if config.engine == "dask" else config.workers,
        "threads": config.threads,
        "rows": rows_this_run,
        "resumed_rows": resumed_rows,
        "seconds_total": round(time.perf_counter() - started, 3),
        "seconds_scoring": round(scoring_seconds, 3),
        "rows_per_s": round(rows_this_run / scoring_seconds, 1) if scoring_seconds > 0 else None,
    }
    write_summary(config.output, summary)
    log.info(
        "scored %s: %d rows read, %d scored, %d errored %s, labels %s (%s rows/s)",
        config.input,
        summary["rows_read"],
        summary["rows_scored"],
        summary["rows_errored"],
        summary["errors"],
        summary["labels"],
        summary["run"]["rows_per_s"],
    )
    return summary
