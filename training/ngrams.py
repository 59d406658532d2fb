"""The n-gram branch: a bag of hashed uni/bigrams computed from ``input_ids`` inside the graph.

NBSVM (Wang & Manning 2012) is a linear model over the *set* of a review's n-grams, weighted by
naive-Bayes log-count ratios; on IMDB it rivals an LSTM and makes different errors (Mesnil et
al. 2015). Here it lives in the same graph as the LSTM, fed by the same token ids, so there is no
second artifact and no second tokenizer:

    key(unigram w)     = w                                               in [0, V)
    key(n-gram w1..wn) = V + h,  h = ((w1 * P + w2) mod M * P + w3) mod M ...   in [V, V + M)
    score              = sum of table[key] over the DISTINCT keys of a review

"Distinct" (NBSVM's binarised features) is computed by sorting the keys of each row and keeping
the first of every run; padding (id 0) and n-grams that touch padding get the key ``V + M`` (a
zero row). Only int64 Mul/Add/Mod, a sort and a gather: this module holds the numpy reference
(:func:`ngram_keys`, used to fit the weights) and the ONNX nodes (:func:`onnx_ngram_nodes`);
``training/model.py`` holds the Keras layer. All three compute the same keys; tests prove it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

#: Multiplier of the polynomial hash; odd and larger than any vocabulary, so that (w1, w2) pairs are
#: distinct before the modulo and the hash stays a bijection of w1 for a fixed w2.
HASH_PRIME = 1_000_003


def table_size(vocab_size: int, buckets: int) -> int:
    """Return the rows of the n-gram weight table: unigrams, hashed n-grams, one padding row."""
    return vocab_size + buckets + 1


def check_orders(orders: Sequence[int]) -> tuple[int, ...]:
    """Return the n-gram orders as a sorted tuple, refusing anything but 1..3 (1 = unigrams)."""
    orders = tuple(sorted(set(int(n) for n in orders)))
    if not orders or not set(orders) <= {1, 2, 3}:
        raise ValueError(f"n-gram orders must be a non-empty subset of 1, 2, 3; got {orders}")
    return orders


def ngram_keys(ids: np.ndarray, vocab_size: int, buckets: int, orders: Sequence[int]) -> np.ndarray:
    """Return the table rows (with repeats, padding → ``V + M``) of a right-padded id matrix [B, T].

    The numpy reference of the graph: shape [B, sum over orders of T - n + 1] (orders longer than
    T are skipped, as in the graph).
    """
    ids = np.atleast_2d(np.asarray(ids, dtype=np.int64))
    pad_key = vocab_size + buckets
    valid = ids != 0
    parts = []
    for n in check_orders(orders):
        width = ids.shape[1] - n + 1
        if width <= 0:
            continue
        if n == 1:
            keys = ids.copy()
        else:
            h = ids[:, :width] % buckets
            for k in range(1, n):
                h = (h * HASH_PRIME + ids[:, k : k + width]) % buckets
            keys = vocab_size + h
        # Right padding: an n-gram is real iff its last token is.
        parts.append(np.where(valid[:, n - 1 : n - 1 + width], keys, pad_key))
    return np.concatenate(parts, axis=1) if parts else np.full((ids.shape[0], 1), pad_key, dtype=np.int64)


def distinct_keys(ids: Sequence[int], vocab_size: int, buckets: int, orders: Sequence[int]) -> np.ndarray:
    """Return the sorted distinct table rows one unpadded review switches on (for fitting)."""
    keys = np.unique(ngram_keys(np.asarray(ids, dtype=np.int64)[None, :], vocab_size, buckets, orders))
    return keys[keys != vocab_size + buckets]


def ngram_scores(
    table: np.ndarray, ids: np.ndarray, vocab_size: int, buckets: int, orders: Sequence[int]
) -> np.ndarray:
    """Return each row's score, the sum of ``table`` over its distinct keys (numpy reference, [B])."""
    keys = np.sort(ngram_keys(ids, vocab_size, buckets, orders), axis=1)
    first = np.ones_like(keys, dtype=bool)
    first[:, 1:] = keys[:, 1:] != keys[:, :-1]
    take = first & (keys != vocab_size + buckets)
    return (np.asarray(table, dtype=np.float64).reshape(-1)[keys] * take).sum(axis=1)


def binary_features(sequences: Sequence[Sequence[int]], vocab_size: int, buckets: int, orders: Sequence[int]):
    """Return a CSR matrix [N, table rows] with a 1 for every n-gram a review contains."""
    import scipy.sparse as sp

    indptr = [0]
    indices = []
    for seq in sequences:
        keys = distinct_keys(seq, vocab_size, buckets, orders)
        indices.append(keys)
        indptr.append(indptr[-1] + len(keys))
    indices_arr = np.concatenate(indices) if indices else np.empty(0, dtype=np.int64)
    return sp.csr_matrix(
        (np.ones(len(indices_arr), dtype=np.float32), indices_arr, indptr),
        shape=(len(sequences), table_size(vocab_size, buckets)),
    )


