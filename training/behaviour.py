"""Behavioural tests of a model, CheckList-style: pass rates per capability, and a regression gate.

Accuracy on held-out reviews says little about "not bad at all" or "the acting was superb". The
suite (``training/behaviour_suite.json``, versioned) states such expectations as three kinds of
test (Ribeiro et al. 2020):

- MFT (minimum functionality): every text must get the expected label, or, for "not negative" /
  "not positive", stay out of the other side (CheckList's reading of a binary model: a probability
  within 1/6 of 0.5 is neutral, so "not negative" means p >= 1/3; "the plot was not terrible at
  all" need not be praise);
- INV (invariance): a text and its perturbations (a neutral sentence, another name, a typo) must
  get the same label;
- DIR (directional): the second text of a pair must score at least as far in a direction as the
  first (an intensifier must not weaken a sentiment), within a tolerance.

:func:`run_suite` scores any ``texts -> probabilities`` function, so it runs on a Predictor (the
service's exact path) and needs no TensorFlow. Every version's manifest and report carry its
result; :func:`regression` is the retraining gate's check.

    python -m training.behaviour --model-dir models                         # production, per capability
    python -m training.behaviour --model-dir models --model-version 3 --show-failures 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from registry.cli import HelpFormatter, add_registry_arguments, configure_logging

log = logging.getLogger(__name__)

DEFAULT_SUITE = Path(__file__).resolve().parent / "behaviour_suite.json"
TYPES = ("MFT", "INV", "DIR")
#: What an MFT may expect, and the probabilities that meet it (CheckList's neutral band for binary models).
EXPECTATIONS: dict[str, Callable[[float], bool]] = {
    "positive": lambda p: p >= 0.5,
    "negative": lambda p: p < 0.5,
    "not negative": lambda p: p >= 1 / 3,
    "not positive": lambda p: p <= 2 / 3,
}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")

Scorer = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class Case:
    """One checkable expectation: its texts and how their scores must relate."""

    test: str
    capability: str
    kind: str  # MFT | INV | DIR
    texts: tuple[str, ...]
    expect: str | None = None  # MFT: a key of EXPECTATIONS
    direction: str | None = None  # DIR: up | down
    tolerance: float = 0.0  # DIR: allowed move against the direction

    def passes(self, scores: Sequence[float]) -> bool:
        """Return whether the scores of this case's texts meet its expectation."""
        positive = [s >= 0.5 for s in scores]
        if self.kind == "MFT":
            return all(EXPECTATIONS[self.expect](s) for s in scores)
        if self.kind == "INV":
            return len(set(positive)) == 1
        before, after = scores
        return (
            after >= before - self.tolerance if self.direction == "up" else after <= before + self.tolerance
        )


def load_suite(path: str | Path = DEFAULT_SUITE) -> dict:
    """Read and check a suite file; a malformed test fails here with its name, not mid-run."""
    suite = json.loads(Path(path).read_text(encoding="utf-8"))
    for key in ("name", "version", "lexicon", "tests"):
        if key not in suite:
            raise ValueError(f"{path}: behaviour suite lacks {key!r}")
    for test in suite["tests"]:
        where = f"{path}: test {test.get('name')!r}"
        if test.get("type") not in TYPES:
            raise ValueError(f"{where}: type must be one of {TYPES}")
        if test["type"] == "MFT" and test.get("expect") not in EXPECTATIONS:
            raise ValueError(f"{where}: an MFT needs expect: one of {', '.join(EXPECTATIONS)}")
        if test["type"] == "DIR" and test.get("direction") not in ("up", "down"):
            raise ValueError(f"{where}: a DIR test needs direction: up or down")
        for template in _templates_of(test):
            unknown = set(_PLACEHOLDER.findall(template)) - set(suite["lexicon"])
            if unknown:
                raise ValueError(f"{where}: placeholders {sorted(unknown)} are not in the lexicon")
    return suite


def _templates_of(test: dict) -> list[str]:
    texts = list(test.get("templates", [])) + list(test.get("texts", []))
    for group in test.get("pairs", []) + test.get("groups", []):
        texts += group
    return texts


