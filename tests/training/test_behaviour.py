"""The behavioural suite: expansion, pass/fail logic of each test type, and the regression gate."""

import json

import numpy as np
import pytest

from tests.cli_help import undocumented_arguments
from training.behaviour import (
    Case,
    add_typo,
    build_parser,
    expand,
    load_suite,
    main,
    markdown_table,
    regression,
    run_suite,
)


def keyword_scorer(texts):
    """A 'model' that reads only a few words: enough to pass some tests and fail others."""
    out = []
    for t in texts:
        low = t.lower()
        score = (
            0.5
            + 0.3 * any(w in low for w in ("good", "great", "superb", "loved"))
            - 0.3 * any(w in low for w in ("bad", "awful", "hated", "terrible"))
        )
        out.append(score + (0.05 if "not" in low.split() else 0.0))
    return np.array(out)


def test_shipped_suite_expands_deterministically_into_every_capability():
    suite = load_suite()
    first, second = expand(suite), expand(suite)
    assert first == second
    capabilities = {c.capability for c in first}
    assert {"negation", "contrast", "intensifiers", "neutral words", "names", "typos"} <= capabilities
    assert any(c.texts == ("not bad at all",) and c.expect == "positive" for c in first)
    assert any(c.texts == ("the acting was superb",) and c.expect == "positive" for c in first)
    assert not any("{" in t for c in first for t in c.texts)  # every placeholder filled


def test_case_logic_per_type():
    mft = Case("t", "c", "MFT", ("a",), expect="positive")
    assert mft.passes([0.7]) and not mft.passes([0.3])
    # CheckList's neutral band: "not negative" accepts a neutral 0.4, not a negative 0.3.
    lenient = Case("t", "c", "MFT", ("a", "b"), expect="not negative")
    assert lenient.passes([0.34, 0.9]) and not lenient.passes([0.9, 0.3])
    assert Case("t", "c", "MFT", ("a",), expect="not positive").passes([0.6])
    inv = Case("t", "c", "INV", ("a", "b", "c"))
    assert inv.passes([0.6, 0.9, 0.51]) and not inv.passes([0.6, 0.4, 0.9])
    up = Case("t", "c", "DIR", ("a", "b"), direction="up", tolerance=0.02)
    assert up.passes([0.8, 0.79]) and not up.passes([0.8, 0.7])
    down = Case("t", "c", "DIR", ("a", "b"), direction="down", tolerance=0.0)
    assert down.passes([0.3, 0.2]) and not down.passes([0.3, 0.31])


def test_run_suite_counts_passes_per_capability():
    report = run_suite(keyword_scorer)
    caps = report["capabilities"]
    # The keyword scorer ignores negation: "not bad" stays negative, "not good" stays positive.
    assert caps["negation"]["pass_rate"] < 0.5
    assert caps["names"]["pass_rate"] == 1.0  # names are not keywords
    assert report["cases"] == sum(c["cases"] for c in caps.values())
    assert 0 < report["pass_rate"] < 1
    assert "| negation |" in markdown_table(report)
    failing = report["tests"]["negated negative reads positive"]["failures"]
    assert failing and all(score < 0.5 for case in failing for score in case.values())


def test_regression_gate_refuses_a_capability_drop():
    production = run_suite(keyword_scorer)
    assert regression(production, production, 0.0)[0]
    # A candidate that flips everything containing a name: the names capability collapses.
    worse = run_suite(
        lambda ts: np.where([("Maria" in t) for t in ts], 1 - keyword_scorer(ts), keyword_scorer(ts))
    )
    ok, reason = regression(worse, production, 0.05)
    assert not ok and "names" in reason
    other_version = {**production, "suite_version": production["suite_version"] + 1}
    assert not regression(other_version, production, 1.0)[0]


def test_typo_keeps_first_and_last_letters():
    rng = np.random.default_rng(0)
    typo = add_typo("The soundtrack was wonderful.", rng)
    assert typo != "The soundtrack was wonderful." and sorted(typo) == sorted("The soundtrack was wonderful.")
    assert add_typo("a b c", rng) == "a b c"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.update(type="XYZ"), "type must be"),
        (lambda t: t.update(expect="fine"), "an MFT needs expect"),
        (lambda t: t.update(templates=["The {nope} was good."]), "not in the lexicon"),
    ],
)
def test_malformed_suite_fails_with_the_test_name(tmp_path, change, message):
    suite = load_suite()
    change(suite["tests"][0])
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(ValueError, match=message):
        load_suite(path)


def test_cli_scores_a_registry_version(fake_registry, capsys):
    assert main(["--model-dir", str(fake_registry.root), "--show-failures", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == 1 and report["cases"] > 400
    assert main(["--model-dir", str(fake_registry.root), "--model-version", "9"]) == 2
    assert undocumented_arguments(build_parser()) == []
