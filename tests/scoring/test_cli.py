"""End to end through ``scoring.cli.main``: formats, bad rows, summaries, fail-fast errors, reruns."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from registry.store import Registry
from scoring.cli import build_parser, main
from scoring.writer import MANIFEST_FILE, SUMMARY_FILE, read_output
from tests.fakes import make_random_version
from tests.scoring.conftest import MESSY_ERRORS, cli_args, write_input


def _expected_errors(n: int, fmt: str) -> list[str | None]:
    errors: list[str | None] = [None] * n
    for row, code in MESSY_ERRORS.items():
        errors[row] = code
    if fmt.startswith("csv"):
        errors[10] = "null_text"  # CSV cannot tell an empty field from a missing one
    return errors


@pytest.mark.parametrize("fmt", ["parquet", "csv.gz", "jsonl", "folder"])
def test_scores_every_format_and_reports_bad_rows(
    tmp_path: Path, registry: Registry, messy: pd.DataFrame, fmt: str
) -> None:
    if fmt == "folder":  # three JSON Lines parts, one of them gzipped
        source = tmp_path / "in"
        write_input(messy.iloc[:90], source / "a.jsonl")
        write_input(messy.iloc[90:100], source / "b.jsonl.gz")
        write_input(messy.iloc[100:], source / "c.jsonl")
    else:
        source = write_input(messy, tmp_path / f"in.{fmt}")
    out = tmp_path / "out"

    assert main(cli_args(source, out, registry)) == 0

    scored = read_output(out)
    assert scored.columns.tolist() == ["id", "probability", "score", "label", "model_version", "error"]
    assert scored["score"].equals(scored["probability"])  # the deprecated name, kept for one release
    assert scored["id"].tolist() == messy["id"].tolist()  # nothing lost, nothing reordered
    expected = _expected_errors(len(messy), fmt)
    assert [None if pd.isna(e) else e for e in scored["error"]] == expected
    ok = scored["error"].isna()
    assert scored.loc[ok, "probability"].between(0, 1).all() and scored.loc[~ok, "probability"].isna().all()
    assert set(scored.loc[ok, "label"]) <= {"positive", "negative"} and scored.loc[~ok, "label"].isna().all()

    summary = json.loads((out / SUMMARY_FILE).read_text())
    n_bad = sum(e is not None for e in expected)
    assert summary["rows_read"] == len(messy)
    assert summary["rows_scored"] == len(messy) - n_bad and summary["rows_errored"] == n_bad
    assert sum(summary["errors"].values()) == n_bad
    assert summary["labels"] == scored.loc[ok, "label"].value_counts().to_dict()
    assert summary["model"]["version"] == 1 and summary["complete"] is True
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert [p["start"] for p in manifest["parts"]] == list(range(0, len(messy), 64))


def test_keep_columns_and_csv_output(tmp_path: Path, registry: Registry, reviews: pd.DataFrame) -> None:
    frame = reviews.assign(id=[f"{i:03d}" for i in range(len(reviews))])  # leading zeros must survive
    source = write_input(frame, tmp_path / "in.csv")
    out = tmp_path / "out"
    assert main(cli_args(source, out, registry, "--keep-columns", "--format", "csv")) == 0
    assert sorted(p.name for p in out.glob("part-*")) == [
        "part-00000.csv",
        "part-00001.csv",
        "part-00002.csv",
        "part-00003.csv",
    ]
    scored = read_output(out)
    assert scored.columns.tolist() == [
        "id",
        "rating",
        "input_label",
        "text",
        "probability",
        "score",
        "label",
        "model_version",
        "error",
    ]
    assert scored["id"].tolist() == frame["id"].tolist()
    assert scored["text"].tolist() == frame["text"].tolist()
    assert scored["input_label"].astype(int).tolist() == frame["label"].tolist()


def test_rerun_is_idempotent_and_other_jobs_are_refused(
    tmp_path: Path, registry: Registry, reviews: pd.DataFrame, capsys: pytest.CaptureFixture
) -> None:
    source = write_input(reviews, tmp_path / "in.parquet")
    out = tmp_path / "out"
    assert main(cli_args(source, out, registry)) == 0
    parts = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")}
    first = read_output(out)

    assert main(cli_args(source, out, registry)) == 0  # already complete: nothing rewritten
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")} == parts

    make_random_version(registry, "sentiment", seed=1, promote=False)
    capsys.readouterr()
    assert main(cli_args(source, out, registry, "--model-version", "2")) == 2
    assert "model.version: 1 -> 2" in capsys.readouterr().err
    pd.testing.assert_frame_equal(read_output(out), first)  # refused: untouched

    write_input(reviews.iloc[:-1], source)  # same path, different data
    assert main(cli_args(source, out, registry)) == 2
    assert "input.fingerprint" in capsys.readouterr().err

    assert main(cli_args(source, out, registry, "--model-version", "2", "--overwrite")) == 0
    again = read_output(out)
    assert len(again) == len(reviews) - 1 and (again["model_version"] == 2).all()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_input", "does not exist"),
        ("missing_text_column", "no column 'review'"),
        ("missing_id_column", "no column 'key'"),
        ("unknown_version", "has no version 9"),
        ("no_registry", "has no production version"),
        ("unreadable", "cannot read"),
        ("bad_flag", "--chunk-size must be at least 1"),
        ("output_inside_input", "inside the input folder"),
    ],
)
def test_fails_fast_without_writing(
    tmp_path: Path,
    registry: Registry,
    reviews: pd.DataFrame,
    capsys: pytest.CaptureFixture,
    case: str,
    message: str,
) -> None:
    source = write_input(reviews, tmp_path / "in.parquet")
    out = tmp_path / "out"
    args = cli_args(source, out, registry)
    if case == "missing_input":
        args[1] = str(tmp_path / "absent.parquet")
    elif case == "missing_text_column":
        args += ["--text-column", "review"]
    elif case == "missing_id_column":
        args += ["--id-column", "key"]
    elif case == "unknown_version":
        args += ["--model-version", "9"]
    elif case == "no_registry":
        args[5] = str(tmp_path / "no-models")
    elif case == "unreadable":
        source.write_bytes(b"PAR1 garbage")
    elif case == "bad_flag":
        args += ["--chunk-size", "0"]
    elif case == "output_inside_input":
        args[1] = str(write_input(reviews, tmp_path / "in" / "a.parquet").parent)
        out = tmp_path / "in" / "scored"
        args[3] = str(out)

    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not out.exists()


def test_help_documents_every_flag(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in build_parser()._actions:
        assert action.help, action.option_strings
        for flag in action.option_strings:
            assert flag in text


def test_scorer_never_imports_tensorflow_or_flask() -> None:
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT

    code = (
        "import sys, scoring.cli, scoring.job, scoring.engines, distributed; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'flask') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_relative_paths_are_made_absolute_by_the_client(
    tmp_path: Path, reviews: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = tmp_path / "client"
    write_input(reviews, client / "data" / "in.csv")
    make_random_version(Registry(client / "models"), "sentiment")
    monkeypatch.chdir(client)
    assert (
        main(
            [
                "--input",
                "data/in.csv",
                "--output",
                "scored",
                "--model-dir",
                "models",
                "--workers",
                "1",
                "--max-chars",
                "20000",
                "--quiet",
            ]
        )
        == 0
    )
    manifest = json.loads((client / "scored" / MANIFEST_FILE).read_text())
    assert manifest["job"]["input"]["path"] == str(client / "data" / "in.csv")
    assert manifest["job"]["model"]["path"] == str(client / "models" / "sentiment" / "1")
    assert json.loads((client / "scored" / SUMMARY_FILE).read_text())["output"] == str(client / "scored")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("8MiB", 8 * 2**20),
        ("500kB", 500_000),
        ("1048576", 2**20),
        ("1.5 GiB", 3 * 2**29),
        ("64mb", 64_000_000),
    ],
)
def test_partition_size_accepts_units(text: str, size: int) -> None:
    assert (
        build_parser().parse_args(["--input", "a", "--output", "b", "--partition-size", text]).partition_size
        == size
    )


def test_registry_url_survives_the_shared_registry_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_MODEL_DIR", "s3://bucket/models")  # Path would make it s3:/bucket/models
    args = build_parser().parse_args(["--input", "a", "--output", "b"])
    assert (args.registry_root, args.model_version) == ("s3://bucket/models", "production")
    flags = ["--input", "a", "--output", "b", "--model-dir", "s3://other/m", "--model-version", "2"]
    args = build_parser().parse_args(flags)
    assert (args.registry_root, args.model_version) == ("s3://other/m", 2)


def test_bad_partition_size_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--input", "a", "--output", "b", "--partition-size", "12 parsecs"])
    assert exit_info.value.code == 2 and "--partition-size" in capsys.readouterr().err
    assert main(["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--partition-size", "0"]) == 2
    assert "--partition-size must be at least 1" in capsys.readouterr().err


def test_a_part_that_fails_is_one_line_and_the_output_resumes(
    tmp_path: Path, registry: Registry, capsys: pytest.CaptureFixture
) -> None:
    # The id column is an integer in the first 1,000 records (the sample), text from row 1,300 on.
    rows = [{"id": i if i < 1_300 else f"x{i}", "text": "a good film"} for i in range(1_500)]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out"
    capsys.readouterr()

    assert main(cli_args(source, out, registry, "--chunk-size", "500")) == 1

    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert (
        err.startswith("error: part 2 (rows 1000-1499) failed on a local scoring process")
        and "column 'id' holds values that are not int64" in err
        and "rerun the same command to resume" in err
    ), err
    assert sorted(json.loads((out / MANIFEST_FILE).read_text())["parts"][i]["part"] for i in range(2)) == [
        0,
        1,
    ]
