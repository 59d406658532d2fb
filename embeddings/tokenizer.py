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

Versions. Every artifact records the version its vocabulary was built with (``tokenizer.json``),
and is always encoded with that version's rules, so an old model keeps scoring exactly as it was
trained; an unknown version is refused (:func:`for_config`). New models get the current one.

- **1**: deletes anything between ``<`` and ``>`` (up to 100 characters) *before* normalisation,
  so "I <3 this film, better than > 90%" lost its words and a full-width ``＜b＞`` survived.
- **2** (current): normalises first, then removes only tag-shaped markup (``<br />``, ``<i>``,
  ``</b>``, ``<a href=...>``: ``<``, an optional ``/``, a letter-led name, attributes, ``>``).

Both versions also keep at most 30 combining marks in a row (Unicode's stream-safe limit; no
language needs more, and longer runs make NFKC's canonical reordering quadratic).

Bounded cost. The model keeps only the first ``head`` and last ``max_len - head`` tokens of a
text, so :meth:`Tokenizer.head_tail_tokens` tokenises inward from both ends and stops once both
are known, never normalising the middle of a long text. It cuts the text only where cutting
provably changes nothing (before a character whose normalised form starts an uncased, non
case-ignorable, non-composing run; at a separator outside any tag), so its result equals
truncating :meth:`Tokenizer.tokenize` for every text; the tests check that property.
:func:`nfkc_rewriting` lets the service refuse texts that Unicode normalisation would blow up
(one U+FDFA becomes 18 characters) before any of that work is done.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

NAME = "sentiment-regex"
#: The version new models are built with. Bumped whenever the rules change; stored in every model
#: artifact so that a model is never served with a tokenizer it was not trained with.
TOKENIZER_VERSION = 2

#: Texts up to this many characters per kept token are tokenised in one pass: a review that short
#: has few tokens beyond what the truncation keeps, and one pass is faster than two bounded scans.
ONE_PASS_CHARS_PER_TOKEN = 8
#: Longest run of combining marks kept (UAX #15 stream-safe text format).
MAX_COMBINING_RUN = 30
# A word: letters/digits, optionally joined by single apostrophes (don't, o'clock, rock'n'roll).
# Or a lone ! or ?.
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[!?]")
# A character no token can contain: tokens never cross it.
_SEPARATOR = re.compile(r"[^\w']")

# Version 1: anything from "<" to the first ">" within 100 characters, on the raw text. Matched on
# the reversed text (">" first): the same matches as r"<[^>]{0,100}>" left to right, but linear
# in the text's length (forwards, every "<" of a "<<<<..." run rescans 100 characters).
_V1_TAG_REVERSED = re.compile(r">[^>]{0,100}<")
_V1_TAG_REACH = 101  # a v1 tag's "<" lies at most this many characters before its ">"
# Version 2: tag-shaped markup, matched after normalisation (so lower case and ASCII brackets).
_V2_TAG = re.compile(r"</?[a-z][a-z0-9:_-]{0,31}(?:[\s/][^<>]{0,500})?>")
_V2_TAG_MAX = 1 + 1 + 32 + 1 + 500 + 1  # the longest match of _V2_TAG

_APOSTROPHES = ("\u2019", "\u2018", "\u02bc", "`")

# The token regex's ASCII fast path (see find_tokens): in ASCII, ``[^\W_]`` is ``[A-Za-z0-9]``.
_ASCII_WORD = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
#: Every ASCII byte that can be in no token becomes a space; letters, digits, ' ! ? stay.
_ASCII_TOKEN_BYTES = bytes(c if c in _ASCII_WORD or c in b"'!?" else 0x20 for c in range(256))


def find_tokens(text: str) -> list[str]:
    """Return ``_TOKEN.findall(text)``, about 2.5 times faster for ASCII text (most reviews).

    Tokens never contain a character outside ``[A-Za-z0-9']``, and ``!``/``?`` are tokens of their
    own, so in ASCII text the regex's matches are the words left when every other character becomes
    a space, ``!``/``?`` are spaced apart, and every apostrophe not between two letters or digits
    is dropped. str methods do that at C speed; the tests compare both on the corpus and on random
    strings.
    """
    if not text.isascii():
        return _TOKEN.findall(text)
    if "!" in text:
        text = text.replace("!", " ! ")
    if "?" in text:
        text = text.replace("?", " ? ")
    text = text.encode("ascii").translate(_ASCII_TOKEN_BYTES).decode("ascii")
    if "'" in text:
        # Drop apostrophes next to a space, another apostrophe or an end until none is left; one
        # between two letters/digits keeps its neighbours through every round, so it stays.
        text = f" {text} "
        while "''" in text or " '" in text or "' " in text:
            text = text.replace("''", "  ").replace(" '", "  ").replace("' ", "  ")
    return text.split()


# -- tables derived from this Python's Unicode database (computed once, on first use) ---------------
@dataclass(frozen=True)
class _CharClass:
    """One character class as two regexes: for BMP-only text (a bitmap test) and for any text."""

    bmp: re.Pattern
    any: re.Pattern

    def pattern(self, text: str) -> re.Pattern:
        """Return the regex to use on ``text`` (the BMP one is several times faster)."""
        return self.bmp if not text or text.isascii() or max(text) < "\U00010000" else self.any


@dataclass(frozen=True)
class _Tables:
    """Character classes the bounded tokeniser and the limits need."""

    combining_run: _CharClass  # a run of combining marks longer than MAX_COMBINING_RUN
    cut: _CharClass  # a character the raw text may be cut before (see _tables)
    rewritten: _CharClass  # a character NFKC changes
    rewritten_length: dict[str, int]  # that character → the length of what NFKC makes of it


def _ranges(code_points: list[int]) -> str:
    """Return the inside of a regex character class matching exactly ``code_points``."""
    if not code_points:
        return ""
    ranges, start, prev = [], code_points[0], code_points[0]
    for cp in code_points[1:] + [-1]:
        if cp != prev + 1:
            ranges.append(re.escape(chr(start)) + ("" if start == prev else "-" + re.escape(chr(prev))))
            start = cp
        prev = cp
    return "".join(ranges)


def _char_class(code_points: list[int], template: str = "{}") -> _CharClass:
    """Compile ``template`` (``{}`` standing for one character of ``code_points``) for BMP and any text.

    ``re`` tests a class of BMP characters with a bitmap, but one holding a character beyond U+FFFF
    range by range. So the astral part is a separate alternative, behind a quick test of the
    256-character blocks it occupies (emoji, say, fail that test at once).
    """
    bmp = [cp for cp in code_points if cp < 0x10000]
    astral = [cp for cp in code_points if cp >= 0x10000]
    blocks = sorted({cp >> 8 for cp in astral})
    guard = _ranges([cp for block in blocks for cp in range(block << 8, (block + 1) << 8)])
    bmp_class = f"[{_ranges(bmp)}]" if bmp else "(?!)"
    any_class = (
        "(?:" + "|".join([bmp_class] + ([f"(?=[{guard}])[{_ranges(astral)}]"] if astral else [])) + ")"
    )
    return _CharClass(re.compile(template.format(bmp_class)), re.compile(template.format(any_class)))


def _cased_or_case_ignorable(ch: str) -> bool:
    """Return whether ``ch`` carries a Greek final-sigma context in ``str.lower`` (asked of Python itself)."""
    return ("A" + ch + "\u03a3").lower()[-1] == "\u03c2"


# Where the Unicode database has entries: combining marks, decompositions and case all live in
# planes 0 and 1; above them only CJK ideographs (uncased starters, compatibility ideographs map to
# one ideograph), unassigned and private-use code points (tests/embeddings check this claim).
_TABLE_PLANES = range(0x20000)


@functools.cache
def _tables() -> _Tables:
    """Derive the character classes from ``unicodedata`` (a fraction of a second, once per process)."""
    # Characters that may compose with a preceding one (the second of a canonical pair, Hangul
    # vowels and trailing consonants): cutting before one would change NFKC's composition.
    seconds = set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))
    pairs = []  # (first, composite) of every canonical pair
    for cp in _TABLE_PLANES:
        decomposition = unicodedata.decomposition(chr(cp))
        if decomposition and not decomposition.startswith("<"):
            parts = [int(p, 16) for p in decomposition.split()]
            seconds.update(parts[1:])
            pairs.append((parts[0], cp))
    # A starter that composes into a cased or case-ignorable character (directly or in steps)
    # carries ``lower``'s final-sigma context once composed: not a cut either.
    composes_cased = {first for first, composite in pairs if _cased_or_case_ignorable(chr(composite))}
    while True:
        more = {first for first, composite in pairs if composite in composes_cased} - composes_cased
        if not more:
            break
        composes_cased |= more
    marks, cut, rewritten = [], [], {}
    for cp in _TABLE_PLANES:
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        nfkc = unicodedata.normalize("NFKC", ch)
        if nfkc != ch:
            rewritten[ch] = len(nfkc)
        nfkd = unicodedata.normalize("NFKD", ch)
        if unicodedata.combining(ch) or unicodedata.combining(nfkd[0]):
            marks.append(cp)
            continue
        # A cut before ch changes nothing when ch starts a new composition (a starter that composes
        # with nothing before it) and its normalised form neither has case nor ignores it (so no
        # final sigma looks across the cut).
        first = ord(nfkd[0])
        if (
            first not in seconds
            and cp not in seconds
            and first not in composes_cased
            and not _cased_or_case_ignorable(nfkc[0])
        ):
            cut.append(cp)
    return _Tables(
        combining_run=_char_class(
            marks, "{0}{0}{{%d,}}" % MAX_COMBINING_RUN
        ),  # starts with a class: fast search
        cut=_char_class(cut),
        rewritten=_char_class(sorted(map(ord, rewritten))),
        rewritten_length=rewritten,
    )


