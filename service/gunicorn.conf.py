"""gunicorn settings: ``gunicorn -c service/gunicorn.conf.py 'service.app:create_app()'``.

- Workers: ``service.asgi.SentimentWorker`` by default (inference requests on an event loop, the
  other routes in Flask threads; see ``service/asgi.py`` for why), or gunicorn's ``gthread``
  (``SENTIMENT_WORKER_CLASS=gthread``). Either way concurrent requests inside one process wait
  together on the worker's batcher, which forms batches from them.
- No ``preload_app``: every worker imports the app and loads its model after the fork, so no
  ONNX Runtime session or thread is ever inherited across a fork.
- Prometheus multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` (a private temporary directory when
  unset) is emptied when the server starts, and a dead worker's live gauges are removed.
Knobs come from ``SENTIMENT_*`` variables (see ``service.settings.ServerSettings``); anything
else gunicorn offers can still be set through ``GUNICORN_CMD_ARGS``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:  # let `gunicorn -c /abs/path/service/gunicorn.conf.py` work from anywhere
    sys.path.insert(0, _ROOT)

from service.settings import ServerSettings  # noqa: E402  (needs the path above)

_server = ServerSettings.from_env()

bind = _server.bind
workers = _server.workers
threads = _server.threads
worker_class = "service.asgi.SentimentWorker" if _server.worker_class == "asgi" else "gthread"
preload_app = False
timeout = _server.timeout_s
graceful_timeout = 30
keepalive = 5
loglevel = _server.log_level
# Several servers (tests, benchmarks) may run side by side: no shared control socket.
control_socket_disable = True
# Heartbeat files on a RAM disk: a container's /tmp may be a slow overlay filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_OWN_MULTIPROC_DIR = None
if not os.environ.get(_MULTIPROC_ENV):
    # Must be set before any worker imports prometheus_client; workers inherit it.
    _OWN_MULTIPROC_DIR = tempfile.mkdtemp(prefix="sentiment-prometheus-")
    os.environ[_MULTIPROC_ENV] = _OWN_MULTIPROC_DIR


def on_starting(server: Arbiter) -> None:
    """Empty the multiprocess directory: samples of a previous run would be summed in."""
    path = Path(os.environ[_MULTIPROC_ENV])
    path.mkdir(parents=True, exist_ok=True)
    for entry in path.iterdir():
        if entry.is_file() and entry.suffix == ".db":
            entry.unlink()
    server.log.info("prometheus multiprocess directory: %s", path)


def post_fork(server: Arbiter, worker: Worker) -> None:
    """Send the app's log records (model loads, reloads, refusals) to gunicorn's error log."""
    root = logging.getLogger()
    for handler in server.log.error_log.handlers:
        root.addHandler(handler)
    root.setLevel(server.log.error_log.level)


def child_exit(server: Arbiter, worker: Worker) -> None:
    """Drop the dead worker's live gauges (queue depth, model version) from /metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Arbiter) -> None:
    """Remove the multiprocess directory if this config created it."""
    if _OWN_MULTIPROC_DIR is not None:
        shutil.rmtree(_OWN_MULTIPROC_DIR, ignore_errors=True)
