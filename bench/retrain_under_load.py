"""End-to-end proof: retrain while the live service is under load, and count failed requests.

Starts the real service (gunicorn, 2 workers) on a copy of a registry, keeps client threads
sending ``POST /v1/predict`` continuously, runs ``python -m training.pipeline retrain`` as a
separate process on a drop folder of extra data, and reports:

- requests sent / failed (any non-200 or connection error counts as failed),
- the version each response carried before and after the promotion,
- how long after the promotion (the pointer's own timestamp) the last old-version response came
  (must be ≤ poll interval + load time). Each gunicorn worker polls on its own, so in that window
  responses may alternate between the versions.

    python bench/retrain_under_load.py --model-dir models --gold data/gold.csv --new-data drop/

With ``--make-data`` it builds the drop folder and a disjoint gold set itself from the IMDB
training file (for a self-contained demo). The test ``tests/test_end_to_end.py`` runs the same
function on the test session's small trained model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from tests.service.gunicorn_server import GunicornServer  # noqa: E402

REVIEW = "A moving, beautifully acted film. The story kept me hooked and the ending was perfect."


def client_loop(server: GunicornServer, stop: threading.Event, log: list, pause_s: float = 0.0) -> None:
    """Send requests until ``stop``, ``pause_s`` apart; append (wall time, status, version or error)."""
    session = requests.Session()
    while not stop.wait(pause_s):
        try:
            response = session.post(server.url("/v1/predict"), json={"text": REVIEW}, timeout=10)
            version = (
                response.json()["predictions"][0]["model_version"] if response.status_code == 200 else None
            )
            log.append((time.time(), response.status_code, version))
        except (requests.RequestException, ValueError, KeyError) as exc:
            log.append((time.time(), "error", repr(exc)))


def run(
    model_dir: Path,
    drop: Path,
    gold: Path,
    workdir: Path,
    *,
    data_dir: Path | None = None,
    preset: str | None = "tiny",
    clients: int = 4,
    poll_interval: float = 0.5,
    extra_args: list[str] | None = None,
    name: str = "sentiment",
) -> dict:
    """Run the experiment and return its summary (see module docstring)."""
    from registry.store import Registry

    registry = Registry(model_dir)
    old_version = registry.production_version(name)
    server = GunicornServer(
        model_dir,
        workdir / "server",
        workers=2,
        threads=8,
        env={"SENTIMENT_POLL_INTERVAL_S": str(poll_interval)},
    ).start(timeout=60)
    stop, log = threading.Event(), []
    threads = [
        threading.Thread(target=client_loop, args=(server, stop, log), daemon=True) for _ in range(clients)
    ]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        command = [
            sys.executable,
            "-m",
            "training.pipeline",
            "--model-dir",
            str(model_dir),
            "--model-name",
            name,
            "retrain",
            "--new-data",
            str(drop),
            "--gold",
            str(gold),
            *(extra_args or []),
        ]
        if data_dir:
            command += ["--data-dir", str(data_dir)]
        if preset:
            command += ["--preset", preset]
        started = time.time()
        result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
        finished = time.time()
        if result.returncode != 0:
            raise RuntimeError(f"retrain failed ({result.returncode}):\n{result.stderr[-3000:]}")
        report = json.loads(result.stdout)
        new_version = registry.production_version(name)
        promoted_at = float(registry.pointer(name)["updated_at"])  # wall clock of the atomic pointer swap
        deadline = time.monotonic() + poll_interval + 30
        while time.monotonic() < deadline:  # wait until every worker answers with the new version
            recent = [entry for entry in log[-20:] if entry[0] > promoted_at]
            if len(recent) >= 10 and all(v == new_version for _, _, v in recent):
                break
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
        server.stop()
    failed = [entry for entry in log if entry[1] != 200]
    last_old = max((t for t, _, v in log if v == old_version), default=started)
    first_new = min((t for t, _, v in log if v == new_version), default=None)
    return {
        "requests": len(log),
        "failed": len(failed),
        "failures": [str(f) for f in failed[:5]],
        "old_version": old_version,
        "new_version": new_version,
        "promoted": report["promoted"],
        "reason": report["reason"],
        "retrain_seconds": round(finished - started, 1),
        "responses_with_old_version": sum(1 for _, _, v in log if v == old_version),
        "responses_with_new_version": sum(1 for _, _, v in log if v == new_version),
        "old_version_served_after_promotion_s": round(max(0.0, last_old - promoted_at), 2),
        "first_new_version_after_promotion_s": None
        if first_new is None
        else round(first_new - promoted_at, 2),
        "versions_in_order": _runs([v for _, _, v in sorted(log)]),
        "poll_interval_s": poll_interval,
    }


def _runs(values: list) -> list:
    """Collapse consecutive equal values: [1, 1, 2, 2] -> [1, 2]."""
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


def make_demo_data(
    source: Path, out: Path, gold_rows: int = 500, new_rows: int = 500, seed: int = 3
) -> tuple[Path, Path]:
    """Write a drop folder and a gold file from a labelled file (disjoint from each other)."""
    import pandas as pd

    frame = pd.read_csv(source).drop_duplicates("text").sample(frac=1.0, random_state=seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "drop").mkdir(exist_ok=True)
    frame.iloc[:gold_rows][["text", "label"]].to_csv(out / "gold.csv", index=False)
    frame.iloc[gold_rows : gold_rows + new_rows][["text", "label"]].to_csv(
        out / "drop" / "new.csv", index=False
    )
    return out / "drop", out / "gold.csv"


def main() -> int:
    """Run the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-dir", type=Path, required=True, help="registry root to copy (the original is never modified)"
    )
    parser.add_argument("--new-data", type=Path, help="drop folder of new labelled files")
    parser.add_argument("--gold", type=Path, help="frozen gold set, disjoint from all training data")
    parser.add_argument(
        "--make-data",
        type=Path,
        default=None,
        help="build --new-data and --gold from this labelled file (demo; the gold rows must "
        "not be in the production model's training data, so pass a file it did not see)",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="data dir for the base training file")
    parser.add_argument(
        "--preset",
        default="tiny",
        help="train the candidate with this preset ('' = production's own configuration)",
    )
    parser.add_argument("--clients", type=int, default=4, help="client threads sending requests")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="service registry poll interval (s)")
    args, extra = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copytree(args.model_dir, work / "models")
        drop, gold = args.new_data, args.gold
        if args.make_data:
            drop, gold = make_demo_data(args.make_data, work / "demo")
        summary = run(
            work / "models",
            drop,
            gold,
            work,
            data_dir=args.data_dir,
            preset=args.preset or None,
            clients=args.clients,
            poll_interval=args.poll_interval,
            extra_args=extra,
        )
    print(json.dumps(summary, indent=2))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
