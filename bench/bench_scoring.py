"""Benchmark the batch scorer against the model's own speed limit, and measure its memory.

Throughput mode (default), on the IMDB train reviews:

1. ceiling: the same model and runtime scoring pre-tokenised, length-sorted batches with nothing
   else to do, for each batch size and for both ways of using the cores (one process with N ONNX
   Runtime threads; N processes with one thread each). The best of these is "the ceiling".
2. end to end: ``python -m scoring`` (read Parquet → tokenise → score → write Parquet) as a
   subprocess, for the local engine with N processes, with 1 process × N threads, and for
   ``--engine dask`` on a LocalCluster; reviews/s from the job's summary (steady state, model
   already loaded), peak RSS of the whole process tree sampled every 0.1 s.
3. the ratio end-to-end / ceiling (target >= 0.85).

Memory mode (``--rows 1000000``): builds a Parquet file of that many rows by repeating the IMDB
texts (written in row groups, never held in memory), scores it with the local engine and reports
the peak RSS of the job's process tree against ``--rss-limit-gb``.

Scale-out mode (``--scale-out``, ``--rows`` defaults to 100,000 there): one uncompressed CSV of
that many rows made from the IMDB reviews, scored by the local engine (N processes), then by
``--engine dask`` on a real cluster (``dask scheduler`` and ``dask worker`` processes on 127.0.0.1,
one thread each) with 1 and with N workers, all against the ceiling measured in the same run.
It prints Dask N workers / Dask 1 worker (target >= 1.7 for N = 2) and Dask N workers / local
(target >= 0.85). The CSV is split into ``--partition-size`` byte ranges shared by the workers.

Runs on any registry (``--model-dir/--model-name``); ``--fake-model tiny|full`` instead builds a
random-weight model with the real tokenizer (``full`` has the trained model's shapes: 60k
vocabulary, 200-d embedding, 2x96 BiLSTM) so speed can be measured before a model is trained.

    .venv/bin/python bench/bench_scoring.py --fake-model tiny --limit 2000 --batch-sizes 32,64
    .venv/bin/python bench/bench_scoring.py --model-dir models                 # the lead's full run
    .venv/bin/python bench/bench_scoring.py --model-dir models --rows 1000000   # peak RSS check
    .venv/bin/python bench/bench_scoring.py --model-dir models --scale-out      # 100k-row CSV, Dask 1 vs 2
    .venv/bin/python bench/bench_scoring.py --fake-model tiny --scale-out --rows 2000 --partition-size 256kB
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bench.dask_processes import dask_processes  # noqa: E402
from inference.predictor import Predictor  # noqa: E402
from registry.store import Registry  # noqa: E402
from scoring.cli import HelpFormatter  # noqa: E402
from scoring.config import available_cores  # noqa: E402

DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "imdb" / "train.csv.gz"


# -- setup ---------------------------------------------------------------------------------------
def load_reviews(path: Path, limit: int | None) -> pd.DataFrame:
    """Return the id and text columns of the IMDB CSV (the first ``limit`` rows)."""
    return pd.read_csv(path, usecols=["id", "text"], nrows=limit)


def make_fake_model(root: Path, name: str, size: str, texts: list[str]) -> Registry:
    """Publish a random-weight model with the real tokenizer; ``full`` has the trained model's shapes."""
    import onnx

    from embeddings.tokenizer import tokenize
    from embeddings.vocabulary import Vocabulary
    from registry.artifact import ARTIFACT_FORMAT, ONNX_FILE, TOKENIZER_FILE
    from registry.files import write_json_atomic
    from registry.store import MANIFEST
    from training.onnx_export import build_onnx_model
    from training.weights import random_weights

    dims = {
        "tiny": dict(vocab=2_000, embed=16, units=8, max_len=64, head=16),
        "full": dict(vocab=60_000, embed=200, units=96, max_len=400, head=100),
    }[size]
    vocab = Vocabulary.build(
        (tokenize(t) for t in texts),
        max_size=dims["vocab"],
        min_count=2,
        max_len=dims["max_len"],
        head=dims["head"],
    )
    weights = random_weights(len(vocab), dims["embed"], dims["units"], bidirectional=True, pooling="meanmax")
    registry = Registry(root)
    with registry.staging_dir(name) as staging:
        vocab.save(staging / TOKENIZER_FILE)
        onnx.save(build_onnx_model(weights), str(staging / ONNX_FILE))
        write_json_atomic(
            staging / MANIFEST,
            {
                "format": ARTIFACT_FORMAT,
                "name": name,
                "created_at": time.time(),
                "calibration": {"temperature": 1.0},
                "metrics": {},
                "config": {"fake": size},
                "lineage": {},
            },
        )
        version = registry.commit_version(name, staging)
    registry.promote(name, version)
    return registry


