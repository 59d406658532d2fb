"""Short texts: sentence splitting, the clearly-rated rule, the validation set and training crops."""

import numpy as np

from embeddings.tokenizer import tokenize
from embeddings.vocabulary import Vocabulary
from training.config import TrainConfig, preset
from training.data import LabelledData
from training.short_texts import (
    NEGATABLE_WORDS,
    NEGATIVE_WORDS,
    OPINION_WORDS,
    POSITIVE_WORDS,
    is_clearly_rated,
    negated_counterfactuals,
    opinion_sentences,
    polar_words,
    short_text_set,
    split_sentences,
    training_crops,
)
from training.train import Prepared, add_pseudo_labelled_crops, add_short_texts, self_training_inputs

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


def test_negatable_words_are_opinion_words_of_one_polarity():
    # The pair generator reads a word's lean from POSITIVE_WORDS and counts OPINION_WORDS: a
    # negatable word outside them would be skipped silently or flipped the wrong way.
    assert NEGATABLE_WORDS <= OPINION_WORDS and not POSITIVE_WORDS & NEGATIVE_WORDS


def test_negated_pairs_flip_one_statement_with_one_plain_adjective_that_agrees_with_its_review():
    texts = [
        "The film was good. It is really dull. The acting was superb and the plot was bad.",
        "This movie is not bad. It was terrible! The ending was great, but the rest was awful.",
        "The acting was superb. Its best scene is long.",
        "The songs were wonderful.",
        "Everyone was funny. The film was just good. Everyone was very funny. "
        "The cast was great and the sets cost millions. The train was moving. Was the ending good? "
        "Good is good. The film looks great. The film was so good I cried. It was good when it ended.",
        "The sequel was worse than I feared. The set was cheap.",
    ]
    labels, ratings = np.array([1, 0, 0, 1, 1, 0]), np.array([10, 1, 2, 7, 9, 1])
    pairs = negated_counterfactuals(texts, labels, ratings)
    assert pairs.texts == [
        "The film was good.",
        "The film was not good.",
        "It was terrible!",
        "It was not terrible at all!",  # every second word that ends its sentence
        "Everyone was funny.",
        "Everyone was not funny.",
    ]
    assert pairs.labels.tolist() == [1, 0, 0, 1, 1, 0] and pairs.source.tolist() == [0, 0, 1, 1, 4, 4]
    # Left alone: "really dull" leans against its 10-star review; two opinion words; a negator
    # already there; a second clause (", but", "and", "when"); "superb" in a 2-star review (sarcasm
    # or a concession); no form of "be" before the word ("Its best scene", "looks great"); a 7-star
    # review (not clearly rated); a word between "be" and the adjective ("just good", "very funny",
    # "so good [that]"); no plain adjective ("moving", "worse", "cheap"); a question; "good" twice.


def test_crops_then_negation_pairs_join_training_with_their_weights_and_are_counted():
    texts = ["The film was good. The plot was fun. I saw it twice.", "The film was awful. Dull stuff, long."]
    labelled = LabelledData(texts, np.array([1, 0], np.int8), "test", ratings=np.array([10.0, 1.0]))
    vocab = Vocabulary.build([tokenize(t) for t in texts], min_count=1)
    data = Prepared(
        vocab, None, np.zeros((1, 1)), {}, vocab.encode_many(texts), labelled.labels.copy(), [], [], [], []
    )
    config = preset("small").replace(crops_per_review=1, crop_weight=0.5, negation_weight=0.25)
    add_short_texts(data, config, labelled, np.array([0, 1]), np.array([], int))
    crops, pairs = data.training_snippets, data.negation_rows
    assert crops > 0 and pairs == 6 and len(data.x_train) == len(data.y_train) == 2 + crops + pairs
    assert data.w_train.tolist() == [1, 1] + [0.5] * crops + [0.25] * pairs
    assert data.y_train[2 + crops :].tolist() == [1, 0, 1, 0, 0, 1]
    assert vocab.encode_many(["The plot was not fun at all."])[0].tolist() == data.x_train[-3].tolist()


