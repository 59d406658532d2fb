"""Short texts cut from long reviews: training crops, negation pairs and the short-text validation set.

Users send one sentence as often as a whole review, but IMDB only labels whole reviews. A sentence
inherits its review's label only when the review is *clearly* rated (1-2 or 9-10 stars): a
7-star review holds many lukewarm or negative sentences, a 10-star one rarely does.

- :func:`training_crops` samples sentences and short snippets (runs of consecutive sentences) of
  clearly rated training reviews; the model trains on them next to the whole reviews.
- :func:`negated_counterfactuals` pairs one-statement sentences of clearly rated training reviews
  ("The film was good.") with their negation, label flipped: what "not" does, which IMDB's labels
  barely teach.
- :func:`short_text_set` builds the short-text validation set from held-out reviews: sentences of
  5-30 tokens that carry an opinion word of :data:`OPINION_WORDS`. Without that filter most
  sentences are plot summary ("Plot concerns a group of teens...") whose inherited label is a coin
  toss for any reader; the filter is a fixed word list, so it does not favour any model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from embeddings.tokenizer import tokenize
from training.ngrams import NEGATORS

#: A review is clearly negative at or below this rating, clearly positive at or above the next.
CLEAR_NEGATIVE_MAX = 2
CLEAR_POSITIVE_MIN = 9

# Sentence ends: . ! or ? (maybe closing a quote or bracket) before a space, or IMDB's <br />.
_SENTENCE_BREAK = re.compile(r"(?:\s*<br\s*/?>\s*)+|(?<=[.!?])\s+|(?<=[.!?][\"')\]])\s+")

#: Words that mark a sentence as an evaluation rather than plot summary, by the way they lean.
#: Fixed and model-free on purpose: changing them changes the short-text set (OPINION_WORDS is
#: their union), so bump SHORT_TEXT_VERSION.
POSITIVE_WORDS = frozenset(
    """
    good great excellent superb wonderful brilliant amazing fantastic outstanding perfect beautiful
    beautifully best love loved loves lovely enjoy enjoyed enjoyable fun funny hilarious masterpiece
    recommend recommended favorite favourite impressive touching moving powerful gem classic
    stunning terrific fine nice charming delightful worth entertaining memorable solid strong
    """.split()
)
NEGATIVE_WORDS = frozenset(
    """
    bad worst awful terrible horrible poor poorly boring bored dull waste wasted stupid lame
    disappointing disappointed disappointment mess pointless annoying ridiculous pathetic garbage
    crap weak mediocre unfunny laughable painful avoid hate hated worse dreadful tedious
    predictable forgettable awkward cheap incoherent failed fails unwatchable
    """.split()
)
OPINION_WORDS = POSITIVE_WORDS | NEGATIVE_WORDS
SHORT_TEXT_VERSION = 1


def is_clearly_rated(ratings: np.ndarray) -> np.ndarray:
    """Return a boolean mask of ratings at the ends of the scale (their sentences keep the label)."""
    ratings = np.asarray(ratings)
    return (ratings <= CLEAR_NEGATIVE_MAX) | (ratings >= CLEAR_POSITIVE_MIN)


def split_sentences(text: str) -> list[str]:
    """Split a review into sentences on . ! ? and on IMDB's ``<br />`` line breaks."""
    return [s.strip() for s in _SENTENCE_BREAK.split(text) if s and s.strip()]


@dataclass
class ShortTexts:
    """Short texts with inherited labels and the index of the review each came from."""

    texts: list[str]
    labels: np.ndarray  # int8, 1 = positive
    source: np.ndarray  # index into the texts the set was cut from

    def __len__(self) -> int:
        return len(self.texts)


def _pack(rows: list[tuple[str, int, int]]) -> ShortTexts:
    return ShortTexts(
        [r[0] for r in rows],
        np.array([r[1] for r in rows], dtype=np.int8),
        np.array([r[2] for r in rows], dtype=np.int64),
    )


def short_text_set(
    texts: Sequence[str],
    labels: np.ndarray,
    ratings: np.ndarray,
    *,
    min_tokens: int = 5,
    max_tokens: int = 30,
    per_review: int = 3,
    seed: int = 1337,
) -> ShortTexts:
    """Return the short-text evaluation set: opinionated sentences of clearly rated reviews.

    At most ``per_review`` sentences per review (chosen at random, in review order), so that long
    reviews do not dominate the set.
    """
    return _sentences_holding(texts, labels, ratings, OPINION_WORDS, min_tokens, max_tokens, per_review, seed)