@dataclass(frozen=True)
class Rewriting:
    """What Unicode NFKC normalisation does to a text, counted per character before any of it is done."""

    characters: int  # characters NFKC changes
    produced: int  # characters it makes of them (one U+FDFA makes 18, a full-width letter 1)

    def normalized_length(self, text: str) -> int:
        """Return the text's length once normalised (an upper bound: compositions only shorten it)."""
        return len(text) - self.characters + self.produced


def nfkc_rewriting(text: str, limit: int | None = None) -> Rewriting:
    """Count the characters of ``text`` NFKC rewrites and what they become (its cost grows with both).

    With ``limit``, stops counting once the characters found are more than it.
    """
    if text.isascii():
        return Rewriting(0, 0)
    tables = _tables()
    found = tables.rewritten.pattern(text).findall(text)
    if limit is not None and len(found) > limit:  # each makes at least one character
        return Rewriting(len(found), len(found))
    return Rewriting(len(found), sum(map(tables.rewritten_length.__getitem__, found)))


def cap_combining_runs(text: str, pattern: re.Pattern | None = None) -> str:
    """Keep at most MAX_COMBINING_RUN combining marks in a row (linear cost for NFKC's reordering)."""
    if text.isascii():
        return text
    pattern = pattern or _tables().combining_run.pattern(text)
    return pattern.sub(_first_marks, text)


