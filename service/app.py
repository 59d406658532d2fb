"""The Flask application factory: ``gunicorn -c service/gunicorn.conf.py 'service.app:create_app()'``.

gunicorn calls the factory in every worker after the fork (no ``preload_app``), so each worker
loads its own model and starts its own batching and reload threads: nothing created here is
ever shared across a fork.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask

from inference.predictor import Predictor
from registry.store import Registry
from service import api, errors, feedback, traffic, v2
from service.dataplane import DataPlane
from service.fastjson import OrjsonProvider
from service.fastpath import PredictFastPath
from service.metrics import Metrics
from service.model_manager import ModelManager
from service.settings import Settings

log = logging.getLogger(__name__)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then ``SENTIMENT_*`` env vars, then ``config``; load the model."""
    app = Flask(__name__)
    app.config.from_mapping(Settings().as_config())
    app.config.from_prefixed_env("SENTIMENT")
    if config:
        app.config.update(config)
    settings = Settings.from_mapping(app.config)
    app.config.update(
        DEBUG=False,
        PROPAGATE_EXCEPTIONS=False,  # every error becomes a JSON body, also under TESTING
        MAX_CONTENT_LENGTH=settings.max_body_bytes + 1,  # +1: see api.read_body
        SEND_FILE_MAX_AGE_DEFAULT=0,  # the page's files revalidate (ETag): a deploy shows at once
    )
    app.json = OrjsonProvider(app)  # keeps fields in the documented (insertion) order

    metrics = Metrics()
    manager = ModelManager(
        Registry(settings.model_dir),
        settings.model_name,
        loader=_loader(settings),
        poll_interval_s=settings.poll_interval_s,
        observer=metrics,
    )
    plane = DataPlane(settings, manager, observer=metrics, tap=traffic.build_tap(settings, metrics.registry))
    app.extensions[api.EXTENSION] = plane
    app.extensions[api.METRICS_EXTENSION] = metrics

    errors.init_app(app, on_unhandled=metrics.unhandled.inc)
    metrics.init_app(app)
    for blueprint in (
        api.predict_bp,
        api.explain_bp,
        api.tfserving_bp,
        api.probes_bp,
        api.docs_bp,
        api.web_bp,
    ):
        app.register_blueprint(blueprint)
    v2.init_app(app)  # Open Inference Protocol (KServe V2) routes, with their own error bodies
    feedback.init_app(app, settings, metrics.registry)

    if settings.predict_fast_path:
        app.wsgi_app = PredictFastPath(app.wsgi_app, plane, metrics)  # type: ignore[method-assign]

    plane.start()
    if not manager.ready:
        log.warning("model %s: no version loaded yet; /readyz answers 503 until one is", settings.model_name)
    return app


def _loader(settings: Settings) -> Callable[[str], Predictor]:
    """Return the function that loads one version directory with the configured runtime."""

    def load(path: str) -> Predictor:
        return Predictor.load(
            path,
            runtime=settings.runtime,
            intra_op_threads=settings.intra_op_threads,
            max_batch_size=settings.max_batch_size,
            max_batch_tokens=settings.max_batch_tokens,
        )

    return load
