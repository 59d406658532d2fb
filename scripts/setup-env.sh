#!/usr/bin/env bash
# Create .venv with the pinned requirements (idempotent: reinstalls only when requirements.txt changed).
# pip's own output stays visible: a first install takes a minute or two and should not look hung.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> Creating .venv with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> Installing the pinned packages of requirements.txt into .venv (1-2 minutes the first time)"
  # (the filter hides this machine's notes about optional local package mirrors)
  .venv/bin/python -m pip install --disable-pip-version-check -r requirements.txt 2>&1 \
    | { grep --line-buffered -v "^WARNING: Location 'file:" || true; }
  echo "$want" > "$stamp"
fi
