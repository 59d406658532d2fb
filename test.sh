#!/usr/bin/env bash
# The test command: set up everything the tests need on a fresh machine, then run the whole suite.
# Python packages go into .venv; the browser test needs Debian's chromium + chromedriver, and the
# compose test uses Debian's docker-compose as a real parser (installed here when run as root).
set -euo pipefail
cd "$(dirname "$0")"

./scripts/setup-env.sh

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

export SENTIMENT_DATA_DIR="${SENTIMENT_DATA_DIR:-$(cd .. && pwd)/shared/data/imdb}"
exec .venv/bin/python -m pytest -q "$@"
