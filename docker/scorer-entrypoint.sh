#!/bin/sh
# Entrypoint of the scorer image (docker/Dockerfile.scorer).
#
# - No arguments, or a first argument that is a flag: run the batch scorer with its input, output,
#   model version and engine taken from the environment, then the given flags (argparse keeps the
#   last value of a repeated flag, so `--input other.csv` overrides SENTIMENT_SCORE_INPUT):
#       python -m scoring --input "$SENTIMENT_SCORE_INPUT" --output "$SENTIMENT_SCORE_OUTPUT" ... "$@"
#   The registry and model name come from SENTIMENT_MODEL_DIR and SENTIMENT_MODEL_NAME, read by the
#   scorer itself (as by every CLI of the project).
# - Anything else runs as given: `dask scheduler ...`, `dask worker ...`, `python -m scoring --help`.
set -eu

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    engine="${SENTIMENT_SCORE_ENGINE:-local}"
    if [ -n "${SENTIMENT_SCORE_WORKERS:-}" ]; then
        set -- --workers "$SENTIMENT_SCORE_WORKERS" "$@"
    fi
    if [ -n "${SENTIMENT_SCORE_MODEL_VERSION:-}" ]; then
        set -- --model-version "$SENTIMENT_SCORE_MODEL_VERSION" "$@"
    fi
    if [ "$engine" = "dask" ] && [ -n "${SENTIMENT_DASK_SCHEDULER:-}" ]; then
        set -- --scheduler "$SENTIMENT_DASK_SCHEDULER" "$@"
    fi
    set -- python -m scoring \
        --input "${SENTIMENT_SCORE_INPUT:-/data/incoming}" \
        --output "${SENTIMENT_SCORE_OUTPUT:-/data/scored}" \
        --engine "$engine" \
        "$@"
fi
exec "$@"
