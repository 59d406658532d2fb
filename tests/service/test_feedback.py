"""POST /v1/feedback: durable drop files the retrain reads, strict input, a token that leaks nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.feedback import EXTENSION
from service.rotating_log import OPEN_DIR, RotatingLog
from training.data import load_labelled

TOKEN = "s3cret-token"


@pytest.fixture
def feedback_dir(tmp_path: Path) -> Path:
    return tmp_path / "drop"


@pytest.fixture
def feedback_app(make_app, feedback_dir):
    return make_app(FEEDBACK_DIR=str(feedback_dir), MAX_TEXTS_PER_REQUEST=4, MAX_TEXT_CHARS=50)


def written(folder: Path) -> list[dict]:
    """Return every record written so far, published or still open."""
    files = sorted(folder.glob("*.jsonl")) + sorted((folder / OPEN_DIR).glob("*.jsonl"))
    return [json.loads(line) for p in files for line in p.read_text().splitlines()]


def publish(app) -> None:
    app.extensions[EXTENSION].log.close()


def test_items_are_stored_with_ids_and_read_back_by_the_training_loader(feedback_app, feedback_dir):
    client = feedback_app.test_client()
    one = client.post("/v1/feedback", json={"text": "Loved it.", "label": "positive", "source": "app"})
    assert one.status_code == 200
    assert one.get_json()["accepted"] == 1 and len(one.get_json()["ids"][0]) == 32
    many = client.post(
        "/v1/feedback",
        json=[{"text": "Hated it.", "label": 0, "id": "c-1"}, {"text": "Fine film", "label": 1, "id": "c-2"}],
    )
    assert many.get_json() == {"accepted": 2, "ids": ["c-1", "c-2"]}
    # Acknowledged means on disk, before any rotation.
    assert [r["text"] for r in written(feedback_dir)] == ["Loved it.", "Hated it.", "Fine film"]
    assert list(feedback_dir.glob("*.jsonl")) == []
    publish(feedback_app)
    (published,) = feedback_dir.glob("feedback-*.jsonl")
    data = load_labelled(published)
    assert data.texts == ["Loved it.", "Hated it.", "Fine film"] and data.labels.tolist() == [1, 0, 1]
    records = written(feedback_dir)
    assert [r["id"] for r in records[1:]] == ["c-1", "c-2"] and records[0]["source"] == "app"


BAD = [
    ({"label": "positive"}, 400, "invalid_request"),  # missing text
    ({"text": "ok"}, 400, "invalid_request"),  # missing label
    ({"text": "ok", "label": "neutral"}, 400, "invalid_label"),
    ({"text": "ok", "label": 2}, 400, "invalid_label"),
    ({"text": "ok", "label": True}, 400, "invalid_label"),
    ({"text": "ok", "label": 1.0}, 400, "invalid_label"),
    ({"text": "ok", "label": None}, 400, "invalid_label"),
    ({"text": 5, "label": 1}, 400, "invalid_request"),
    ({"text": "  ", "label": 1}, 400, "empty_text"),
    ({"text": "ok", "label": 1, "id": 7}, 400, "invalid_request"),
    ({"text": "ok", "label": 1, "id": ""}, 400, "invalid_request"),
    ({"text": "ok", "label": 1, "source": ["a"]}, 400, "invalid_request"),
    ({"text": "ok", "label": 1, "rating": 9}, 400, "invalid_request"),
    ("ok", 400, "invalid_request"),
    ([], 400, "empty_texts"),
    ([{"text": "ok", "label": 1}, "ok"], 400, "invalid_request"),
    ([{"text": "ok", "label": 1}, {"text": "ok", "label": "meh"}], 400, "invalid_label"),  # all or nothing
    ({"text": "x" * 51, "label": 1}, 413, "text_too_long"),
    ([{"text": "ok", "label": 1}] * 5, 413, "too_many_texts"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_feedback_gets_a_json_4xx_and_writes_nothing(feedback_app, feedback_dir, body, status, code):
    response = feedback_app.test_client().post("/v1/feedback", json=body)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code
    assert written(feedback_dir) == []


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b'{"text": "ok", "label": 1', "application/json", 400, "invalid_json"),
        (b'{"text": "caf\xe9", "label": 1}', "application/json", 400, "invalid_utf8"),
        (b"text=ok&label=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
def test_undecodable_bodies_get_json_4xx_and_write_nothing(
    feedback_app, feedback_dir, data, content_type, status, code
):
    response = feedback_app.test_client().post("/v1/feedback", data=data, content_type=content_type)
    assert (response.status_code, response.get_json()["error"]["code"]) == (status, code)
    assert written(feedback_dir) == []


def test_an_oversized_body_gets_413_and_writes_nothing(make_app, feedback_dir):
    app = make_app(FEEDBACK_DIR=str(feedback_dir), MAX_BODY_BYTES=1000)
    response = app.test_client().post("/v1/feedback", json={"text": "x" * 2000, "label": 1})
    assert (response.status_code, response.get_json()["error"]["code"]) == (413, "payload_too_large")
    assert written(feedback_dir) == []


def test_a_write_failure_is_a_503_not_an_acknowledgement(feedback_app, feedback_dir, monkeypatch):
    def full_disk(self, records):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RotatingLog, "append", full_disk)
    response = feedback_app.test_client().post("/v1/feedback", json={"text": "ok", "label": 1})
    assert (response.status_code, response.get_json()["error"]["code"]) == (503, "feedback_unavailable")


def answer(response) -> tuple:
    """Everything a client can observe of an answer (but the timing)."""
    return response.status_code, response.get_data(), response.headers.get("WWW-Authenticate")


def test_token_is_required_and_checked(make_app, feedback_dir):
    client = make_app(FEEDBACK_DIR=str(feedback_dir), FEEDBACK_TOKEN=TOKEN).test_client()
    body = {"text": "ok", "label": 1}
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer"},
    ):
        response = client.post("/v1/feedback", json=body, headers=headers)
        assert response.status_code == 401, headers
        assert response.get_json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert written(feedback_dir) == []
    ok = client.post("/v1/feedback", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and len(written(feedback_dir)) == 1


def test_a_wrong_token_cannot_tell_whether_feedback_is_enabled(make_app, tmp_path):
    configs = {
        "enabled, token": {"FEEDBACK_DIR": str(tmp_path / "a"), "FEEDBACK_TOKEN": TOKEN},
        "disabled, token": {"FEEDBACK_TOKEN": TOKEN},
        "enabled, no token": {"FEEDBACK_DIR": str(tmp_path / "b")},
        "disabled, no token": {},
    }
    clients = {name: make_app(**config).test_client() for name, config in configs.items()}
    wrong = {"Authorization": "Bearer guess"}
    answers = {
        name: answer(c.post("/v1/feedback", json={"text": "ok", "label": 1}, headers=wrong))
        for name, c in clients.items()
    }
    assert len(set(answers.values())) == 1 and answers["disabled, no token"][0] == 401
    # A caller without a token learns only whether a token is configured, not whether feedback is on.
    anonymous = {
        name: answer(c.post("/v1/feedback", json={"text": "ok", "label": 1})) for name, c in clients.items()
    }
    assert anonymous["enabled, token"] == anonymous["disabled, token"]
    assert anonymous["enabled, token"][0] == 401
    # Only an authorised caller learns that feedback is off.
    right = {"Authorization": f"Bearer {TOKEN}"}
    off = clients["disabled, token"].post("/v1/feedback", json={"text": "ok", "label": 1}, headers=right)
    assert (off.status_code, off.get_json()["error"]["code"]) == (404, "feedback_disabled")
    plain_off = clients["disabled, no token"].post("/v1/feedback", json={"text": "ok", "label": 1})
    assert plain_off.status_code == 404


def test_the_token_never_shows_in_the_settings_repr(feedback_app, make_app):
    app = make_app(FEEDBACK_TOKEN=TOKEN)
    assert TOKEN not in repr(app.extensions["sentiment"].settings)


def test_accepted_items_are_counted(feedback_app):
    client = feedback_app.test_client()
    client.post("/v1/feedback", json=[{"text": "a", "label": 1}, {"text": "b", "label": 0}])
    client.post("/v1/feedback", json={"text": "c", "label": 9})
    assert "sentiment_feedback_items_total 2.0" in client.get("/metrics").get_data(as_text=True)


def test_the_per_request_normalisation_budget_covers_all_items(make_app, feedback_dir):
    # Each text alone is fine (36 characters after NFKC); four of them exceed a budget of 100.
    app = make_app(FEEDBACK_DIR=str(feedback_dir), MAX_TEXT_CHARS=50, MAX_NFKC_REWRITTEN_CHARS=100)
    client = app.test_client()
    item = {"text": "\ufdfa\ufdfa", "label": 1}
    assert client.post("/v1/feedback", json=item).status_code == 200
    response = client.post("/v1/feedback", json=[item] * 4)
    assert (response.status_code, response.get_json()["error"]["code"]) == (413, "normalization_too_large")
    assert len(written(feedback_dir)) == 1
