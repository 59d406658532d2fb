"""The one tokenizer of the project: training, word2vec, the service and batch scoring all call it.

Pure Python + ``re`` on purpose: the service must tokenise without importing TensorFlow, and a
single implementation is the only reliable way to have no training/serving skew.

Rules (each one chosen for sentiment, not for generic NLP):
- IMDB reviews carry ``<br />`` line breaks and stray HTML tags: they become spaces.
- Unicode is NFKC-normalised then lower-cased, so "ＧＯＯＤ", "Good" and "good" are one word.
- Contractions stay whole (``don't``, ``isn't``, ``wouldn't``): splitting them would separate the
  negation from its verb, and negation is the strongest sentiment cue after the adjectives.
  Curly apostrophes are folded into ``'``.
- ``!`` and ``?`` are tokens of their own (enthusiasm, rhetorical questions); other punctuation
  is dropped.
- Digits stay ("10/10" → ``10``, ``10``), since ratings inside reviews are informative.
"""

from __future__ import annotations

import re
import unicodedata

#: Bumped whenever the rules change; stored in every model artifact so that a model is never
#: served with a tokenizer it was not trained with.
TOKENIZER_VERSION = 1

_HTML_TAG = re.compile(r"<[^>]{0,100}>")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
# A word: letters/digits, optionally joined by single apostrophes (don't, o'clock, rock'n'roll).
# Or a lone ! or ?.
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[!?]")


def normalize(text: str) -> str:
    """Return the text as the tokenizer sees it: tags removed, NFKC, lower case, one apostrophe."""
    text = _HTML_TAG.sub(" ", text)
    text = unicodedata.normalize("NFKC", text).lower()
    return text.translate(_APOSTROPHES)


def tokenize(text: str) -> list[str]:
    """Split one text into tokens; deterministic, never raises for any ``str``."""
    return _TOKEN.findall(normalize(text))


def tokenizer_config() -> dict:
    """Describe this tokenizer for an artifact's ``tokenizer.json``."""
    return {"name": "sentiment-regex", "version": TOKENIZER_VERSION}