def _first_marks(run: re.Match) -> str:
    return run.group()[:MAX_COMBINING_RUN]


def _nfkc_lower_fold(text: str) -> str:
    """Return NFKC, lower case, one apostrophe: the context-free middle of every version."""
    text = unicodedata.normalize("NFKC", text).lower()
    for apostrophe in _APOSTROPHES:
        if apostrophe in text:
            text = text.replace(apostrophe, "'")
    return text


def _strip_v1_tags(text: str) -> str:
    """Replace v1 tags (``<`` up to the first ``>`` within 100 characters) by spaces."""
    if "<" not in text or ">" not in text:
        return text
    return _V1_TAG_REVERSED.sub(" ", text[::-1])[::-1]


def _strip_v2_tags(text: str) -> str:
    """Replace tag-shaped markup of normalised text by spaces."""
    if "<" not in text:
        return text
    return _V2_TAG.sub(" ", text)


# -- the versions --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tokenizer:
    """One version of the tokenisation rules: the full reference and its bounded equivalent."""

    version: int
    strip_raw: Callable[[str], str]  # applied to the raw text, before normalisation
    strip_normalized: Callable[[str], str]  # applied after normalisation
    #: raw-text check of a cut point before ``text[q]`` (v1 deletes tags before normalising) ...
    raw_cut_unsafe: Callable[[str, int], bool]
    #: ... and, after an unsafe one, the next raw position forwards (backwards) worth trying
    raw_skip_forward: Callable[[str, int, int], int]
    raw_skip_backward: Callable[[str, int], int]
    tag_reach: int  # longest tag of strip_normalized (0: it strips nothing)

    def config(self) -> dict:
        """Describe this tokenizer for an artifact's ``tokenizer.json``."""
        return {"name": NAME, "version": self.version}

    # -- the reference: the whole text at once ------------------------------------------------------
    def normalize(self, text: str) -> str:
        """Return the text as the tokenizer sees it: tags removed, NFKC, lower case, one apostrophe."""
        return self.strip_normalized(_nfkc_lower_fold(cap_combining_runs(self.strip_raw(text))))

    def tokenize(self, text: str) -> list[str]:
        """Split one text into tokens; deterministic, never raises for any ``str``."""
        return find_tokens(self.normalize(text))

    # -- bounded: only what the head+tail truncation keeps ------------------------------------------
    def head_tail_tokens(self, text: str, max_len: int, head: int, *, segment: int = 256) -> list[str]:
        """Return ``truncate_head_tail(self.tokenize(text), max_len, head)`` without tokenising the middle.

        Work is proportional to the tokens kept, not to the text: the text is read in segments of
        about ``segment`` characters from the start until ``head`` tokens are known, then from the
        end until ``max_len - head`` are; if the two meet, every token is known. A text of at most
        ``ONE_PASS_CHARS_PER_TOKEN * max_len`` characters is tokenised whole (as cheap, bounded).
        """
        tail = max_len - head
        if len(text) <= max(4 * segment, ONE_PASS_CHARS_PER_TOKEN * max_len):
            return _truncate(self.tokenize(text), max_len, head, tail)
        front = _Scan(self, text, forward=True, segment=segment)
        front.run(need=head, limit=len(text))
        if front.reached_limit:
            return _truncate(front.finish(), max_len, head, tail)
        back = _Scan(self, text, forward=False, segment=segment)
        back.run(need=tail, limit=front.raw_pos)
        if not back.reached_limit:
            return front.tokens[:head] + (back.tokens[-tail:] if tail > 0 else [])
        # The scans met at a cut: the pending normalised text between them completes the tokens.
        middle = self.strip_normalized(front.pending + back.pending)
        return _truncate(front.tokens + find_tokens(middle) + back.tokens, max_len, head, tail)


