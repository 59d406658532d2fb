#!/usr/bin/env bash
# Main job, from a fresh clone: set up the environment, serve a quick model within minutes, and
# train the full-quality model in the background; the service switches to it by itself (no restart).
#
#   ./run.sh                          # quick model (~1 min), then the full one behind it (~10 min)
#   SENTIMENT_PRESET=small ./run.sh   # a CI-sized model in the background instead of the full one
#
# Ctrl-C (or SIGTERM) stops the server and the background training; nothing half-written is ever
# published. Running it again serves the best model present and trains only what is missing.
# Variables: SENTIMENT_MODEL_DIR, SENTIMENT_BIND, SENTIMENT_PRESET, SENTIMENT_QUICK_PRESET,
# SENTIMENT_DATA_DIR, SENTIMENT_RUN_DIR, SENTIMENT_SKIP_SETUP (README, "Configuration").
set -euo pipefail
cd "$(dirname "$0")"

export SENTIMENT_MODEL_DIR="${SENTIMENT_MODEL_DIR:-$PWD/models}"
export SENTIMENT_MODEL_NAME="${SENTIMENT_MODEL_NAME:-sentiment}"
export SENTIMENT_BIND="${SENTIMENT_BIND:-127.0.0.1:8000}"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
PRESET="${SENTIMENT_PRESET:-full}"
QUICK_PRESET="${SENTIMENT_QUICK_PRESET:-quick}"
RUN_DIR="${SENTIMENT_RUN_DIR:-$PWD/.run}"
PY=.venv/bin/python
say() { printf '\n==> %s\n' "$*"; }

# Every long step runs as a child this script waits for, so Ctrl-C and SIGTERM reach the trap at
# once; the trap stops the children (SIGTERM: gunicorn shuts down gracefully, a training deletes
# its staging directory) and waits for them, so no process outlives the script. The server and the
# background training run in sessions of their own (setsid): a terminal's Ctrl-C reaches only this
# script, which stops them (gunicorn handles SIGINT itself, and would otherwise race the trap).
step="" server="" trainer=""
stop_children() {
  trap - INT TERM
  local pid
  for pid in $step $server $trainer; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $step $server $trainer; do wait "$pid" 2>/dev/null || true; done
}
trap 'say "Stopping (Ctrl-C): nothing half-written is published..."; stop_children; exit 130' INT
trap 'stop_children; exit 143' TERM
# Waiting is a loop of short *foreground* sleeps, never a bare `wait` on a background child: a
# Ctrl-C kills the sleep, and bash runs the INT trap at once. (Background children ignore SIGINT in
# a script, and bash defers a SIGINT that arrives during `wait` until that child exits, then skips
# the trap if the child exited normally: a hang, or exit 0 instead of 130.)
pause() { sleep 0.2; }
run_step() {  # run_step COMMAND...: run it as a waited-for child; return its exit status
  "$@" &
  step=$!
  while kill -0 "$step" 2>/dev/null; do pause; done
  local status=0
  wait "$step" || status=$?
  step=""
  return "$status"
}

# 1. Environment: pinned packages, installed with pip's own progress (a no-op once installed).
if [ -z "${SENTIMENT_SKIP_SETUP:-}" ] || [ ! -x "$PY" ]; then
  ./scripts/setup-env.sh
fi

# 2. Data: the shared IMDB copy next to the project, else the official archive (downloaded, sha256-checked).
if [ -z "${SENTIMENT_DATA_DIR:-}" ]; then
  if [ -f ../shared/data/imdb/train.csv.gz ]; then
    export SENTIMENT_DATA_DIR="$(cd ../shared/data/imdb && pwd)"
  else
    export SENTIMENT_DATA_DIR="$PWD/data/imdb"
    [ -f "$SENTIMENT_DATA_DIR/train.csv.gz" ] || run_step "$PY" -m training.fetch --dest "$SENTIMENT_DATA_DIR"
  fi
fi

# 3. A model to serve now: the best one in the registry, else a quick one (about a minute).
say "Model: the best one in $SENTIMENT_MODEL_DIR, else a quick one (preset $QUICK_PRESET, about a minute)"
run_step "$PY" -m training.quickstart quick --quick-preset "$QUICK_PRESET"

# 4. Serve it (each worker loads the production version and polls for a newer one).
mkdir -p "${PROMETHEUS_MULTIPROC_DIR:=$RUN_DIR/prometheus}"
export PROMETHEUS_MULTIPROC_DIR
say "Serving on http://$SENTIMENT_BIND (Ctrl-C stops) — try:"
echo "  curl -s -X POST http://$SENTIMENT_BIND/v1/predict -H 'Content-Type: application/json' -d '{\"text\": \"A wonderful, moving film.\"}'"
setsid .venv/bin/gunicorn -c service/gunicorn.conf.py 'service.app:create_app()' &
server=$!

# 5. The full model, in the background at low priority, unless production already is one.
needs=0
run_step "$PY" -m training.quickstart needs-full || needs=$?
case "$needs" in
  0)
    mkdir -p "$RUN_DIR/logs"
    log="$RUN_DIR/logs/full-training-$(date +%Y%m%d-%H%M%S).log"
    about=""
    [ "$PRESET" != full ] || about="; about 10 min on 2 quiet cores"
    say "Training the full model in the background (preset $PRESET$about)."
    echo "  The server switches to it by itself when it is ready. Progress: tail -f $log"
    nice -n 10 setsid "$PY" -m training.quickstart full --preset "$PRESET" >"$log" 2>&1 &
    trainer=$! ;;
  1) say "Production is a full model already: nothing to train." ;;
  *) say "Could not read the registry (exit $needs)."; stop_children; exit "$needs" ;;
esac

# 6. Wait: report the background training's end; stop when the server stops.
while :; do
  pause
  if ! kill -0 "$server" 2>/dev/null; then
    status=0
    wait "$server" || status=$?
    server=""
    say "The server stopped (exit $status)."
    stop_children
    exit "$status"
  fi
  if [ -n "$trainer" ] && ! kill -0 "$trainer" 2>/dev/null; then
    status=0
    wait "$trainer" || status=$?
    trainer=""
    case "$status" in
      0) say "Full model trained and promoted; the server switches to it within seconds (log: $log)." ;;
      4) say "The full model was trained but not promoted; still serving the quick one (why: $log)." ;;
      *) say "The background training failed (exit $status): see $log. Still serving; rerun ./run.sh to retry." ;;
    esac
  fi
done