def _sentences_holding(
    texts: Sequence[str],
    labels: np.ndarray,
    ratings: np.ndarray,
    words: frozenset[str],
    min_tokens: int,
    max_tokens: int,
    per_review: int,
    seed: int,
) -> ShortTexts:
    """Return up to ``per_review`` sentences of each clearly rated review that hold one of ``words``.

    Sentences of ``min_tokens``-``max_tokens`` tokens, chosen at random, kept in review order.
    """
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, int, int]] = []
    for i in np.flatnonzero(is_clearly_rated(ratings)):
        candidates = [
            sentence
            for sentence in split_sentences(texts[i])
            if min_tokens <= len(tokens := tokenize(sentence)) <= max_tokens and not words.isdisjoint(tokens)
        ]
        if len(candidates) > per_review:
            keep = np.sort(rng.choice(len(candidates), per_review, replace=False))
            candidates = [candidates[k] for k in keep]
        rows += [(s, int(labels[i]), int(i)) for s in candidates]
    return _pack(rows)


def training_crops(
    texts: Sequence[str],
    labels: np.ndarray,
    ratings: np.ndarray,
    *,
    per_review: int = 2,
    max_sentences: int = 3,
    min_tokens: int = 3,
    max_tokens: int = 60,
    seed: int = 1337,
) -> ShortTexts:
    """Return random snippets of clearly rated reviews: 1 to ``max_sentences`` consecutive sentences.

    Snippets keep ``min_tokens``-``max_tokens`` tokens. No opinion-word filter here: the model
    should also learn that a plot sentence carries little evidence (the inherited label is noisy,
    so the loss pushes such snippets towards 0.5).
    """
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, int, int]] = []
    for i in np.flatnonzero(is_clearly_rated(ratings)):
        sentences = split_sentences(texts[i])
        if len(sentences) < 2:  # a one-sentence review already is a short text
            continue
        for _ in range(per_review):
            width = int(rng.integers(1, max_sentences + 1))
            start = int(rng.integers(0, max(1, len(sentences) - width + 1)))
            snippet = " ".join(sentences[start : start + width])
            if min_tokens <= len(tokenize(snippet)) <= max_tokens:
                rows.append((snippet, int(labels[i]), int(i)))
    return _pack(rows)


def polar_words(
    sequences: Sequence[np.ndarray],
    labels: np.ndarray,
    tokens: Sequence[str],
    *,
    min_reviews: int = 30,
    min_log_ratio: float = 1.0,
) -> frozenset[str]:
    """Return the words one class of ``sequences`` (encoded reviews) uses far more than the other.

    A word qualifies when at least ``min_reviews`` reviews hold it and the share of positive
    reviews holding it differs from the share of negative ones by a factor of e^``min_log_ratio``
    (document frequencies, add-one smoothed). Learnt from the training reviews alone, so it is
    neither :data:`OPINION_WORDS` (which picks the validation sentences) nor anything held out.
    """
    size = len(tokens)
    labels = np.asarray(labels)
    distinct = [np.unique(ids) for ids in sequences]  # a review counts once per word
    counts = np.zeros((2, size))
    for c in (0, 1):
        held = [distinct[k] for k in np.flatnonzero(labels == c)]
        if held:
            counts[c] = np.bincount(np.concatenate(held), minlength=size)[:size]
    totals = np.array([(labels == 0).sum(), (labels == 1).sum()], dtype=float)[:, None]
    ratio = np.log((counts[1] + 1) / (totals[1] + 1)) - np.log((counts[0] + 1) / (totals[0] + 1))
    keep = (counts.sum(axis=0) >= min_reviews) & (np.abs(ratio) >= min_log_ratio)
    keep[:2] = False  # padding and out-of-vocabulary ids
    return frozenset(tokens[i] for i in np.flatnonzero(keep))


def opinion_sentences(
    texts: Sequence[str],
    labels: np.ndarray,
    ratings: np.ndarray,
    words: frozenset[str],
    *,
    per_review: int = 2,
    min_tokens: int = 4,
    max_tokens: int = 40,
    seed: int = 1337,
) -> ShortTexts:
    """Return up to ``per_review`` single sentences per clearly rated review that hold one of ``words``.

    Users send one opinionated sentence ("Great phone, battery lasts all day."), while random
    snippets (:func:`training_crops`) are mostly plot summary and span up to three sentences. These
    are the sentences a user would write, with their review's label. Picked like the validation
    sentences (:func:`short_text_set`), from training reviews and with the training reviews' words.
    """
    return _sentences_holding(texts, labels, ratings, words, min_tokens, max_tokens, per_review, seed)


