"""The classifier: Embedding → (Bi)LSTM → masked pooling → Dropout → Dense(1, sigmoid).

The LSTM is the gated form of the lecture's recurrent network ``h_t = tanh(W_hh h_{t-1} + W_hx x_t)``:
input, forget and output gates decide what the cell state keeps, which is what lets a review's
opening ("I expected to hate it...") still matter 300 words later.

Kept cuDNN-compatible on purpose (tanh/sigmoid, no recurrent_dropout, right padding, mask from
``mask_zero``) so the same code trains on a GPU's fused kernel where one exists.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from training.config import TrainConfig
from training.weights import ClassifierWeights, LstmWeights


@keras.saving.register_keras_serializable(package="sentiment")
class MaskedPooling(layers.Layer):
    """Pool a sequence over time using only its real (unmasked) steps.

    ``mean`` averages, ``max`` takes the per-feature maximum, ``meanmax`` concatenates both.
    Padding never leaks in, so a review scores the same whatever batch it sits in.
    """

    def __init__(self, mode: str = "meanmax", **kwargs) -> None:
        super().__init__(**kwargs)
        if mode not in ("mean", "max", "meanmax"):
            raise ValueError(f"unknown pooling mode {mode!r}")
        self.mode = mode
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        weights = ops.expand_dims(ops.cast(mask, inputs.dtype), -1)  # [B,T,1]
        pooled = []
        if self.mode in ("mean", "meanmax"):
            count = ops.maximum(ops.sum(weights, axis=1), 1.0)
            pooled.append(ops.sum(inputs * weights, axis=1) / count)
        if self.mode in ("max", "meanmax"):
            pooled.append(ops.max(ops.where(weights > 0, inputs, -1e9), axis=1))
        return pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        factor = 2 if self.mode == "meanmax" else 1
        return (input_shape[0], input_shape[-1] * factor)

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


def build_classifier(config: TrainConfig, embedding: np.ndarray) -> keras.Model:
    """Return the (uncompiled) classifier with its Embedding set to ``embedding``."""
    vocab_size, dim = embedding.shape
    ids = keras.Input(shape=(None,), dtype="int64", name="input_ids")
    x = layers.Embedding(vocab_size, dim, mask_zero=True, name="embedding")(ids)
    if config.spatial_dropout:
        x = layers.SpatialDropout1D(config.spatial_dropout, name="spatial_dropout")(x)
    lstm = layers.LSTM(config.units, return_sequences=config.pooling != "last", name="lstm")
    x = layers.Bidirectional(lstm, name="rnn")(x) if config.bidirectional else lstm(x)
    if config.pooling != "last":
        x = MaskedPooling(config.pooling, name="pooling")(x)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    logit = layers.Dense(1, name="logit")(x)
    probability = layers.Activation("sigmoid", name="probability")(logit)
    model = keras.Model(ids, probability, name="sentiment_lstm")
    # Set after building: a Constant initializer would copy the matrix into the model config.
    model.get_layer("embedding").set_weights([embedding.astype("float32")])
    return model


def logit_model(model: keras.Model) -> keras.Model:
    """Return a model sharing ``model``'s layers that outputs both the logit and the probability."""
    return keras.Model(
        model.input,
        {"logit": model.get_layer("logit").output, "probability": model.output},
        name="sentiment_lstm_serving",
    )


def make_optimizer(name: str, learning_rate: float, clipnorm: float) -> keras.optimizers.Optimizer:
    """Return the optimizer named on the command line."""
    if name == "adam":
        return keras.optimizers.Adam(learning_rate, clipnorm=clipnorm)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, clipnorm=clipnorm)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True, clipnorm=clipnorm)
    raise ValueError(f"unknown optimizer {name!r}; choose adam, rmsprop or sgd")


def set_embedding_trainable(model: keras.Model, trainable: bool, config: TrainConfig) -> None:
    """Freeze or unfreeze the embedding and recompile (Keras needs a compile after the change)."""
    model.get_layer("embedding").trainable = trainable
    lr = config.finetune_learning_rate if trainable else config.learning_rate
    model.compile(
        optimizer=make_optimizer(config.optimizer, lr, config.clipnorm),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )


def extract_weights(model: keras.Model, config: TrainConfig) -> ClassifierWeights:
    """Pull the trained weights out in the layout the ONNX graph builder expects."""
    rnn = model.get_layer("rnn" if config.bidirectional else "lstm")
    cells = [rnn.forward_layer, rnn.backward_layer] if config.bidirectional else [rnn]
    kernel, bias = model.get_layer("logit").get_weights()
    return ClassifierWeights(
        embedding=model.get_layer("embedding").get_weights()[0],
        directions=[LstmWeights(*layer.get_weights()) for layer in cells],
        dense_kernel=kernel,
        dense_bias=bias,
        pooling=config.pooling,
    )
