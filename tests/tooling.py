"""What a test does when an external program it needs (Chromium, a Compose CLI) is missing.

It fails, with the install command, so that ``./test.sh`` and CI can never lose a test silently.
A developer on a machine without the program may skip those tests explicitly with
``SENTIMENT_ALLOW_SKIP=1``; ``./test.sh`` clears that variable, and CI (``CI=true``) ignores it.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

ALLOW_SKIP = "SENTIMENT_ALLOW_SKIP"


def skipping_allowed() -> bool:
    """Return whether a missing tool may skip a test here (never under CI)."""
    in_ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return os.environ.get(ALLOW_SKIP) == "1" and not in_ci


def missing_tool(message: str) -> NoReturn:
    """Fail the test because a tool is missing, or skip it where skipping was explicitly allowed."""
    if skipping_allowed():
        pytest.skip(f"{message} (skipped because {ALLOW_SKIP}=1)")
    pytest.fail(f"{message} (or set {ALLOW_SKIP}=1 to skip this test on a machine without it)", pytrace=False)