#: Opinion words whose negation flips a sentence: plain adjectives. Left out: verbs and nouns
#: ("was moving", "was crap"), comparatives and superlatives ("not worse than", "not the best"),
#: and words with a common neutral sense ("was fine", "was strong", "was cheap", "was classic").
NEGATABLE_WORDS = frozenset(
    """
    good great excellent superb wonderful brilliant amazing fantastic outstanding perfect beautiful
    lovely enjoyable fun funny hilarious impressive touching powerful stunning terrific nice
    charming delightful entertaining memorable
    bad awful terrible horrible poor boring bored dull stupid lame disappointing disappointed
    pointless annoying ridiculous pathetic weak mediocre unfunny laughable painful dreadful tedious
    predictable forgettable awkward incoherent unwatchable
    """.split()
)
#: "was good" -> "was not good": a form of "be", then the word. No "'s" (the film's best scene), no
#: "seems"/"looks" ("looks not great" is not English), no word between: not "just" or "so" ("was
#: not just bad" is worse than bad; "was so bad [that] I left"), nor an intensifier (with pairs like
#: "was really bad" / "was not really bad" the behaviour suite's "an intensifier does not weaken"
#: tests fell from 97.5 % to 81 / 90 % in two full-preset runs; 96 / 94 % without them, two runs).
_COPULA_OPINION = re.compile(
    r"\b(is|was|are|were)\s+(" + "|".join(sorted(NEGATABLE_WORDS, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)
#: What may follow a sentence's last word: its full stop and closing quotes or brackets.
_CLOSING = " .!\"')]"
#: A second clause ("..., but the ending was great", "... and the acting is atrocious", "so bored
#: that they left", "worse than ...") or a question: "not" would not flip the sentence.
_NOT_ONE_STATEMENT = re.compile(
    r"[,;:?]|\b(?:but|although|though|except|yet|while|whereas|and|or|that|than|because|when|if)\b",
    re.IGNORECASE,
)


def negated_counterfactuals(
    texts: Sequence[str],
    labels: np.ndarray,
    ratings: np.ndarray,
    *,
    min_tokens: int = 3,
    max_tokens: int = 20,
) -> ShortTexts:
    """Return minimal pairs: a training sentence ("the film was good") and its negation, label flipped.

    IMDB barely teaches negation: "not bad" sits in lukewarm reviews (41 % positive), "not bad at
    all" in 13, so a model fitted to its labels reads "not X" as negative whatever X is.
    Counterfactual edits that flip a label with a minimal change teach what the change means
    (human-edited IMDB counterfactuals: Kaushik et al., ICLR 2020; automatic ones from negation and
    antonyms: Wang & Culotta, AAAI 2021). Only sentences whose meaning the edit surely flips are
    used: one statement (no second clause, no question), no negator yet, one opinion word (counted
    with repeats), a plain adjective of :data:`NEGATABLE_WORDS` right after a form of "be",
    leaning the way its clearly rated review does (a "good" in a 1-star review may be sarcasm or a
    concession: negating it would teach nonsense). The original comes with its edit, so that the
    pair differs by one word: without it, the edits alone pulled plain praise like "John was great
    in this film." towards 0.5 (one full-preset run). Every second edit whose word ends the
    sentence says "not ... at all": "at all" only strengthens a negation, but IMDB has it mostly in
    complaints ("not funny at all"), so without it a model read "not bad at all" as less positive
    than "not bad" (0.44 against 0.68 in one full-preset run).
    """
    negators = frozenset(NEGATORS)
    rows: list[tuple[str, int, int]] = []
    ends_here = 0
    for i in np.flatnonzero(is_clearly_rated(ratings)):
        positive = bool(labels[i])
        for sentence in split_sentences(texts[i]):
            tokens = tokenize(sentence)
            if not (min_tokens <= len(tokens) <= max_tokens) or _NOT_ONE_STATEMENT.search(sentence):
                continue
            if sum(t in OPINION_WORDS for t in tokens) != 1 or not negators.isdisjoint(tokens):
                continue
            match = _COPULA_OPINION.search(sentence)
            word = match.group(2).lower() if match else ""
            if word not in tokens or (word in POSITIVE_WORDS) != positive:
                continue
            after = sentence[match.end() :]
            if not after.strip(_CLOSING):  # the word ends the sentence
                ends_here += 1
                after = " at all" + after if ends_here % 2 == 0 else after
            negated = f"{sentence[: match.end(1)]} not{sentence[match.end(1) : match.end()]}{after}"
            rows += [(sentence, int(positive), int(i)), (negated, int(not positive), int(i))]
    return _pack(rows)
