"""Occlusion explanations: one model call, and each contribution equals a separate scoring."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings.tokenizer import tokenize
from embeddings.vocabulary import OOV_ID, truncate_head_tail
from inference.explain import Occlusion, TooManyTokens, explain, occlusions
from inference.predictor import Predictor
from registry.store import Registry


class CountingBackend:
    """Wraps a backend and records the shape of every model call."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.calls: list[tuple[int, int]] = []

    def logits(self, ids: np.ndarray) -> np.ndarray:
        self.calls.append(ids.shape)
        return self.backend.logits(ids)


@pytest.fixture
def predictor(fake_registry: Registry) -> Predictor:
    """Return the random-weight model (vocabulary max_len 64, head 16), batches of at most 4."""
    predictor = Predictor.load(fake_registry.version_dir("sentiment", 1), max_batch_size=4)
    predictor.backend = CountingBackend(predictor.backend)
    return predictor


def separately(predictor: Predictor, ids: np.ndarray) -> float:
    """Score one id sequence on its own (no padding, no other sequence in the batch)."""
    return float(predictor.score_ids([ids])[0])


def test_contributions_equal_separate_scores_of_each_occlusion(predictor):
    text = "A great film, not boring! The plot was awful though, xyzzy."
    result = explain(predictor, text, max_tokens=100)
    ids = predictor.encode([text])[0]
    assert result.probability == pytest.approx(float(predictor.score_texts([text])[0]), abs=1e-6)
    assert [t.token for t in result.tokens] == tokenize(text)
    assert [t.position for t in result.tokens] == list(range(len(ids)))
    for i, token in enumerate(result.tokens):
        without = separately(predictor, np.delete(ids, i))
        assert token.contribution == pytest.approx(result.probability - without, abs=1e-6)
    assert not result.truncated and result.tokens_in_text == len(ids)


def test_everything_is_scored_in_one_model_call(predictor):
    text = "great wonderful superb loved brilliant awful terrible boring worst hated " * 2
    predictor.backend.calls.clear()
    result = explain(predictor, text, max_tokens=100)
    assert predictor.backend.calls == [(21, 20)]  # the text + 20 occlusions, padded to 20 tokens
    assert len(result.tokens) == 20


def test_unknown_words_are_marked(predictor):
    result = explain(predictor, "a great zorblax film", max_tokens=100)
    assert [(t.token, t.known) for t in result.tokens] == [
        ("a", True),
        ("great", True),
        ("zorblax", False),
        ("film", True),
    ]


def test_long_text_explains_the_head_and_tail_the_model_reads(predictor):
    tokens = [f"w{i}" for i in range(100)]  # all unknown: only positions matter here
    result = explain(predictor, " ".join(tokens), max_tokens=64)
    vocabulary = predictor.vocabulary
    assert [t.position for t in result.tokens] == truncate_head_tail(
        range(100), vocabulary.max_len, vocabulary.head
    )
    assert [t.token for t in result.tokens][:2] == ["w0", "w1"] and result.tokens[-1].token == "w99"
    assert result.truncated and result.tokens_in_text == 100 and len(result.tokens) == 64


def test_too_many_tokens_fails_before_any_model_call(predictor):
    predictor.backend.calls.clear()
    with pytest.raises(TooManyTokens) as err:
        explain(predictor, "great " * 30, max_tokens=29)
    assert (err.value.count, err.value.limit) == (30, 29)
    assert predictor.backend.calls == []
    # The cap counts tokens after truncation: 1000 tokens are cut to the model's 64.
    assert len(explain(predictor, "great " * 1000, max_tokens=64).tokens) == 64
    with pytest.raises(TooManyTokens):
        Occlusion.of(predictor.vocabulary, "great " * 1000, max_tokens=63)


def test_text_without_words_has_no_tokens_and_the_predict_score(predictor):
    result = explain(predictor, "... 🙂 ---", max_tokens=10)
    assert result.tokens == [] and result.tokens_in_text == 0 and not result.truncated
    assert result.probability == pytest.approx(float(predictor.score_texts(["... 🙂 ---"])[0]), abs=1e-6)


def test_removing_the_only_token_leaves_the_unknown_word(predictor):
    result = explain(predictor, "great", max_tokens=10)
    (token,) = result.tokens
    oov = separately(predictor, np.array([OOV_ID], dtype=np.int64))
    assert token.contribution == pytest.approx(result.probability - oov, abs=1e-6)


def test_occlusions_drop_one_position_each():
    ids = np.array([5, 6, 7], dtype=np.int64)
    assert [s.tolist() for s in occlusions(ids)] == [[5, 6, 7], [6, 7], [5, 7], [5, 6]]
    assert [s.tolist() for s in occlusions(np.array([9]))] == [[9], [OOV_ID]]