def test_polar_words_are_the_ones_one_class_of_reviews_uses_far_more():
    texts = ["superb film"] * 4 + ["dull film"] * 4 + ["superb but dull film"]
    labels = np.array([1] * 4 + [0] * 4 + [1], np.int8)
    vocab = Vocabulary.build([tokenize(t) for t in texts], min_count=1)
    words = polar_words(vocab.encode_many(texts), labels, vocab.tokens, min_reviews=3, min_log_ratio=0.5)
    # "film" is in every review, "but" in too few; <pad> and <oov> never count.
    assert words == {"superb", "dull"}
    assert (
        polar_words(vocab.encode_many(texts), labels, vocab.tokens, min_reviews=3, min_log_ratio=2.0) == set()
    )


def test_opinion_sentences_are_single_sentences_of_clear_reviews_holding_a_polar_word():
    texts = [REVIEW_POS, REVIEW_NEG, REVIEW_MID]
    rows = opinion_sentences(
        texts,
        np.array([1, 0, 1]),
        np.array([10, 1, 7]),
        frozenset({"superb", "awful", "waste"}),
        per_review=5,
    )
    assert rows.texts == [
        "The acting was superb and the songs are wonderful!",
        "The script is dull and the acting is awful.",
        "A waste of time.",
    ]
    assert rows.labels.tolist() == [1, 0, 0] and rows.source.tolist() == [0, 1, 1]  # 7 stars: not clear
    one = opinion_sentences(
        texts, np.array([1, 0, 1]), np.array([10, 1, 7]), frozenset({"awful", "waste"}), per_review=1
    )
    assert len(one) == 1 and one.source.tolist() == [1]


def test_opinion_sentences_join_training_after_the_crops_at_the_crop_weight():
    texts = ["The film was superb. Saw it.", "The film was awful. Dull stuff, long."] * 40
    labels = np.array([1, 0] * 40, np.int8)
    labelled = LabelledData(texts, labels, "test", ratings=np.array([10.0, 1.0] * 40))
    vocab = Vocabulary.build([tokenize(t) for t in texts], min_count=1)
    data = Prepared(
        vocab, None, np.zeros((1, 1)), {}, vocab.encode_many(texts), labels.copy(), [], [], [], []
    )
    config = preset("small").replace(
        crops_per_review=0, opinion_crops_per_review=1, crop_weight=0.5, negation_weight=0
    )
    add_short_texts(data, config, labelled, np.arange(80), np.array([], int))
    # Polar: "superb", "saw", "it" / "awful", "dull", "stuff", "long"; sentences under 4 tokens are left out.
    assert data.opinion_sentences == 80 and len(data.x_train) == len(data.y_train) == 160
    assert data.w_train.tolist() == [1] * 80 + [0.5] * 80
    assert data.x_train[80].tolist() == vocab.encode_many(["The film was superb."])[0].tolist()
    assert data.x_train[81].tolist() == vocab.encode_many(["The film was awful."])[0].tolist()
    assert data.y_train[80:].tolist() == labels.tolist()


def test_a_config_saved_before_opinion_sentences_existed_trains_without_them():
    # The full preset adds them; a production model's saved config from before keeps training as
    # it did when a retrain rebuilds it, while a config that names the field keeps its value.
    assert preset("full").opinion_crops_per_review == 2 and preset("small").opinion_crops_per_review == 0
    saved = preset("full").to_dict()
    del saved["opinion_crops_per_review"]
    assert TrainConfig.from_dict(saved).opinion_crops_per_review == 0
    assert TrainConfig.from_dict(preset("full").to_dict()) == preset("full")


