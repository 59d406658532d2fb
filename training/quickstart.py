"""First start: a quick model served within minutes, the full model trained behind it.

``run.sh`` calls the steps one by one (the full training runs in the background while the service
serves the quick model); ``python -m training.quickstart`` with no step runs them in a row (the
compose trainer's first start)::

    python -m training.quickstart quick       # nothing served yet: train the quick preset, promote it
    python -m training.quickstart needs-full  # exit 0 while production is not a full model
    python -m training.quickstart full        # train the full preset, promote it through the gate

The quick model is an ordinary registry version whose manifest says ``"quick": true`` and names its
preset, so the service labels it (``/v1/models/<name>``, the web page's badge). The full model is
published unpromoted, then promoted under the registry lock if ``training.gate.replaces_quick``
accepts it; the service's poll of the production pointer swaps it in without a restart or a
failed request.

Each step first serves the best version already present (a rerun after Ctrl-C resumes, never
retrains what exists) and cleans what killed writers left (:meth:`Registry.clean_leftovers`).
SIGTERM and SIGINT stop a training cleanly: its staging directory is deleted, no version appears.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Iterator, Sequence

from registry.artifact import is_quick
from registry.cli import HelpFormatter, add_registry_arguments, configure_logging
from registry.store import Registry, RegistryError
from training.config import PRESETS, preset

log = logging.getLogger(__name__)

QUICK_PRESET = "quick"
FULL_PRESET = "full"
#: Exit status of ``full`` when the trained model was published but not promoted.
NOT_PROMOTED = 4
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _manifests(registry: Registry, name: str) -> dict[int, dict]:
    """Return {version: manifest} of the complete versions, skipping unreadable ones."""
    found = {}
    for version in registry.versions(name):
        try:
            found[version] = registry.manifest(name, version)
        except (OSError, ValueError) as exc:
            log.warning("version %d of %s is unreadable, ignored: %s", version, name, exc)
    return found


def serve_best_present(registry: Registry, name: str) -> int | None:
    """Promote the best version already present when production is missing or quick; return production.

    Best: the newest full version ``training.gate.replaces_quick`` accepts, else (nothing in
    production) the newest quick one. A full production version is left alone.
    """
    from training.gate import replaces_quick  # scipy & co.: only where a decision is taken

    with registry.lock(name):
        production = registry.production_version(name)
        manifests = _manifests(registry, name)
        current = manifests.get(production) if production is not None else None
        if production is not None and not is_quick(current):
            return production
        full = [v for v, m in manifests.items() if not is_quick(m) and replaces_quick(m, current)[0]]
        quick = [v for v, m in manifests.items() if is_quick(m) and replaces_quick(m, None)[0]]
        best = max(full, default=None) or (max(quick, default=None) if production is None else None)
        if best is not None and best != production:
            log.info(
                "promotion: version %d is already trained (%s); promoting it",
                best,
                "quick" if is_quick(manifests[best]) else "full",
            )
            registry.promote(name, best)
            return best
        return production


def needs_full(registry: Registry, name: str) -> bool:
    """Return whether the full model still has to be trained (production missing or quick)."""
    production = registry.production_version(name)
    return production is None or is_quick(registry.manifest(name, production))


def train_and_publish(
    registry: Registry, name: str, preset_name: str, *, quick: bool, data_dir: Path | None, overrides: dict
) -> tuple[int, dict]:
    """Train one version of ``preset_name`` (marked quick or not), publish it unpromoted; return it."""
    from training.data import default_data_dir
    from training.train import load_inputs, train_version

    config = preset(preset_name).replace(**overrides)
    log.info("training the %s model (preset %s)", "quick" if quick else "full", preset_name)
    inputs = load_inputs(config, data_dir or default_data_dir())
    result = train_version(
        config,
        inputs,
        registry,
        name,
        promote="never",
        extra_manifest={"quick": quick, "preset": preset_name},
    )
    return result.version, result.manifest


def promote_if_accepted(registry: Registry, name: str, version: int, manifest: dict) -> bool:
    """Promote a just-published version if ``replaces_quick`` accepts it against production now."""
    from training.gate import replaces_quick

    with registry.lock(name):
        production = registry.production_version(name)
        current = registry.manifest(name, production) if production is not None else None
        accepted, reason = replaces_quick(manifest, current)
        if accepted:
            registry.promote(name, version)
    log.info("promotion: version %d %s: %s", version, "promoted" if accepted else "not promoted", reason)
    return accepted


def quick_step(
    registry: Registry, name: str, preset_name: str, data_dir: Path | None, overrides: dict
) -> int:
    """Make sure something is served: the best version present, else a freshly trained quick model."""
    registry.clean_leftovers(name, wait=False)
    production = serve_best_present(registry, name)
    if production is not None:
        kind = "quick" if is_quick(registry.manifest(name, production)) else "full"
        log.info("model %s: serving version %d (%s model) already in the registry", name, production, kind)
        return 0
    version, manifest = train_and_publish(
        registry, name, preset_name, quick=True, data_dir=data_dir, overrides=overrides
    )
    promote_if_accepted(registry, name, version, manifest)
    return 0 if registry.production_version(name) is not None else NOT_PROMOTED


def full_step(registry: Registry, name: str, preset_name: str, data_dir: Path | None, overrides: dict) -> int:
    """Make sure a full model is in production: the one present, else train one and promote it."""
    registry.clean_leftovers(name, wait=False)
    serve_best_present(registry, name)
    if not needs_full(registry, name):
        log.info(
            "model %s: version %d is a full model; nothing to train", name, registry.production_version(name)
        )
        return 0
    version, manifest = train_and_publish(
        registry, name, preset_name, quick=False, data_dir=data_dir, overrides=overrides
    )
    return 0 if promote_if_accepted(registry, name, version, manifest) else NOT_PROMOTED


# -- command line ---------------------------------------------------------------------------------
@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into SystemExit, so a stopped training deletes its staging directory.

    Installed explicitly because a background job of a shell starts with SIGINT ignored; the
    previous handlers come back afterwards.
    """

    def stop(signum: int, frame) -> None:
        for other in STOP_SIGNALS:  # a second signal must not cut the clean-up short
            signal.signal(other, signal.SIG_IGN)
        log.warning("%s received: stopping (nothing half-written is published)", signal.Signals(signum).name)
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def build_parser() -> argparse.ArgumentParser:
    """Return the CLI parser."""
    parser = argparse.ArgumentParser(
        prog="python -m training.quickstart",
        description="First start of the service: train and promote a quick model when nothing is served, "
        "then the full model, which replaces the quick one when it is ready.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "step",
        nargs="?",
        choices=("quick", "needs-full", "full", "all"),
        default="all",
        help="quick: a model to serve now; needs-full: exit 0 while production is not a full "
        "model (1 otherwise); full: the full model; all: quick then full",
    )
    parser.add_argument(
        "--preset",
        default=os.environ.get("SENTIMENT_PRESET", FULL_PRESET),
        choices=sorted(PRESETS),
        help="preset of the full model (default: $SENTIMENT_PRESET or full)",
    )
    parser.add_argument(
        "--quick-preset",
        default=os.environ.get("SENTIMENT_QUICK_PRESET", QUICK_PRESET),
        choices=sorted(PRESETS),
        help="preset of the quick model (default: $SENTIMENT_QUICK_PRESET or quick)",
    )
    parser.add_argument(
        "--train-file",
        default=None,
        help="labelled training file for both models (default: the preset's, train.csv.gz); "
        "pass the gold set's remainder when a gold set exists",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding the data files (default: $SENTIMENT_DATA_DIR or ../shared/data/imdb)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_registry_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one step; exit 0 on success, 1 (needs-full only) when a full model serves, 2 on bad data,
    3 on a registry problem, 4 when a trained model was not promoted."""
    args = build_parser().parse_args(argv)
    configure_logging(verbose=args.verbose)
    registry = Registry(args.registry_root)
    try:
        if args.step == "needs-full":  # answered from the registry alone: fast, no pandas or TensorFlow
            return 0 if needs_full(registry, args.model_name) else 1
        return run_steps(registry, args)
    except RegistryError as exc:
        log.error("%s", exc)
        return 3


def run_steps(registry: Registry, args: argparse.Namespace) -> int:
    """Run the quick and/or full step the arguments ask for; exit 2 on bad data."""
    from training.data import DataError

    overrides = {"train_file": args.train_file} if args.train_file else {}
    status = 0
    try:
        with stop_on_signals():
            if args.step in ("quick", "all"):
                status = quick_step(registry, args.model_name, args.quick_preset, args.data_dir, overrides)
            if args.step in ("full", "all") and status == 0:
                status = full_step(registry, args.model_name, args.preset, args.data_dir, overrides)
    except DataError as exc:
        log.error("%s", exc)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
