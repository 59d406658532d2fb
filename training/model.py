"""The classifier: Embedding → (Bi)LSTM → masked pooling → Dropout → [+ n-gram score] → Dense(1, sigmoid).

The LSTM is the gated form of the lecture's recurrent network ``h_t = tanh(W_hh h_{t-1} + W_hx x_t)``:
input, forget and output gates decide what the cell state keeps, which is what lets a review's
opening ("I expected to hate it...") still matter 300 words later.

Next to it, :class:`NgramBag` scores the set of the review's hashed uni/bigrams (NBSVM in the
graph, ``training/ngrams.py``) from the same ``input_ids``; its score joins the pooled LSTM
features in front of the one Dense layer.

Kept cuDNN-compatible on purpose (tanh/sigmoid, no recurrent_dropout, right padding, mask from
``mask_zero``) so the same code trains on a GPU's fused kernel where one exists.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from training.config import TrainConfig
from training.ngrams import HASH_PRIME, Negation, check_orders, negated_key, table_size
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


@keras.saving.register_keras_serializable(package="sentiment")
class NgramBag(layers.Layer):
    """Sum one learned weight per distinct hashed n-gram of each review: [B, T] ids → [B, 1].

    The same integer arithmetic as ``training.ngrams.ngram_keys`` and the ONNX nodes (parity is
    tested). Its table is not trained by backpropagation: ``training/train.py`` sets it to NBSVM
    weights fitted in closed form, which beats learning a million weights by gradient descent.
    """

    def __init__(
        self, vocab_size: int, buckets: int, orders=(1, 2), negators=(), negation_window: int = 0, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.vocab_size, self.buckets, self.orders = int(vocab_size), int(buckets), check_orders(orders)
        self.negation = Negation(tuple(int(i) for i in negators), int(negation_window))

    def build(self, input_shape) -> None:
        self.table = self.add_weight(
            shape=(table_size(self.vocab_size, self.buckets), 1),
            initializer="zeros",
            name="table",
            trainable=False,
        )

    def _keys(self, ids):
        """Return [B, K] table rows with repeats, padding (and n-grams touching it) → the zero row."""
        valid = ops.not_equal(ids, 0)
        pad_key = self.vocab_size + self.buckets
        time_steps = ops.shape(ids)[1]
        parts = []
        for n in self.orders:
            if n == 1:
                keys, real = ids, valid
                if self.negation:
                    keys = ops.where(
                        self._negation_scope(ids), negated_key(ids, self.vocab_size, self.buckets), ids
                    )
            else:
                h = ops.mod(ids[:, : time_steps - n + 1], self.buckets)
                for k in range(1, n):
                    h = ops.mod(h * HASH_PRIME + ids[:, k : time_steps - n + 1 + k], self.buckets)
                keys, real = h + self.vocab_size, valid[:, n - 1 :]  # right padding: last token decides
            parts.append(ops.where(real, keys, pad_key))
        return ops.concatenate(parts, axis=1)

    def _negation_scope(self, ids):
        """Return bool [B, T]: a negator among the window's tokens before each position."""
        negator = ops.take(ops.convert_to_tensor(self.negation.table(self.vocab_size)), ids, axis=0)
        window = self.negation.window
        padded = ops.pad(negator, [[0, 0], [window, 0]])  # [B, W + T]
        before = sum(padded[:, window - k : -k] for k in range(1, window + 1))
        return ops.greater(before, 0.0)

    def call(self, ids):
        keys = ops.sort(self._keys(ops.cast(ids, "int64")), axis=1)  # [B, K]; repeats are now neighbours
        first = ops.concatenate(
            [ops.ones_like(keys[:, :1], dtype="bool"), ops.not_equal(keys[:, 1:], keys[:, :-1])], axis=1
        )
        take = ops.cast(
            ops.logical_and(first, ops.not_equal(keys, self.vocab_size + self.buckets)), self.table.dtype
        )
        return ops.sum(ops.take(self.table[:, 0], keys, axis=0) * take, axis=1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "buckets": self.buckets,
            "orders": list(self.orders),
            "negators": list(self.negation.ids),
            "negation_window": self.negation.window,
        }


