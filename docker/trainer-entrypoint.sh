#!/bin/sh
# Entrypoint of the trainer image (docker/Dockerfile.trainer).
#
# - No arguments, or a first argument that is a flag: run the retraining pipeline on the drop
#   folder SENTIMENT_NEW_DATA_DIR, once when SENTIMENT_RETRAIN_EVERY_HOURS is unset/empty/0, else
#   every that many hours; the given flags follow (and win over the defaults):
#       python -m training.pipeline retrain --new-data "$SENTIMENT_NEW_DATA_DIR" [--every-hours N] "$@"
#   The registry, model name, gold set and base data come from SENTIMENT_MODEL_DIR,
#   SENTIMENT_MODEL_NAME, SENTIMENT_GOLD_FILE and SENTIMENT_DATA_DIR, read by the pipeline itself.
#   With SENTIMENT_RETRAIN_WHEN_DRIFT=1, --when-drift is added: each run first checks the traffic
#   sample (SENTIMENT_SAMPLE_DIR) for drift and retrains only if it finds some.
# - Anything else runs as given: `python -m training.fetch`, `python -m training.train --preset small`,
#   `python -m training.pipeline status`, or the first start of an empty registry,
#   `python -m training.quickstart` (a quick model promoted at once, then the full one; docs/deploy.md).
set -eu

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    every="${SENTIMENT_RETRAIN_EVERY_HOURS:-0}"
    case "$every" in
        "" | 0 | 0.0 | 0.00) ;;
        *[!0-9.]* | *.*.* | .)
            echo "trainer: SENTIMENT_RETRAIN_EVERY_HOURS=$every is not a number of hours" >&2
            exit 2
            ;;
        *) set -- --every-hours "$every" "$@" ;;
    esac
    case "${SENTIMENT_RETRAIN_WHEN_DRIFT:-0}" in
        "" | 0 | false | no) ;;
        1 | true | yes) set -- --when-drift "$@" ;;
        *)
            echo "trainer: SENTIMENT_RETRAIN_WHEN_DRIFT=${SENTIMENT_RETRAIN_WHEN_DRIFT} is not 0 or 1" >&2
            exit 2
            ;;
    esac
    set -- python -m training.pipeline retrain --new-data "${SENTIMENT_NEW_DATA_DIR:-/data/new}" "$@"
fi
exec "$@"
