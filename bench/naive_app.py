"""The naive baseline the service is measured against: Keras ``model.predict`` once per request.

No batching, no ONNX: each request tokenises its text with the artifact's vocabulary (the same
tokenizer as the service) and calls ``model.predict`` on a batch of one. Run under the same
gunicorn configuration as the service::

    NAIVE_MODEL_DIR=models/sentiment/3 \
      gunicorn -c service/gunicorn.conf.py 'bench.naive_app:create_app()'

Benchmark-only: it imports TensorFlow and reads ``model.keras``; never deploy it.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from flask import Flask, jsonify, request

from embeddings.vocabulary import pad_batch
from registry.artifact import KERAS_FILE, Artifact

log = logging.getLogger(__name__)


def create_app(model_dir: str | None = None, intra_op_threads: int | None = None) -> Flask:
    """Load ``model.keras`` of one version directory and serve ``POST /v1/predict`` naively."""
    model_dir = model_dir or os.environ["NAIVE_MODEL_DIR"]
    threads = intra_op_threads or int(os.environ.get("SENTIMENT_INTRA_OP_THREADS", "1"))
    import tensorflow as tf  # only here: the real service never imports it

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    import training.model  # noqa: F401  (registers the custom layers model.keras refers to)

    artifact = Artifact.open(model_dir)
    vocabulary = artifact.vocabulary()
    model = keras.saving.load_model(str(artifact.file(KERAS_FILE)), compile=False)
    fixed_length = model.input_shape[1] if isinstance(model.input_shape[1], int) else None
    app = Flask(__name__)

    @app.post("/v1/predict")
    def predict():
        """Score one text with one model.predict call."""
        text = request.get_json(force=True)["text"]
        ids = pad_batch([vocabulary.encode(text)], fixed_length)  # (1, T)
        output = np.asarray(model.predict(ids, verbose=0)).reshape(-1)
        return jsonify({"score": float(output[0]), "model_version": artifact.version})

    @app.get("/readyz")
    def readyz():
        """Report readiness (the model is loaded when the app exists)."""
        return jsonify({"status": "ready"})

    log.info("naive app ready: model %s version %s (Keras)", artifact.name, artifact.version)
    return app
