"""Vocabulary building, encoding and head+tail truncation."""

import json

import numpy as np
import pandas as pd
import pytest

from embeddings.tokenizer import TOKENIZERS
from embeddings.vocabulary import OOV_ID, PAD_ID, Vocabulary, pad_batch, truncate_head_tail
from tests.conftest import DATA_DIR
from tests.fakes import tokenize_as_before_version_2


def test_build_orders_by_frequency_then_token_and_respects_min_count():
    vocab = Vocabulary.build([["b", "a", "a", "c"], ["b", "a", "d"]], min_count=2)
    assert vocab.tokens == ["<pad>", "<oov>", "a", "b"]


def test_encode_maps_unknown_words_to_oov_and_never_returns_empty():
    vocab = Vocabulary.build([["good", "film"]], min_count=1)
    assert vocab.encode("Good unknownword film").tolist() == [
        vocab.tokens.index("good"),
        OOV_ID,
        vocab.tokens.index("film"),
    ]
    assert vocab.encode("").tolist() == [OOV_ID]
    assert vocab.encode("🙂 ...").tolist() == [OOV_ID]


def test_head_tail_truncation_keeps_both_ends():
    ids = list(range(10))
    assert truncate_head_tail(ids, 6, 2) == [0, 1, 6, 7, 8, 9]
    assert truncate_head_tail(ids, 20, 2) == ids
    assert truncate_head_tail(ids, 4, 4) == [0, 1, 2, 3]


def test_save_load_round_trip_and_refuses_other_tokenizer(tmp_path):
    vocab = Vocabulary.build([["a", "b"]], min_count=1, max_len=50, head=10)
    vocab.save(tmp_path / "t.json")
    loaded = Vocabulary.load(tmp_path / "t.json")
    assert loaded.tokens == vocab.tokens and (loaded.max_len, loaded.head) == (50, 10)
    doc = json.loads((tmp_path / "t.json").read_text())
    doc["tokenizer"]["version"] = 999
    (tmp_path / "t.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="tokenizer"):
        Vocabulary.load(tmp_path / "t.json")


def test_pad_batch_right_pads_with_zero():
    batch = pad_batch([np.array([5, 6, 7]), np.array([8])])
    assert batch.tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID]]
    assert batch.dtype == np.int64


@pytest.mark.parametrize("max_len, head", [(600, 150), (128, 32), (64, 0)])
def test_version_1_vocabularies_encode_imdb_reviews_exactly_as_before(max_len, head):
    """A model trained before tokenizer version 2 is fed the very ids it was validated with."""
    texts = pd.read_csv(DATA_DIR / "train.csv.gz", nrows=3000)["text"].tolist()
    texts.sort(key=len)
    texts = texts[-150:] + ["I <3 this film, it is better than > 90% of films", "＜b＞great＜/b＞"]
    old_tokens = [tokenize_as_before_version_2(t) for t in texts]
    vocab = Vocabulary.build(old_tokens, min_count=2, max_len=max_len, head=head, tokenizer=TOKENIZERS[1])
    assert max(map(len, old_tokens)) > 1.5 * max_len  # long reviews: the head+tail reading matters
    for text, tokens in zip(texts, old_tokens, strict=True):
        assert vocab.encode(text).tolist() == vocab.ids_for_tokens(tokens)
