"""Benchmark the HTTP service under load against in-process ceilings measured in the same run.

Request texts are what users send: a random sample of labelled IMDB reviews (their natural mix of
lengths: median ~170 words, a long tail cut at the model's max_len tokens) plus a share of single
sentences taken from other reviews (comments, one-line product reviews). Bodies are drawn in a
shuffled cycle, so no level sends one text over and over.

Printed in one run (machines are noisy: compare ratios, not absolute numbers across runs):

1. ceilings: ``--workers`` processes, one ONNX Runtime thread each, scoring pre-encoded texts
   directly (no HTTP, no JSON, no tokenising):
   - *sorted*: each process scores its share length-sorted, in batches of the best size among
     ``--batch-sizes``: the most this hardware gives;
   - *batch-1*: one text per call in arrival order: what an unbatched server could reach;
2. the service under real gunicorn at each ``--concurrency`` (one text per request) and with
   ``--texts-per-request`` texts per request: texts/s, p50/p99 latency, non-2xx, mean texts per
   model call, server CPU, CPU microseconds per request spent outside the model call, and
   RSS per worker after the whole bench; each level's ratio to the sorted ceiling;
3. with ``--v2``: the Open Inference Protocol endpoint (binary tensors) at concurrency 64 (or the
   highest level), against ``/v1/predict`` at the same concurrency;
4. how each level from c=8 up compares with the best level below it (issue #9: throughput should
   not fall as the load rises).

With ``--rounds N`` the ceilings and all levels run N times, round after round, on one server,
and a last table gives each level's median, its ratios taken against its own round's ceilings:
this host's speed drifts by 10-20 % between minutes, which otherwise lands on whichever levels
run late (c=128). ``--compare-bare`` also runs the /v1/predict levels, in each round, against
``bench/bare_app.py``: the same HTTP stack, tokenizer and model with none of the service's other
work (validation, error bodies, metrics, deadlines, reloads), which bounds what trimming the
service could still gain on this machine.

The load generator is ``wrk`` (Debian package ``wrk``; a Lua script cycles through the request
bodies) in its own process; without wrk a Python client process is used (it needs more CPU,
which it takes from the server on a small machine). Run on an otherwise idle machine::

    .venv/bin/python bench/bench_service.py --model-dir models --model-name sentiment
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import http.client
import json
import multiprocessing
import os
import random
import re
import shutil
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

from service.settings import ServerSettings  # noqa: E402
from tests.service.gunicorn_server import child_pids, free_port  # noqa: E402  (one implementation)

DEFAULT_DATA = (
    Path(os.environ.get("SENTIMENT_DATA_DIR", PROJECT_ROOT.parent / "shared" / "data" / "imdb"))
    / "train.csv.gz"
)
GUNICORN_CONFIG = PROJECT_ROOT / "service" / "gunicorn.conf.py"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVICE_READY = "now serving version"  # logged once per worker by service.model_manager
WRK_SCRIPT = """
wrk.method = "POST"
local bodies, headers = {}, {}
local next_body = 0
function init(args)
  for line in io.lines(args[1]) do
    local path, header_length, content_type = line:match("^(%S+) (%d+) (%S+)$")
    local file = assert(io.open(path, "rb"))
    bodies[#bodies + 1] = file:read("*a")
    file:close()
    local h = {["Content-Type"] = content_type}
    if header_length ~= "0" then h["Inference-Header-Content-Length"] = header_length end
    headers[#headers + 1] = h
  end
  next_body = (tonumber(args[2]) or 0) % #bodies
end
function request()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, headers[next_body], bodies[next_body])
end
"""


def add_model_and_text_args(p: argparse.ArgumentParser, *, texts: int) -> None:
    """Add --model-dir, --model-name and the request-text mix (--data, --texts, --short-fraction).

    The service benches share them, so their texts are drawn the same way (``load_texts``).
    """
    p.add_argument("--model-dir", default="models", help="registry root (default: %(default)s)")
    p.add_argument(
        "--model-name", default="sentiment", help="model name in the registry (default: %(default)s)"
    )
    p.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="IMDB train.csv.gz to draw reviews and sentences from "
        "(default: $SENTIMENT_DATA_DIR/train.csv.gz)",
    )
    p.add_argument("--texts", type=int, default=texts, help="distinct request texts (default: %(default)s)")
    p.add_argument(
        "--short-fraction",
        type=float,
        default=0.2,
        help="share of texts that are one sentence (3-30 words) instead of a whole review "
        "(default: %(default)s)",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    add_model_and_text_args(p, texts=4000)
    p.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per level (default: %(default)s)"
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="unmeasured seconds before each level (default: %(default)s)",
    )
    p.add_argument(
        "--concurrency",
        default="1,8,32,64,128",
        help="concurrent connections, one text per request, comma-separated (default: %(default)s)",
    )
    p.add_argument(
        "--texts-per-request",
        type=int,
        default=16,
        help="texts per request of the multi-text level (default: %(default)s)",
    )
    p.add_argument(
        "--multi-concurrency",
        type=int,
        default=8,
        help="concurrent connections of the multi-text level; 0 skips it (default: %(default)s)",
    )
    p.add_argument("--v2", action="store_true", help="also load the /v2 infer endpoint (binary tensors)")
    p.add_argument(
        "--batch-sizes",
        default="8,16,32,64",
        help="batch sizes tried for the sorted ceiling (default: %(default)s)",
    )
    p.add_argument(
        "--ceiling-seconds",
        type=float,
        default=4.0,
        help="seconds per ceiling measurement (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("SENTIMENT_WORKERS", "2")),
        help="gunicorn workers, and ceiling processes (default: $SENTIMENT_WORKERS or 2)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("SENTIMENT_THREADS", ServerSettings().threads)),
        help="request threads per worker (default: $SENTIMENT_THREADS or the service's default)",
    )
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the server, e.g. SENTIMENT_BATCH_WINDOW_TEXTS=128 (repeatable)",
    )
    p.add_argument(
        "--client", choices=["auto", "wrk", "python"], default="auto", help="load generator (default: auto)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the ceilings and every level this many times, round after round, and also print each "
        "level's median (ratios taken per round): a host whose speed drifts between minutes then slows "
        "one round, not the levels that happen to run late (default: %(default)s)",
    )
    p.add_argument(
        "--compare-bare",
        action="store_true",
        help="also run every /v1/predict level, in each round right after the service's, against "
        "bench/bare_app.py (HTTP, tokenising and the model, nothing else): how much of the gap to the "
        "ceiling is the service's own work",
    )
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.add_argument("--seed", type=int, default=0, help="seed of the text sample (default: %(default)s)")
    # Internal: the Python load-generator subprocess.
    p.add_argument("--python-client", help=argparse.SUPPRESS)
    p.add_argument("--manifest", help=argparse.SUPPRESS)
    p.add_argument("--client-concurrency", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- texts -----------------------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|<br\s*/?>")


def load_texts(path: Path, n: int, short_fraction: float, seed: int) -> list[str]:
    """Return ``n`` texts: random whole reviews plus single sentences cut from other reviews."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        reviews = [row["text"] for row in csv.DictReader(fh)]
    rng = random.Random(seed)
    rng.shuffle(reviews)
    n_short = int(round(n * short_fraction))
    texts = reviews[: n - n_short]
    for review in reviews[n - n_short :]:
        if len(texts) >= n:
            break
        sentences = [s.strip() for s in _SENTENCE_END.split(review) if 3 <= len(s.split()) <= 30]
        if sentences:
            texts.append(rng.choice(sentences))
    rng.shuffle(texts)
    return texts


# -- (1) in-process ceilings --------------------------------------------------------------------
def _ceiling_process(
    version_dir: str, share: list, mode: str, batch: int, seconds: float, barrier, out
) -> None:
    """Score one share of pre-encoded texts for ``seconds``; put the number of texts scored."""
    import numpy as np

    from embeddings.vocabulary import pad_batch
    from inference.predictor import Predictor

    predictor = Predictor.load(version_dir, intra_op_threads=1)
    ids = [np.asarray(x, dtype=np.int64) for x in share]
    if mode == "sorted":
        ids.sort(key=len)
        calls = [ids[i : i + batch] for i in range(0, len(ids), batch)]
    else:
        calls = [[x] for x in ids]
    matrices = [pad_batch(c) for c in calls]
    for m in matrices[:: max(1, len(matrices) // 8)]:
        predictor.backend.logits(m)  # first run of a shape allocates
    barrier.wait()
    done, started, k = 0, time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        predictor.backend.logits(matrices[k % len(matrices)])
        done += len(calls[k % len(calls)])
        k += 1
    out.put(done / (time.perf_counter() - started))


def measure_ceiling(
    version_dir: Path, ids: list, processes: int, mode: str, batch: int, seconds: float
) -> float:
    """Return texts/s of ``processes`` processes scoring their shares at once (summed)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    shares = [ids[k::processes] for k in range(processes)]
    procs = [
        ctx.Process(
            target=_ceiling_process, args=(str(version_dir), share, mode, batch, seconds, barrier, out)
        )
        for share in shares
    ]
    for proc in procs:
        proc.start()
    rates = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    return sum(rates)


# -- servers --------------------------------------------------------------------------------------
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
    """A gunicorn master running the service under ``service/gunicorn.conf.py``."""

    ready = SERVICE_READY  # each worker logs it once it can answer
    has_metrics = True  # /metrics gives the batch sizes and the model calls' CPU
    answers_v2 = True  # serves the V2 infer endpoint too

    def command(self) -> list[str]:
        """Return the gunicorn command line."""
        return [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG), "service.app:create_app()"]

    def __init__(self, env: dict[str, str], workers: int, workdir: Path) -> None:
        self.port = free_port()
        self.workers = workers
        self.log_path = workdir / f"server-{self.port}.log"
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
                self.command(),
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log_path.read_text()[-3000:]}")
            if self.log_path.read_text(errors="replace").count(self.ready) >= self.workers:
                return self
            time.sleep(0.2)
        self.__exit__()
        raise TimeoutError(f"the server was not ready after 180 s:\n{self.log_path.read_text()[-3000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def worker_pids(self) -> list[int]:
        """Return the live worker pids."""
        assert self.process is not None
        return child_pids(self.process.pid)

    def metric_sums(self) -> dict[str, float]:
        """Return the summed values of the counters the bench reads from ``/metrics``."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        wanted = (
            "sentiment_batch_size_sum",
            "sentiment_batch_size_count",
            "sentiment_inference_cpu_seconds_total",
        )
        values = dict.fromkeys(wanted, 0.0)
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in values:
                values[name] += float(value)
        return values


class BareServer(Server):
    """``bench/bare_app.py`` under gunicorn with uvicorn workers: HTTP, tokenising and the model only."""

    has_metrics = False
    answers_v2 = False  # /v1/predict only

    def __init__(self, env: dict[str, str], workers: int, workdir: Path) -> None:
        super().__init__(env, workers, workdir)
        from bench.bare_app import READY

        self.ready = READY
        self.env["BARE_MODEL_DIR"] = env["SENTIMENT_MODEL_DIR"]
        self.env["BARE_MODEL_NAME"] = env["SENTIMENT_MODEL_NAME"]

    def command(self) -> list[str]:
        """Return the gunicorn command line."""
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(self.workers),
            "-k",
            "uvicorn_worker.UvicornWorker",
            "-b",
            f"127.0.0.1:{self.port}",
            "bench.bare_app:app",
        ]

    def metric_sums(self) -> dict[str, float]:
        """The bare app keeps no metrics."""
        return {}


# -- request bodies -------------------------------------------------------------------------------
def write_bodies(workdir: Path, label: str, bodies: list[tuple[bytes, int, str]]) -> Path:
    """Write request bodies as files plus a manifest line each: ``path header_length content_type``."""
    folder = workdir / label
    folder.mkdir()
    lines = []
    for i, (body, header_length, content_type) in enumerate(bodies):
        path = folder / f"{i}.body"
        path.write_bytes(body)
        lines.append(f"{path} {header_length} {content_type}")
    manifest = folder / "manifest.txt"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def predict_bodies(texts: list[str], per_request: int) -> list[tuple[bytes, int, str]]:
    """Return ``/v1/predict`` bodies of ``per_request`` consecutive texts each."""
    out = []
    for i in range(0, len(texts) - per_request + 1, per_request):
        chunk = texts[i : i + per_request]
        doc = {"text": chunk[0]} if per_request == 1 else {"texts": chunk}
        out.append((json.dumps(doc).encode(), 0, "application/json"))
    return out


# -- load generators --------------------------------------------------------------------------------
def run_wrk(port: int, path: str, manifest: Path, connections: int, seconds: float, workdir: Path) -> dict:
    """Run wrk for ``seconds``; return requests, non-2xx, errors and latency percentiles."""
    script = workdir / "bodies.lua"
    script.write_text(WRK_SCRIPT)
    threads = max(1, min(2, connections))
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{path}",
            "--",
            str(manifest),
            str(random.randrange(10**6)),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {"requests": int(re.search(r"(\d+) requests in", out).group(1))}
    result["seconds"] = _wrk_seconds(re.search(r"requests in ([\d.]+)(\w+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = sum(int(x) for x in errors.groups()) if errors else 0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        result[f"p{pct}_ms"] = (
            float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)] if m else None
        )
    return result


