#!/usr/bin/env bash
# Time ./run.sh from a fresh clone: the first HTTP 200 from /v1/predict, then the full model served.
#
#   bench/bench_first_prediction.sh [CLONE_DIR]
#
# Clones this repository's HEAD into CLONE_DIR (default: a folder beside the repository, so that
# ../shared/data/imdb is found as on a user's machine), starts ./run.sh there on port 8765
# (SENTIMENT_BIND overrides it), polls POST /v1/predict every second until the first 200, then
# GET /v1/models/sentiment until the background training's end, scores four short texts with the
# final model and stops run.sh with SIGTERM (what Ctrl-C does). Prints seconds since ./run.sh
# started; run.sh's own output goes to CLONE_DIR.log. Run it on a quiet machine; it deletes
# CLONE_DIR first. Not a test: a full run takes ~15 minutes on 2 cores.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
clone="${1:-$(dirname "$repo")/sentiment-fresh-clone}"
bind="${SENTIMENT_BIND:-127.0.0.1:8765}"
log="$clone.log"

rm -rf "$clone"
git clone -q "$repo" "$clone"
cd "$clone"
start=$(date +%s.%N)
elapsed() { echo "$(date +%s.%N) - $start" | bc; }
SENTIMENT_BIND="$bind" ./run.sh >"$log" 2>&1 &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' EXIT

until curl -sf -o /dev/null -X POST "http://$bind/v1/predict" -H 'Content-Type: application/json' \
  -d '{"text": "A wonderful, moving film."}'; do
  kill -0 "$pid" 2>/dev/null || { echo "run.sh exited before serving (see $log)"; exit 1; }
  sleep 1
done
printf 'first 200 from /v1/predict: %.1f s\n' "$(elapsed)"

served=""
while kill -0 "$pid" 2>/dev/null; do
  now="$(curl -s "http://$bind/v1/models/sentiment" | python3 -c \
    'import json, sys; print(",".join(str(s["version"]) for s in json.load(sys.stdin)["model_version_status"] if s["state"] == "AVAILABLE"))' \
    2>/dev/null || true)"
  if [ -n "$now" ] && [ "$now" != "$served" ]; then
    printf 'serving version %s: %.1f s\n' "$now" "$(elapsed)"
    served="$now"
  fi
  if grep -q "Full model trained and promoted\|trained but not promoted\|background training failed" "$log"; then
    sleep 6 # one poll interval: every worker swaps
    printf 'background training ended (%s): %.1f s\n' \
      "$(grep -o 'Full model trained and promoted\|trained but not promoted\|background training failed' "$log")" \
      "$(elapsed)"
    curl -s -X POST "http://$bind/v1/predict" -H 'Content-Type: application/json' \
      -d '{"texts": ["not bad at all", "the acting was superb", "I <3 this film", "not good"]}'
    echo
    break
  fi
  sleep 1
done
trap - EXIT
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
leftovers="$(pgrep -f "$clone/.venv" || true)"
echo "run.sh stopped by SIGTERM: exit $status; processes left: ${leftovers:-none}"
