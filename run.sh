#!/usr/bin/env bash
# Main job, from a fresh clone: set up the environment, train a model if the registry has none,
# then serve it with gunicorn on $SENTIMENT_BIND (default 127.0.0.1:8000).
#
#   ./run.sh                      # full quality model (~20 min on 2 quiet cores the first time)
#   SENTIMENT_PRESET=small ./run.sh   # a quick CI-sized model (~1 min), for a first look
set -euo pipefail
cd "$(dirname "$0")"

export SENTIMENT_MODEL_DIR="${SENTIMENT_MODEL_DIR:-$PWD/models}"
export SENTIMENT_MODEL_NAME="${SENTIMENT_MODEL_NAME:-sentiment}"
export SENTIMENT_BIND="${SENTIMENT_BIND:-127.0.0.1:8000}"
PRESET="${SENTIMENT_PRESET:-full}"

# 1. Environment (pinned packages; a no-op when already installed).
./scripts/setup-env.sh

# 2. Data: the shared IMDB copy next to the project, else the official archive (downloaded, sha256-checked).
if [ -z "${SENTIMENT_DATA_DIR:-}" ]; then
  if [ -f ../shared/data/imdb/train.csv.gz ]; then
    export SENTIMENT_DATA_DIR="$(cd ../shared/data/imdb && pwd)"
  else
    export SENTIMENT_DATA_DIR="$PWD/data/imdb"
    [ -f "$SENTIMENT_DATA_DIR/train.csv.gz" ] || .venv/bin/python -m training.fetch --dest "$SENTIMENT_DATA_DIR"
  fi
fi

# 3. Train and promote a first model unless the registry already serves one.
.venv/bin/python -m training.train --preset "$PRESET" --if-missing

# 4. Serve it (the model is loaded in each worker after fork; Ctrl-C stops).
mkdir -p "${PROMETHEUS_MULTIPROC_DIR:=$PWD/.run/prometheus}"
export PROMETHEUS_MULTIPROC_DIR
echo "Serving on http://$SENTIMENT_BIND  — try:"
echo "  curl -s -X POST http://$SENTIMENT_BIND/v1/predict -H 'Content-Type: application/json' -d '{\"text\": \"A wonderful, moving film.\"}'"
exec .venv/bin/gunicorn -c service/gunicorn.conf.py 'service.app:create_app()'
