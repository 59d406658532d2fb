"""Command-line plumbing every CLI shares: registry flags, the version type, logging, help texts.

``training.train``, ``training.evaluate``, ``training.pipeline``, ``training.quickstart`` and
``python -m scoring`` all take their registry root and model name from here, so
``SENTIMENT_MODEL_DIR`` and ``SENTIMENT_MODEL_NAME`` are read in one place and mean the same
everywhere. Only the standard library is imported: ``--help`` stays fast in every image.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any, Callable

REGISTRY_ROOT_ENV = "SENTIMENT_MODEL_DIR"
MODEL_NAME_ENV = "SENTIMENT_MODEL_NAME"
DEFAULT_REGISTRY_ROOT = Path("models")
DEFAULT_MODEL_NAME = "sentiment"
#: The version spelling that means "whatever the production pointer names when the job starts".
PRODUCTION = "production"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Libraries that log every step at INFO; shown only with --verbose.
CHATTY_LOGGERS = ("gensim",)

#: A model version as users write it: ``"production"`` or a version number.
VersionSpec = int | str


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Add "(default: …)" once, and only where the default means something.

    Not for required flags, switches, "not set" (None) defaults, or help texts that already say
    their default (e.g. "default: $SENTIMENT_MODEL_DIR or ./models").
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        """Return the help text, with "(default: …)" appended where it adds information."""
        text = action.help or ""
        if action.required or action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return action.help
        return super()._get_help_string(action)


class DocHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """:class:`HelpFormatter` that keeps a module docstring's line breaks as the description."""


def registry_root_from_env() -> Path:
    """Return the registry root named by ``$SENTIMENT_MODEL_DIR``, or ``./models``."""
    return Path(os.environ.get(REGISTRY_ROOT_ENV) or DEFAULT_REGISTRY_ROOT)


def model_name_from_env() -> str:
    """Return the model name given by ``$SENTIMENT_MODEL_NAME``, or ``sentiment``."""
    return os.environ.get(MODEL_NAME_ENV) or DEFAULT_MODEL_NAME


def version_arg(text: str) -> VersionSpec:
    """Parse a version flag: ``production`` or a version number (1, 2, …)."""
    if text.strip().lower() == PRODUCTION:
        return PRODUCTION
    try:
        version = int(text)
    except ValueError:
        version = 0
    if version < 1:
        raise argparse.ArgumentTypeError(f"expected 'production' or a version number, got {text!r}")
    return version


def version_number_arg(text: str) -> int:
    """Parse a version flag that must name one version by number (promote)."""
    version = version_arg(text)
    if version == PRODUCTION:
        raise argparse.ArgumentTypeError("expected a version number, not 'production'")
    return int(version)


def add_registry_arguments(
    parser: argparse.ArgumentParser,
    *,
    version_help: str | None = None,
    root_type: Callable[[str], Any] = Path,
) -> None:
    """Add ``--model-dir`` and ``--model-name`` (and ``--model-version`` if ``version_help``).

    The parsed values land in ``args.registry_root`` (``root_type`` of the text: a Path, or a str
    where the root may be a URL such as ``s3://bucket/models``, which Path would mangle),
    ``args.model_name`` and ``args.model_version`` (:data:`VersionSpec`, default ``production``).
    """
    group = parser.add_argument_group("model registry")
    group.add_argument(
        "--model-dir",
        dest="registry_root",
        type=root_type,
        # Text, so that argparse converts the default with root_type too.
        default=os.environ.get(REGISTRY_ROOT_ENV) or str(DEFAULT_REGISTRY_ROOT),
        help=f"registry root: the folder holding <model-name>/<version>/ "
        f"(default: ${REGISTRY_ROOT_ENV} or ./{DEFAULT_REGISTRY_ROOT})",
    )
    group.add_argument(
        "--model-name",
        default=model_name_from_env(),
        help=f"model name inside the registry (default: ${MODEL_NAME_ENV} or {DEFAULT_MODEL_NAME})",
    )
    if version_help is not None:
        group.add_argument(
            "--model-version",
            type=version_arg,
            default=PRODUCTION,
            metavar="{production,N}",
            help=version_help,
        )


def configure_logging(*, verbose: bool = False, quiet: bool = False) -> None:
    """Send log records to stderr in the one format every CLI uses (stdout stays for results)."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
