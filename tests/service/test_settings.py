"""Settings from defaults, environment and test config; the docs and the spec stay complete."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from service.settings import ServerSettings, Settings, SettingsError, describe, env_var

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_every_field_has_a_default_and_a_doc():
    for cls in (Settings, ServerSettings):
        for f in dataclasses.fields(cls):
            assert f.default is not dataclasses.MISSING
            assert f.metadata.get("doc"), f.name
    Settings()  # the defaults are valid together
    ServerSettings()


def test_from_env_reads_prefixed_variables():
    settings = Settings.from_env(
        {
            "SENTIMENT_MAX_BATCH_SIZE": "8",
            "SENTIMENT_POLL_INTERVAL_S": "0.5",
            "SENTIMENT_MODEL_DIR": "/m",
            "UNRELATED": "x",
        }
    )
    assert (settings.max_batch_size, settings.poll_interval_s, settings.model_dir) == (8, 0.5, "/m")
    assert settings.batch_timeout_s == pytest.approx(0.002)
    server = ServerSettings.from_env({"SENTIMENT_WORKERS": "3", "SENTIMENT_BIND": "127.0.0.1:9"})
    assert (server.workers, server.bind, server.threads) == (3, "127.0.0.1:9", 16)


@pytest.mark.parametrize(
    "env",
    [
        {"SENTIMENT_MAX_BATCH_SIZE": "0"},
        {"SENTIMENT_MAX_BATCH_SIZE": "eight"},
        {"SENTIMENT_MAX_BATCH_SIZE": "1.5"},
        {"SENTIMENT_RUNTIME": "tensorrt"},
        {"SENTIMENT_POLL_INTERVAL_S": "nan"},
        {"SENTIMENT_MODEL_NAME": "../etc"},
        {"SENTIMENT_MAX_TEXTS_PER_REQUEST": "100", "SENTIMENT_MAX_QUEUED_TEXTS": "10"},
    ],
)
def test_invalid_values_fail_loudly(env):
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_app_reads_env_then_config(make_app, monkeypatch):
    monkeypatch.setenv("SENTIMENT_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("SENTIMENT_DEADLINE_MS", "1234")
    app = make_app(DEADLINE_MS=99)
    settings = app.extensions["sentiment"].settings
    assert settings.max_batch_size == 16  # from the environment
    assert settings.deadline_ms == 99  # the config dict wins
    assert app.config["MAX_BATCH_SIZE"] == 16


def test_app_refuses_invalid_env(make_app, monkeypatch):
    monkeypatch.setenv("SENTIMENT_MAX_BATCH_SIZE", "-1")
    with pytest.raises(SettingsError):
        make_app()


def test_docs_table_lists_every_setting():
    docs = (PROJECT_ROOT / "docs" / "service.md").read_text(encoding="utf-8")
    for name, default, _ in describe():
        row = re.search(rf"^\| `{name}` \| `?([^|`]*)`? \|", docs, re.MULTILINE)
        assert row, f"{name} missing from the configuration table of docs/service.md"
        assert row.group(1).strip() == str(default), (
            f"{name}: docs say {row.group(1)!r}, default is {default!r}"
        )
    assert env_var("model_dir") == "SENTIMENT_MODEL_DIR"
