"""The floor a lean service is measured against: an ASGI app that scores and does nothing else.

``POST /v1/predict`` with ``{"text": ...}`` or ``{"texts": [...]}``: orjson parses the body, the
served version's Predictor tokenises the texts (the one tokenizer), and the model is called on the
event loop itself, on everything that arrived while the previous call ran, grouped by the
Predictor's length-aware plan. No validation, no error bodies, no metrics, no deadlines, no model
reload, no Flask: what is left is HTTP (uvicorn, httptools, uvloop: the service's stack),
tokenising and the model. ``bench/bench_service.py --compare-bare`` runs it next to the service,
round after round, to show how much of the gap to the in-process ceiling is the service's own
work and how much is HTTP, tokenising and the client on the same cores.

    BARE_MODEL_DIR=models gunicorn -w 2 -k uvicorn_worker.UvicornWorker -b 127.0.0.1:8001 \\
        bench.bare_app:app

Benchmark-only: a malformed request gets no answer; never deploy it.
"""

from __future__ import annotations

import asyncio
import logging
import os

import orjson

from inference.predictor import Predictor
from registry.store import Registry

log = logging.getLogger("bench.bare_app")
READY = "bare app ready"  # logged once per worker (bench_service.py waits for it)
MAX_ROUND = 64  # texts taken off the queue per model round, as the service's default window

_predictor: Predictor | None = None
_queue: list[tuple[object, asyncio.Future]] = []
_scheduled = False


def _load() -> Predictor:
    """Load the production version of ``$BARE_MODEL_NAME`` (default sentiment) under ``$BARE_MODEL_DIR``."""
    registry = Registry(os.environ["BARE_MODEL_DIR"])
    predictor = Predictor.load(registry.production_dir(os.environ.get("BARE_MODEL_NAME", "sentiment")))
    predictor.warm_up()
    return predictor


def _score_round() -> None:
    """Score what is queued (up to MAX_ROUND texts) on the loop; come back for the rest."""
    global _scheduled
    batch = _queue[:MAX_ROUND]
    del _queue[:MAX_ROUND]
    _scheduled = bool(_queue)
    if _scheduled:
        asyncio.get_running_loop().call_soon(_score_round)
    ids = [item[0] for item in batch]
    for group in _predictor.plan([len(x) for x in ids]):
        for j, p in zip(group, _predictor.score_together([ids[j] for j in group]).tolist(), strict=True):
            batch[j][1].set_result(p)


async def app(scope: dict, receive, send) -> None:
    """ASGI entry point: POST /v1/predict only."""
    global _predictor, _scheduled
    if scope["type"] == "lifespan":  # load the model before the first request
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _predictor = _load()
                log.warning(READY)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    doc = orjson.loads(body)
    texts = doc["texts"] if "texts" in doc else [doc["text"]]
    loop = asyncio.get_running_loop()
    futures = []
    for ids in _predictor.encode(texts):
        futures.append(loop.create_future())
        _queue.append((ids, futures[-1]))
    if not _scheduled:
        _scheduled = True
        loop.call_soon(_score_round)
    predictions = [{"label": _predictor.label_for(p), "probability": p} for p in [await f for f in futures]]
    answer = orjson.dumps({"predictions": predictions})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})
