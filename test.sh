#!/usr/bin/env bash
# The test command: set up everything the tests need on a fresh machine, then run the whole suite.
# Python packages go into .venv; the browser test needs Debian's chromium + chromedriver, and the
# compose test uses Debian's docker-compose as a real parser (installed here when run as root).
# Without them those tests fail: they are never skipped here.
set -euo pipefail
cd "$(dirname "$0")"

./scripts/setup-env.sh

apt_install() {  # apt_install [--no-install-recommends] PACKAGE...: as root, only what is missing
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 0
  echo "installing Debian packages: $*"
  [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq >/dev/null; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
browser=()
command -v chromium >/dev/null 2>&1 || browser+=(chromium)
command -v chromedriver >/dev/null 2>&1 || browser+=(chromium-driver)
# Chromium with its recommended fonts; docker-compose without recommends (they pull a Docker engine).
[ ${#browser[@]} -eq 0 ] || apt_install "${browser[@]}"
command -v docker-compose >/dev/null 2>&1 || apt_install --no-install-recommends docker-compose

export SENTIMENT_DATA_DIR="${SENTIMENT_DATA_DIR:-$(cd .. && pwd)/shared/data/imdb}"
unset SENTIMENT_ALLOW_SKIP  # here a missing browser or Compose CLI fails its tests (tests/tooling.py)
# One code style: lint and formatting are checked before any test runs (ruff is pinned in requirements.txt).
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -q "$@"