def _fillings(templates: Sequence[str], lexicon: dict, fixed: Sequence[str] = ()) -> list[dict]:
    """Return every assignment of the templates' placeholders (except ``fixed`` ones)."""
    names = sorted({n for t in templates for n in _PLACEHOLDER.findall(t)} - set(fixed))
    return [dict(zip(names, values)) for values in itertools.product(*(lexicon[n] for n in names))]


def _fill(template: str, values: dict) -> str:
    """Return the template with the given placeholders filled (others left as they are)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _sample(items: list, limit: int | None, rng: np.random.Generator) -> list:
    """Return at most ``limit`` items, a seeded sample in their original order."""
    if limit is None or len(items) <= limit:
        return items
    return [items[i] for i in np.sort(rng.choice(len(items), limit, replace=False))]


def add_typo(text: str, rng: np.random.Generator) -> str:
    """Return ``text`` with two adjacent letters of one word (of 4+ letters) swapped."""
    words = [m for m in re.finditer(r"[A-Za-z]{4,}", text)]
    if not words:
        return text
    word = words[int(rng.integers(len(words)))]
    i = word.start() + int(rng.integers(1, len(word.group()) - 2))  # keep first and last letter
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def expand(suite: dict) -> list[Case]:
    """Turn the suite's tests into concrete cases (deterministic for a suite file)."""
    lexicon = suite["lexicon"]
    cases: list[Case] = []
    for test in suite["tests"]:
        rng = np.random.default_rng([int(suite.get("seed", 0)), zlib.crc32(test["name"].encode())])
        limit = test.get("max_cases")
        common = {"test": test["name"], "capability": test["capability"], "kind": test["type"]}
        if test["type"] == "MFT":
            generated = [(_fill(t, v),) for t in test.get("templates", []) for v in _fillings([t], lexicon)]
            groups = [(t,) for t in test.get("texts", [])] + _sample(generated, limit, rng)
            cases += [Case(**common, texts=g, expect=test["expect"]) for g in groups]
        elif test["type"] == "DIR":
            pairs = [
                tuple(_fill(t, v) for t in pair) for pair in test["pairs"] for v in _fillings(pair, lexicon)
            ]
            cases += [
                Case(
                    **common, texts=p, direction=test["direction"], tolerance=float(test.get("tolerance", 0))
                )
                for p in _sample(pairs, limit, rng)
            ]
        else:
            vary = test.get("vary")
            groups = []
            for group in test["groups"]:
                for values in _fillings(group, lexicon, fixed=[vary] if vary else []):
                    texts = [_fill(t, values) for t in group]
                    if vary:
                        texts = [_fill(t, {vary: v}) for t in texts for v in lexicon[vary]]
                    groups.append(texts)
            groups = _sample(groups, limit, rng)
            if test.get("typos"):
                groups = [[g[0]] + [add_typo(g[0], rng) for _ in range(int(test["typos"]))] for g in groups]
            cases += [Case(**common, texts=tuple(g)) for g in groups]
    return cases


def run_suite(score: Scorer, suite: dict | None = None, *, keep_failures: int = 3) -> dict:
    """Score every case in one call and return pass rates per test, per capability and overall."""
    suite = suite or load_suite()
    cases = expand(suite)
    texts = sorted({t for c in cases for t in c.texts})
    scores = dict(zip(texts, np.asarray(score(texts), dtype=np.float64).tolist()))
    tests: dict[str, dict] = {}
    for case in cases:
        row = tests.setdefault(
            case.test,
            {"capability": case.capability, "type": case.kind, "cases": 0, "passed": 0, "failures": []},
        )
        case_scores = [scores[t] for t in case.texts]
        row["cases"] += 1
        if case.passes(case_scores):
            row["passed"] += 1
        elif len(row["failures"]) < keep_failures:
            row["failures"].append({t: round(s, 4) for t, s in zip(case.texts, case_scores)})
    capabilities: dict[str, dict] = {}
    for row in tests.values():
        row["pass_rate"] = row["passed"] / row["cases"]
        cap = capabilities.setdefault(row["capability"], {"cases": 0, "passed": 0})
        cap["cases"] += row["cases"]
        cap["passed"] += row["passed"]
    for cap in capabilities.values():
        cap["pass_rate"] = cap["passed"] / cap["cases"]
    passed = sum(c["passed"] for c in capabilities.values())
    total = sum(c["cases"] for c in capabilities.values())
    return {
        "suite": suite["name"],
        "suite_version": suite["version"],
        "cases": total,
        "passed": passed,
        "pass_rate": passed / total if total else 0.0,
        "capabilities": capabilities,
        "tests": tests,
    }


