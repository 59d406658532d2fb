"""Benchmark the HTTP service against its in-process ceiling and a naive Keras server.

Prints, in one run, for one review of ~230 tokens per request:

1. the in-process ceiling: the same Predictor and runtime called directly on pre-tokenised,
   length-sorted batches, at its best batch size (texts/s, one process);
2. the naive baseline: ``bench/naive_app.py`` (Keras ``model.predict`` per request on the same
   version's ``model.keras``) under the same gunicorn configuration; skipped if there is no
   ``model.keras``;
3. the service under gunicorn at each concurrency level: texts/s, p50/p99 latency, mean batch
   size (from /metrics), RSS per worker, server and client CPU, ratios to (1) and (2).

The load generator runs in a separate process (threads, one keep-alive ``http.client``
connection each, closed loop); its CPU use is reported because on a small machine it competes
with the server for the same cores. Run it on an otherwise idle machine::

    .venv/bin/python bench/bench_service.py --model-dir models --model-name sentiment
"""

from __future__ import annotations

import argparse
import csv
import gzip
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

DEFAULT_DATA = (
    Path(os.environ.get("SENTIMENT_DATA_DIR", PROJECT_ROOT.parent / "shared" / "data" / "imdb"))
    / "train.csv.gz"
)
GUNICORN_CONFIG = PROJECT_ROOT / "service" / "gunicorn.conf.py"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVICE_READY = "now serving version"  # logged once per worker by service.model_manager
NAIVE_READY = "naive app ready"  # logged once per worker by bench.naive_app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--model-dir", default="models", help="registry root (default: models)")
    p.add_argument(
        "--model-name", default="sentiment", help="model name in the registry (default: sentiment)"
    )
    p.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="IMDB train.csv.gz to draw reviews from (default: $SENTIMENT_DATA_DIR/train.csv.gz); "
        "synthetic reviews are used if it is missing",
    )
    p.add_argument("--texts", type=int, default=512, help="distinct reviews to send (default: 512)")
    p.add_argument("--tokens", type=int, default=230, help="target review length in tokens (default: 230)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per level (default: 10)")
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="unmeasured seconds before each level (default: 20%% of --duration, at most 2)",
    )
    p.add_argument(
        "--concurrency", default="1,8,32,64", help="service levels, comma-separated (default: 1,8,32,64)"
    )
    p.add_argument(
        "--naive-concurrency", type=int, default=8, help="concurrency of the naive baseline (default: 8)"
    )
    p.add_argument("--skip-naive", action="store_true", help="do not run the naive Keras baseline")
    p.add_argument(
        "--batch-sizes",
        default="1,8,16,32,64,128",
        help="ceiling batch sizes to try (default: 1,8,16,32,64,128)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("SENTIMENT_WORKERS", "2")),
        help="gunicorn workers (default: $SENTIMENT_WORKERS or 2)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("SENTIMENT_THREADS", "32")),
        help="threads per worker (default: $SENTIMENT_THREADS or 32)",
    )
    p.add_argument(
        "--runtime", default=os.environ.get("SENTIMENT_RUNTIME", "onnx"), choices=["onnx", "savedmodel"]
    )
    p.add_argument(
        "--intra-op-threads", type=int, default=int(os.environ.get("SENTIMENT_INTRA_OP_THREADS", "1"))
    )
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.add_argument("--seed", type=int, default=0)
    # Internal: the load-generator subprocess.
    p.add_argument("--client", help=argparse.SUPPRESS)
    p.add_argument("--texts-file", help=argparse.SUPPRESS)
    p.add_argument("--client-concurrency", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(2.0, 0.2 * args.duration)
    return args


# -- texts -----------------------------------------------------------------------------------------
def load_texts(path: Path, n: int, tokens: int, seed: int) -> tuple[list[str], str]:
    """Return ``n`` reviews of about ``tokens`` tokens (±15%) and where they came from."""
    from embeddings.tokenizer import tokenize

    if path.is_file():
        low, high = int(tokens * 0.85), int(tokens * 1.15)
        picked = []
        with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                if low <= len(tokenize(row["text"])) <= high:
                    picked.append(row["text"])
                    if len(picked) >= n:
                        break
        if picked:
            return picked, f"IMDB reviews from {path}"
    rng = random.Random(seed)
    words = (
        "the a film movie plot acting was is great awful boring wonderful not really story "
        "characters scene director and but very ! ?"
    ).split()
    return [
        " ".join(rng.choice(words) for _ in range(tokens)) for _ in range(n)
    ], "synthetic reviews (no data file)"


# -- (1) in-process ceiling -----------------------------------------------------------------------
def measure_ceiling(
    version_dir: Path, texts: list[str], runtime: str, threads: int, batch_sizes: list[int], seconds: float
) -> dict:
    """Return texts/s of the Predictor on pre-tokenised, length-sorted batches, per batch size."""
    from inference.predictor import Predictor

    predictor = Predictor.load(
        version_dir, runtime=runtime, intra_op_threads=threads, max_batch_size=max(batch_sizes)
    )
    ids = sorted(predictor.encode(texts), key=len)
    results = {}
    for size in batch_sizes:
        batches = [ids[i : i + size] for i in range(0, len(ids) - size + 1, size)] or [ids[:size]]
        predictor.score_ids(batches[0])  # warm this shape
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for batch in batches:
                predictor.score_ids(batch)
                done += len(batch)
                if time.perf_counter() - started >= seconds:
                    break
        results[size] = done / (time.perf_counter() - started)
    best = max(results, key=results.get)
    return {
        "per_batch_size": results,
        "best_batch_size": best,
        "texts_per_s": results[best],
        "mean_tokens": statistics.mean(len(x) for x in ids),
    }


# -- servers --------------------------------------------------------------------------------------
from tests.service.gunicorn_server import child_pids, free_port  # noqa: E402  (one implementation)


def cpu_seconds(pid: int) -> float:
    """Return user+system CPU seconds a process has used."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    """Return a process's resident memory in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """A gunicorn master running one app under ``service/gunicorn.conf.py``."""

    def __init__(self, app: str, env: dict[str, str], ready_line: str, workers: int, workdir: Path) -> None:
        self.port = free_port()
        self.app, self.ready_line, self.workers = app, ready_line, workers
        self.log_path = workdir / f"{app.split(':')[0]}-{self.port}.log"
        self.env = {
            **os.environ,
            **env,
            "SENTIMENT_BIND": f"127.0.0.1:{self.port}",
            "SENTIMENT_WORKERS": str(workers),
            "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(dir=workdir, prefix="prom-"),
        }
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG), self.app],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.app} exited:\n{self.log_path.read_text()[-3000:]}")
            if self.log_path.read_text(errors="replace").count(self.ready_line) >= self.workers:
                return self
            time.sleep(0.2)
        self.__exit__()
        raise TimeoutError(f"{self.app} not ready after 180 s:\n{self.log_path.read_text()[-3000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def url(self, path: str = "") -> str:
        """Return the URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def worker_pids(self) -> list[int]:
        """Return the live worker pids."""
        assert self.process is not None
        return child_pids(self.process.pid)

    def batch_totals(self) -> tuple[float, float]:
        """Return (texts, batches) so far from the service's batch size histogram."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        values = {}
        for line in text.splitlines():
            if line.startswith(("sentiment_batch_size_sum ", "sentiment_batch_size_count ")):
                name, value = line.split()
                values[name] = float(value)
        return values.get("sentiment_batch_size_sum", 0.0), values.get("sentiment_batch_size_count", 0.0)


# -- load generator (runs in its own process) --------------------------------------------------------
def client_main(args: argparse.Namespace) -> None:
    """Send single-review requests from N threads for warmup+duration; print a JSON summary."""
    host, port = args.client.split(":")
    texts = json.loads(Path(args.texts_file).read_text())
    bodies = [json.dumps({"text": t}).encode() for t in texts]
    start = time.monotonic() + 0.2
    window = (start + args.warmup, start + args.warmup + args.duration)
    records: list[tuple[float, float, int]] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        mine, k = [], i
        time.sleep(max(0.0, start - time.monotonic()))
        while time.monotonic() < window[1]:
            body = bodies[k % len(bodies)]
            k += 1
            sent = time.monotonic()
            try:
                conn.request("POST", "/v1/predict", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                status = -1
            mine.append((sent, time.monotonic() - sent, status))
        conn.close()
        with lock:
            records.extend(mine)

    cpu0, wall0 = time.process_time(), time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.client_concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    measured = [r for r in records if window[0] <= r[0] < window[1]]
    ok = sorted(lat for _, lat, status in measured if status == 200)
    print(
        json.dumps(
            {
                "requests": len(measured),
                "ok": len(ok),
                "errors": len(measured) - len(ok),
                "texts_per_s": len(ok) / args.duration,
                "p50_ms": 1e3 * ok[len(ok) // 2] if ok else None,
                "p99_ms": 1e3 * ok[min(len(ok) - 1, int(0.99 * len(ok)))] if ok else None,
                "client_cpu_cores": cpu / wall,
            }
        )
    )


def run_load(server: Server, texts_file: Path, concurrency: int, args: argparse.Namespace) -> dict:
    """Run the load generator against ``server`` and add server-side measurements."""
    pids = server.worker_pids()
    cpu_before = sum(cpu_seconds(p) for p in pids)
    batches_before = server.batch_totals() if server.ready_line != NAIVE_READY else (0.0, 0.0)
    started = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            f"127.0.0.1:{server.port}",
            "--texts-file",
            str(texts_file),
            "--client-concurrency",
            str(concurrency),
            "--duration",
            str(args.duration),
            "--warmup",
            str(args.warmup),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.monotonic() - started
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["server_cpu_cores"] = (sum(cpu_seconds(p) for p in pids) - cpu_before) / elapsed
    result["rss_mb_per_worker"] = [round(rss_mb(p)) for p in pids]
    if server.ready_line != NAIVE_READY:
        texts, batches = server.batch_totals()
        result["mean_batch_size"] = (texts - batches_before[0]) / max(1.0, batches - batches_before[1])
    return result


# -- report ---------------------------------------------------------------------------------------------
def fmt(value: float | None, spec: str = ".1f") -> str:
    """Format a number or a dash."""
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    """Run the three measurements and print them with their ratios."""
    args = parse_args(argv)
    if args.client:
        client_main(args)
        return 0
    from registry.artifact import KERAS_FILE
    from registry.store import Registry

    registry = Registry(args.model_dir)
    version_dir = registry.production_dir(args.model_name)
    texts, source = load_texts(args.data, args.texts, args.tokens, args.seed)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    cores = os.cpu_count() or 1
    report: dict = {
        "model": args.model_name,
        "version": int(version_dir.name),
        "runtime": args.runtime,
        "texts_source": source,
        "cores": cores,
        "workers": args.workers,
        "threads": args.threads,
    }

    print(
        f"Model {args.model_name} v{version_dir.name} ({args.runtime}, "
        f"intra-op threads {args.intra_op_threads}); {len(texts)} {source}; {cores} CPU cores; "
        f"{args.duration:g} s per level (+{args.warmup:g} s warm-up)"
    )
    if os.getloadavg()[0] > 0.5 * cores:
        print(f"WARNING: load average {os.getloadavg()[0]:.1f} on {cores} cores: numbers will be noisy")

    # (1) in-process ceiling: nothing else of ours runs meanwhile.
    ceiling = measure_ceiling(
        version_dir,
        texts,
        args.runtime,
        args.intra_op_threads,
        [int(b) for b in args.batch_sizes.split(",")],
        max(1.0, args.duration / 3),
    )
    report["ceiling"] = ceiling
    per_size = ", ".join(f"b{b}: {v:.0f}" for b, v in ceiling["per_batch_size"].items())
    print(
        f"\n(1) in-process ceiling (1 process, mean {ceiling['mean_tokens']:.0f} tokens/text): "
        f"{ceiling['texts_per_s']:.0f} texts/s at batch {ceiling['best_batch_size']}  [{per_size}]"
    )

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        workdir = Path(tmp)
        texts_file = workdir / "texts.json"
        texts_file.write_text(json.dumps(texts))
        common = {
            "SENTIMENT_THREADS": str(args.threads),
            "SENTIMENT_INTRA_OP_THREADS": str(args.intra_op_threads),
        }

        # (2) naive baseline.
        naive = None
        keras_file = version_dir / KERAS_FILE
        if args.skip_naive:
            print("\n(2) naive Keras baseline: skipped (--skip-naive)")
        elif not keras_file.exists():
            print(f"\n(2) naive Keras baseline: skipped ({keras_file} does not exist)")
        else:
            try:
                with Server(
                    "bench.naive_app:create_app()",
                    {**common, "NAIVE_MODEL_DIR": str(version_dir)},
                    NAIVE_READY,
                    args.workers,
                    workdir,
                ) as server:
                    naive = run_load(server, texts_file, args.naive_concurrency, args)
                print(
                    f"\n(2) naive Keras model.predict per request (concurrency {args.naive_concurrency}): "
                    f"{naive['texts_per_s']:.1f} texts/s, p50 {fmt(naive['p50_ms'])} ms, "
                    f"p99 {fmt(naive['p99_ms'])} ms, "
                    f"RSS/worker {naive['rss_mb_per_worker']} MiB, errors {naive['errors']}"
                )
            except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
                lines = [line for line in str(exc).splitlines() if line.strip()]
                print(f"\n(2) naive Keras baseline: skipped (failed: {lines[0]} ... {lines[-1][:300]})")
        report["naive"] = naive

        # (3) the service.
        env = {
            **common,
            "SENTIMENT_MODEL_DIR": str(Path(args.model_dir).resolve()),
            "SENTIMENT_MODEL_NAME": args.model_name,
            "SENTIMENT_RUNTIME": args.runtime,
        }
        rows = []
        with Server("service.app:create_app()", env, SERVICE_READY, args.workers, workdir) as server:
            for concurrency in levels:
                result = run_load(server, texts_file, concurrency, args)
                result["concurrency"] = concurrency
                rows.append(result)
        report["service"] = rows

    print(f"\n(3) service: {args.workers} gunicorn workers x {args.threads} threads")
    header = (
        f"{'conc':>5} {'texts/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'batch':>6} {'RSS/worker MiB':>15} "
        f"{'srv CPU':>8} {'cli CPU':>8} {'/ceil':>6} {'/ceil*w':>8} {'/naive':>7} {'err':>4}"
    )
    print(header)
    ideal = ceiling["texts_per_s"] * min(args.workers, cores)
    for r in rows:
        naive_ratio = r["texts_per_s"] / naive["texts_per_s"] if naive and naive["texts_per_s"] else None
        print(
            f"{r['concurrency']:>5} {r['texts_per_s']:>8.1f} {fmt(r['p50_ms']):>7} {fmt(r['p99_ms']):>7} "
            f"{r['mean_batch_size']:>6.1f} {str(r['rss_mb_per_worker']):>15} {r['server_cpu_cores']:>8.2f} "
            f"{r['client_cpu_cores']:>8.2f} {r['texts_per_s'] / ceiling['texts_per_s']:>6.2f} "
            f"{r['texts_per_s'] / ideal:>8.2f} {fmt(naive_ratio, '.1f'):>7} {r['errors']:>4}"
        )
    print(
        "CPU columns are in cores (1.00 = one core busy); /ceil*w compares with the ceiling times "
        f"min(workers, cores) = {min(args.workers, cores)}."
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
