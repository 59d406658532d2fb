"""Time the most expensive inputs the service accepts, through its real validation and tokenisation.

The service must spend at most 0.5 s of a worker on any request inside its documented limits
(``SENTIMENT_MAX_BODY_BYTES``, ``SENTIMENT_MAX_TEXTS_PER_REQUEST``, ``SENTIMENT_MAX_TEXT_CHARS``,
``SENTIMENT_MAX_NFKC_REWRITTEN_CHARS``), and at most 50 ms on any one text. This builds the worst
inputs we know of (NFKC expanders such as U+FDFA, runs of combining marks that NFKC reorders,
long runs without spaces, emoji, the most tokens per character, ``<`` and tag-shaped runs for
both tokenizer versions) and, for each, the largest request the limits allow (256 texts, or
fewer longer ones, up to the body limit). Each body goes through ``decode_json`` →
``texts_from_predict`` → ``Vocabulary.encode_many`` in this process, the path a worker runs
before any model call; what the limits refuse is reported as refused (and costs its check).

    .venv/bin/python bench/bench_worst_case.py                      # both tokenizer versions
    .venv/bin/python bench/bench_worst_case.py --model-dir models   # the production vocabulary
    .venv/bin/python bench/bench_worst_case.py --url http://127.0.0.1:8000   # also a running server

Run it on an otherwise idle machine: each time is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from embeddings.tokenizer import TOKENIZERS, nfkc_rewriting  # noqa: E402
from embeddings.vocabulary import Vocabulary  # noqa: E402
from service.errors import ApiError  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.validation import Limits, decode_json, texts_from_predict  # noqa: E402

TARGET_TEXT_S = 0.050
TARGET_REQUEST_S = 0.5
WORDS = "the a film movie good bad great awful plot acting was is not it this and".split()


def _fill(unit: str, chars: int) -> str:
    """Repeat ``unit`` to exactly ``chars`` characters."""
    return (unit * (chars // len(unit) + 1))[:chars]


def _within(unit: str, max_chars: int) -> str:
    """Repeat ``unit`` to the longest text whose NFKC-expanded length stays within ``max_chars``."""
    per_char = nfkc_rewriting(unit).normalized_length(unit) / len(unit)
    text = _fill(unit, int(max_chars / per_char))
    while nfkc_rewriting(text).normalized_length(text) > max_chars:
        text = text[:-1]
    return text


def worst_texts(max_chars: int, seed: int = 0) -> dict[str, str]:
    """Return the adversarial texts, each the longest the per-text limit accepts."""
    rng = random.Random(seed)
    pieces = ["\ufdfa", "\u3316", "a ", "!", "<", "<b>", "\u0301\u0316", "😀", "Σ.", "ｶﾞ", "\u2a0c", " "]
    mixed = "".join(rng.choice(pieces) for _ in range(2000))
    return {
        "words 'a ' (most tokens)": _fill("a ", max_chars),
        "'!' (a token per character)": _fill("!", max_chars),
        "'Σa.a:' (no cut but after Σ)": _fill("Σa.a:", max_chars),
        "U+FDFA (NFKC x18)": _within("\ufdfa", max_chars),
        "U+FDFA + space": _within("\ufdfa ", max_chars),
        "U+3316 (slowest NFKC, one word)": _within("\u3316", max_chars),
        "U+2A0C (NFKC x4, no tokens)": _within("\u2a0c", max_chars),
        "alternating combining marks": "a" + _fill("\u0301\u0316", max_chars - 1),
        "Zalgo words": _fill("z" + "\u0301\u0316\u0334" * 12 + " ", max_chars),
        "'<' run (v1 tag scan)": _fill("<", max_chars),
        "'<a ' + 200 chars (v2 tag scan)": _fill("<a " + "x " * 100, max_chars),
        "'<b>' tags": _fill("<b>", max_chars),
        "emoji": _fill("😀", max_chars),
        "one word without spaces": _fill("a", max_chars),
        "halfwidth katakana + voiced mark": _fill("ｶﾞ", max_chars),
        "Hangul jamo": _fill("\u1100\u1161\u11a8", max_chars),
        "random mix of the above": _within(mixed, max_chars),
        "review-like words": " ".join(rng.choice(WORDS) for _ in range(max_chars))[:max_chars],
    }


@dataclass(frozen=True)
class Timing:
    """The best and worst of several timed runs of one body, and whether the limits refused it."""

    best_s: float
    worst_s: float
    texts: int
    body_bytes: int
    refused: str | None


def body_for(texts: list[str]) -> bytes:
    """Return the JSON body a client sends (UTF-8, the most characters per byte)."""
    return json.dumps({"texts": texts}, ensure_ascii=False).encode("utf-8")


def largest_requests(text: str, settings: Settings) -> list[list[str]]:
    """Return the candidate worst requests for one kind of text: many shorter copies, or fewer whole ones."""
    requests = []
    per_char = len(text.encode("utf-8")) / max(1, len(text))
    budget = settings.max_body_bytes - 64
    for chars in sorted({len(text), int(budget / settings.max_texts_per_request / per_char) - 8}):
        piece = text[: max(1, chars)]
        if not piece.strip():
            continue
        count = min(settings.max_texts_per_request, budget // (len(piece.encode("utf-8")) + 4))
        produced = nfkc_rewriting(piece).produced
        if produced:
            count = min(count, max(1, settings.max_nfkc_rewritten_chars // produced))
        requests.append([piece] * max(1, int(count)))
    return requests


def time_body(body: bytes, vocab: Vocabulary, limits: Limits, repeat: int) -> Timing:
    """Time validation + encoding of one request body, as a worker runs them (best of ``repeat``)."""
    runs, refused, count = [], None, 0
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            texts = texts_from_predict(decode_json(body), limits)
            vocab.encode_many(texts)
            count = len(texts)
        except ApiError as exc:
            refused = exc.code
        runs.append(time.perf_counter() - started)
    return Timing(min(runs), max(runs), count, len(body), refused)


def vocabularies(model_dir: Path | None, model_name: str) -> dict[str, Vocabulary]:
    """Return the vocabularies to time: the production one, or a full-size stand-in per tokenizer version."""
    if model_dir is not None:
        from registry.artifact import Artifact
        from registry.store import Registry

        artifact = Artifact.open(Registry(model_dir).production_dir(model_name))
        vocab = artifact.vocabulary()
        return {f"{model_name} v{artifact.version} (tokenizer {vocab.tokenizer.version})": vocab}
    out = {}
    for version, tokenizer in TOKENIZERS.items():
        tokens = [tokenizer.tokenize(" ".join(WORDS))]
        out[f"tokenizer v{version}, max_len 600"] = Vocabulary.build(
            tokens, min_count=1, max_len=600, head=150, tokenizer=tokenizer
        )
    return out


def run(settings: Settings, vocabs: dict[str, Vocabulary], repeat: int, requests: bool = True) -> dict:
    """Time every worst text alone and in its largest requests, with every vocabulary."""
    limits = Limits(
        settings.max_texts_per_request, settings.max_text_chars, settings.max_nfkc_rewritten_chars
    )
    results: dict = {}
    for vocab_name, vocab in vocabs.items():
        rows = {}
        for kind, text in worst_texts(settings.max_text_chars).items():
            one = time_body(body_for([text]), vocab, limits, repeat)
            row = {"chars": len(text), "text_s": one.best_s, "text_refused": one.refused}
            if requests:
                timed = [
                    time_body(body_for(r), vocab, limits, repeat) for r in largest_requests(text, settings)
                ]
                worst = max(timed, key=lambda t: t.best_s)
                row.update(
                    request_s=worst.best_s,
                    request_texts=worst.texts,
                    request_bytes=worst.body_bytes,
                    request_refused=worst.refused,
                )
            rows[kind] = row
        results[vocab_name] = rows
    return results


def time_server(url: str, settings: Settings, repeat: int) -> dict:
    """POST the largest request of each kind to a running service (loopback only); return latency, status."""
    if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"--url must be a loopback address, not {url}")
    out = {}
    for kind, text in worst_texts(settings.max_text_chars).items():
        body = body_for(max(largest_requests(text, settings), key=lambda r: sum(map(len, r))))
        best, status = float("inf"), None
        for _ in range(repeat):
            request = urllib.request.Request(
                url.rstrip("/") + "/v1/predict", data=body, headers={"Content-Type": "application/json"}
            )
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    response.read()
                    status = response.status
            except urllib.error.HTTPError as exc:
                exc.read()
                status = exc.code
            best = min(best, time.perf_counter() - started)
        out[kind] = {"seconds": best, "status": status, "bytes": len(body)}
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the worst time per text and per request; exit 1 if a target is missed."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        help="time the production vocabulary of this registry "
        "(default: a 600-token stand-in for each tokenizer version)",
    )
    p.add_argument("--model-name", default="sentiment", help="model name in the registry (with --model-dir)")
    p.add_argument("--repeat", type=int, default=3, help="runs per body; the best one counts")
    p.add_argument("--url", help="also POST the worst requests to a service running on this loopback URL")
    p.add_argument(
        "--json",
        type=Path,
        default=PROJECT_ROOT / "bench/results/worst_case.json",
        help="where to write the results as JSON",
    )
    args = p.parse_args(argv)
    settings = Settings.from_env()
    results = run(settings, vocabularies(args.model_dir, args.model_name), args.repeat)
    worst_text = worst_request = 0.0
    for vocab_name, rows in results.items():
        print(f"\n{vocab_name}: seconds of one worker (best of {args.repeat})")
        print(f"{'input':36} {'chars':>6} {'per text':>9} {'request':>9} {'texts':>5} {'MB':>5}  refused")
        for kind, row in rows.items():
            refused = row["text_refused"] or row["request_refused"] or ""
            print(
                f"{kind:36} {row['chars']:6d} {row['text_s']:9.4f} {row['request_s']:9.4f} "
                f"{row['request_texts']:5d} {row['request_bytes'] / 1e6:5.2f}  {refused}"
            )
            worst_text, worst_request = max(worst_text, row["text_s"]), max(worst_request, row["request_s"])
    print(
        f"\nworst per text: {worst_text * 1000:.1f} ms (target {TARGET_TEXT_S * 1000:.0f} ms); "
        f"worst per request: {worst_request:.3f} s (target {TARGET_REQUEST_S} s)"
    )
    doc = {"in_process": results, "worst_text_s": worst_text, "worst_request_s": worst_request}
    if args.url:
        doc["server"] = time_server(args.url, settings, args.repeat)
        print(f"\nthrough {args.url} (best of {args.repeat}, client-side latency):")
        for kind, row in doc["server"].items():
            print(f"{kind:36} {row['seconds']:8.3f} s  HTTP {row['status']}  {row['bytes'] / 1e6:.2f} MB")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2))
    return 0 if worst_text <= TARGET_TEXT_S and worst_request <= TARGET_REQUEST_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
