"""Run the real service under gunicorn in a subprocess, on a free port, for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG = PROJECT_ROOT / "service" / "gunicorn.conf.py"
READY_LINE = "now serving version"


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _live_processes(field: int, value: int) -> list[int]:
    """Return the pids of live (not zombie) processes whose /proc stat ``field`` equals ``value``.

    Fields counted after the command name: 0 state, 1 parent pid, 2 process group (Linux /proc).
    """
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[field]) == value and fields[0] != "Z":
            pids.append(int(entry.name))
    return sorted(pids)


def child_pids(parent: int) -> list[int]:
    """Return the pids of the live processes whose parent is ``parent`` (Linux /proc)."""
    return _live_processes(1, parent)


def group_pids(group: int) -> list[int]:
    """Return the pids of the live processes in process group ``group`` (Linux /proc)."""
    return _live_processes(2, group)


class GunicornServer:
    """One gunicorn master with its workers serving a registry root."""

    def __init__(
        self,
        model_dir: Path,
        workdir: Path,
        *,
        workers: int = 2,
        threads: int = 8,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.workers = workers
        self.log_path = self.workdir / "server.log"
        self.env = {
            **os.environ,
            "SENTIMENT_MODEL_DIR": str(model_dir),
            "SENTIMENT_BIND": f"127.0.0.1:{self.port}",
            "SENTIMENT_WORKERS": str(workers),
            "SENTIMENT_THREADS": str(threads),
            "SENTIMENT_POLL_INTERVAL_S": "0.3",
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "prometheus"),
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None
        self.session = requests.Session()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 30.0, wait_ready: bool = True) -> GunicornServer:
        """Start gunicorn; wait until every worker serves a model (or just answers)."""
        (self.workdir / "prometheus").mkdir(exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(CONFIG), "service.app:create_app()"],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
            if self._answers() and (not wait_ready or self.log().count(READY_LINE) >= self.workers):
                if len(self.worker_pids()) == self.workers:
                    return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"gunicorn did not become ready in {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), then kill if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def _answers(self) -> bool:
        try:
            return self.session.get(self.url("/healthz"), timeout=1).status_code == 200
        except requests.RequestException:
            return False

    # -- inspection ----------------------------------------------------------------------------
    def url(self, path: str) -> str:
        """Return the absolute URL of ``path``."""
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        """Return everything gunicorn and the app logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        """Return the pids of the live workers."""
        assert self.process is not None
        return child_pids(self.process.pid)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """Return every sample of /metrics keyed by (name, sorted labels)."""
        text = self.session.get(self.url("/metrics"), timeout=5).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