@keras.saving.register_keras_serializable(package="sentiment")
class Temperature(layers.Layer):
    """Divide logits by the calibration temperature (fixed, part of the config)."""

    def __init__(self, temperature: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive finite number, got {temperature}")
        self.temperature = float(temperature)

    def call(self, logits):
        return logits / self.temperature

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature}


def ngram_orders(config: TrainConfig) -> tuple[int, ...]:
    """Return the n-gram orders of the branch (1..ngram_order), empty when it is off."""
    return tuple(range(1, config.ngram_order + 1))


def build_classifier(
    config: TrainConfig, embedding: np.ndarray, negators: tuple[int, ...] = ()
) -> keras.Model:
    """Return the (uncompiled) classifier with its Embedding set to ``embedding``.

    ``negators`` are the vocabulary ids that open a negation scope in the n-gram branch
    (``training.ngrams.negation_for``).
    """
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
    if config.ngram_order:
        bag = NgramBag(
            vocab_size,
            config.ngram_buckets,
            ngram_orders(config),
            negators,
            config.ngram_negation_window,
            name="ngrams",
        )
        score = bag(ids)
        x = layers.Concatenate(name="features")([x, score])
    logit = layers.Dense(1, name="logit")(x)
    probability = layers.Activation("sigmoid", name="probability")(logit)
    model = keras.Model(ids, probability, name="sentiment_lstm")
    # Set after building: a Constant initializer would copy the matrix into the model config.
    model.get_layer("embedding").set_weights([embedding.astype("float32")])
    return model


def serving_model(model: keras.Model, temperature: float = 1.0) -> keras.Model:
    """Return a model sharing ``model``'s layers that outputs the raw logit and the calibrated probability."""
    logit = model.get_layer("logit").output
    scaled = Temperature(temperature, name="temperature")(logit)
    probability = layers.Activation("sigmoid", name="calibrated_probability")(scaled)
    return keras.Model(
        model.input, {"logit": logit, "probability": probability}, name="sentiment_lstm_serving"
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
    bag = model.get_layer("ngrams") if config.ngram_order else None
    return ClassifierWeights(
        embedding=model.get_layer("embedding").get_weights()[0],
        directions=[LstmWeights(*layer.get_weights()) for layer in cells],
        dense_kernel=kernel,
        dense_bias=bias,
        pooling=config.pooling,
        ngram_table=None if bag is None else bag.get_weights()[0],
        ngram_buckets=0 if bag is None else bag.buckets,
        ngram_orders=() if bag is None else bag.orders,
        ngram_negation=Negation() if bag is None else bag.negation,
    )


def install_ngram_branch(
    model: keras.Model, table: np.ndarray, intercept: float, weights: np.ndarray, bias: float
) -> None:
    """Put the fitted n-gram table in the graph and fold the branch combination into the Dense layer.

    Before: ``logit = k . features + k0`` (the LSTM alone, the n-gram score being 0). After:
    ``logit = weights[0] * (k . lstm + k0) + weights[1] * (score + intercept) + bias``, written as one
    Dense over [lstm features, score], so the graph keeps a single Dense layer.
    """
    model.get_layer("ngrams").set_weights([np.asarray(table, dtype="float32").reshape(-1, 1)])
    dense = model.get_layer("logit")
    kernel, dense_bias = dense.get_weights()
    lstm_weight, ngram_weight = (float(w) for w in weights)
    kernel = kernel.copy()
    kernel[:-1] *= lstm_weight
    kernel[-1] = ngram_weight
    new_bias = lstm_weight * dense_bias[0] + ngram_weight * intercept + bias
    dense.set_weights([kernel, np.array([new_bias], dtype=kernel.dtype)])
