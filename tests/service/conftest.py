"""Fixtures of the service tests: apps on temporary registries, and real gunicorn servers.

Integration tests take the registry from ``serving_registry``, parametrised by fixture name so a
registry with a really trained model (``trained_registry``) can be added to ``params`` later.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from registry.store import Registry
from service.app import create_app
from tests.fakes import make_random_version
from tests.service.gunicorn_server import GunicornServer

#: Registries the integration tests run against (names of module- or session-scoped fixtures).
SERVING_REGISTRIES = ["module_fake_registry", "trained_registry"]


@pytest.fixture
def make_app(fake_registry: Registry) -> Iterator[Callable[..., Flask]]:
    """Return a factory of apps on ``fake_registry`` (overrides as keyword config); stops them after."""
    apps: list[Flask] = []

    def factory(registry: Registry | None = None, **config) -> Flask:
        base = {"TESTING": True, "MODEL_DIR": str((registry or fake_registry).root), "POLL_INTERVAL_S": 0.1}
        app = create_app({**base, **config})
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["sentiment"].stop()


@pytest.fixture
def default_cost_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give every app the default cost model instead of one timed at its warm-up: plans by rule.

    A timed cost model makes how texts are grouped into calls depend on the machine's load. Two
    apps compared byte for byte must group alike (else float32 scores differ in the 9th digit,
    inside the 1e-6 parity but not the same bytes), and a test counting batches needs to know them.
    """
    from inference.batching import DEFAULT_COST, CostModel

    monkeypatch.setattr(CostModel, "measure", classmethod(lambda cls, *a, **k: DEFAULT_COST))


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """Return an app serving the random-weight model of ``fake_registry``."""
    return make_app()


@pytest.fixture
def client(app: Flask):
    """Return a Flask test client of ``app``."""
    return app.test_client()


@pytest.fixture(scope="module")
def module_fake_registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """Return a registry with one random-weight production version, shared by a test module."""
    registry = Registry(tmp_path_factory.mktemp("models"))
    make_random_version(registry, "sentiment")
    return registry


@pytest.fixture(scope="module", params=SERVING_REGISTRIES)
def serving_registry(request: pytest.FixtureRequest) -> Registry:
    """Return a registry whose production model the integration tests serve (do not modify it)."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def private_registry(serving_registry: Registry, tmp_path: Path) -> Registry:
    """Return a copy of ``serving_registry`` that a test may promote versions in."""
    root = tmp_path / "private-models"
    shutil.copytree(serving_registry.root, root)
    return Registry(root)


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Callable[..., GunicornServer]]:
    """Return a starter of real gunicorn servers (2 workers, own port and metrics dir); stops them."""
    servers: list[GunicornServer] = []

    def start(registry: Registry, **env: str) -> GunicornServer:
        server = GunicornServer(registry.root, tmp_path / f"server-{len(servers)}", env=env)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
