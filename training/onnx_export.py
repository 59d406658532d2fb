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

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.ngrams import onnx_ngram_nodes
from training.weights import ClassifierWeights

OPSET = 17
POOLINGS = ("last", "mean", "max", "meanmax")


def _keras_to_onnx_gates(matrix: np.ndarray) -> np.ndarray:
    """Reorder the last axis from Keras's (i, f, c, o) to ONNX's (i, o, f, c) gate blocks."""
    i, f, c, o = np.split(matrix, 4, axis=-1)
    return np.concatenate([i, o, f, c], axis=-1)


def _lstm_initializers(weights: ClassifierWeights) -> list[onnx.TensorProto]:
    """Return the embedding, LSTM (W, R, B) and dense weights in ONNX layout, plus shared constants."""
    f32 = np.float32
    hidden = weights.directions[0].recurrent_kernel.shape[0]
    W = np.stack([_keras_to_onnx_gates(d.kernel).T for d in weights.directions]).astype(f32)
    R = np.stack([_keras_to_onnx_gates(d.recurrent_kernel).T for d in weights.directions]).astype(f32)
    B = np.stack(
        [np.concatenate([_keras_to_onnx_gates(d.bias), np.zeros(4 * hidden)]) for d in weights.directions]
    ).astype(f32)
    return [
        numpy_helper.from_array(weights.embedding.astype(f32), "embedding"),
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(R, "R"),
        numpy_helper.from_array(B, "B"),
        numpy_helper.from_array(weights.dense_kernel.astype(f32), "dense_kernel"),
        numpy_helper.from_array(weights.dense_bias.astype(f32).reshape(1), "dense_bias"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), "zero_i64"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]


def _lstm_nodes(weights: ClassifierWeights) -> list[onnx.NodeProto]:
    """Return the nodes input_ids → mask, lengths, embedded sequence → LSTM outputs Y, Y_h."""
    return [
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
            hidden_size=weights.directions[0].recurrent_kernel.shape[0],
            direction="bidirectional" if len(weights.directions) == 2 else "forward",
        ),
    ]


def _pooling(pooling: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Return the nodes (and their constants) that turn the LSTM outputs into ``features`` [B,F]."""
    if pooling == "last":
        inits = [numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "shape_bf")]
        nodes = [
            helper.make_node("Transpose", ["Y_h"], ["h_bdh"], perm=[1, 0, 2]),  # [B,D,H]
            helper.make_node("Reshape", ["h_bdh", "shape_bf"], ["features"]),  # [B,D*H]
        ]
        return nodes, inits
    inits = [numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "shape_btf")]
    nodes = [
        helper.make_node("Transpose", ["Y"], ["y_btdh"], perm=[2, 0, 1, 3]),  # [B,T,D,H]
        helper.make_node("Reshape", ["y_btdh", "shape_btf"], ["seq"]),  # [B,T,D*H] fwd then bwd
        helper.make_node("Unsqueeze", ["mask", "shape_bf_axis"], ["mask3"]),  # [B,T,1]
    ]
    inits.append(numpy_helper.from_array(np.array([2], dtype=np.int64), "shape_bf_axis"))
    pooled = []
    if pooling in ("mean", "meanmax"):
        nodes += [
            helper.make_node("Cast", ["mask3"], ["mask3_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["seq", "mask3_f"], ["seq_masked"]),
            helper.make_node("ReduceSum", ["seq_masked", "axis1"], ["seq_sum"], keepdims=0),
            helper.make_node("Cast", ["lengths"], ["len_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["len_f", "axis1"], ["len_f2"]),  # [B,1]
            helper.make_node("Div", ["seq_sum", "len_f2"], ["mean_pool"]),
        ]
        pooled.append("mean_pool")
    if pooling in ("max", "meanmax"):
        inits.append(numpy_helper.from_array(np.array(-1e9, dtype=np.float32), "neg_big"))
        nodes += [
            helper.make_node("Where", ["mask3", "seq", "neg_big"], ["seq_for_max"]),
            helper.make_node("ReduceMax", ["seq_for_max"], ["max_pool"], axes=[1], keepdims=0),
        ]
        pooled.append("max_pool")
    if len(pooled) == 2:
        nodes.append(helper.make_node("Concat", pooled, ["features"], axis=1))
    else:
        nodes.append(helper.make_node("Identity", pooled, ["features"]))
    return nodes, inits


def _ngram_branch(weights: ClassifierWeights) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    """Return the n-gram nodes, their constants and the Dense layer's input name (no branch: ``features``)."""
    if weights.ngram_table is None:
        return [], [], "features"
    vocab_size = weights.embedding.shape[0]
    nodes, inits = onnx_ngram_nodes(
        weights.ngram_table,
        vocab_size,
        weights.ngram_buckets,
        weights.ngram_orders,
        mask="mask",
        output="ngram_score",
        negation=weights.ngram_negation,
    )
    nodes.append(helper.make_node("Concat", ["features", "ngram_score"], ["all_features"], axis=1))
    return nodes, inits, "all_features"


def build_onnx_model(weights: ClassifierWeights, temperature: float = 1.0) -> onnx.ModelProto:
    """Return a checked ONNX model computing raw ``logit`` and calibrated ``probability`` from ``input_ids``.

    ``temperature`` is baked into ``probability`` so that a runtime serving the graph as-is (TF
    Serving, Triton) returns calibrated probabilities; ``logit`` stays raw.
    """
    if weights.pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {weights.pooling!r}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    pooling_nodes, pooling_inits = _pooling(weights.pooling)
    ngram_nodes, ngram_inits, features = _ngram_branch(weights)
    nodes = _lstm_nodes(weights) + pooling_nodes + ngram_nodes
    nodes += [
        helper.make_node("MatMul", [features, "dense_kernel"], ["logit_nb"]),
        helper.make_node("Add", ["logit_nb", "dense_bias"], ["logit"]),  # [B,1]
        helper.make_node("Div", ["logit", "temperature"], ["calibrated_logit"]),
        helper.make_node("Sigmoid", ["calibrated_logit"], ["probability"]),
    ]
    temperature_init = numpy_helper.from_array(np.array(temperature, dtype=np.float32), "temperature")
    graph = helper.make_graph(
        nodes,
        "sentiment_lstm",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "time"])],
        [
            helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1]),
        ],
        initializer=_lstm_initializers(weights) + pooling_inits + ngram_inits + [temperature_init],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="sentiment"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