def test_self_training_crops_the_unlabelled_reviews_the_teacher_reads_most_confidently():
    train = [
        "A great film. Wonderful acting.",
        "Great fun. A wonderful cast.",
        "An awful film. Dull acting.",
        "Awful stuff. A dull cast.",
    ]
    unlabelled = [
        "The acting was great. A wonderful, great ending.",  # the teacher's most positive
        "It is a film. It has a cast.",  # neither: left out at share 1/3
        "An awful plot. Dull, awful and dull.",  # the most negative
        "A great start. An awful end.",
        "It runs two hours. It was in colour.",
        "Dull. Great music though.",
    ]
    vocab = Vocabulary.build([tokenize(t) for t in train + unlabelled], min_count=1)
    # Rows after the whole reviews (crops, pairs) that contradict them: the teacher must not read them.
    contrary = ["great wonderful great"] * 6 + ["awful dull awful"] * 6
    labels = np.array([1, 1, 0, 0] + [0] * 6 + [1] * 6, np.int8)
    rows = vocab.encode_many(train + contrary)
    data = Prepared(vocab, None, np.zeros((1, 1)), {}, rows, labels.copy(), [], [], [], [])
    data.w_train = np.array([1.0] * 4 + [0.25] * 12)
    config = preset("small").replace(pseudo_crops_per_review=3, pseudo_share=1 / 3, crop_weight=0.5)
    add_pseudo_labelled_crops(data, config, unlabelled, vocab.encode_many(unlabelled), reviews=4)

    added, before = data.pseudo_snippets, len(rows)
    assert added > 0 and len(data.x_train) == len(data.y_train) == len(data.w_train) == before + added
    assert data.w_train.tolist() == [1] * 4 + [0.25] * 12 + [0.5] * added
    sources = {}
    for ids, label in zip(data.x_train[before:], data.y_train[before:]):
        words = set(vocab.tokens[i] for i in ids)
        source = next(k for k, review in enumerate(unlabelled) if words <= set(tokenize(review)))
        sources.setdefault(source, set()).add(int(label))
    assert sources == {0: {1}, 2: {0}}  # one review per class, each with the teacher's label


def test_self_training_never_labels_a_review_against_the_teachers_reading():
    """With most unlabelled reviews positive, the lower half holds positive ones: dropped, not labelled 0."""
    train = ["A great film. Wonderful acting.", "An awful film. Dull acting."]
    unlabelled = [f"A great film number {k}. Wonderful, great stuff." for k in range(5)]
    unlabelled.append("An awful film. Dull and awful stuff.")
    vocab = Vocabulary.build([tokenize(t) for t in train + unlabelled], min_count=1)
    rows = vocab.encode_many(train)
    data = Prepared(vocab, None, np.zeros((1, 1)), {}, rows, np.array([1, 0], np.int8), [], [], [], [])
    config = preset("small").replace(pseudo_crops_per_review=2, pseudo_share=1.0)
    add_pseudo_labelled_crops(data, config, unlabelled, vocab.encode_many(unlabelled), reviews=2)

    negative_words = set()
    for ids, label in zip(data.x_train[2:], data.y_train[2:]):
        if label == 0:
            negative_words |= {vocab.tokens[i] for i in ids}
    assert negative_words and negative_words <= set(tokenize(unlabelled[-1]))


def test_self_training_leaves_out_unlabelled_copies_of_held_out_reviews(caplog):
    texts = ["A great film. Wonderful.", "  AN awful   film. Dull.", "Another film entirely."]
    vocab = Vocabulary.build([tokenize(t) for t in texts], min_count=1)
    tokens = [tokenize(t) for t in texts]
    on = preset("small").replace(pseudo_crops_per_review=2)
    kept = self_training_inputs(on, vocab, texts, tokens, held_out_texts=["An awful film. Dull."])
    assert [text for text, _ in kept] == [texts[0], texts[2]]  # the same review to text_key: out
    assert kept[1][1].tolist() == vocab.encode(texts[2]).tolist()
    assert self_training_inputs(on.replace(pseudo_crops_per_review=0), vocab, texts, tokens, []) == []
    assert self_training_inputs(on.replace(ngram_order=0), vocab, texts, tokens, []) == []
    assert "needs the n-gram branch" in caplog.text
