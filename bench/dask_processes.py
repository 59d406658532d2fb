"""Start a real Dask cluster as separate processes on 127.0.0.1 (for benchmarks and tests).

Unlike ``distributed.LocalCluster``, these are the ``dask scheduler`` and ``dask worker`` programs a
user runs on real machines, in their own working directory and their own process groups, so what
is measured or tested is what a multi-machine deployment does (tasks pickled to other processes,
paths resolved elsewhere). Everything listens on loopback only, with no dashboard.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

#: The ``dask`` program of the environment running this code.
DASK = str(Path(sys.executable).parent / "dask")


def stop(process: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop a process and everything it started (its own process group): SIGTERM, then SIGKILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@contextlib.contextmanager
def dask_processes(
    workers: int, *, cwd: Path, env: dict[str, str], threads: int = 1, timeout: float = 120.0
) -> Iterator[str]:
    """Run a scheduler and ``workers`` worker processes (``threads`` threads each); yield its address.

    Their output goes to ``cwd/cluster.log``; all of them are stopped when the block ends.
    """
    cwd.mkdir(parents=True, exist_ok=True)
    scheduler_file = cwd / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    processes: list[subprocess.Popen] = []
    with open(cwd / "cluster.log", "ab") as log:

        def start(*args: str) -> subprocess.Popen:
            """Start one dask program in its own process group."""
            process = subprocess.Popen(
                [DASK, *args], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            processes.append(process)
            return process

        try:
            scheduler = start(
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            )
            deadline = time.monotonic() + timeout
            address = None
            while address is None:
                if scheduler.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dask scheduler did not start; see {cwd / 'cluster.log'}")
                with contextlib.suppress(FileNotFoundError, ValueError):
                    address = json.loads(scheduler_file.read_text())["address"]
                time.sleep(0.1)
            for k in range(workers):
                start(
                    "worker",
                    address,
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    str(threads),
                    "--nworkers",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--name",
                    f"worker-{k}",
                    "--death-timeout",
                    "60",
                )
            from distributed import Client

            with Client(address, timeout=f"{timeout:.0f}s") as client:
                client.wait_for_workers(workers, timeout=timeout)
            yield address
        finally:
            for process in reversed(processes):
                stop(process)