def pass_rates(report: dict) -> dict[str, float]:
    """Return a report's pass rates, overall and per capability (what the gate compares and records)."""
    return {"overall": report["pass_rate"], **{k: c["pass_rate"] for k, c in report["capabilities"].items()}}


def regression(candidate: dict, production: dict, max_drop: float) -> tuple[bool, str]:
    """Return (ok, reason): a candidate may lose at most ``max_drop`` of pass rate on any capability.

    ``max_drop`` is a fraction (0.05 = 5 points), checked overall and per capability; reports of
    different suite versions are not comparable and fail the check.
    """
    if (candidate["suite"], candidate["suite_version"]) != (production["suite"], production["suite_version"]):
        return False, (
            f"behaviour suites differ ({candidate['suite']} v{candidate['suite_version']} vs "
            f"{production['suite']} v{production['suite_version']}); score both with one suite"
        )
    after, before = pass_rates(candidate), pass_rates(production)
    drops = {name: rate - after.get(name, 0.0) for name, rate in before.items()}
    worst = max(drops, key=drops.get)
    overall = f"overall {100 * after['overall']:.1f} % vs {100 * before['overall']:.1f} %"
    if drops[worst] > max_drop + 1e-12:
        return False, (
            f"behaviour pass rate on {worst} dropped {100 * drops[worst]:.1f} points "
            f"(tolerance {100 * max_drop:.1f}); {overall}"
        )
    return True, (
        f"behaviour pass rates within {100 * max_drop:.1f} points of production ({overall}; "
        f"largest drop {100 * drops[worst]:+.1f} points on {worst})"
    )


def run_on_version(path: str | Path, suite: dict | None = None, *, keep_failures: int = 3) -> dict:
    """Run the suite on a registry version directory through the service's own Predictor."""
    from inference.predictor import Predictor

    return run_suite(Predictor.load(path).score_texts, suite, keep_failures=keep_failures)


def markdown_table(report: dict) -> str:
    """Return the per-capability pass rates as a Markdown table (for version and run reports)."""
    lines = [
        f"Behavioural suite `{report['suite']}` v{report['suite_version']}: "
        f"**{100 * report['pass_rate']:.1f} %** of {report['cases']} cases pass.",
        "",
        "| capability | cases | pass rate |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {name} | {cap['cases']} | {100 * cap['pass_rate']:.1f} % |"
        for name, cap in report["capabilities"].items()
    ]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """Return the CLI parser."""
    parser = argparse.ArgumentParser(
        prog="python -m training.behaviour", description=__doc__.split("\n")[0], formatter_class=HelpFormatter
    )
    add_registry_arguments(parser, version_help="version to test: a number, or 'production'")
    parser.add_argument("--suite", type=Path, default=DEFAULT_SUITE, help="behaviour suite JSON file")
    parser.add_argument(
        "--show-failures",
        type=int,
        default=0,
        metavar="N",
        help="print up to N failing cases per test (their texts and scores)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite on one registry version and print the report as JSON; exit 2 on bad input."""
    args = build_parser().parse_args(argv)
    configure_logging()
    from registry.store import Registry, RegistryError

    registry = Registry(args.registry_root)
    try:
        version = registry.resolve_version(args.model_name, args.model_version)
        report = run_on_version(
            registry.version_dir(args.model_name, version),
            load_suite(args.suite),
            keep_failures=args.show_failures,
        )
    except (ValueError, OSError, RegistryError) as exc:
        log.error("%s", exc)
        return 2
    if not args.show_failures:
        for row in report["tests"].values():
            row.pop("failures")
    print(json.dumps({"model": args.model_name, "version": version, **report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
