"""Train one model version end to end, top to bottom.

data → tokenizer → vocabulary → word2vec → Embedding/LSTM classifier (training/fit.py) →
temperature scaling → evaluation report → artifact (Keras, SavedModel, ONNX, tokenizer,
manifest) → registry. :func:`train_version` reads as that list of named steps.

Run ``python -m training.train --help`` for the command line; :func:`train_version` is the
function the retraining pipeline calls.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
import typing
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from embeddings.tokenizer import tokenize
from embeddings.vocabulary import Vocabulary, pad_batch
from embeddings.word2vec import embedding_matrix, train_word2vec
from registry.artifact import (
    ARTIFACT_FORMAT,
    DRIFT_REFERENCE_FILE,
    KERAS_FILE,
    ONNX_FILE,
    REPORT_DIR,
    SAVED_MODEL_DIR,
    TOKENIZER_FILE,
    WORD2VEC_FILE,
)
from registry.cli import HelpFormatter, add_registry_arguments, configure_logging
from registry.files import write_json_atomic
from registry.store import MANIFEST, Registry
from training import drift
from training.config import PRESETS, TrainConfig, preset
from training.data import (
    DataError,
    LabelledData,
    calibration_split,
    default_data_dir,
    fingerprint,
    labelled_rows,
    load_unlabelled,
    resolve,
    train_validation_split,
)
from training.lineage import write_training_data
from training.metrics import cross_fitted_probabilities, evaluate_logits

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "gensim", "onnx", "onnxruntime", "numpy", "pandas")
PROMOTE_CHOICES = ("auto", "always", "never")


@dataclass
class TrainingInputs:
    """The data one training run uses, already loaded, with fingerprints for lineage."""

    labelled: LabelledData
    unlabelled: list[str] = field(default_factory=list)
    fingerprints: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What a run produced: the registry version and its validation evaluation."""

    version: int
    path: Path
    manifest: dict
    promoted: bool


@dataclass
class Prepared:
    """The run's data made model-ready: vocabulary, word2vec, embedding matrix and encoded splits."""

    vocab: Vocabulary
    word2vec: Any  # gensim.models.Word2Vec
    embedding: np.ndarray  # [vocabulary size, w2v_dim], row i = token id i
    embedding_stats: dict
    x_train: list[np.ndarray]
    y_train: np.ndarray
    x_val: list[np.ndarray]  # epoch selection (early stopping)
    y_val: np.ndarray
    x_cal: list[np.ndarray]  # calibration: fits the temperature, never picks the epoch
    y_cal: np.ndarray


def load_inputs(config: TrainConfig, data_dir: Path | None = None) -> TrainingInputs:
    """Load the labelled and unlabelled files named by the config (sampled as configured)."""
    train_path = resolve(config.train_file, data_dir)
    log.info("loading %s%s", train_path, f" (a {config.sample}-review sample)" if config.sample else "")
    labelled = labelled_rows(config, train_path)
    fingerprints = {str(train_path): fingerprint(train_path)}
    unlabelled: list[str] = []
    if config.unlabelled_file and config.unlabelled_sample != 0:
        unlabelled_path = resolve(config.unlabelled_file, data_dir)
        log.info("loading %s", unlabelled_path)
        unlabelled = load_unlabelled(unlabelled_path, text_column=config.text_column)
        if config.unlabelled_sample:
            rng = np.random.default_rng(config.seed)
            size = min(config.unlabelled_sample, len(unlabelled))
            keep = np.sort(rng.choice(len(unlabelled), size, replace=False))
            unlabelled = [unlabelled[i] for i in keep]
        fingerprints[str(unlabelled_path)] = fingerprint(unlabelled_path)
    return TrainingInputs(labelled, unlabelled, fingerprints)


