"""The ONNX service process never imports TensorFlow and never unpickles anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from registry.store import Registry

PROJECT_ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, pickle, sys

events = []
sys.addaudithook(lambda event, args: events.append(event) if event.startswith("pickle.") else None)

def refuse(*args, **kwargs):
    raise AssertionError("the service tried to unpickle something")

pickle.load = pickle.loads = refuse
pickle.Unpickler = refuse

from service.app import create_app

app = create_app({"MODEL_DIR": sys.argv[1], "RUNTIME": "onnx", "POLL_INTERVAL_S": 60})
client = app.test_client()
statuses = [
    client.post("/v1/predict", json={"texts": ["a fine film", "dreadful"]}).status_code,
    client.post("/v1/models/sentiment:predict", json={"instances": ["ok"]}).status_code,
    client.get("/v1/models/sentiment").status_code,
    client.get("/metrics").status_code,
    client.post("/v1/explain", json={"text": "a fine film"}).status_code,
    client.get("/").status_code,
]
banned = {"tensorflow", "keras", "tf_keras", "gensim", "torch"}
heavy = sorted(m for m in sys.modules if m.split(".")[0] in banned)
print(json.dumps({"statuses": statuses, "heavy": heavy, "pickle_events": events}))
"""


def test_onnx_service_imports_no_tensorflow_and_unpickles_nothing(fake_registry: Registry):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(fake_registry.root)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["statuses"] == [200] * 6
    assert report["heavy"] == []
    assert report["pickle_events"] == []