# -- 1. the ceiling ------------------------------------------------------------------------------
def _score_share(version_dir: str, ids: list, batch: int, threads: int, barrier, results) -> None:
    """Score pre-tokenised ids in one process, starting together with the other processes."""
    predictor = Predictor.load(version_dir, intra_op_threads=threads, max_batch_size=batch)
    predictor.score_ids(ids[: batch * 2])  # warm-up: first-run allocations are not throughput
    barrier.wait()
    start = time.time()
    predictor.score_ids(ids)
    results.put((start, time.time()))


def ceiling(version_dir: str, ids: list, batch: int, processes: int, threads: int) -> float:
    """Return reviews/s for pre-tokenised ids split over ``processes`` processes x ``threads`` threads."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    shares = [ids[k::processes] for k in range(processes)]  # interleaved: equal length mix
    procs = [
        ctx.Process(target=_score_share, args=(version_dir, s, batch, threads, barrier, results))
        for s in shares
    ]
    for p in procs:
        p.start()
    spans = [results.get() for _ in procs]
    for p in procs:
        p.join()
    return len(ids) / (max(e for _, e in spans) - min(s for s, _ in spans))


# -- 2. the job ----------------------------------------------------------------------------------
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> int:
    """Return the summed RSS in bytes of process ``root`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()  # after "(comm)": field 3 onwards
        except OSError:  # the process just ended
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * PAGE_SIZE  # field 24: resident pages
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


class PeakRss:
    """Sample the summed RSS of a process and all its descendants until stopped."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Sample until stopped (runs in the sampling thread)."""
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            time.sleep(self.interval)

    def stop(self) -> int:
        """Stop sampling and return the peak in bytes."""
        self._stop.set()
        self._thread.join()
        return self.peak


def project_env() -> dict[str, str]:
    """Return this environment with the project on PYTHONPATH (for jobs and Dask workers)."""
    return {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}


def run_job(source: Path, out: Path, model_args: list[str], extra: list[str]) -> dict:
    """Run ``python -m scoring`` as a subprocess; return its summary plus wall time and peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "scoring",
        "--input",
        str(source),
        "--output",
        str(out),
        "--quiet",
        *model_args,
        *extra,
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=project_env())
    sampler = PeakRss(proc.pid)
    code = proc.wait()
    peak = sampler.stop()
    if code != 0:
        raise SystemExit(f"scoring job failed with exit code {code}: {' '.join(cmd)}")
    summary = json.loads((out / "_summary.json").read_text())
    summary["wall_s"] = time.perf_counter() - start
    summary["peak_rss_bytes"] = peak
    return summary


def write_repeated_csv(reviews: pd.DataFrame, rows: int, path: Path) -> None:
    """Write ``rows`` rows (id, text) as one uncompressed CSV by repeating the reviews (unique ids)."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        written, k = 0, 0
        while written < rows:
            part = reviews.iloc[: rows - written]
            part.assign(id=part["id"].astype(str) + f"#{k}")[["id", "text"]].to_csv(
                fh, index=False, header=written == 0
            )
            written += len(part)
            k += 1


def write_repeated_parquet(reviews: pd.DataFrame, rows: int, path: Path) -> None:
    """Write ``rows`` rows by repeating the reviews (unique ids), one row group per repetition."""
    ids, texts = reviews["id"].astype(str).tolist(), reviews["text"].tolist()
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        written, k = 0, 0
        while written < rows:
            n = min(len(ids), rows - written)
            writer.write_table(
                pa.table([pa.array([f"{i}#{k}" for i in ids[:n]]), pa.array(texts[:n])], schema=schema)
            )
            written += n
            k += 1


# -- main ----------------------------------------------------------------------------------------
class _Formatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """Keep the module docstring's layout; show defaults that are set."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; every flag is documented in --help."""
    cores = available_cores()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--model-dir", type=Path, default=Path("models"), help="model registry root")
    parser.add_argument("--model-name", default="sentiment", help="model name in the registry")
    parser.add_argument("--model-version", type=int, default=None, help="version (default: production)")
    parser.add_argument(
        "--fake-model",
        choices=["tiny", "full"],
        default=None,
        help="ignore --model-dir: build a random-weight model of this size in --work-dir",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="IMDB CSV with id and text columns")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N reviews (default: all)")
    parser.add_argument("--batch-sizes", default="16,32,64,128", help="batch sizes tried for the ceiling")
    parser.add_argument(
        "--ceiling-sample",
        type=int,
        default=5_000,
        help="reviews (random sample) per ceiling measurement; 0 = all",
    )
    parser.add_argument(
        "--workers", type=int, default=cores, help="cores to use: processes / threads / Dask workers"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="--batch-size passed to the scoring job")
    parser.add_argument(
        "--chunk-size", type=int, default=5_000, help="--chunk-size passed to the scoring job"
    )
    parser.add_argument("--skip-dask", action="store_true", help="do not run the --engine dask measurement")
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="memory mode: score a Parquet file of this many rows made by repeating the reviews; "
        "with --scale-out: rows of the CSV (default 100,000)",
    )
    parser.add_argument(
        "--scale-out",
        action="store_true",
        help="scale-out mode: one CSV, local engine vs Dask with 1 and --workers real worker "
        "processes (1 thread each), against the ceiling",
    )
    parser.add_argument("--partition-size", default="8MiB", help="--partition-size passed to the Dask jobs")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="scale-out mode: run the three configurations this many times and report the ratios' "
        "medians (this host's speed drifts by 10-15 %% between minutes)",
    )
    parser.add_argument("--rss-limit-gb", type=float, default=1.5, help="memory mode: peak RSS budget")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="scratch folder (default: a temp dir, removed)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the results."""
    args = parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"cores": args.workers, "python": sys.version.split()[0]}
    try:
        reviews = load_reviews(args.data, args.limit)
        if args.fake_model:
            registry = make_fake_model(
                work / "models", args.model_name, args.fake_model, reviews["text"].tolist()
            )
            model_dir = work / "models"
        else:
            registry, model_dir = Registry(args.model_dir), args.model_dir
        version = args.model_version or registry.production_version(args.model_name)
        version_dir = str(registry.version_dir(args.model_name, version).resolve())
        model_args = [
            "--model-dir",
            str(model_dir),
            "--model-name",
            args.model_name,
            "--model-version",
            str(version),
        ]
        job_args = ["--batch-size", str(args.batch_size), "--chunk-size", str(args.chunk_size)]
        results["model"] = {"name": args.model_name, "version": version, "fake": args.fake_model}
        print(
            f"model {args.model_name} v{version} ({args.fake_model or 'registry'}), "
            f"{len(reviews):,} reviews, "
            f"{args.workers} cores"
        )

        if args.scale_out:
            return scale_out_mode(args, reviews, work, version_dir, model_args, job_args, results)
        if args.rows:
            return memory_mode(args, reviews, work, model_args, job_args, results)

        source = work / "reviews.parquet"
        # Row groups of 1,000: Dask partitions follow row groups, and 2 workers need many partitions.
        reviews.to_parquet(source, index=False, row_group_size=1_000)

        best = measure_ceiling(args, version_dir, reviews, results)

        # 2. End to end: read Parquet -> tokenise -> score -> write Parquet.
        configs = {f"local {args.workers} proc x 1 thr": ["--workers", str(args.workers), "--threads", "1"]}
        if args.workers > 1:
            configs[f"local 1 proc x {args.workers} thr"] = ["--workers", "1", "--threads", str(args.workers)]
        if not args.skip_dask:
            # Partitions of --partition-size (runs of the 1,000-row row groups): whole partitions go
            # to workers, so many small ones balance the load; the local engine splits every chunk.
            configs[f"dask LocalCluster {args.workers} workers"] = [
                "--engine",
                "dask",
                "--dask-workers",
                str(args.workers),
                "--partition-size",
                args.partition_size,
            ]
        print(f"\n2. end to end on {len(reviews):,} reviews (python -m scoring, Parquet in and out)")
        print(f"   {'configuration':<32} {'reviews/s':>10} {'wall s':>8} {'peak RSS':>10} {'/ceiling':>9}")
        results["end_to_end"] = {}
        for name, extra in configs.items():
            summary = run_job(source, work / "out", model_args, job_args + extra)  # later flags win
            rate = summary["run"]["rows_per_s"]
            entry = {
                "reviews_per_s": rate,
                "wall_s": summary["wall_s"],
                "peak_rss_bytes": summary["peak_rss_bytes"],
                "ratio": rate / best[0],
                "rows": summary["rows_read"],
            }
            results["end_to_end"][name] = entry
            print(
                f"   {name:<32} {rate:>10,.0f} {entry['wall_s']:>8.1f} "
                f"{entry['peak_rss_bytes'] / 2**20:>7,.0f} MB {entry['ratio']:>9.2f}"
            )
        print(
            "   (reviews/s: steady state from the job's summary; wall s includes start-up and model loading)"
        )
    finally:
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def measure_ceiling(
    args: argparse.Namespace, version_dir: str, reviews: pd.DataFrame, results: dict
) -> tuple:
    """Measure and print the ceiling table; return the best (reviews/s, layout, batch)."""
    # Pre-tokenised, length-sorted (the Predictor sorts), nothing else running.
    predictor = Predictor.load(version_dir)
    sample = reviews["text"].sample(frac=1.0, random_state=0).tolist()
    sample = sample[: args.ceiling_sample] if args.ceiling_sample else sample
    ids = predictor.encode(sample)
    print(f"\n1. ceiling on {len(ids):,} pre-tokenised reviews (reviews/s)")
    print(
        f"   {'batch':>5} {'1 proc x 1 thr':>15} {f'1 proc x {args.workers} thr':>15} "
        f"{f'{args.workers} proc x 1 thr':>15}"
    )
    table = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        row = {"batch": batch, "single": ceiling(version_dir, ids, batch, 1, 1)}
        if args.workers > 1:
            row["threads"] = ceiling(version_dir, ids, batch, 1, args.workers)
            row["processes"] = ceiling(version_dir, ids, batch, args.workers, 1)
        table.append(row)
        print(
            f"   {batch:>5} "
            + " ".join(f"{row.get(k, float('nan')):>15,.0f}" for k in ("single", "threads", "processes"))
        )
    best = max(((v, k, r["batch"]) for r in table for k, v in r.items() if k != "batch"))
    results["ceiling"] = {
        "table": table,
        "best": {"reviews_per_s": best[0], "layout": best[1], "batch": best[2]},
    }
    print(f"   ceiling: {best[0]:,.0f} reviews/s ({best[1]}, batch {best[2]})")
    return best


def scale_out_mode(
    args: argparse.Namespace,
    reviews: pd.DataFrame,
    work: Path,
    version_dir: str,
    model_args: list[str],
    job_args: list[str],
    results: dict,
) -> int:
    """Score one CSV with the local engine and with Dask on 1 and N real worker processes; print ratios.

    With ``--rounds`` > 1 the three configurations run again, round after round, so a slow spell of
    the host hits one round rather than one configuration; the ratios' medians are the result.
    """
    rows = args.rows or 100_000
    source = work / f"reviews-{rows}.csv"
    write_repeated_csv(reviews, rows, source)
    print(f"built {source.name}: {rows:,} rows, {source.stat().st_size / 2**20:,.0f} MB (uncompressed CSV)")
    best = measure_ceiling(args, version_dir, reviews, results)
    rounds = []
    for number in range(1, args.rounds + 1):
        print(f"\n2. end to end on {source.name} (python -m scoring, CSV in, Parquet out), round {number}")
        rounds.append(_scale_out_round(args, source, work, model_args, job_args, best[0]))
    print("   (reviews/s: steady state from the job's summary; wall s includes start-up and model loading;")
    print("    peak RSS of the client process tree only: Dask workers are separate processes)")
    names = rounds[0]["names"]
    print()
    medians = {}
    for key, label, target in (
        ("dask_n_over_dask_1", f"{names['dask_n']} / {names['dask_1']}", "1.7 with 2"),
        ("dask_n_over_local", f"{names['dask_n']} / {names['local']}", "0.85"),
    ):
        values = [r["ratios"][key] for r in rounds]
        medians[key] = statistics.median(values)
        each = ", ".join(f"{v:.2f}" for v in values)
        print(f"3. {label}: {medians[key]:.2f} (target >= {target}; median of rounds: {each})")
    results["scale_out"] = {
        "rows": rows,
        "csv_bytes": source.stat().st_size,
        "rounds": [{"end_to_end": r["entries"], "ratios": r["ratios"]} for r in rounds],
        "ratios": medians,
        "partition_size": args.partition_size,
    }
    return 0


def _scale_out_round(
    args: argparse.Namespace,
    source: Path,
    work: Path,
    model_args: list[str],
    job_args: list[str],
    best: float,
) -> dict:
    """Run the local engine, then Dask with 1 and N fresh worker processes; print and return their rates."""
    print(f"   {'configuration':<32} {'reviews/s':>10} {'wall s':>8} {'peak RSS':>10} {'/ceiling':>9}")
    entries: dict[str, dict] = {}

    def report(name: str, summary: dict) -> None:
        """Print and keep one configuration's numbers."""
        rate = summary["run"]["rows_per_s"]
        entries[name] = {
            "reviews_per_s": rate,
            "wall_s": summary["wall_s"],
            "rows": summary["rows_read"],
            "peak_rss_bytes": summary["peak_rss_bytes"],
            "ratio": rate / best,
        }
        print(
            f"   {name:<32} {rate:>10,.0f} {summary['wall_s']:>8.1f} "
            f"{summary['peak_rss_bytes'] / 2**20:>7,.0f} MB {rate / best:>9.2f}",
            flush=True,
        )

    local = f"local {args.workers} proc x 1 thr"
    report(local, run_job(source, work / "out", model_args, job_args + ["--workers", str(args.workers)]))
    dask_names = []
    for n in sorted({1, args.workers}):
        name = f"dask {n} worker{'s' if n > 1 else ''} x 1 thr"
        # Fresh processes per size: no worker starts with the model or the file already warm.
        with dask_processes(n, cwd=work / f"dask-{n}", env=project_env(), threads=1) as address:
            summary = run_job(
                source,
                work / "out",
                model_args,
                job_args
                + ["--engine", "dask", "--scheduler", address, "--partition-size", args.partition_size],
            )
        report(name, summary)
        dask_names.append(name)
    one, many = entries[dask_names[0]]["reviews_per_s"], entries[dask_names[-1]]["reviews_per_s"]
    return {
        "entries": entries,
        "names": {"local": local, "dask_1": dask_names[0], "dask_n": dask_names[-1]},
        "ratios": {
            "dask_n_over_dask_1": many / one,
            "dask_n_over_local": many / entries[local]["reviews_per_s"],
        },
    }


def memory_mode(
    args: argparse.Namespace,
    reviews: pd.DataFrame,
    work: Path,
    model_args: list[str],
    job_args: list[str],
    results: dict,
) -> int:
    """Score a large file built by repeating the reviews; report peak RSS against the budget."""
    source = work / f"repeated-{args.rows}.parquet"
    start = time.perf_counter()
    write_repeated_parquet(reviews, args.rows, source)
    print(
        f"built {source.name}: {args.rows:,} rows, {source.stat().st_size / 2**20:,.0f} MB "
        f"({time.perf_counter() - start:.0f} s)"
    )
    summary = run_job(source, work / "out", model_args, job_args + ["--workers", str(args.workers)])
    peak_gb = summary["peak_rss_bytes"] / 2**30
    ok = summary["rows_read"] == args.rows and peak_gb < args.rss_limit_gb
    results["memory"] = {
        "rows": summary["rows_read"],
        "peak_rss_gb": peak_gb,
        "limit_gb": args.rss_limit_gb,
        "reviews_per_s": summary["run"]["rows_per_s"],
        "wall_s": summary["wall_s"],
        "ok": ok,
    }
    print(
        f"scored {summary['rows_read']:,} rows at {summary['run']['rows_per_s']:,.0f} reviews/s "
        f"in {summary['wall_s']:.0f} s; peak RSS (process tree) {peak_gb:.2f} GB "
        f"(limit {args.rss_limit_gb} GB): {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
