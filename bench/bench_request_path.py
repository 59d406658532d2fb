"""CPU of the request path in one process, without HTTP: what tokenising and each route layer cost.

The service bench (``bench_service.py``) measures the whole server under load; this one isolates
the parts of a request that run on the request thread, single-threaded, with the same text mix:

1. encoding one text (tokenise + ids, ``Predictor.encode``), microseconds per text;
2. the CPU of the calling thread for one ``POST /v1/predict`` through the WSGI app, with the fast
   path (``SENTIMENT_PREDICT_FAST_PATH=1``) and without it; the model call runs on the batching
   thread, so it is not in this number; ``GET /healthz`` through Flask as the floor.

Best of ``--repeats`` passes over the texts (the least disturbed by other work on the machine).

    .venv/bin/python bench/bench_request_path.py --model-dir models
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_service import add_model_and_text_args, load_texts  # noqa: E402
from service.app import create_app  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_and_text_args(p, texts=1000)
    p.add_argument("--repeats", type=int, default=3, help="passes; the fastest counts (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return p.parse_args(argv)


def cpu_per_call(call: Callable[[int], object], n: int, repeats: int) -> float:
    """Return the calling thread's CPU microseconds per ``call(i)``, best of ``repeats`` passes."""
    best = float("inf")
    for _ in range(repeats):
        started = time.thread_time()
        for i in range(n):
            call(i)
        best = min(best, (time.thread_time() - started) / n)
    return best * 1e6


def wsgi_caller(app, method: str, path: str, bodies: list[bytes]) -> Callable[[int], object]:
    """Return a function sending body ``i`` (cycled) to the WSGI app and reading the answer."""

    def start_response(status: str, headers: list, exc_info=None) -> None:
        if not status.startswith("200"):
            raise RuntimeError(f"{method} {path} answered {status}")

    def call(i: int) -> bytes:
        body = bodies[i % len(bodies)]
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        return b"".join(app(environ, start_response))

    return call


def main(argv: list[str] | None = None) -> int:
    """Measure and print the request path's CPU per text and per request."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    texts = load_texts(args.data, args.texts, args.short_fraction, seed=0)
    bodies = [json.dumps({"text": t}).encode() for t in texts]
    config = {"MODEL_DIR": args.model_dir, "MODEL_NAME": args.model_name}
    results: dict[str, float] = {}
    apps = []
    try:
        for fast in (1, 0):
            app = create_app({**config, "PREDICT_FAST_PATH": fast})
            apps.append(app)
            if fast:
                predictor = app.extensions["sentiment"].manager.current()
                results["encode_us_per_text"] = cpu_per_call(
                    lambda i: predictor.encode([texts[i]]), len(texts), args.repeats
                )
                results["healthz_us"] = cpu_per_call(
                    wsgi_caller(app, "GET", "/healthz", [b""]), len(texts), args.repeats
                )
            call = wsgi_caller(app, "POST", "/v1/predict", bodies)
            call(0)  # warm: first-use tables, the batching thread
            key = "predict_fast_path_us" if fast else "predict_flask_us"
            results[key] = cpu_per_call(call, len(texts), args.repeats)
    finally:
        for app in apps:
            app.extensions["sentiment"].stop()
    print(f"{len(texts)} texts ({args.short_fraction:.0%} single sentences), best of {args.repeats} passes")
    for label, key, unit in (
        ("encode (tokenise + ids)", "encode_us_per_text", "text"),
        ("GET /healthz through Flask", "healthz_us", "request"),
        ("POST /v1/predict through Flask", "predict_flask_us", "request"),
        ("POST /v1/predict, fast path", "predict_fast_path_us", "request"),
    ):
        print(f"  {label:<32} {results[key]:6.0f} us per {unit}")
    print("  (CPU of the calling thread only: the model call runs on the batching thread)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
