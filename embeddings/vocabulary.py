"""Vocabulary: tokens ↔ integer ids, plus the head+tail truncation every consumer applies.

Id 0 is padding (the model masks it), id 1 stands for every out-of-vocabulary token; real words
start at 2, most frequent first. Saved as plain JSON so the service can read it without pickles.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from embeddings.tokenizer import CURRENT, Tokenizer, UnknownTokenizer, for_config

PAD_ID = 0
OOV_ID = 1
PAD_TOKEN = "<pad>"
OOV_TOKEN = "<oov>"
#: The truncation rule's defaults; training.config.TrainConfig uses the same constants.
DEFAULT_MAX_LEN = 600  # tokens kept per review (head + tail)
DEFAULT_HEAD = 150  # of which the first ones; the rest come from the end of the review


def truncate_head_tail(ids: Sequence[int], max_len: int, head: int) -> list[int]:
    """Keep the first ``head`` and last ``max_len - head`` ids of a long sequence.

    Reviews open with context and close with the verdict; cutting the middle keeps both.
    """
    if len(ids) <= max_len:
        return list(ids)
    tail = max_len - head
    return list(ids[:head]) + (list(ids[-tail:]) if tail > 0 else [])


@dataclass
class Vocabulary:
    """An ordered token list, the truncation rule, and the tokenizer version that made the tokens."""

    tokens: list[str]
    max_len: int = DEFAULT_MAX_LEN
    head: int = DEFAULT_HEAD
    tokenizer: Tokenizer = field(default=CURRENT, repr=False)
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.tokens[:2] != [PAD_TOKEN, OOV_TOKEN]:
            raise ValueError("a vocabulary must start with the padding and OOV tokens")
        if not 0 <= self.head <= self.max_len:
            raise ValueError(f"head={self.head} must lie in [0, max_len={self.max_len}]")
        self._index = {tok: i for i, tok in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Sequence[str]],
        *,
        max_size: int = 100_000,
        min_count: int = 2,
        max_len: int = DEFAULT_MAX_LEN,
        head: int = DEFAULT_HEAD,
        tokenizer: Tokenizer = CURRENT,
    ) -> "Vocabulary":
        """Count tokens and keep the ``max_size`` most frequent seen at least ``min_count`` times.

        ``token_lists`` must come from ``tokenizer`` (the current version unless told otherwise).
        """
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        # Sort by (-count, token) so equal counts never depend on insertion order.
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls(
            [PAD_TOKEN, OOV_TOKEN] + kept[: max(0, max_size - 2)],
            max_len=max_len,
            head=head,
            tokenizer=tokenizer,
        )

    def ids_for_tokens(self, tokens: Sequence[str]) -> list[int]:
        """Map tokens to ids (OOV for unknown) and apply the head+tail truncation.

        A text without a single word token (only emoji or punctuation) becomes ``[OOV_ID]``:
        the model then sees "an unknown word", and no consumer ever handles an empty sequence.
        """
        ids = list(map(self._index.get, tokens, itertools.repeat(OOV_ID))) or [OOV_ID]
        return truncate_head_tail(ids, self.max_len, self.head)

    def tokenize(self, text: str) -> list[str]:
        """Split a text into every one of its tokens, with the rules this vocabulary was built with."""
        return self.tokenizer.tokenize(text)

    def encode(self, text: str) -> np.ndarray:
        """Tokenise and encode one text as a non-empty int64 id array.

        Equal to ``ids_for_tokens(self.tokenize(text))``, but tokenises only the head and tail the
        truncation keeps, so a long or Unicode-heavy text costs no more than a short one.
        """
        kept = self.tokenizer.head_tail_tokens(text, self.max_len, self.head)
        return np.asarray(self.ids_for_tokens(kept), dtype=np.int64)

    def encode_many(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Encode several texts; same as calling :meth:`encode` on each."""
        return [self.encode(t) for t in texts]

    # -- persistence -------------------------------------------------------------------------
    def to_json(self) -> dict:
        """Return the JSON document stored as ``tokenizer.json`` in an artifact."""
        return {
            "tokenizer": self.tokenizer.config(),
            "max_len": self.max_len,
            "head": self.head,
            "pad_id": PAD_ID,
            "oov_id": OOV_ID,
            "tokens": self.tokens,
        }

    def save(self, path: Path) -> None:
        """Write the vocabulary as JSON."""
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "Vocabulary":
        """Read a vocabulary written by :meth:`save`, with the tokenizer version it names.

        Raises UnknownTokenizer (a ValueError) for a tokenizer or version this code does not have.
        """
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        try:
            tokenizer = for_config(doc.get("tokenizer"))
        except UnknownTokenizer as exc:
            raise UnknownTokenizer(f"{path}: {exc}") from None
        return cls(
            list(doc["tokens"]), max_len=int(doc["max_len"]), head=int(doc["head"]), tokenizer=tokenizer
        )


def pad_batch(sequences: Sequence[np.ndarray], length: int | None = None) -> np.ndarray:
    """Right-pad id sequences with PAD_ID into one int64 matrix (padding on the right keeps cuDNN usable)."""
    length = max((len(s) for s in sequences), default=0) if length is None else length
    out = np.zeros((len(sequences), max(length, 1)), dtype=np.int64)
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = seq[:length]
    return out
