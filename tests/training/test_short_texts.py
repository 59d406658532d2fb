"""Short texts: sentence splitting, the clearly-rated rule, the validation set and training crops."""

import numpy as np

from embeddings.tokenizer import tokenize
from training.short_texts import (
    OPINION_WORDS,
    is_clearly_rated,
    short_text_set,
    split_sentences,
    training_crops,
)

REVIEW_POS = (
    "Ghost of the Hollow is a typical teen movie.<br /><br />It was made in 1959. The acting was "
    "superb and the songs are wonderful! Would I watch it again? Yes, I loved it."
)
REVIEW_NEG = "Plot concerns a club. The script is dull and the acting is awful. A waste of time."
REVIEW_MID = "The acting was superb in places. The ending was terrible and the middle was boring."


def test_split_sentences_on_punctuation_and_line_breaks():
    assert split_sentences(REVIEW_POS) == [
        "Ghost of the Hollow is a typical teen movie.",
        "It was made in 1959.",
        "The acting was superb and the songs are wonderful!",
        "Would I watch it again?",
        "Yes, I loved it.",
    ]
    assert split_sentences('He said "Go." Then left.') == ['He said "Go."', "Then left."]
    assert split_sentences("") == []


def test_only_the_ends_of_the_rating_scale_are_clear():
    assert is_clearly_rated(np.array([1, 2, 3, 4, 7, 8, 9, 10])).tolist() == [True, True] + [False] * 4 + [
        True,
        True,
    ]


def test_short_text_set_keeps_opinionated_sentences_of_clear_reviews():
    texts = [REVIEW_POS, REVIEW_NEG, REVIEW_MID]
    short = short_text_set(texts, np.array([1, 0, 1]), np.array([10, 1, 7]), per_review=5)
    assert short.texts == [
        "The acting was superb and the songs are wonderful!",
        "The script is dull and the acting is awful.",
    ]
    assert short.labels.tolist() == [1, 0] and short.source.tolist() == [0, 1]
    for text in short.texts:  # plot sentences and 4-token ones ("A waste of time.") are out
        assert 5 <= len(tokenize(text)) <= 30 and not OPINION_WORDS.isdisjoint(tokenize(text))
    capped = short_text_set(texts, np.array([1, 0, 1]), np.array([10, 1, 7]), per_review=1, min_tokens=1)
    assert np.bincount(capped.source).max() == 1


def test_training_crops_are_snippets_of_clear_reviews_with_their_label():
    texts = [REVIEW_POS, REVIEW_NEG, REVIEW_MID, "Just one sentence, loved it."]
    crops = training_crops(texts, np.array([1, 0, 1, 1]), np.array([10, 1, 7, 10]), per_review=4, seed=3)
    assert len(crops) > 0 and set(crops.source.tolist()) <= {0, 1}  # no 7-star, no one-sentence review
    for text, label, source in zip(crops.texts, crops.labels, crops.source):
        assert text in " ".join(split_sentences(texts[source])) and label == [1, 0][source]
        assert 3 <= len(tokenize(text)) <= 60
    again = training_crops(texts, np.array([1, 0, 1, 1]), np.array([10, 1, 7, 10]), per_review=4, seed=3)
    assert again.texts == crops.texts