def nb_log_count_ratios(features, labels: np.ndarray, alpha: float = 1.0, sample_weight=None) -> np.ndarray:
    """Return r = log((alpha + p) / |alpha + p|_1) - log((alpha + q) / |alpha + q|_1), NBSVM's ratios."""
    labels = np.asarray(labels)
    w = np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    p = alpha + np.asarray(features.T @ (w * (labels == 1))).ravel()
    q = alpha + np.asarray(features.T @ (w * (labels == 0))).ravel()
    return np.log(p / p.sum()) - np.log(q / q.sum())


def onnx_ngram_nodes(
    table: np.ndarray,
    vocab_size: int,
    buckets: int,
    orders: Sequence[int],
    *,
    ids: str = "input_ids",
    mask: str = "mask",
    output: str = "ngram_score",
    prefix: str = "ngram_",
) -> tuple[list[NodeProto], list[TensorProto]]:
    """Return the ONNX nodes and initialisers computing ``output`` [B, 1] from ``ids`` [B, T].

    ``mask`` is the graph's existing bool [B, T] (ids != 0). Orders longer than T fall back to
    padding keys via a zero-width slice, as in :func:`ngram_keys`.
    """
    orders = check_orders(orders)
    p = prefix
    f32, i64 = np.float32, np.int64
    table = np.asarray(table, dtype=f32).reshape(-1, 1)
    if table.shape[0] != table_size(vocab_size, buckets):
        raise ValueError(
            f"n-gram table has {table.shape[0]} rows, expected {table_size(vocab_size, buckets)}"
        )
    inits = [
        numpy_helper.from_array(table, p + "table"),
        numpy_helper.from_array(np.array(vocab_size + buckets, dtype=i64), p + "pad_key"),
        numpy_helper.from_array(np.array([1], dtype=i64), p + "axis1"),
        numpy_helper.from_array(np.array([0], dtype=i64), p + "zero"),
        numpy_helper.from_array(np.array([np.iinfo(i64).max], dtype=i64), p + "end"),
        numpy_helper.from_array(np.array([1], dtype=i64), p + "one"),
    ]
    if max(orders) > 1:
        inits += [
            numpy_helper.from_array(np.array(buckets, dtype=i64), p + "buckets"),
            numpy_helper.from_array(np.array(HASH_PRIME, dtype=i64), p + "prime"),
            numpy_helper.from_array(np.array(vocab_size, dtype=i64), p + "vocab"),
        ]
    nodes = []
    parts = []

    def tail_slice(src: str, start: int, stop_from_end: int, out: str) -> None:
        """out = src[:, start : T - stop_from_end] (a zero-width slice when T is too short)."""
        if stop_from_end:
            inits.append(numpy_helper.from_array(np.array([-stop_from_end], dtype=i64), f"{out}_stop"))
            stop = f"{out}_stop"
        else:
            stop = p + "end"
        inits.append(numpy_helper.from_array(np.array([start], dtype=i64), f"{out}_start"))
        nodes.append(helper.make_node("Slice", [src, f"{out}_start", stop, p + "axis1"], [out]))

    for n in orders:
        if n == 1:
            keys = ids
            valid = mask
        else:
            tail_slice(ids, 0, n - 1, f"{p}w0_{n}")
            nodes.append(helper.make_node("Mod", [f"{p}w0_{n}", p + "buckets"], [f"{p}h0_{n}"]))
            h = f"{p}h0_{n}"
            for k in range(1, n):
                tail_slice(ids, k, n - 1 - k, f"{p}w{k}_{n}")
                nodes += [
                    helper.make_node("Mul", [h, p + "prime"], [f"{p}hm{k}_{n}"]),
                    helper.make_node("Add", [f"{p}hm{k}_{n}", f"{p}w{k}_{n}"], [f"{p}ha{k}_{n}"]),
                    helper.make_node("Mod", [f"{p}ha{k}_{n}", p + "buckets"], [f"{p}h{k}_{n}"]),
                ]
                h = f"{p}h{k}_{n}"
            nodes.append(helper.make_node("Add", [h, p + "vocab"], [f"{p}keys_raw_{n}"]))
            keys = f"{p}keys_raw_{n}"
            tail_slice(mask, n - 1, 0, f"{p}valid_{n}")
            valid = f"{p}valid_{n}"
        nodes.append(helper.make_node("Where", [valid, keys, p + "pad_key"], [f"{p}keys_{n}"]))
        parts.append(f"{p}keys_{n}")
    nodes += [
        helper.make_node("Concat", parts, [p + "keys"], axis=1),  # [B, K]
        # Sort each row ascending: TopK with k = K, largest=0.
        helper.make_node("Shape", [p + "keys"], [p + "keys_shape"]),
        helper.make_node("Slice", [p + "keys_shape", p + "one", p + "end"], [p + "k"]),
        helper.make_node(
            "TopK", [p + "keys", p + "k"], [p + "sorted", p + "sorted_idx"], axis=1, largest=0, sorted=1
        ),
        # First of each run: differs from its left neighbour (the first column always counts).
        helper.make_node("Slice", [p + "sorted", p + "one", p + "end", p + "axis1"], [p + "right"]),
        helper.make_node("Slice", [p + "sorted", p + "zero", p + "minus1", p + "axis1"], [p + "left"]),
        helper.make_node("Equal", [p + "right", p + "left"], [p + "repeat"]),
        helper.make_node("Not", [p + "repeat"], [p + "new_right"]),
        helper.make_node("Slice", [p + "sorted", p + "zero", p + "one", p + "axis1"], [p + "first_col"]),
        helper.make_node("Equal", [p + "first_col", p + "first_col"], [p + "true_col"]),
        helper.make_node("Concat", [p + "true_col", p + "new_right"], [p + "first"], axis=1),
        helper.make_node("Equal", [p + "sorted", p + "pad_key"], [p + "is_pad"]),
        helper.make_node("Not", [p + "is_pad"], [p + "real"]),
        helper.make_node("And", [p + "first", p + "real"], [p + "take"]),
        helper.make_node("Cast", [p + "take"], [p + "take_f"], to=TensorProto.FLOAT),
        helper.make_node("Gather", [p + "table", p + "sorted"], [p + "weights3"]),  # [B, K, 1]
        helper.make_node("Squeeze", [p + "weights3", p + "minus1_axis"], [p + "weights"]),
        helper.make_node("Mul", [p + "weights", p + "take_f"], [p + "taken"]),
        helper.make_node("ReduceSum", [p + "taken", p + "axis1"], [output], keepdims=1),  # [B, 1]
    ]
    inits += [
        numpy_helper.from_array(np.array([-1], dtype=i64), p + "minus1"),
        numpy_helper.from_array(np.array([2], dtype=i64), p + "minus1_axis"),
    ]
    return nodes, inits


