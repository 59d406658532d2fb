"""Per-process JSONL files: whole files published, orphans of killed processes recovered, bounds kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from service import rotating_log
from service.rotating_log import OPEN_DIR, RotatingLog

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def lines(folder: Path) -> list[dict]:
    """Return every record of the published files of ``folder``, oldest file first."""
    return [json.loads(line) for p in sorted(folder.glob("*.jsonl")) for line in p.read_text().splitlines()]


def open_files(folder: Path) -> list[Path]:
    return sorted((folder / OPEN_DIR).iterdir())


def make(folder: Path, **kw) -> RotatingLog:
    options = {"prefix": "feedback", "rotate_bytes": 1 << 20, "rotate_s": 3600.0, "durable": True, **kw}
    return RotatingLog(folder, **options)


def test_nothing_is_published_until_rotation_then_the_whole_file_at_once(tmp_path):
    log = make(tmp_path)
    log.append([{"i": 1}, {"i": 2}])
    log.append([{"i": 3}])
    assert list(tmp_path.glob("*.jsonl")) == []  # the reader's folder shows nothing in progress
    assert len(open_files(tmp_path)) == 1
    published = log.close()
    assert published is not None and published.parent == tmp_path
    assert lines(tmp_path) == [{"i": 1}, {"i": 2}, {"i": 3}]
    assert open_files(tmp_path) == []
    assert log.close() is None  # nothing open: nothing to publish, never an empty file


def test_rotation_by_size_and_by_age(tmp_path):
    now = [1000.0]
    log = make(tmp_path, rotate_bytes=60, rotate_s=10.0, clock=lambda: now[0])
    log.append([{"text": "x" * 30}])
    assert list(tmp_path.glob("*.jsonl")) == []
    log.append([{"text": "y" * 30}])  # past 60 bytes: published with the append
    assert len(list(tmp_path.glob("*.jsonl"))) == 1
    log.append([{"text": "z"}])
    assert log.rotate_if_due() is None  # young
    now[0] += 10.0
    assert log.rotate_if_due() is not None
    assert [r["text"][0] for r in lines(tmp_path)] == ["x", "y", "z"]
    names = sorted(p.name for p in tmp_path.glob("*.jsonl"))
    assert all(n.startswith("feedback-") and f"-{os.getpid()}-" in n for n in names)


def test_texts_are_ascii_escaped_lines(tmp_path):
    log = make(tmp_path)
    log.append([{"text": "line\nbreak \u2028 caf\u00e9 \U0001f600"}])
    path = log.close()
    raw = path.read_bytes()
    assert raw.count(b"\n") == 1 and raw.isascii()
    assert json.loads(raw)["text"] == "line\nbreak \u2028 caf\u00e9 \U0001f600"


def test_a_failed_append_is_cut_off_and_raises(tmp_path, monkeypatch):
    log = make(tmp_path)
    log.append([{"i": 1}])
    real_write = os.write

    def half_then_fail(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rotating_log.os, "write", half_then_fail)
    with pytest.raises(OSError):
        log.append([{"i": 2, "pad": "x" * 100}])
    monkeypatch.setattr(rotating_log.os, "write", real_write)
    log.append([{"i": 3}])
    log.close()
    assert lines(tmp_path) == [{"i": 1}, {"i": 3}]  # no torn half-line between them


WRITER = textwrap.dedent(
    """
    import sys, time
    from service.rotating_log import RotatingLog
    log = RotatingLog(sys.argv[1], prefix="feedback", rotate_bytes=1 << 30, rotate_s=3600, durable=True)
    i = 0
    while True:
        log.append([{"i": i, "text": "some words " * 20}])
        print(i, flush=True)  # acknowledged: the line is fsynced
        i += 1
        if len(sys.argv) > 2:
            time.sleep(float(sys.argv[2]))
    """
)


def start_writer(folder: Path, pause: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), *([pause] if pause else [])],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def acknowledged(process: subprocess.Popen, at_least: int) -> list[int]:
    acked = []
    while len(acked) < at_least:
        acked.append(int(process.stdout.readline()))
    return acked


def test_the_open_file_of_a_sigkilled_process_is_recovered_with_every_acknowledged_line(tmp_path):
    writer = start_writer(tmp_path)
    try:
        acked = acknowledged(writer, 200)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    acked += [int(x) for x in writer.stdout.read().split()]
    assert list(tmp_path.glob("*.jsonl")) == [] and len(open_files(tmp_path)) == 1
    # The process may have died inside a write: simulate the worst case, a torn last line.
    with open(open_files(tmp_path)[0], "ab") as fh:
        fh.write(b'{"i": 99999, "text": "torn')
    published = make(tmp_path).recover_orphans()
    assert len(published) == 1 and open_files(tmp_path) == []
    seen = [r["i"] for r in lines(tmp_path)]
    assert set(acked) <= set(seen)  # nothing acknowledged is lost
    assert len(seen) == len(set(seen)) and 99999 not in seen  # nothing twice, the torn line cut
    assert seen == list(range(len(seen)))


def test_a_live_writers_file_is_never_taken_for_an_orphan(tmp_path):
    writer = start_writer(tmp_path, pause="0.05")
    try:
        acknowledged(writer, 3)
        sweeper = make(tmp_path)
        assert sweeper.recover_orphans() == []
        assert len(open_files(tmp_path)) == 1
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert len(sweeper.recover_orphans()) == 1


def test_an_orphan_with_only_a_torn_line_is_deleted_not_published(tmp_path):
    log = make(tmp_path)
    (tmp_path / OPEN_DIR / "feedback-20260101T000000000-h-1-1.jsonl").write_bytes(b'{"i": 1, "te')
    assert log.recover_orphans() == []
    assert open_files(tmp_path) == [] and list(tmp_path.glob("*.jsonl")) == []


def test_stale_temporary_files_are_removed_fresh_ones_kept(tmp_path):
    now = [time.time()]
    log = make(tmp_path, clock=lambda: now[0])
    temp = tmp_path / OPEN_DIR / ".feedback-20260101T000000000-h-1-1.jsonl.abc"
    temp.write_bytes(b"")
    log.recover_orphans()
    assert temp.exists()  # might be a sibling between create and lock
    now[0] += rotating_log.STALE_TEMP_S + 1
    log.recover_orphans()
    assert not temp.exists()


def test_prune_keeps_the_newest_files_within_both_bounds(tmp_path):
    log = make(tmp_path, prefix="sample", durable=False, rotate_bytes=1, max_files=3, max_bytes=10_000)
    for i in range(6):
        log.append([{"i": i}])  # one file per append (rotate_bytes=1)
    assert [r["i"] for r in lines(tmp_path)] == [3, 4, 5]
    log.max_files, log.max_bytes = 100, 2 * len(b'{"i":5}\n')
    log.prune()
    assert [r["i"] for r in lines(tmp_path)] == [4, 5]