# -- step 1: data → ids ---------------------------------------------------------------------------
def prepare(
    config: TrainConfig, inputs: TrainingInputs, previous_word2vec: Path | None, timings: dict[str, float]
) -> Prepared:
    """Split, tokenise, build the vocabulary and word2vec, and encode the splits."""
    from training.progress import Word2VecProgress

    # The held-out rows never feed the vocabulary or word2vec. Half of them pick the epoch (early
    # stopping), the other half fits the temperature: calibration is judged on rows model
    # selection never used.
    labelled = inputs.labelled
    train_idx, held_out = train_validation_split(labelled.labels, config.val_fraction, config.seed)
    val_idx, cal_idx = calibration_split(labelled.labels, held_out, config.calibration_fraction, config.seed)
    log.info(
        "data: %d train, %d epoch selection, %d calibration, %d unlabelled",
        len(train_idx),
        len(val_idx),
        len(cal_idx),
        len(inputs.unlabelled),
    )

    t0 = time.perf_counter()
    quiet = not sys.stderr.isatty()
    log.info("tokenising %d labelled and %d unlabelled reviews", len(labelled.texts), len(inputs.unlabelled))
    tokens = [tokenize(t) for t in tqdm(labelled.texts, desc="tokenise labelled", disable=quiet)]
    corpus = [tokens[i] for i in train_idx]
    corpus += [tokenize(t) for t in tqdm(inputs.unlabelled, desc="tokenise unlabelled", disable=quiet)]
    timings["tokenise_s"] = time.perf_counter() - t0
    log.info("tokenised in %.0f s", timings["tokenise_s"])

    vocab = Vocabulary.build(
        corpus,
        max_size=config.max_vocab,
        min_count=config.min_count,
        max_len=config.max_len,
        head=config.head_len,
    )
    t0 = time.perf_counter()
    w2v = train_word2vec(
        corpus,
        dim=config.w2v_dim,
        window=config.w2v_window,
        min_count=config.min_count,
        epochs=config.w2v_epochs,
        sg=config.w2v_sg,
        negative=config.w2v_negative,
        workers=config.w2v_workers,
        seed=config.seed,
        previous=previous_word2vec,
        callbacks=[Word2VecProgress(config.w2v_epochs)],
    )
    matrix, embedding_stats = embedding_matrix(vocab, w2v.wv, seed=config.seed)
    timings["word2vec_s"] = time.perf_counter() - t0
    del corpus  # the unlabelled tokens are no longer needed; the labelled ones are encoded below

    def encode(index: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(vocab.ids_for_tokens(tokens[i]), dtype=np.int64) for i in index]

    return Prepared(
        vocab=vocab,
        word2vec=w2v,
        embedding=matrix,
        embedding_stats=embedding_stats,
        x_train=encode(train_idx),
        y_train=labelled.labels[train_idx],
        x_val=encode(val_idx),
        y_val=labelled.labels[val_idx],
        x_cal=encode(cal_idx),
        y_cal=labelled.labels[cal_idx],
    )


# -- step 3: calibrate ----------------------------------------------------------------------------
def calibrate(logits_fn, data: Prepared, config: TrainConfig) -> dict:
    """Fit one temperature on the calibration split (Guo et al. 2017); return its out-of-sample evaluation.

    The served temperature is fitted on the whole split; the "after scaling" metrics come from
    2-fold cross-fitting (each row scaled by the temperature fitted on the other half), so no row
    is judged by a temperature it helped fit.
    """
    from training.fit import predict_logits

    logits = predict_logits(logits_fn, data.x_cal)
    temperature, probs, folds = cross_fitted_probabilities(data.y_cal, logits, seed=config.seed)
    evaluation = evaluate_logits(data.y_cal, logits, temperature, config.ece_bins, calibrated_probs=probs)
    evaluation["fold_temperatures"] = folds
    log.info(
        "calibration split: accuracy %.4f, ECE %.4f → %.4f out of sample, T=%.3f (folds %s)",
        evaluation["calibrated"]["accuracy"],
        evaluation["uncalibrated"]["ece"],
        evaluation["calibrated"]["ece"],
        temperature,
        [round(t, 3) for t in folds],
    )
    return evaluation