def fit_nbsvm(
    sequences: Sequence[Sequence[int]],
    labels: np.ndarray,
    vocab_size: int,
    buckets: int,
    orders: Sequence[int],
    *,
    sample_weight: np.ndarray | None = None,
    c: float = 1.0,
    alpha: float = 1.0,
) -> tuple[np.ndarray, float]:
    """Fit NBSVM (logistic-regression flavour) on binarised n-grams; return (table [rows, 1], intercept).

    The model is ``logit = sum over distinct n-grams of r_j * w_j + b`` (Wang & Manning 2012), so
    the table the graph sums is ``r * w``; the padding row stays zero.
    """
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    features = binary_features(sequences, vocab_size, buckets, orders)
    ratios = nb_log_count_ratios(features, labels, alpha, sample_weight)
    ratios[-1] = 0.0  # the padding key
    regression = LogisticRegression(C=c, solver="liblinear", max_iter=300)
    regression.fit(features @ sp.diags(ratios), labels, sample_weight=sample_weight)
    table = (ratios * regression.coef_.ravel()).astype(np.float32).reshape(-1, 1)
    return table, float(regression.intercept_[0])


def fit_combination(branch_logits: np.ndarray, labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, float, float]:
    """Weigh the branches' logits [N, k] on held-out data; return (weights [k], bias, cross-fitted accuracy).

    A logistic regression on k inputs (Mesnil et al. 2015 combine NBSVM and neural scores this
    way). The accuracy is 2-fold cross-fitted on the same rows, an honest estimate of what the
    weights fitted on all rows give on unseen data.
    """
    from sklearn.linear_model import LogisticRegression

    branch_logits = np.asarray(branch_logits, dtype=np.float64)
    labels = np.asarray(labels)
    halves = np.array_split(np.random.default_rng(seed).permutation(len(labels)), 2)
    correct = 0
    for fit_on, test_on in (halves, halves[::-1]):
        half = LogisticRegression(C=100.0).fit(branch_logits[fit_on], labels[fit_on])
        correct += int(((half.decision_function(branch_logits[test_on]) > 0) == (labels[test_on] == 1)).sum())
    full = LogisticRegression(C=100.0).fit(branch_logits, labels)
    return full.coef_.ravel(), float(full.intercept_[0]), correct / len(labels)