def _wrk_seconds(match: re.Match | None) -> float:
    """Return wrk's 'requests in 10.01s' duration in seconds."""
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def python_client_main(args: argparse.Namespace) -> None:
    """Closed-loop client threads (one keep-alive connection each); print a JSON summary."""
    host, port, path = args.python_client.split(":", 2)
    bodies = []
    for line in Path(args.manifest).read_text().splitlines():
        file, header_length, content_type = line.split(" ")
        headers = {"Content-Type": content_type}
        if header_length != "0":
            headers["Inference-Header-Content-Length"] = header_length
        bodies.append((Path(file).read_bytes(), headers))
    stop = time.monotonic() + args.duration
    records: list[tuple[float, int]] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        mine, k = [], i * 7919
        while time.monotonic() < stop:
            body, headers = bodies[k % len(bodies)]
            k += 1
            sent = time.monotonic()
            try:
                conn.request("POST", "/" + path, body, headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                status = -1
            mine.append((time.monotonic() - sent, status))
        conn.close()
        with lock:
            records.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.client_concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = sorted(lat for lat, status in records if 200 <= status < 300)
    print(
        json.dumps(
            {
                "requests": len(records),
                "seconds": time.monotonic() - started,
                "non_2xx": sum(1 for _, s in records if s >= 300),
                "socket_errors": sum(1 for _, s in records if s < 0),
                "p50_ms": 1e3 * ok[len(ok) // 2] if ok else None,
                "p99_ms": 1e3 * ok[min(len(ok) - 1, int(0.99 * len(ok)))] if ok else None,
            }
        )
    )


def run_python_client(port: int, path: str, manifest: Path, connections: int, seconds: float) -> dict:
    """Run the Python client in its own process; return its summary."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--python-client",
            f"127.0.0.1:{port}:{path.lstrip('/')}",
            "--manifest",
            str(manifest),
            "--client-concurrency",
            str(connections),
            "--duration",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_level(
    server: Server, path: str, manifest: Path, connections: int, per_request: int, args, workdir
) -> dict:
    """Warm up, then load the server for ``--duration``; add server-side measurements."""

    def load(seconds: float) -> dict:
        if args.client == "wrk":
            return run_wrk(server.port, path, manifest, connections, seconds, workdir)
        return run_python_client(server.port, path, manifest, connections, seconds)

    if args.warmup > 0:
        load(args.warmup)
    pids = server.worker_pids()
    cpu_before = sum(cpu_seconds(p) for p in pids)
    sums_before = server.metric_sums()
    result = load(args.duration)
    cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
    sums = {k: v - sums_before[k] for k, v in server.metric_sums().items()}
    ok = result["requests"] - result["non_2xx"] - result["socket_errors"]
    result.update(
        connections=connections,
        texts_per_request=per_request,
        texts_per_s=ok * per_request / result["seconds"],
        server_cpu_cores=cpu / result["seconds"],
        mean_batch=None,
        outside_model_us_per_request=None,
    )
    if server.has_metrics:
        result.update(
            mean_batch=sums["sentiment_batch_size_sum"] / max(1.0, sums["sentiment_batch_size_count"]),
            outside_model_us_per_request=1e6
            * (cpu - sums["sentiment_inference_cpu_seconds_total"])
            / max(1, result["requests"]),
        )
    return result


# -- report -----------------------------------------------------------------------------------------
def fmt(value: float | None, spec: str = ".1f") -> str:
    """Format a number or a dash."""
    return "-" if value is None else format(value, spec)


def measure_ceilings(version_dir: Path, ids: list, args: argparse.Namespace) -> dict:
    """Return the sorted ceiling at each ``--batch-sizes`` size, the best of them, and batch-1."""
    sorted_rates = {
        b: measure_ceiling(version_dir, ids, args.workers, "sorted", b, args.ceiling_seconds)
        for b in (int(x) for x in args.batch_sizes.split(","))
    }
    best = max(sorted_rates, key=sorted_rates.get)
    batch1 = measure_ceiling(version_dir, ids, args.workers, "batch1", 1, args.ceiling_seconds)
    return {"sorted": sorted_rates, "best_batch": best, "best": sorted_rates[best], "batch1": batch1}


def run_levels(
    server: Server, args: argparse.Namespace, bodies: dict[str, Path], workdir: Path, ceiling: dict
) -> list[dict]:
    """Load the server at every level once (single texts, the multi-text level, then /v2); add ratios."""
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    rows = [
        {"endpoint": "/v1/predict", **run_level(server, "/v1/predict", bodies["single"], c, 1, args, workdir)}
        for c in levels
    ]
    if args.multi_concurrency > 0:
        multi = run_level(
            server,
            "/v1/predict",
            bodies["multi"],
            args.multi_concurrency,
            args.texts_per_request,
            args,
            workdir,
        )
        rows.append({"endpoint": "/v1/predict", **multi})
    if args.v2 and server.answers_v2:
        from bench.v2_requests import V2_INFER_PATH

        top = 64 if 64 in levels else max(levels)  # the issue compares V2 with v1 at c=64
        path = V2_INFER_PATH.format(model=args.model_name)
        rows.append(
            {"endpoint": "/v2 binary", **run_level(server, path, bodies["v2"], top, 1, args, workdir)}
        )
    for row in rows:
        row["ratio_sorted"] = row["texts_per_s"] / ceiling["best"]
        row["ratio_batch1"] = row["texts_per_s"] / ceiling["batch1"]
    return rows


def v2_bodies(texts: list[str]) -> list[tuple[bytes, int, str]]:
    """Return one binary Open Inference Protocol request body per text."""
    from bench.v2_requests import binary_infer_request

    bodies = []
    for t in texts:
        body, headers = binary_infer_request([t])
        bodies.append((body, int(headers["Inference-Header-Content-Length"]), headers["Content-Type"]))
    return bodies


def median_of_rounds(rounds: list[list[dict]]) -> list[dict]:
    """Return one row per level: the median of each number over the rounds, errors summed.

    Ratios are taken per round (each level against the ceiling of its own round) before the
    median, so a slow spell of the host shifts one round's level and ceiling alike.
    """
    rows = []
    for per_round in zip(*rounds, strict=True):
        row = dict(per_round[0])
        for key in ("non_2xx", "socket_errors", "requests"):
            row[key] = sum(r[key] for r in per_round)
        for key in (
            "texts_per_s",
            "ratio_sorted",
            "ratio_batch1",
            "p50_ms",
            "p99_ms",
            "mean_batch",
            "server_cpu_cores",
            "outside_model_us_per_request",
        ):
            values = [r[key] for r in per_round if r.get(key) is not None]
            row[key] = statistics.median(values) if values else None
        row["ratio_sorted_range"] = (
            min(r["ratio_sorted"] for r in per_round),
            max(r["ratio_sorted"] for r in per_round),
        )
        rows.append(row)
    return rows


def print_levels(rows: list[dict]) -> None:
    """Print one table row per level."""
    print(
        f"{'endpoint':>12} {'conc':>5} {'texts/req':>9} {'texts/s':>8} {'/sorted':>7} {'/batch1':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'non2xx':>6} {'errors':>6} {'texts/call':>10} {'srv CPU':>7} "
        f"{'us/req outside model':>20}"
        + ("  /sorted, min-max of rounds" if "ratio_sorted_range" in rows[0] else "")
    )
    for r in rows:
        spread = r.get("ratio_sorted_range")
        print(
            f"{r['endpoint']:>12} {r['connections']:>5} {r['texts_per_request']:>9} {r['texts_per_s']:>8.0f} "
            f"{r['ratio_sorted']:>7.2f} {r['ratio_batch1']:>7.2f} {fmt(r['p50_ms']):>7} "
            f"{fmt(r['p99_ms']):>7} {r['non_2xx']:>6} {r['socket_errors']:>6} {fmt(r['mean_batch']):>10} "
            f"{r['server_cpu_cores']:>7.2f} {fmt(r['outside_model_us_per_request'], '.0f'):>20}"
            + (f"  {spread[0]:.2f}-{spread[1]:.2f}" if spread else "")
        )


def print_rise_with_load(rows: list[dict]) -> None:
    """Print how each single-text level from c=8 up compares with the best level below it.

    Issue #9 asks for throughput non-decreasing from c=8 to c=128 (within 5 %); ratios to the
    same round's ceiling are compared, so the comparison holds across rounds.
    """
    single = [r for r in rows if r["endpoint"] == "/v1/predict" and r["texts_per_request"] == 1]
    single = [r for r in single if r["connections"] >= 8]
    parts = []
    for k in range(1, len(single)):
        best_below = max(single[:k], key=lambda r: r["ratio_sorted"])
        change = 100 * (single[k]["ratio_sorted"] / best_below["ratio_sorted"] - 1)
        parts.append(f"c={single[k]['connections']} {change:+.0f} % vs c={best_below['connections']}")
    if parts:
        print("throughput against the best lower level (c >= 8): " + ", ".join(parts))


def main(argv: list[str] | None = None) -> int:
    """Measure the ceilings and every load level (``--rounds`` times); print them with their ratios."""
    args = parse_args(argv)
    if args.python_client:
        python_client_main(args)
        return 0
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "python"
    if args.rounds < 1:
        raise SystemExit("--rounds must be >= 1")
    from registry.artifact import Artifact
    from registry.store import Registry

    version_dir = Registry(args.model_dir).production_dir(args.model_name)
    vocabulary = Artifact.open(version_dir).vocabulary()
    texts = load_texts(args.data, args.texts, args.short_fraction, args.seed)
    ids = [vocabulary.encode(t).tolist() for t in texts]
    lengths = sorted(len(x) for x in ids)
    cores = os.cpu_count() or 1
    print(
        f"Model {args.model_name} v{version_dir.name}; {len(texts)} texts "
        f"({args.short_fraction:.0%} single sentences), "
        f"tokens per text: median {statistics.median(lengths):.0f}, p90 {lengths[int(0.9 * len(lengths))]}, "
        f"max {lengths[-1]}; {cores} CPU cores; client {args.client}; "
        f"{args.duration:g} s per level (+{args.warmup:g} s warm-up); {args.rounds} round(s)"
    )
    if os.getloadavg()[0] > 0.5 * cores:
        print(f"WARNING: load average {os.getloadavg()[0]:.1f} on {cores} cores: numbers will be noisy")
    report: dict = {
        "model_version": int(version_dir.name),
        "texts": len(texts),
        "cores": cores,
        "args": vars(args),
        "rounds": [],
    }

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        workdir = Path(tmp)
        env = {
            "SENTIMENT_MODEL_DIR": str(Path(args.model_dir).resolve()),
            "SENTIMENT_MODEL_NAME": args.model_name,
            "SENTIMENT_THREADS": str(args.threads),
            **dict(item.split("=", 1) for item in args.server_env),
        }
        bodies = {
            "single": write_bodies(workdir, "single", predict_bodies(texts, 1)),
            "multi": write_bodies(workdir, "multi", predict_bodies(texts, args.texts_per_request)),
        }
        if args.v2:
            bodies["v2"] = write_bodies(workdir, "v2", v2_bodies(texts))
        # Round after round: ceilings (the servers idle meanwhile), then every level against them,
        # the service's and, with --compare-bare, the bare app's.
        with contextlib.ExitStack() as stack:
            servers = {"service": stack.enter_context(Server(env, args.workers, workdir))}
            if args.compare_bare:
                servers["bare"] = stack.enter_context(BareServer(env, args.workers, workdir))
            for number in range(1, args.rounds + 1):
                ceiling = measure_ceilings(version_dir, ids, args)
                print(
                    f"\n[round {number}] (1) in-process ceilings, {args.workers} processes x 1 thread: "
                    f"sorted {ceiling['best']:.0f} texts/s (batch {ceiling['best_batch']}; "
                    + ", ".join(f"b{b}: {v:.0f}" for b, v in ceiling["sorted"].items())
                    + f"); arrival-order batch-1 {ceiling['batch1']:.0f} texts/s"
                )
                outcome = {"ceiling": ceiling}
                for name, server in servers.items():
                    rows = run_levels(server, args, bodies, workdir, ceiling)
                    print(
                        f"[round {number}] (2) {name}: {args.workers} gunicorn workers"
                        + (f" x {args.threads} threads" if name == "service" else " (bench/bare_app.py)")
                    )
                    print_levels(rows)
                    outcome["levels" if name == "service" else f"{name}_levels"] = rows
                report["rounds"].append(outcome)
            rss = [round(rss_mb(p)) for p in servers["service"].worker_pids()]

    summaries = {"service": "levels", "bare": "bare_levels"} if args.compare_bare else {"service": "levels"}
    for name, key in summaries.items():
        rows = [r[key] for r in report["rounds"]]
        rows = median_of_rounds(rows) if args.rounds > 1 else rows[0]
        if args.rounds > 1 or args.compare_bare:
            median = f", median of {args.rounds} rounds (ratios per round, against its ceilings)"
            print(f"\n{name}{median if args.rounds > 1 else ''}:")
            print_levels(rows)
        print_rise_with_load(rows)
        report[key] = rows
    report["rss_mb_per_worker"] = rss
    report["ceiling"] = report["rounds"][0]["ceiling"]  # the first round's, as in one-round runs
    print(f"RSS per service worker after the whole bench: {rss} MiB")
    print(
        "srv CPU is in cores (1.00 = one core busy); 'outside model' = worker CPU minus the CPU time of the "
        "model calls (sentiment_inference_cpu_seconds_total), per request."
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