# -- step 4: export -------------------------------------------------------------------------------
def export(model, serving, data: Prepared, staging: Path, config: TrainConfig) -> dict:
    """Write Keras, SavedModel, ONNX, tokenizer and word2vec files; return the runtime parity check."""
    import onnx

    from training.model import extract_weights
    from training.onnx_export import build_onnx_model

    model.save(staging / KERAS_FILE)
    serving.export(str(staging / SAVED_MODEL_DIR), format="tf_saved_model", verbose=False)
    onnx.save(build_onnx_model(extract_weights(model, config)), str(staging / ONNX_FILE))
    data.vocab.save(staging / TOKENIZER_FILE)
    data.word2vec.save(str(staging / WORD2VEC_FILE))
    return check_parity(model, staging, data.x_val + data.x_cal, config)


# -- parity ---------------------------------------------------------------------------------------
def check_parity(model, staging: Path, sequences: Sequence[np.ndarray], config: TrainConfig) -> dict:
    """Compare Keras, ONNX Runtime and SavedModel probabilities on real reviews of mixed lengths.

    Keras scores the reviews in random-order batches (lots of padding) and one at a time (none);
    ONNX Runtime and the SavedModel score them length-sorted. All must agree within tolerance.
    """
    from inference.predictor import OnnxRuntimeBackend, SavedModelBackend, sigmoid

    lengths = np.array([len(s) for s in sequences])
    pick = np.argsort(lengths, kind="stable")[
        np.linspace(0, len(sequences) - 1, min(config.parity_reviews, len(sequences))).astype(int)
    ]
    rng = np.random.default_rng(config.seed)
    pick = rng.permutation(np.unique(pick))
    seqs = [sequences[i] for i in pick]

    mixed = np.concatenate(
        [model.predict(pad_batch(seqs[i : i + 32]), verbose=0).reshape(-1) for i in range(0, len(seqs), 32)]
    )
    alone = np.array([model.predict(pad_batch([s]), verbose=0).reshape(-1)[0] for s in seqs[:32]])
    order = np.argsort([len(s) for s in seqs], kind="stable")

    def sorted_scores(backend) -> np.ndarray:
        out = np.empty(len(seqs))
        for i in range(0, len(seqs), 64):
            idx = order[i : i + 64]
            out[idx] = sigmoid(backend.logits(pad_batch([seqs[j] for j in idx])))
        return out

    onnx_scores = sorted_scores(OnnxRuntimeBackend(staging / ONNX_FILE))
    saved_scores = sorted_scores(SavedModelBackend(staging / SAVED_MODEL_DIR))
    result = {
        "reviews": len(seqs),
        "min_tokens": int(min(len(s) for s in seqs)),
        "max_tokens": int(max(len(s) for s in seqs)),
        "onnx_vs_keras_max_abs_diff": float(np.abs(onnx_scores - mixed).max()),
        "savedmodel_vs_keras_max_abs_diff": float(np.abs(saved_scores - mixed).max()),
        "keras_alone_vs_batched_max_abs_diff": float(np.abs(alone - mixed[:32]).max()),
        "tolerance": config.parity_tolerance,
    }
    result["passed"] = all(v <= config.parity_tolerance for k, v in result.items() if k.endswith("diff"))
    log.info("parity: %s", result)
    if not result["passed"]:
        raise RuntimeError(f"runtime parity check failed: {result}")
    return result


# -- lineage --------------------------------------------------------------------------------------
def git_commit() -> str | None:
    """Return the project's current git commit, or None outside a checkout."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def package_versions() -> dict[str, str]:
    """Return the versions of the packages that shape a model's numbers."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