def _truncate(tokens: list[str], max_len: int, head: int, tail: int) -> list[str]:
    """Keep the first ``head`` and last ``tail`` tokens of a sequence longer than ``max_len``."""
    if len(tokens) <= max_len:
        return tokens
    return tokens[:head] + (tokens[-tail:] if tail > 0 else [])


class _Scan:
    """Tokenise a text from one end, segment by segment, only at cuts that change nothing.

    Two kinds of cut keep the pieces equal to the whole:
    1. raw text, for NFKC and ``lower``: before a character from ``_Tables.cut`` (and, for v1,
       outside any tag v1 deletes). The normalised segments then concatenate to the normalised text.
    2. normalised text, for the token regex and v2's tags: at a separator no token contains, with
       no tag spanning the cut. Normalised text beyond the tokens taken so far stays ``pending``.
    A forward cut's safety depends only on the text before it, a backward cut's only on the text
    after it, so what is read never has to be read again.
    """

    def __init__(self, tokenizer: Tokenizer, text: str, *, forward: bool, segment: int) -> None:
        self.tokenizer = tokenizer
        self.text = text
        self.forward = forward
        self.segment = segment
        bmp = _tables().cut.pattern(text) is _tables().cut.bmp  # one look at the text for every class
        self.cut = _tables().cut.bmp if bmp else _tables().cut.any
        self.marks = _tables().combining_run.bmp if bmp else _tables().combining_run.any
        self.reversed = "" if forward else text[::-1]
        self.raw_pos = 0 if forward else len(text)  # the raw text before (after) it is read
        self.tokens: list[str] = []  # in text order
        self.pending = ""  # normalised text read but not yet split into tokens
        self.reached_limit = False

    def run(self, need: int, limit: int) -> None:
        """Read segments until ``need`` tokens are known or the raw position reaches ``limit``."""
        stride = self.segment
        while len(self.tokens) < need and not self.reached_limit:
            nxt = self._next_cut(stride, limit)
            if self.forward:
                piece, self.raw_pos = self.text[self.raw_pos : nxt], nxt
            else:
                piece, self.raw_pos = self.text[nxt : self.raw_pos], nxt
            self.reached_limit = nxt == limit
            normalized = _nfkc_lower_fold(cap_combining_runs(self.tokenizer.strip_raw(piece), self.marks))
            if self.forward:
                self._drain_forward(self.pending + normalized, len(self.pending), need)
            else:
                self._drain_backward(normalized + self.pending, len(normalized), need)
            stride *= 2  # sparse text: fewer, longer segments; at most twice the text needed

    def finish(self) -> list[str]:
        """Return every token of the text (the forward scan read all of it)."""
        return self.tokens + find_tokens(self.tokenizer.strip_normalized(self.pending))

    # -- raw cuts ---------------------------------------------------------------------------------
    def _next_cut(self, stride: int, limit: int) -> int:
        """Return the raw position of a safe cut at least ``stride`` characters on, or ``limit``."""
        text, tokenizer, n = self.text, self.tokenizer, len(self.text)
        if self.forward:
            pos = self.raw_pos + stride
            while pos < limit:
                m = self.cut.search(text, pos, limit)
                if m is None:
                    break
                if not tokenizer.raw_cut_unsafe(text, m.start()):
                    return m.start()
                pos = tokenizer.raw_skip_forward(text, m.start(), limit)
            return limit
        # Backwards, in the reversed text: the character text[q] sits at n - 1 - q.
        q_max = self.raw_pos - stride
        while q_max > limit:
            m = self.cut.search(self.reversed, n - 1 - q_max, n - 1 - limit)
            if m is None:
                break
            q = n - 1 - m.start()
            if not tokenizer.raw_cut_unsafe(text, q):
                return q
            q_max = tokenizer.raw_skip_backward(text, q)
        return limit

    # -- normalised cuts ------------------------------------------------------------------------------
    def _chunk(self, need: int) -> int:
        """Return how much normalised text to tokenise next: about 8 characters per missing token."""
        return max(self.segment, 8 * (need - len(self.tokens)))

    def _drain_forward(self, buffer: str, start: int, need: int) -> None:
        """Tokenise ``buffer`` from its start, chunk by chunk, until ``need`` tokens are known.

        ``buffer[:start]`` is earlier pending text, known to hold no safe cut.
        """
        strip, done = self.tokenizer.strip_normalized, 0
        while len(self.tokens) < need:
            r = self._safe_cut_from(buffer, max(start, done + self._chunk(need)))
            if r is None:
                r = self._last_safe_cut(buffer, max(start, done))
                if r is not None and r > done:
                    self.tokens += find_tokens(strip(buffer[done:r]))
                    done = r
                break
            self.tokens += find_tokens(strip(buffer[done:r]))
            done = r
        self.pending = buffer[done:]

    def _drain_backward(self, buffer: str, end: int, need: int) -> None:
        """Tokenise ``buffer`` from its end, chunk by chunk, until ``need`` tokens are known.

        ``buffer[end:]`` is later pending text, known to hold no safe cut.
        """
        strip, done = self.tokenizer.strip_normalized, len(buffer)
        while len(self.tokens) < need:
            r = self._safe_cut_upto(buffer, min(end - 1, done - self._chunk(need)))
            if r is None:
                r = self._first_safe_cut(buffer, min(end, done))
                if r is not None and r < done:
                    self.tokens[:0] = find_tokens(strip(buffer[r:done]))
                    done = r
                break
            self.tokens[:0] = find_tokens(strip(buffer[r:done]))
            done = r
        self.pending = buffer[:done]

    def _forward_unsafe(self, buffer: str, r: int) -> bool:
        """Return whether a tag may run from before ``r`` across it (an unclosed ``<`` within reach)."""
        reach = self.tokenizer.tag_reach
        if not reach:
            return False
        opening = buffer.rfind("<", max(0, r - reach), r)
        return opening != -1 and buffer.find(">", opening, r) == -1

    def _backward_unsafe(self, buffer: str, r: int) -> bool:
        """Return whether a tag may run from before ``r`` to a ``>`` after it (no ``<`` first)."""
        reach = self.tokenizer.tag_reach
        if not reach:
            return False
        closing = _first_angle(buffer, r, r + reach)
        return closing != -1 and buffer[closing] == ">"

    def _safe_cut_from(self, buffer: str, pos: int) -> int | None:
        """Return an early safe forward cut at or after ``pos`` (None: none)."""
        reach = self.tokenizer.tag_reach
        while pos < len(buffer):
            m = _SEPARATOR.search(buffer, pos)
            if m is None:
                return None
            r = m.start()
            if not self._forward_unsafe(buffer, r):
                return r
            # Safe again after the next ">" (it closes every "<" before it), or out of the "<"'s reach.
            opening = buffer.rfind("<", max(0, r - reach), r)
            closing = buffer.find(">", r)
            pos = min(len(buffer) if closing == -1 else closing + 1, opening + reach + 1)
        return None

    def _last_safe_cut(self, buffer: str, start: int) -> int | None:
        """Return a late safe forward cut in ``buffer[start:]`` (None: none)."""
        r = _rsearch(_SEPARATOR, buffer, start, len(buffer))
        if r is not None and self._forward_unsafe(buffer, r):
            # A tag may start at any "<" since the last ">": cutting before the first of them is safe,
            # unless a "<" read earlier is still open.
            closed = buffer.rfind(">", start, r)
            r = buffer.find("<", max(closed + 1, start), r)
            return None if r == -1 or self._forward_unsafe(buffer, r) else r
        return r

    def _safe_cut_upto(self, buffer: str, pos: int) -> int | None:
        """Return a late safe backward cut at or before ``pos`` (None: none)."""
        reach = self.tokenizer.tag_reach
        while pos >= 0:
            r = _rsearch(_SEPARATOR, buffer, 0, pos + 1)
            if r is None or not self._backward_unsafe(buffer, r):
                return r
            opening = buffer.rfind("<", max(0, r - reach), r)
            if opening != -1:
                return opening  # cutting before a "<" leaves any tag to its right whole
            pos = r - reach  # out of reach of the ">" that a tag could end at
        return None

    def _first_safe_cut(self, buffer: str, end: int) -> int | None:
        """Return an early safe backward cut in ``buffer[:end]`` (None: none)."""
        pos = 0
        while pos < end:
            m = _SEPARATOR.search(buffer, pos, end)
            if m is None:
                return None
            r = m.start()
            if not self._backward_unsafe(buffer, r):
                return r
            # A tag may end at any ">" before the next "<": cut after the last of them.
            opening = buffer.find("<", r)
            pos = buffer.rfind(">", r, opening if opening != -1 else len(buffer)) + 1
        return None


