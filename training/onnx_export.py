"""Build the ONNX inference graph from trained weights, using ONNX's native ``LSTM`` operator.

Why not tf2onnx: it turns a masked Keras LSTM into a generic ``Loop`` that runs ~15x slower at
batch 1 in ONNX Runtime. The native operator with ``sequence_lens`` does the masking itself, so we
write the (small) graph by hand and let the parity check prove it equals the Keras model.

Graph (B = batch, T = padded length, E = embedding dim, H = units, D = directions)::

    input_ids int64 [B,T] (right-padded with 0)
      lengths   = ReduceSum(input_ids != 0)                      int32 [B]
      x         = Transpose(Gather(embedding, input_ids))       [T,B,E]
      Y, Y_h, _ = LSTM(x, W, R, B, sequence_lens=lengths)        [T,D,B,H], [D,B,H]
      features  = last: Y_h | mean/max/meanmax: masked pooling of Y over T
      [ngram    = sum of table[key] over the distinct hashed n-grams of input_ids   [B,1]   (ngrams.py)
       features = Concat(features, ngram)]
      logit     = features @ dense_kernel + dense_bias           [B,1]   raw (what the service reads)
      probability = Sigmoid(logit / temperature)                 [B,1]   calibrated (what TF Serving returns)

Only numpy and onnx are imported: no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.ngrams import onnx_ngram_nodes, table_size

OPSET = 17
POOLINGS = ("last", "mean", "max", "meanmax")


@dataclass
class LstmWeights:
    """Weights of one LSTM direction in Keras layout (gate order i, f, c, o)."""

    kernel: np.ndarray  # [E, 4H]
    recurrent_kernel: np.ndarray  # [H, 4H]
    bias: np.ndarray  # [4H]


@dataclass
class ClassifierWeights:
    """Everything the inference graph needs, extracted from a trained Keras model."""

    embedding: np.ndarray  # [V, E]
    directions: list[LstmWeights]  # forward (, backward)
    dense_kernel: np.ndarray  # [F, 1] (F = pooled LSTM features, + 1 for the n-gram score)
    dense_bias: np.ndarray  # [1]
    pooling: str
    ngram_table: np.ndarray | None = None  # [V + buckets + 1, 1]; None = no n-gram branch
    ngram_buckets: int = 0
    ngram_orders: tuple[int, ...] = ()


def _keras_to_onnx_gates(matrix: np.ndarray) -> np.ndarray:
    """Reorder the last axis from Keras's (i, f, c, o) to ONNX's (i, o, f, c) gate blocks."""
    i, f, c, o = np.split(matrix, 4, axis=-1)
    return np.concatenate([i, o, f, c], axis=-1)


def build_onnx_model(weights: ClassifierWeights, temperature: float = 1.0) -> onnx.ModelProto:
    """Return a checked ONNX model computing ``logit`` and calibrated ``probability`` from ``input_ids``.

    ``temperature`` is baked into ``probability`` so that a runtime serving the graph as-is returns
    calibrated probabilities; ``logit`` stays raw.
    """
    if weights.pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {weights.pooling!r}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    n_dir = len(weights.directions)
    hidden = weights.directions[0].recurrent_kernel.shape[0]
    f32 = np.float32

    W = np.stack([_keras_to_onnx_gates(d.kernel).T for d in weights.directions]).astype(f32)
    R = np.stack([_keras_to_onnx_gates(d.recurrent_kernel).T for d in weights.directions]).astype(f32)
    B = np.stack(
        [np.concatenate([_keras_to_onnx_gates(d.bias), np.zeros(4 * hidden)]) for d in weights.directions]
    ).astype(f32)

    inits = [
        numpy_helper.from_array(weights.embedding.astype(f32), "embedding"),
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(R, "R"),
        numpy_helper.from_array(B, "B"),
        numpy_helper.from_array(weights.dense_kernel.astype(f32), "dense_kernel"),
        numpy_helper.from_array(weights.dense_bias.astype(f32).reshape(1), "dense_bias"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), "zero_i64"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Equal", ["input_ids", "zero_i64"], ["is_pad"]),
        helper.make_node("Not", ["is_pad"], ["mask"]),  # [B,T] bool
        helper.make_node("Cast", ["mask"], ["mask_i32"], to=TensorProto.INT32),
        helper.make_node("ReduceSum", ["mask_i32", "axis1"], ["lengths"], keepdims=0),  # [B]
        helper.make_node("Gather", ["embedding", "input_ids"], ["embedded"]),  # [B,T,E]
        helper.make_node("Transpose", ["embedded"], ["x"], perm=[1, 0, 2]),  # [T,B,E]
        helper.make_node(
            "LSTM",
            ["x", "W", "R", "B", "lengths"],
            ["Y", "Y_h"],
            hidden_size=hidden,
            direction="bidirectional" if n_dir == 2 else "forward",
        ),
    ]
    if weights.pooling == "last":
        inits.append(numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "shape_bf"))
        nodes += [
            helper.make_node("Transpose", ["Y_h"], ["h_bdh"], perm=[1, 0, 2]),  # [B,D,H]
            helper.make_node("Reshape", ["h_bdh", "shape_bf"], ["features"]),  # [B,D*H]
        ]
    else:
        inits.append(numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "shape_btf"))
        nodes += [
            helper.make_node("Transpose", ["Y"], ["y_btdh"], perm=[2, 0, 1, 3]),  # [B,T,D,H]
            helper.make_node("Reshape", ["y_btdh", "shape_btf"], ["seq"]),  # [B,T,D*H] fwd then bwd
            helper.make_node("Unsqueeze", ["mask", "shape_bf_axis"], ["mask3"]),  # [B,T,1]
        ]
        inits.append(numpy_helper.from_array(np.array([2], dtype=np.int64), "shape_bf_axis"))
        pooled = []
        if weights.pooling in ("mean", "meanmax"):
            nodes += [
                helper.make_node("Cast", ["mask3"], ["mask3_f"], to=TensorProto.FLOAT),
                helper.make_node("Mul", ["seq", "mask3_f"], ["seq_masked"]),
                helper.make_node("ReduceSum", ["seq_masked", "axis1"], ["seq_sum"], keepdims=0),
                helper.make_node("Cast", ["lengths"], ["len_f"], to=TensorProto.FLOAT),
                helper.make_node("Unsqueeze", ["len_f", "axis1"], ["len_f2"]),  # [B,1]
                helper.make_node("Div", ["seq_sum", "len_f2"], ["mean_pool"]),
            ]
            pooled.append("mean_pool")
        if weights.pooling in ("max", "meanmax"):
            inits.append(numpy_helper.from_array(np.array(-1e9, dtype=f32), "neg_big"))
            nodes += [
                helper.make_node("Where", ["mask3", "seq", "neg_big"], ["seq_for_max"]),
                helper.make_node("ReduceMax", ["seq_for_max"], ["max_pool"], axes=[1], keepdims=0),
            ]
            pooled.append("max_pool")
        if len(pooled) == 2:
            nodes.append(helper.make_node("Concat", pooled, ["features"], axis=1))
        else:
            nodes.append(helper.make_node("Identity", pooled, ["features"]))
    features = "features"
    if weights.ngram_table is not None:
        vocab_size = weights.ngram_table.shape[0] - weights.ngram_buckets - 1
        ngram_nodes, ngram_inits = onnx_ngram_nodes(weights.ngram_table, vocab_size, weights.ngram_buckets,
                                                    weights.ngram_orders, mask="mask", output="ngram_score")
        nodes += ngram_nodes + [helper.make_node("Concat", ["features", "ngram_score"], ["all_features"], axis=1)]
        inits += ngram_inits
        features = "all_features"
    inits.append(numpy_helper.from_array(np.array(temperature, dtype=f32), "temperature"))
    nodes += [
        helper.make_node("MatMul", [features, "dense_kernel"], ["logit_nb"]),
        helper.make_node("Add", ["logit_nb", "dense_bias"], ["logit"]),  # [B,1]
        helper.make_node("Div", ["logit", "temperature"], ["calibrated_logit"]),
        helper.make_node("Sigmoid", ["calibrated_logit"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "sentiment_lstm",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "time"])],
        [
            helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="sentiment")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def random_weights(
    vocab_size: int, embed_dim: int, units: int, *, bidirectional: bool = True, pooling: str = "meanmax", seed: int = 0,
    ngram_buckets: int = 0, ngram_orders: tuple[int, ...] = (1, 2),
) -> ClassifierWeights:
    """Return random weights of the right shapes (for tests of the graph and of consumers).

    ``ngram_buckets`` > 0 adds the n-gram branch (hashed n-grams into that many rows).
    """
    rng = np.random.default_rng(seed)
    dirs = [
        LstmWeights(
            rng.normal(0, 0.2, (embed_dim, 4 * units)),
            rng.normal(0, 0.2, (units, 4 * units)),
            rng.normal(0, 0.1, (4 * units,)),
        )
        for _ in range(2 if bidirectional else 1)
    ]
    features = units * len(dirs) * (2 if pooling == "meanmax" else 1) + (1 if ngram_buckets else 0)
    return ClassifierWeights(
        embedding=rng.normal(0, 0.5, (vocab_size, embed_dim)),
        directions=dirs,
        dense_kernel=rng.normal(0, 0.3, (features, 1)),
        dense_bias=np.zeros(1),
        pooling=pooling,
        ngram_table=rng.normal(0, 0.2, (table_size(vocab_size, ngram_buckets), 1)) if ngram_buckets else None,
        ngram_buckets=ngram_buckets,
        ngram_orders=tuple(ngram_orders) if ngram_buckets else (),
    )