# -- step 5: write the artifact and publish it -----------------------------------------------------
def build_manifest(
    name: str,
    config: TrainConfig,
    inputs: TrainingInputs,
    data: Prepared,
    *,
    evaluation: dict,
    history: list[dict],
    best_epoch: int,
    parity: dict,
    timings: dict[str, float],
    parent_version: int | None,
) -> dict:
    """Return the manifest: everything needed to trust, rebuild and trace this version."""
    calibrated, uncalibrated = evaluation["calibrated"], evaluation["uncalibrated"]
    metrics = {
        **calibrated,
        "ece_uncalibrated": uncalibrated["ece"],
        "accuracy_uncalibrated": uncalibrated["accuracy"],
        "best_epoch": best_epoch,
        "split": "calibration (never used to pick the epoch; temperature cross-fitted)",
    }
    return {
        "format": ARTIFACT_FORMAT,
        "name": name,
        "created_at": time.time(),
        "config": config.to_dict(),
        "calibration": {
            "method": "temperature",
            "temperature": evaluation["temperature"],
            "fitted_on": "calibration split",
            "rows": len(data.x_cal),
            "metrics": "2-fold cross-fitted, out of sample",
            "fold_temperatures": evaluation["fold_temperatures"],
        },
        "metrics": metrics,
        "history": history,
        "embedding": data.embedding_stats,
        "parity": parity,
        "timings": timings,
        "data": {
            "train_rows": len(data.x_train),
            "validation_rows": len(data.x_val),
            "calibration_rows": len(data.x_cal),
            "unlabelled_rows": len(inputs.unlabelled),
            "skipped_rows": inputs.labelled.skipped,
        },
        "lineage": {
            "parent_version": parent_version,
            "data_fingerprints": inputs.fingerprints,
            "git_commit": git_commit(),
        },
        "packages": package_versions(),
        "python": sys.version.split()[0],
    }


def drift_reference(logits_fn, data: Prepared, temperature: float) -> dict:
    """Profile the held-out rows as the service will see traffic: the drift check's reference."""
    from inference.predictor import sigmoid
    from training.fit import predict_logits

    held_out = data.x_val + data.x_cal
    scores = sigmoid(predict_logits(logits_fn, held_out) / temperature)
    return drift.reference(held_out, scores, "held-out rows (epoch selection + calibration)")


def write_artifact(
    staging: Path, manifest: dict, evaluation: dict, history: list[dict], reference: dict | None = None
) -> None:
    """Write the validation report (and drift reference), then the manifest: last, since a folder
    without it is never published."""
    from training.report import write_report

    if reference is not None:
        write_json_atomic(staging / DRIFT_REFERENCE_FILE, reference)

    context = {
        "epoch-selection rows": manifest["data"]["validation_rows"],
        "calibration rows": manifest["data"]["calibration_rows"],
        "best epoch": manifest["metrics"]["best_epoch"],
        "training time (s)": round(manifest["timings"]["total_s"]),
    }
    title = f"Model {manifest['name']}: validation report"
    write_report(staging / REPORT_DIR, title, evaluation, history=history, context=context)
    write_json_atomic(staging / MANIFEST, manifest)


def publish(registry: Registry, name: str, staging: Path, promote: str) -> tuple[int, bool]:
    """Commit the staging folder as the next version; promote it as asked; return (version, promoted)."""
    if promote not in PROMOTE_CHOICES:
        raise ValueError(f"promote must be one of {PROMOTE_CHOICES}, not {promote!r}")
    with registry.lock(name):
        version = registry.commit_version(name, staging)
        promoted = promote == "always" or (promote == "auto" and registry.production_version(name) is None)
        if promoted:
            registry.promote(name, version)
    return version, promoted


