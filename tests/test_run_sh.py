"""./run.sh for real: a quick model served at once, the full one swapped in under load, clean stops.

The script runs with the tiny preset for both models (CI-sized), a temporary registry, a free
loopback port and the environment setup skipped (``SENTIMENT_SKIP_SETUP``: no pip). First run:
the quick model answers, then SIGTERM arrives while the full model trains in the background.
Second run: it serves the quick model already present (no retraining), restarts the full
training, and the service switches to the full model while clients predict back to back, with no
failed request; then Ctrl-C (SIGINT to the process group). After each stop no process of the
script's group is left and the registry holds only complete versions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from bench.retrain_under_load import client_loop
from registry.artifact import Artifact
from registry.store import Registry
from tests.conftest import DATA_DIR, PROJECT_ROOT
from tests.service.gunicorn_server import free_port, group_pids

pytestmark = pytest.mark.slow

NAME = "sentiment"
STARTUP_S = 600  # a training plus TensorFlow's import: under 1 min on 2 quiet cores, minutes when loaded
CLIENT_PAUSE_S = 0.02  # continuous traffic that leaves the cores to the background training


class RunSh:
    """One ``./run.sh`` in its own process group (as a terminal starts it), output to a file."""

    def __init__(self, env: dict[str, str], port: int, output: Path) -> None:
        self.env, self.port, self.output = env, port, output
        self.process: subprocess.Popen | None = None

    def start(self) -> RunSh:
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [str(PROJECT_ROOT / "run.sh")],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # As from a terminal: SIGINT not ignored. A test run earlier in this pytest process
                # may leave SIGINT ignored, a child inherits that, and bash cannot trap an inherited
                # ignored signal, so the Ctrl-C step would test nothing (it hung or exited 0).
                preexec_fn=default_sigint,
            )
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, condition, timeout: float, what: str) -> float:
        """Poll ``condition`` until true; fail with the script's output if it exits or times out."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            assert self.process is not None
            if condition():
                return time.monotonic() - started
            if self.process.poll() is not None:
                pytest.fail(f"run.sh exited ({self.process.returncode}) before {what}:\n{self.log()[-5000:]}")
            time.sleep(0.2)
        pytest.fail(f"no {what} within {timeout} s:\n{self.log()[-5000:]}")

    def predicts(self) -> bool:
        try:
            return requests.post(self.url("/v1/predict"), json={"text": "A fine film."}, timeout=5).ok
        except requests.RequestException:
            return False

    def model(self) -> dict:
        return requests.get(self.url(f"/v1/models/{NAME}"), timeout=5).json()["model"]

    def stop(self, signum: int, *, group: bool) -> int:
        """Send ``signum`` to the script (or its whole group, like Ctrl-C); return its exit status."""
        assert self.process is not None
        tree = descendants(self.process.pid)  # server and training run in sessions of their own
        assert tree, "run.sh has children to stop"
        (os.killpg if group else os.kill)(self.process.pid, signum)
        status = self.process.wait(timeout=90)
        # The script waited for its children: nothing it started, in its group or not, may be left.
        deadline = time.monotonic() + 5
        while (group_pids(self.process.pid) or alive(tree)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group_pids(self.process.pid) == [] and alive(tree) == [], self.log()[-3000:]
        return status


def default_sigint() -> None:
    """Restore SIGINT's default action in the child before it execs run.sh."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def descendants(root: int) -> list[int]:
    """Return the pids of every live process below ``root`` (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we read
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pids: list[int]) -> list[int]:
    """Return those of ``pids`` that still run (zombies count as gone)."""
    running = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.append(pid)
    return running


def assert_registry_complete(registry: Registry, versions: list[int], production: int) -> None:
    """Only complete versions, the expected production one, nothing half-written or left over."""
    assert registry.versions(NAME) == versions
    assert registry.production_version(NAME) == production
    for version in versions:
        Artifact.open(registry.version_dir(NAME, version)).vocabulary()
    leftovers = [
        p.name for p in registry.model_home(NAME).iterdir() if p.name.startswith((".staging", ".deleting"))
    ]
    assert leftovers == []


@pytest.fixture
def scripts():
    """Yield a list to put every started RunSh in; kill whatever any of them left running after."""
    started: list[RunSh] = []
    yield started
    for script in started:  # a failed test must not leave a server or a training behind
        if script.process is None:
            continue
        for pid in alive(descendants(script.process.pid)):  # in sessions of their own: not in the group
            os.kill(pid, signal.SIGKILL)
        if group_pids(script.process.pid):
            os.killpg(script.process.pid, signal.SIGKILL)
            script.process.wait(timeout=30)


def test_quick_model_first_full_model_later_without_restart_and_clean_stops(tmp_path, scripts):
    port = free_port()
    registry = Registry(tmp_path / "models")
    env = {
        **os.environ,
        "SENTIMENT_SKIP_SETUP": "1",
        "SENTIMENT_QUICK_PRESET": "tiny",
        "SENTIMENT_PRESET": "tiny",
        "SENTIMENT_MODEL_DIR": str(registry.root),
        "SENTIMENT_DATA_DIR": str(DATA_DIR),
        "SENTIMENT_RUN_DIR": str(tmp_path / "run"),
        "SENTIMENT_BIND": f"127.0.0.1:{port}",
        "SENTIMENT_POLL_INTERVAL_S": "0.5",
        "SENTIMENT_WORKERS": "2",
        "SENTIMENT_THREADS": "8",
    }
    logs = tmp_path / "run" / "logs"

    # 1. Empty registry: the quick model answers; SIGTERM while the full one trains stops everything.
    first = RunSh(env, port, tmp_path / "first.out").start()
    scripts.append(first)
    first_200_s = first.wait_for(first.predicts, STARTUP_S, "first 200 from /v1/predict")
    model = first.model()
    assert (model["version"], model["quick"], model["preset"]) == (1, True, "tiny")
    first.wait_for(
        lambda: "training the full model" in "".join(p.read_text() for p in logs.glob("*.log")),
        STARTUP_S,
        "the background training",
    )
    assert str(logs) in first.log()  # run.sh printed where the background training logs
    assert first.stop(signal.SIGTERM, group=False) == 143
    assert_registry_complete(registry, [1], production=1)

    # 2. Rerun: serves the quick model present at once, trains the full one again, switches to it.
    second = RunSh(env, port, tmp_path / "second.out").start()
    scripts.append(second)
    second_200_s = second.wait_for(second.predicts, STARTUP_S, "first 200 on the rerun")
    assert "version 1 (quick model) already in the registry" in second.log()
    stop, answers = threading.Event(), []
    clients = [
        threading.Thread(target=client_loop, args=(second, stop, answers, CLIENT_PAUSE_S), daemon=True)
        for _ in range(2)
    ]
    for client in clients:
        client.start()
    try:
        switch_s = second.wait_for(
            lambda: len(answers) > 20 and all(v == 2 for _, _, v in answers[-10:]),
            STARTUP_S,
            "answers from the full model (version 2)",
        )
        time.sleep(0.5)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=15)
    failed = [a for a in answers if a[1] != 200]
    versions = [v for _, _, v in sorted(answers)]
    summary = {
        "first_200_s": round(first_200_s, 1),
        "rerun_first_200_s": round(second_200_s, 1),
        "full_model_served_after_s": round(switch_s, 1),
        "requests": len(answers),
        "failed": len(failed),
        "answered_by_v1": versions.count(1),
        "answered_by_v2": versions.count(2),
    }
    print(json.dumps(summary))  # shown with `pytest -s`
    assert failed == [], failed[:5]
    assert versions[0] == 1 and versions[-1] == 2 and summary["answered_by_v1"] > 0
    model = second.model()
    assert (model["version"], model["quick"], model["preset"]) == (2, False, "tiny")
    second.wait_for(
        lambda: "Full model trained and promoted" in second.log(), 120, "run.sh's report of the promotion"
    )
    trainer_log = max(logs.glob("*.log"), key=lambda p: p.stat().st_mtime).read_text()
    for line in ("word2vec epoch 1/", "LSTM epoch 1/", "parity:", "promotion: version 2 promoted"):
        assert line in trainer_log, (
            f"{line!r} missing from the background training log:\n{trainer_log[-3000:]}"
        )

    # 3. Ctrl-C: SIGINT to the whole process group, as a terminal sends it.
    assert second.stop(signal.SIGINT, group=True) == 130
    assert_registry_complete(registry, [1, 2], production=2)
    assert registry.manifest(NAME, 1)["quick"] is True and registry.manifest(NAME, 2)["quick"] is False
