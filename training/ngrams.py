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
zero row).

Negation scope (Das & Chen 2001; Pang et al. 2002 tag words after a negator ``NOT_``): a unigram
within :attr:`Negation.window` tokens after a negator ("not", "didn't", "never", ...) takes the key
of the pseudo-bigram (w, <NEG>), ``V + ((w mod M) * P + V) mod M`` (``V`` is no token's id), so
"bad" in "not bad" stops voting as "bad" and "not ... good" learns its own weight. The tokenizer
keeps no commas or full stops, hence a window rather than "up to the next punctuation".

Only int64 Mul/Add/Mod, a sort and gathers: this module holds the numpy reference
(:func:`ngram_keys`, used to fit the weights) and the ONNX nodes (:func:`onnx_ngram_nodes`);
``training/model.py`` holds the Keras layer. All three compute the same keys; tests prove it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from embeddings.vocabulary import OOV_ID

#: Multiplier of the polynomial hash; odd and larger than any vocabulary, so that (w1, w2) pairs are
#: distinct before the modulo and the hash stays a bijection of w1 for a fixed w2.
HASH_PRIME = 1_000_003


def table_size(vocab_size: int, buckets: int) -> int:
    """Return the rows of the n-gram weight table: unigrams, hashed n-grams, one padding row."""
    return vocab_size + buckets + 1


#: Words that open a negation scope (in the tokenizer's spelling: contractions are one token).
NEGATORS = (
    "not no never nothing nobody none neither nor without hardly cannot "
    "don't doesn't didn't isn't wasn't aren't weren't can't couldn't won't wouldn't shouldn't "
    "hasn't haven't hadn't ain't"
).split()


@dataclass(frozen=True)
class Negation:
    """Which token ids open a negation scope, and how many following tokens it covers (0 = off)."""

    ids: tuple[int, ...] = ()
    window: int = 0

    def __bool__(self) -> bool:
        return bool(self.ids) and self.window > 0

    def table(self, vocab_size: int) -> np.ndarray:
        """Return float32 [V]: 1 for a negator's id, else 0 (what the graphs gather)."""
        table = np.zeros(vocab_size, dtype=np.float32)
        table[list(self.ids)] = 1.0
        return table

    def scope(self, ids: np.ndarray, vocab_size: int) -> np.ndarray:
        """Return bool [B, T]: a negator among the ``window`` tokens before each position."""
        negator = self.table(vocab_size)[ids] > 0
        padded = np.pad(negator, ((0, 0), (self.window, 0)))
        width = ids.shape[1]
        return np.logical_or.reduce(
            [padded[:, self.window - k : self.window - k + width] for k in range(1, self.window + 1)]
        )


def negation_for(vocab, window: int) -> Negation:
    """Return the negation scope of a vocabulary: the ids of the :data:`NEGATORS` it knows."""
    ids = sorted({i for word in NEGATORS for i in vocab.ids_for_tokens([word]) if i != OOV_ID})
    return Negation(tuple(ids), window)


def negated_key(ids, vocab_size: int, buckets: int):
    """Return the key of the pseudo-bigram (w, <NEG>) for ids w (numpy arrays or Keras tensors alike)."""
    return vocab_size + (ids % buckets * HASH_PRIME + vocab_size) % buckets


def check_orders(orders: Sequence[int]) -> tuple[int, ...]:
    """Return the n-gram orders as a sorted tuple, refusing anything but 1..3 (1 = unigrams)."""
    orders = tuple(sorted(set(int(n) for n in orders)))
    if not orders or not set(orders) <= {1, 2, 3}:
        raise ValueError(f"n-gram orders must be a non-empty subset of 1, 2, 3; got {orders}")
    return orders


def ngram_keys(
    ids: np.ndarray, vocab_size: int, buckets: int, orders: Sequence[int], negation: Negation | None = None
) -> np.ndarray:
    """Return the table rows (with repeats, padding → ``V + M``) of a right-padded id matrix [B, T].

    The numpy reference of the graph: shape [B, sum over orders of T - n + 1] (orders longer than
    T are skipped, as in the graph); with ``negation``, unigrams in a negation scope take their
    negated key.
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
            if negation:
                keys = np.where(negation.scope(ids, vocab_size), negated_key(ids, vocab_size, buckets), ids)
        else:
            h = ids[:, :width] % buckets
            for k in range(1, n):
                h = (h * HASH_PRIME + ids[:, k : k + width]) % buckets
            keys = vocab_size + h
        # Right padding: an n-gram is real iff its last token is.
        parts.append(np.where(valid[:, n - 1 : n - 1 + width], keys, pad_key))
    return np.concatenate(parts, axis=1) if parts else np.full((ids.shape[0], 1), pad_key, dtype=np.int64)


def distinct_keys(
    ids: Sequence[int], vocab_size: int, buckets: int, orders: Sequence[int], negation: Negation | None = None
) -> np.ndarray:
    """Return the sorted distinct table rows one unpadded review switches on (for fitting)."""
    keys = np.unique(
        ngram_keys(np.asarray(ids, dtype=np.int64)[None, :], vocab_size, buckets, orders, negation)
    )
    return keys[keys != vocab_size + buckets]


def ngram_scores(
    table: np.ndarray,
    ids: np.ndarray,
    vocab_size: int,
    buckets: int,
    orders: Sequence[int],
    negation: Negation | None = None,
) -> np.ndarray:
    """Return each row's score, the sum of ``table`` over its distinct keys (numpy reference, [B])."""
    keys = np.sort(ngram_keys(ids, vocab_size, buckets, orders, negation), axis=1)
    first = np.ones_like(keys, dtype=bool)
    first[:, 1:] = keys[:, 1:] != keys[:, :-1]
    take = first & (keys != vocab_size + buckets)
    return (np.asarray(table, dtype=np.float64).reshape(-1)[keys] * take).sum(axis=1)


def binary_features(
    sequences: Sequence[Sequence[int]],
    vocab_size: int,
    buckets: int,
    orders: Sequence[int],
    negation: Negation | None = None,
):
    """Return a CSR matrix [N, table rows] with a 1 for every n-gram a review contains."""
    import scipy.sparse as sp

    indptr = [0]
    indices = []
    for seq in sequences:
        keys = distinct_keys(seq, vocab_size, buckets, orders, negation)
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


_I64_MAX = np.iinfo(np.int64).max  # "to the end" of a Slice


class _OnnxNodes:
    """Collects the n-gram branch's ONNX nodes and constants, every name under one prefix."""

    def __init__(self, prefix: str, vocab_size: int, buckets: int) -> None:
        self.p, self.vocab_size, self.buckets = prefix, vocab_size, buckets
        self.pad_key = vocab_size + buckets
        self.nodes: list[NodeProto] = []
        self.inits: list[TensorProto] = []

    def const(self, name: str, value) -> str:
        """Add an int64 constant; return its name."""
        self.inits.append(numpy_helper.from_array(np.array(value, dtype=np.int64), self.p + name))
        return self.p + name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        """Add a node with one output; return the output's name."""
        self.nodes.append(helper.make_node(op, inputs, [self.p + output], **attrs))
        return self.p + output

    def columns(self, src: str, start: int, stop_from_end: int, out: str) -> str:
        """Return ``src[:, start : T - stop_from_end]`` (a zero-width slice when T is too short)."""
        stop = self.const(f"{out}_stop", [-stop_from_end]) if stop_from_end else self.const("end", [_I64_MAX])
        return self.node(
            "Slice", [src, self.const(f"{out}_start", [start]), stop, self.const("axis1", [1])], out
        )

    def negation_scope(self, ids: str, negation: Negation) -> str:
        """Return bool [B, T]: a negator among the ``window`` tokens before each position."""
        table = self.p + "negator_table"
        self.inits.append(numpy_helper.from_array(negation.table(self.vocab_size), table))
        negator = self.node("Gather", [table, ids], "negator")  # [B, T] float
        pads = self.const("negation_pads", [0, negation.window, 0, 0])
        padded = self.node("Pad", [negator, pads], "negator_padded")  # [B, W + T], the window on the left
        shifted = [
            self.node(
                "Slice",
                [
                    padded,
                    self.const(f"shift{k}_start", [negation.window - k]),
                    self.const(f"shift{k}_end", [-k]),
                ]
                + [self.const("axis1", [1])],
                f"negator_shift{k}",
            )
            for k in range(1, negation.window + 1)
        ]
        count = self.node("Sum", shifted, "negators_before")
        zero = self.p + "zero_f"
        self.inits.append(numpy_helper.from_array(np.array(0.0, dtype=np.float32), zero))
        return self.node("Greater", [count, zero], "in_negation_scope")

    def order_keys(self, n: int, ids: str, mask: str, negation: Negation | None = None) -> str:
        """Return the [B, T - n + 1] table rows of the n-grams of order ``n`` (padding → the pad key)."""
        if n == 1:
            keys, valid = ids, mask
            if negation:
                hashed = self.node("Mod", [ids, self.const("buckets", self.buckets)], "neg_h0")
                scaled = self.node("Mul", [hashed, self.const("prime", HASH_PRIME)], "neg_hm")
                pair = self.node("Add", [scaled, self.const("vocab", self.vocab_size)], "neg_ha")
                h = self.node("Mod", [pair, self.const("buckets", self.buckets)], "neg_h")
                negated = self.node("Add", [h, self.const("vocab", self.vocab_size)], "negated_keys")
                keys = self.node("Where", [self.negation_scope(ids, negation), negated, ids], "unigram_keys")
        else:
            buckets = self.const("buckets", self.buckets)
            h = self.node("Mod", [self.columns(ids, 0, n - 1, f"w0_{n}"), buckets], f"h0_{n}")
            for k in range(1, n):
                word = self.columns(ids, k, n - 1 - k, f"w{k}_{n}")
                scaled = self.node("Mul", [h, self.const("prime", HASH_PRIME)], f"hm{k}_{n}")
                h = self.node("Mod", [self.node("Add", [scaled, word], f"ha{k}_{n}"), buckets], f"h{k}_{n}")
            keys = self.node("Add", [h, self.const("vocab", self.vocab_size)], f"keys_raw_{n}")
            valid = self.columns(mask, n - 1, 0, f"valid_{n}")  # right padding: the last token decides
        return self.node("Where", [valid, keys, self.const("pad_key", self.pad_key)], f"keys_{n}")

    def distinct_sum(self, keys: str, table: str, output: str) -> None:
        """Add ``output`` [B, 1] = the sum of ``table`` rows over each row's distinct non-padding keys."""
        one, end, axis1 = self.const("one", [1]), self.const("end", [_I64_MAX]), self.const("axis1", [1])
        width = self.node("Slice", [self.node("Shape", [keys], "keys_shape"), one, end], "k")
        self.nodes.append(  # sort each row ascending: TopK with k = K, smallest first
            helper.make_node(
                "TopK", [keys, width], [self.p + "sorted", self.p + "sorted_idx"], axis=1, largest=0, sorted=1
            )
        )
        ordered = self.p + "sorted"
        right = self.node("Slice", [ordered, one, end, axis1], "right")
        left = self.node(
            "Slice", [ordered, self.const("zero", [0]), self.const("minus1", [-1]), axis1], "left"
        )
        new_right = self.node("Not", [self.node("Equal", [right, left], "repeat")], "new_right")
        first_col = self.node("Slice", [ordered, self.const("zero", [0]), one, axis1], "first_col")
        true_col = self.node("Equal", [first_col, first_col], "true_col")  # the first key always counts
        first = self.node("Concat", [true_col, new_right], "first", axis=1)
        real = self.node(
            "Not", [self.node("Equal", [ordered, self.const("pad_key", self.pad_key)], "is_pad")], "real"
        )
        take = self.node("Cast", [self.node("And", [first, real], "take")], "take_f", to=TensorProto.FLOAT)
        gathered = self.node("Gather", [table, ordered], "weights3")  # [B, K, 1]
        weights = self.node("Squeeze", [gathered, self.const("minus1_axis", [2])], "weights")
        taken = self.node("Mul", [weights, take], "taken")
        self.nodes.append(helper.make_node("ReduceSum", [taken, axis1], [output], keepdims=1))

    def unique_inits(self) -> list[TensorProto]:
        """Return the constants, each name once (shared ones are added by several nodes)."""
        seen: dict[str, TensorProto] = {}
        for init in self.inits:
            seen.setdefault(init.name, init)
        return list(seen.values())


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
    negation: Negation | None = None,
) -> tuple[list[NodeProto], list[TensorProto]]:
    """Return the ONNX nodes and initialisers computing ``output`` [B, 1] from ``ids`` [B, T].

    ``mask`` is the graph's existing bool [B, T] (ids != 0). Orders longer than T fall back to
    padding keys via a zero-width slice, as in :func:`ngram_keys`. Only int64 Mul/Add/Mod, Slice,
    TopK (the sort), Gather and ReduceSum.
    """
    orders = check_orders(orders)
    table = np.asarray(table, dtype=np.float32).reshape(-1, 1)
    if table.shape[0] != table_size(vocab_size, buckets):
        raise ValueError(
            f"n-gram table has {table.shape[0]} rows, expected {table_size(vocab_size, buckets)}"
        )
    graph = _OnnxNodes(prefix, vocab_size, buckets)
    graph.inits.append(numpy_helper.from_array(table, prefix + "table"))
    parts = [graph.order_keys(n, ids, mask, negation) for n in orders]
    keys = graph.node("Concat", parts, "keys", axis=1)  # [B, K]
    graph.distinct_sum(keys, prefix + "table", output)
    return graph.nodes, graph.unique_inits()


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
    negation: Negation | None = None,
) -> tuple[np.ndarray, float]:
    """Fit NBSVM (logistic-regression flavour) on binarised n-grams; return (table [rows, 1], intercept).

    The model is ``logit = sum over distinct n-grams of r_j * w_j + b`` (Wang & Manning 2012), so
    the table the graph sums is ``r * w``; the padding row stays zero.
    """
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    features = binary_features(sequences, vocab_size, buckets, orders, negation)
    ratios = nb_log_count_ratios(features, labels, alpha, sample_weight)
    ratios[-1] = 0.0  # the padding key
    regression = LogisticRegression(C=c, solver="liblinear", max_iter=300)
    regression.fit(features @ sp.diags(ratios), labels, sample_weight=sample_weight)
    table = (ratios * regression.coef_.ravel()).astype(np.float32).reshape(-1, 1)
    return table, float(regression.intercept_[0])


def fit_combination(
    branch_logits: np.ndarray, labels: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, float, float]:
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