# -- the run --------------------------------------------------------------------------------------
def train_version(
    config: TrainConfig,
    inputs: TrainingInputs,
    registry: Registry,
    name: str = "sentiment",
    *,
    promote: str = "auto",
    parent_version: int | None = None,
    previous_word2vec: Path | None = None,
    extra_manifest: dict | None = None,
) -> TrainResult:
    """Train, evaluate and publish one version; ``promote`` is auto (if none yet), always or never."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from training.fit import fit, logit_function
    from training.model import build_classifier, logit_model

    started = time.perf_counter()
    timings: dict[str, float] = {}
    keras.utils.set_random_seed(config.seed)

    # 1. Data → ids: split, tokenise, vocabulary and word2vec from training text only, encode.
    data = prepare(config, inputs, previous_word2vec, timings)

    # 2. Fit: embedding frozen, then fine-tuned; the best validation epoch is kept.
    t0 = time.perf_counter()
    model = build_classifier(config, data.embedding)
    serving = logit_model(model)
    logits_fn = logit_function(serving)
    rng = np.random.default_rng(config.seed)
    fitted = fit(model, logits_fn, (data.x_train, data.y_train), (data.x_val, data.y_val), config, rng)
    timings["train_s"] = time.perf_counter() - t0

    # 3. Calibrate on validation: one temperature for the logits.
    evaluation = calibrate(logits_fn, data, config)

    # 4-5. Export into a staging folder, check runtime parity, write the manifest last, publish.
    t0 = time.perf_counter()
    log.info("export: Keras model, SavedModel and ONNX graph, then the runtime parity check")
    with registry.staging_dir(name) as staging:
        parity = export(model, serving, data, staging, config)
        timings["export_s"] = time.perf_counter() - t0
        log.info("export and parity check done in %.0f s", timings["export_s"])
        timings["total_s"] = time.perf_counter() - started
        manifest = build_manifest(
            name,
            config,
            inputs,
            data,
            evaluation=evaluation,
            history=fitted.history,
            best_epoch=fitted.best_epoch,
            parity=parity,
            timings=timings,
            parent_version=parent_version,
        )
        manifest.update(extra_manifest or {})
        write_training_data(staging, inputs.labelled.texts, inputs.labelled.labels)  # lineage: what it saw
        reference = drift_reference(logits_fn, data, evaluation["temperature"])
        write_artifact(staging, manifest, evaluation, fitted.history, reference)
        version, promoted = publish(registry, name, staging, promote)
    path = registry.version_dir(name, version)
    log.info(
        "published %s v%d at %s (promoted: %s) in %.0f s", name, version, path, promoted, timings["total_s"]
    )
    return TrainResult(version, path, manifest, promoted)


# -- command line ---------------------------------------------------------------------------------
def _parse_bool(text: str) -> bool:
    """Parse a true/false flag value."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _none_or(kind: type) -> typing.Callable[[str], Any]:
    """Return a parser of ``kind`` values that also accepts 'none'."""

    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    """Return the CLI parser; every TrainConfig field is also a flag."""
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train a sentiment model (word2vec + LSTM), evaluate it, and publish a new version "
        "to the model registry.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="full",
        help="named configuration: full = quality run, quick = run.sh's first model (10k sample), "
        "small = CI-sized 2k sample, tiny = tests",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding the data files (default: $SENTIMENT_DATA_DIR or ../shared/data/imdb)",
    )
    parser.add_argument(
        "--promote",
        choices=PROMOTE_CHOICES,
        default="auto",
        help="mark the new version production: auto = only if none is yet",
    )
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing if the registry already has a production version (for the quickstart)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_registry_arguments(parser)
    group = parser.add_argument_group("hyperparameters (override the preset; meanings in training/config.py)")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = next((t for t in typing.get_args(hints[f.name]) if t is not type(None)), hints[f.name])
        if kind is bool:
            group.add_argument(
                flag,
                type=_parse_bool,
                default=argparse.SUPPRESS,
                metavar="BOOL",
                help=f"true/false (full preset: {f.default})",
            )
        else:
            clears = "; 'none' clears it" if f.default is None else ""
            group.add_argument(
                flag,
                type=_none_or(kind),
                default=argparse.SUPPRESS,
                metavar=kind.__name__.upper(),
                help=f"full preset: {f.default}{clears}",
            )
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Return the preset with every flag given on the command line applied."""
    config = preset(args.preset)
    overrides = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)
    }
    return config.replace(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the training CLI; exit 2 on bad input."""
    args = build_parser().parse_args(argv)
    configure_logging(verbose=args.verbose)
    registry = Registry(args.registry_root)
    production = registry.production_version(args.model_name)
    if args.if_missing and production is not None:
        log.info("model %s already has production version %s; nothing to do", args.model_name, production)
        return 0
    config = config_from_args(args)
    try:
        inputs = load_inputs(config, args.data_dir or default_data_dir())
    except DataError as exc:
        log.error("%s", exc)
        return 2
    result = train_version(config, inputs, registry, args.model_name, promote=args.promote)
    summary = {
        "version": result.version,
        "path": str(result.path),
        "promoted": result.promoted,
        "metrics": result.manifest["metrics"],
        "timings": result.manifest["timings"],
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
