"""No training/serving skew: every way a user scores a text gives the same calibrated score.

Same texts, one really trained version, four paths: the Predictor (ONNX Runtime), the HTTP
service with the ONNX runtime, the HTTP service with the TensorFlow SavedModel runtime, and the
batch scorer (``python -m scoring``, a separate process with its own worker pool).
"""

import numpy as np
import pandas as pd
import pytest

from inference.predictor import Predictor
from scoring.cli import main as scoring_main
from service.app import create_app
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def texts():
    reviews = pd.read_csv(DATA_DIR / "train.csv.gz", nrows=40)["text"].tolist()
    return reviews + ["Great!", "not good, not bad", "🙂", "I wouldn't watch it again?" * 50]


def service_scores(registry, runtime, texts):
    app = create_app({"TESTING": True, "MODEL_DIR": str(registry.root), "RUNTIME": runtime})
    try:
        response = app.test_client().post("/v1/predict", json={"texts": texts})
        assert response.status_code == 200, response.get_json()
        return np.array([p["probability"] for p in response.get_json()["predictions"]])
    finally:
        app.extensions["sentiment"].stop()


def test_predictor_service_savedmodel_and_batch_scorer_agree(trained_registry, texts, tmp_path):
    reference = Predictor.load(trained_registry.production_dir("sentiment")).score_texts(texts)

    np.testing.assert_allclose(service_scores(trained_registry, "onnx", texts), reference, atol=1e-6)
    np.testing.assert_allclose(service_scores(trained_registry, "savedmodel", texts), reference, atol=1e-5)

    pd.DataFrame({"id": range(len(texts)), "review": texts}).to_csv(tmp_path / "in.csv", index=False)
    code = scoring_main(
        [
            "--input",
            str(tmp_path / "in.csv"),
            "--output",
            str(tmp_path / "out"),
            "--text-column",
            "review",
            "--model-dir",
            str(trained_registry.root),
            "--quiet",
        ]
    )
    assert code == 0
    scored = pd.read_parquet(tmp_path / "out")
    scored = scored.iloc[np.argsort(scored["id"].astype(int).to_numpy())]  # CSV ids are read as text
    assert scored["error"].isna().all()
    np.testing.assert_allclose(scored["probability"].to_numpy(), reference, atol=1e-6)
    assert (scored["label"].to_numpy() == np.where(reference >= 0.5, "positive", "negative")).all()
