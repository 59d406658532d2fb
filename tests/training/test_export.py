"""The exported graph: calibrated probability output, and Keras = ONNX with the n-gram branch."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from embeddings.vocabulary import pad_batch
from training.config import preset
from training.ngrams import Negation
from training.onnx_export import build_onnx_model
from training.weights import random_weights


def run_onnx(model: onnx.ModelProto, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logit, probability = session.run(["logit", "probability"], {"input_ids": ids})
    return logit.reshape(-1), probability.reshape(-1)


def mixed_batch(vocab_size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return pad_batch([rng.integers(1, vocab_size, n) for n in (1, 2, 5, 17, 40)])


@pytest.mark.parametrize("ngram_buckets", [0, 31])
def test_probability_output_has_the_temperature_baked_in(ngram_buckets):
    weights = random_weights(40, 6, 5, ngram_buckets=ngram_buckets, seed=3)
    ids = mixed_batch(40)
    logit, probability = run_onnx(build_onnx_model(weights, temperature=2.5), ids)
    np.testing.assert_allclose(probability, 1 / (1 + np.exp(-logit / 2.5)), atol=1e-6)
    # The raw logit does not depend on the temperature.
    np.testing.assert_allclose(run_onnx(build_onnx_model(weights, temperature=0.5), ids)[0], logit, atol=1e-6)
    assert not np.allclose(probability, 1 / (1 + np.exp(-logit)), atol=1e-3)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_a_non_positive_temperature_is_refused(temperature):
    with pytest.raises(ValueError, match="temperature"):
        build_onnx_model(random_weights(10, 4, 3), temperature=temperature)


def test_keras_model_with_ngram_branch_equals_its_onnx_graph():
    from training.model import build_classifier, extract_weights, install_ngram_branch, serving_model

    config = preset("tiny").replace(units=4, ngram_buckets=53, ngram_order=3, spatial_dropout=0.0)
    rng = np.random.default_rng(1)
    vocab_size = 30
    # Ids 4 and 9 open a negation scope of the (tiny preset's) window: the scope is in both graphs.
    model = build_classifier(config, rng.normal(0, 0.5, (vocab_size, 6)).astype("float32"), (4, 9))
    assert model.get_layer("ngrams").negation.window == config.ngram_negation_window > 0
    table = rng.normal(0, 0.3, (vocab_size + 53 + 1, 1)).astype("float32")
    install_ngram_branch(model, table, intercept=0.2, weights=np.array([1.5, 0.7]), bias=-0.1)
    ids = mixed_batch(vocab_size, seed=2)
    ids[0, :1] = 7  # a one-token review
    ids[3, 2:6] = [4, 11, 12, 9]  # negators inside a review
    keras_out = serving_model(model, temperature=1.7).predict(ids, verbose=0)
    logit, probability = run_onnx(build_onnx_model(extract_weights(model, config), temperature=1.7), ids)
    np.testing.assert_allclose(logit, keras_out["logit"].reshape(-1), atol=1e-5)
    np.testing.assert_allclose(probability, keras_out["probability"].reshape(-1), atol=1e-6)
    # The negation scope is live: the same weights without it score the negated review differently.
    unnegated = extract_weights(model, config)
    unnegated.ngram_negation = Negation()
    plain_logit, _ = run_onnx(build_onnx_model(unnegated, temperature=1.7), ids)
    assert abs(plain_logit[3] - logit[3]) > 1e-3 and abs(plain_logit[1] - logit[1]) < 1e-6
    # The n-gram branch is live: zeroing its table changes the scores.
    model.get_layer("ngrams").set_weights([np.zeros_like(table)])
    assert not np.allclose(
        serving_model(model).predict(ids, verbose=0)["logit"].reshape(-1), logit, atol=1e-3
    )