def _rsearch(pattern: re.Pattern, text: str, start: int, end: int) -> int | None:
    """Return the position of the last match of a one-character ``pattern`` in ``text[start:end]``."""
    width = 64
    hi = end
    while hi > start:
        lo = max(start, hi - width)
        m = pattern.search(text[lo:hi][::-1])
        if m is not None:
            return hi - 1 - m.start()
        hi, width = lo, width * 2
    return None


def _first_angle(text: str, start: int, end: int) -> int:
    """Return the position of the first ``<`` or ``>`` in ``text[start:end]``, or -1."""
    lt, gt = text.find("<", start, end), text.find(">", start, end)
    if lt == -1 or gt == -1:
        return max(lt, gt)
    return min(lt, gt)


def _v1_raw_cut_unsafe(text: str, q: int) -> bool:
    """Return whether a v1 tag (deleted on the raw text) may span the cut before ``text[q]``."""
    opening = text.rfind("<", max(0, q - _V1_TAG_REACH), q)
    return opening != -1 and text.find(">", opening, q) == -1


_V1_GAP = re.compile("<[^<]{%d}" % _V1_TAG_REACH)  # a "<" no later "<" follows within reach


def _v1_skip_forward(text: str, q: int, limit: int) -> int:
    """Return the first raw position after an unsafe cut ``q`` where a v1 tag may no longer span.

    Safe again just after a ``>`` (it closes every ``<`` before it), or once the last ``<`` is out
    of reach. Found with two C-level searches, so a run of ``<`` costs no Python loop per character.
    """
    candidates = [limit]
    closing = text.find(">", q, limit)
    if closing != -1:
        candidates.append(closing + 1)
    gap = _V1_GAP.search(text, max(0, q - _V1_TAG_REACH), limit)
    if gap is not None:
        candidates.append(gap.start() + _V1_TAG_REACH + 1)
    return max(q + 1, min(candidates))


