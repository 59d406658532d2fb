"""Explain one prediction by occlusion: how far each token moves the calibrated score.

For a text whose encoded (truncated) sequence has ``n`` tokens, the model scores ``n + 1``
sequences in one call: the sequence itself and, for each position, the sequence with that one
token removed. A token's contribution is ``score(full) - score(without the token)``, so a
positive value means the token pushed the prediction towards "positive". Occlusion explains
what the model saw: the tokens after the head+tail truncation, with out-of-vocabulary words
all read as the one OOV id. Cost grows as ``n**2``, hence the ``max_tokens`` cap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embeddings.vocabulary import OOV_ID, Vocabulary, truncate_head_tail
from inference.predictor import Predictor


class TooManyTokens(ValueError):
    """The text has more tokens to explain than the configured cap."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"the text has {count} tokens to explain; the limit is {limit}")
        self.count = count
        self.limit = limit


@dataclass(frozen=True)
class TokenContribution:
    """One token the model saw and how much removing it changes the score."""

    token: str  # the tokenizer's (normalised, lower-case) form
    position: int  # index among all tokens of the text; a jump marks the truncated middle
    known: bool  # False: not in the vocabulary, the model saw the OOV id
    contribution: float  # score(full) - score(without this token)


@dataclass(frozen=True)
class Explanation:
    """A calibrated score and the contribution of each token behind it."""

    probability: float
    tokens: list[TokenContribution]
    tokens_in_text: int  # before truncation

    @property
    def truncated(self) -> bool:
        """Return whether the head+tail truncation dropped tokens from the middle."""
        return len(self.tokens) < self.tokens_in_text


def occlusions(ids: np.ndarray) -> list[np.ndarray]:
    """Return ``ids`` followed by one copy per position with that token removed.

    Removing the only token leaves ``[OOV_ID]``, the encoding of a text without words.
    """
    sequences = [ids]
    for i in range(len(ids)):
        without = np.delete(ids, i)
        sequences.append(without if len(without) else np.array([OOV_ID], dtype=np.int64))
    return sequences


@dataclass(frozen=True)
class Occlusion:
    """The tokens of one text the model sees, ready to be scored with their occlusions."""

    tokens: list[str]  # every token of the text
    positions: list[int]  # indices into ``tokens`` kept by the head+tail truncation
    ids: np.ndarray  # (len(positions),) or [OOV_ID] for a text without words

    @classmethod
    def of(cls, vocabulary: Vocabulary, text: str, *, max_tokens: int) -> Occlusion:
        """Tokenise and encode ``text``; raise TooManyTokens when more than ``max_tokens`` remain."""
        tokens = vocabulary.tokenize(text)
        # ids_for_tokens applies the same head+tail cut: applied to positions, it says which remain.
        positions = truncate_head_tail(range(len(tokens)), vocabulary.max_len, vocabulary.head)
        if len(positions) > max_tokens:
            raise TooManyTokens(len(positions), max_tokens)
        return cls(tokens, positions, np.asarray(vocabulary.ids_for_tokens(tokens), dtype=np.int64))

    def explain(self, predictor: Predictor) -> Explanation:
        """Score the sequence and every one-token occlusion of it in a single model call.

        ``predictor`` must use the vocabulary this occlusion was encoded with.
        """
        if not self.positions:  # no word at all: the model saw [OOV_ID]; nothing to occlude
            return Explanation(float(predictor.score_together([self.ids])[0]), [], 0)
        scores = predictor.score_together(occlusions(self.ids))  # (n + 1,): full, then without i
        full = float(scores[0])
        contributions = [
            TokenContribution(self.tokens[p], p, int(token_id) != OOV_ID, full - float(scores[i + 1]))
            for i, (p, token_id) in enumerate(zip(self.positions, self.ids, strict=True))
        ]
        return Explanation(full, contributions, len(self.tokens))


def explain(predictor: Predictor, text: str, *, max_tokens: int) -> Explanation:
    """Explain ``text`` with ``predictor`` (TooManyTokens before any model call if too long)."""
    return Occlusion.of(predictor.vocabulary, text, max_tokens=max_tokens).explain(predictor)
