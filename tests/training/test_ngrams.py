"""The n-gram branch: numpy reference, ONNX nodes and Keras layer compute the same scores."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.ngrams import (
    HASH_PRIME,
    Negation,
    binary_features,
    distinct_keys,
    nb_log_count_ratios,
    ngram_keys,
    ngram_scores,
    negation_for,
    onnx_ngram_nodes,
    table_size,
)

V, M = 50, 97
NEG = Negation((3, 7, 11), 2)  # ids 3, 7 and 11 negate the next two tokens
NEGATIONS = [None, NEG]


def random_ids(seed=0, lengths=(9, 1, 2, 3, 5, 7)):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, V, (len(lengths), max(lengths)))
    for i, n in enumerate(lengths):
        ids[i, n:] = 0
    ids[0, :6] = [5, 6, 5, 6, 5, 6]  # repeated bigrams count once
    ids[2, :2] = [7, 9]  # a negator, then the word it negates
    ids[4, :5] = [3, 8, 3, 3, 8]  # the word 8 alone and negated: two keys; negators negated too
    return ids, list(lengths)


def by_hand(seq, orders, negation=None):
    """Distinct keys computed the slow, obvious way."""
    keys = set()
    for n in orders:
        for t in range(len(seq) - n + 1):
            negated = negation and any(int(w) in negation.ids for w in seq[max(0, t - negation.window) : t])
            if n == 1 and negated:
                keys.add(V + ((int(seq[t]) % M) * HASH_PRIME + V) % M)  # the pseudo-bigram (w, <NEG>)
            elif n == 1:
                keys.add(int(seq[t]))
            else:
                h = 0
                for k, w in enumerate(seq[t : t + n]):
                    h = (int(w) % M) if k == 0 else (h * HASH_PRIME + int(w)) % M
                keys.add(V + h)
    return keys


def onnx_scores(table, ids, orders, negation=None):
    nodes, inits = onnx_ngram_nodes(table, V, M, orders, negation=negation)
    nodes = [
        helper.make_node("Equal", ["input_ids", "zero"], ["is_pad"]),
        helper.make_node("Not", ["is_pad"], ["mask"]),
    ] + nodes
    inits.append(numpy_helper.from_array(np.array(0, np.int64), "zero"))
    graph = helper.make_graph(
        nodes,
        "ngrams",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "t"])],
        [helper.make_tensor_value_info("ngram_score", TensorProto.FLOAT, ["b", 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input_ids": ids})[0].reshape(-1)


@pytest.mark.parametrize("negation", NEGATIONS)
@pytest.mark.parametrize("orders", [(1,), (1, 2), (1, 2, 3), (2, 3)])
def test_numpy_keys_match_the_definition(orders, negation):
    ids, lengths = random_ids()
    for row, n in zip(ids, lengths):
        expected = by_hand(row[:n], orders, negation)
        assert set(distinct_keys(row[:n], V, M, orders, negation).tolist()) == expected
        # Padding never adds a key: the padded row has the same distinct keys plus the padding key.
        padded = set(np.unique(ngram_keys(row, V, M, orders, negation)).tolist()) - {V + M}
        assert padded == expected


def test_a_negated_word_gets_its_own_key_and_only_within_the_window():
    plain, negated = by_hand([8], (1,)), by_hand([3, 8], (1,), NEG) - {3}
    assert plain == {8} and negated != plain and negated < set(range(V, V + M))
    negated_one = by_hand([3, 1], (1,), NEG) - {3}
    assert by_hand([3, 1, 8], (1,), NEG) == {3} | negated_one | negated  # two tokens after: in scope
    assert 8 in by_hand([3, 1, 2, 8], (1,), NEG)  # three tokens after the negator: out of scope
    assert distinct_keys([3, 8], V, M, (1,), NEG).tolist() != distinct_keys([3, 8], V, M, (1,)).tolist()


@pytest.mark.parametrize("negation", NEGATIONS)
@pytest.mark.parametrize("orders", [(1,), (1, 2), (1, 2, 3), (2, 3)])
def test_onnx_graph_equals_numpy_reference(orders, negation):
    ids, lengths = random_ids(1)
    table = np.random.default_rng(2).normal(size=(table_size(V, M), 1)).astype(np.float32)
    expected = np.array(
        [table[sorted(by_hand(r[:n], orders, negation)), 0].sum() for r, n in zip(ids, lengths)]
    )
    np.testing.assert_allclose(ngram_scores(table, ids, V, M, orders, negation), expected, atol=1e-5)
    np.testing.assert_allclose(onnx_scores(table, ids, orders, negation), expected, atol=1e-5)
    # A batch of one, one token long (shorter than the n-gram orders and the negation window).
    np.testing.assert_allclose(onnx_scores(table, ids[1:2, :1], orders, negation), expected[1:2], atol=1e-5)


def test_negators_are_looked_up_in_the_vocabulary():
    from embeddings.tokenizer import tokenize
    from embeddings.vocabulary import Vocabulary

    vocab = Vocabulary.build([tokenize("I didn't like it, not at all; it was never good")], min_count=1)
    negation = negation_for(vocab, 3)
    assert sorted(vocab.tokens[i] for i in negation.ids) == ["didn't", "never", "not"]
    assert negation.window == 3 and negation and not Negation(negation.ids, 0) and not Negation((), 3)


def test_hash_never_overflows_with_large_ids_and_buckets():
    big_v, buckets = 2_000_000, 1 << 24
    ids = np.array([[big_v - 1, big_v - 2, big_v - 3]], dtype=np.int64)
    keys = ngram_keys(ids, big_v, buckets, (1, 2, 3))
    assert ((keys >= 0) & (keys < table_size(big_v, buckets))).all()


def test_binary_features_and_nb_ratios():
    seqs = [[2, 3, 2, 3], [4, 4], [2, 3]]
    X = binary_features(seqs, V, M, (1, 2))
    assert X.shape == (3, table_size(V, M))
    assert X[0].sum() == 4  # unigrams 2, 3 and bigrams (2,3), (3,2), each once
    assert X[1].sum() == 2  # unigram 4 and bigram (4,4)
    assert X.max() == 1
    r = nb_log_count_ratios(X, np.array([1, 0, 1]))
    assert r[2] > 0 > r[4]  # word 2 only in positives, word 4 only in the negative
    assert r[10] == pytest.approx(r[11])  # unseen keys: no evidence either way (both smoothed equally)


def test_keras_layer_equals_numpy_reference():
    from training.model import NgramBag

    ids, _ = random_ids(4)
    table = np.random.default_rng(5).normal(size=(table_size(V, M), 1)).astype(np.float32)
    for orders, negation in [((1, 2), None), ((1, 2, 3), None), ((1, 2), NEG), ((1,), Negation((3,), 1))]:
        negators, window = (negation.ids, negation.window) if negation else ((), 0)
        layer = NgramBag(V, M, orders, negators, window)
        layer.build((None, None))
        layer.set_weights([table])
        expected = ngram_scores(table, ids, V, M, orders, negation)
        np.testing.assert_allclose(np.asarray(layer(ids)).reshape(-1), expected, atol=1e-5)
        np.testing.assert_allclose(np.asarray(layer(ids[1:2, :1])).reshape(-1), expected[1:2], atol=1e-5)
        again = NgramBag.from_config(layer.get_config())
        assert again.orders == orders and again.negation == (negation or Negation())