def _v1_skip_backward(text: str, q: int) -> int:
    """Return a raw position before an unsafe cut ``q`` where no v1 tag can span (the run's first ``<``)."""
    closed = text.rfind(">", 0, q)
    opening = text.find("<", closed + 1, q)
    return min(q - 1, opening)


def _never_unsafe(text: str, q: int) -> bool:
    return False


def _no_skip_forward(text: str, q: int, limit: int) -> int:
    return q + 1


def _no_skip_backward(text: str, q: int) -> int:
    return q - 1


def _identity(text: str) -> str:
    return text


TOKENIZERS: dict[int, Tokenizer] = {
    1: Tokenizer(1, _strip_v1_tags, _identity, _v1_raw_cut_unsafe, _v1_skip_forward, _v1_skip_backward, 0),
    2: Tokenizer(
        2, _identity, _strip_v2_tags, _never_unsafe, _no_skip_forward, _no_skip_backward, _V2_TAG_MAX
    ),
}
CURRENT = TOKENIZERS[TOKENIZER_VERSION]


class UnknownTokenizer(ValueError):
    """An artifact names a tokenizer (or version) this code does not implement."""


def for_config(config: object) -> Tokenizer:
    """Return the tokenizer an artifact's ``tokenizer.json`` names; refuse one this code lacks."""
    known = ", ".join(str(v) for v in sorted(TOKENIZERS))
    if not isinstance(config, dict) or config.get("name") != NAME:
        raise UnknownTokenizer(f"tokenizer {config!r} is not {NAME!r} (versions {known})")
    version = config.get("version")
    if isinstance(version, bool) or version not in TOKENIZERS:
        raise UnknownTokenizer(
            f"tokenizer {NAME!r} version {version!r} is unknown to this code, which has versions {known}: "
            "serve the model with the code it was trained with, or retrain it"
        )
    return TOKENIZERS[version]


# -- the current version, for code that builds new models --------------------------------------------
def normalize(text: str) -> str:
    """Return the text as the current tokenizer sees it (see :meth:`Tokenizer.normalize`)."""
    return CURRENT.normalize(text)


def tokenize(text: str) -> list[str]:
    """Split one text into tokens with the current tokenizer; deterministic, never raises."""
    return CURRENT.tokenize(text)


def tokenizer_config() -> dict:
    """Describe the current tokenizer for an artifact's ``tokenizer.json``."""
    return CURRENT.config()
