"""Train one model version end to end, top to bottom.

data (+ short-text crops) → tokenizer → vocabulary → word2vec → Embedding/LSTM classifier →
n-gram branch (NBSVM, fitted in closed form) and its combination → temperature scaling →
evaluation (full reviews, short texts, behaviour suite) → artifact (Keras, SavedModel, ONNX,
tokenizer, manifest) → registry.

Run ``python -m training.train --help`` for the command line; :func:`train_version` is the
function the retraining pipeline calls.
"""

from __future__ import annotations

import argparse
import contextlib
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
from typing import Iterator, Sequence

import numpy as np
from tqdm import tqdm

from embeddings.tokenizer import tokenize
from embeddings.vocabulary import Vocabulary, pad_batch
from embeddings.word2vec import embedding_matrix, train_word2vec
from registry.artifact import (ARTIFACT_FORMAT, KERAS_FILE, ONNX_FILE, REPORT_DIR, SAVED_MODEL_DIR,
                               TOKENIZER_FILE, WORD2VEC_FILE)
from registry.store import MANIFEST, Registry, write_json_atomic
from training.config import PRESETS, TrainConfig, preset
from training.data import (LabelledData, default_data_dir, fingerprint, load_labelled, load_unlabelled, resolve,
                           stratified_sample, train_validation_split)
from training.metrics import evaluate_logits, fit_temperature
from training.short_texts import SHORT_TEXT_VERSION, ShortTexts, short_text_set, training_crops

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "gensim", "onnx", "onnxruntime", "numpy", "pandas")


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


def load_inputs(config: TrainConfig, data_dir: Path | None = None) -> TrainingInputs:
    """Load the labelled and unlabelled files named by the config (sampled as configured)."""
    train_path = resolve(config.train_file, data_dir)
    labelled = load_labelled(train_path, text_column=config.text_column, label_column=config.label_column,
                             skip_bad_rows=config.skip_bad_rows, rating_column=config.rating_column)
    if config.sample:
        labelled = labelled.subset(stratified_sample(labelled.labels, config.sample, config.seed))
    fingerprints = {str(train_path): fingerprint(train_path)}
    unlabelled: list[str] = []
    if config.unlabelled_file and config.unlabelled_sample != 0:
        unlabelled_path = resolve(config.unlabelled_file, data_dir)
        unlabelled = load_unlabelled(unlabelled_path, text_column=config.text_column)
        if config.unlabelled_sample:
            rng = np.random.default_rng(config.seed)
            keep = np.sort(rng.choice(len(unlabelled), min(config.unlabelled_sample, len(unlabelled)), replace=False))
            unlabelled = [unlabelled[i] for i in keep]
        fingerprints[str(unlabelled_path)] = fingerprint(unlabelled_path)
    return TrainingInputs(labelled, unlabelled, fingerprints)


# -- batching -------------------------------------------------------------------------------------
def length_bucketed_batches(
    sequences: Sequence[np.ndarray], labels: np.ndarray, batch_size: int, chunk: int, rng: np.random.Generator | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield right-padded batches of similar-length reviews.

    Shuffle, cut into chunks of ``chunk`` batches, sort each chunk by length, then shuffle the
    batch order: padding stays small while every epoch still sees a different mix.
    With ``rng=None`` the whole set is sorted once (for evaluation).
    """
    n = len(sequences)
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=n)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    size = batch_size * chunk if rng is not None else n
    batches = []
    for start in range(0, n, size):
        idx = order[start : start + size]
        idx = idx[np.argsort(lengths[idx], kind="stable")]
        batches += [idx[j : j + batch_size] for j in range(0, len(idx), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    for b in batches:
        yield pad_batch([sequences[i] for i in b]), labels[b].astype(np.float32), b


def as_dataset(make_batches, weights: np.ndarray):
    """Wrap a batch generator factory in a tf.data pipeline: (ids [B, T], labels [B], sample weights [B])."""
    import tensorflow as tf

    weights = np.asarray(weights, dtype=np.float32)
    return tf.data.Dataset.from_generator(
        lambda: ((x, y, weights[idx]) for x, y, idx in make_batches()),
        output_signature=(tf.TensorSpec((None, None), tf.int64), tf.TensorSpec((None,), tf.float32),
                          tf.TensorSpec((None,), tf.float32)),
    ).prefetch(4)


def logit_function(serving_model):
    """Return a compiled (graph-mode) function ids → logits; eager LSTM calls are ~10x slower."""
    import tensorflow as tf

    return tf.function(lambda ids: serving_model(ids, training=False)["logit"], reduce_retracing=True,
                       input_signature=[tf.TensorSpec((None, None), tf.int64)])


def predict_logits(logits_fn, sequences: Sequence[np.ndarray], batch_size: int = 128) -> np.ndarray:
    """Return the Keras model's logits for encoded sequences (length-sorted batches, order kept)."""
    out = np.empty(len(sequences), dtype=np.float64)
    dummy = np.zeros(len(sequences), dtype=np.float32)
    for x, _, idx in length_bucketed_batches(sequences, dummy, batch_size, 1, None):
        out[idx] = np.asarray(logits_fn(x)).reshape(-1)
    return out


# -- parity ---------------------------------------------------------------------------------------
def check_parity(serving, staging: Path, sequences: Sequence[np.ndarray], config: TrainConfig,
                 temperature: float) -> dict:
    """Compare Keras, ONNX Runtime and SavedModel outputs on real reviews of mixed lengths.

    Keras scores the reviews in random-order batches (lots of padding) and one at a time (none);
    ONNX Runtime and the SavedModel score them length-sorted. Both outputs are checked: the raw
    logit (as a probability, what the service calibrates itself) and the graph's calibrated
    ``probability`` (temperature baked in, what TF Serving returns), which must also equal the
    service's own calibration. All must agree within tolerance.
    """
    from inference.predictor import OnnxRuntimeBackend, SavedModelBackend, sigmoid

    lengths = np.array([len(s) for s in sequences])
    pick = np.argsort(lengths, kind="stable")[np.linspace(0, len(sequences) - 1,
                                                          min(config.parity_reviews, len(sequences))).astype(int)]
    rng = np.random.default_rng(config.seed)
    pick = rng.permutation(np.unique(pick))
    seqs = [sequences[i] for i in pick]

    def keras_outputs(batch: list) -> tuple[np.ndarray, np.ndarray]:
        out = serving.predict(pad_batch(batch), verbose=0)
        return sigmoid(np.asarray(out["logit"]).reshape(-1)), np.asarray(out["probability"]).reshape(-1)

    mixed, mixed_calibrated = (np.concatenate(parts) for parts in
                               zip(*(keras_outputs(seqs[i:i + 32]) for i in range(0, len(seqs), 32))))
    alone = np.array([keras_outputs([s])[0][0] for s in seqs[:32]])
    order = np.argsort([len(s) for s in seqs], kind="stable")

    def sorted_scores(score) -> np.ndarray:
        out = np.empty(len(seqs))
        for i in range(0, len(seqs), 64):
            idx = order[i:i + 64]
            out[idx] = score(pad_batch([seqs[j] for j in idx]))
        return out

    onnx, saved = OnnxRuntimeBackend(staging / ONNX_FILE), SavedModelBackend(staging / SAVED_MODEL_DIR)
    onnx_logits = sorted_scores(onnx.logits)
    onnx_probability = sorted_scores(onnx.probabilities)
    result = {
        "reviews": len(seqs),
        "min_tokens": int(min(len(s) for s in seqs)),
        "max_tokens": int(max(len(s) for s in seqs)),
        "temperature": temperature,
        "onnx_vs_keras_max_abs_diff": float(np.abs(sigmoid(onnx_logits) - mixed).max()),
        "savedmodel_vs_keras_max_abs_diff": float(np.abs(sigmoid(sorted_scores(saved.logits)) - mixed).max()),
        "keras_alone_vs_batched_max_abs_diff": float(np.abs(alone - mixed[:32]).max()),
        "onnx_probability_vs_keras_max_abs_diff": float(np.abs(onnx_probability - mixed_calibrated).max()),
        "savedmodel_probability_vs_keras_max_abs_diff":
            float(np.abs(sorted_scores(saved.probabilities) - mixed_calibrated).max()),
        "onnx_probability_vs_service_calibration_max_abs_diff":
            float(np.abs(onnx_probability - sigmoid(onnx_logits / temperature)).max()),
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
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
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


# -- the run --------------------------------------------------------------------------------------
def encode_all(vocab: Vocabulary, token_lists: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """Encode tokenised texts (head+tail truncation) as int64 id arrays."""
    return [np.asarray(vocab.ids_for_tokens(t), dtype=np.int64) for t in token_lists]


def branch_accuracies(labels: np.ndarray, logits: dict[str, np.ndarray]) -> dict[str, float]:
    """Return the accuracy of each named logit vector (for the ablation in the manifest)."""
    return {k: float(((v > 0) == (labels == 1)).mean()) for k, v in logits.items()}


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

    from training.behaviour import load_suite, markdown_table, run_suite
    from training.model import (build_classifier, extract_weights, install_ngram_branch, ngram_orders,
                                serving_model, set_embedding_trainable)
    from training.ngrams import fit_combination, fit_nbsvm, ngram_scores
    from training.onnx_export import build_onnx_model
    from training.report import write_report

    started, cpu_started = time.perf_counter(), time.process_time()
    timings: dict[str, float] = {}
    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    # 1. Split the labelled data (validation doubles as calibration and early-stopping set).
    labelled = inputs.labelled
    train_idx, val_idx = train_validation_split(labelled.labels, config.val_fraction, config.seed)
    y_train, y_val = labelled.labels[train_idx], labelled.labels[val_idx]
    ratings = labelled.ratings_or_unknown()
    log.info("data: %d train, %d validation, %d unlabelled", len(train_idx), len(val_idx), len(inputs.unlabelled))

    # 2. Tokenise everything once (the same tokenizer the service uses). Short texts: snippets of
    #    clearly rated training reviews to train on, sentences of validation reviews to evaluate on.
    t0 = time.perf_counter()
    quiet = not sys.stderr.isatty()
    tokens = [tokenize(t) for t in tqdm(labelled.texts, desc="tokenise labelled", disable=quiet)]
    unlabelled_tokens = [tokenize(t) for t in tqdm(inputs.unlabelled, desc="tokenise unlabelled", disable=quiet)]
    train_tokens = [tokens[i] for i in train_idx]
    crops = ShortTexts([], np.zeros(0, np.int8), np.zeros(0, np.int64))
    if config.crops_per_review:
        crops = training_crops([labelled.texts[i] for i in train_idx], y_train, ratings[train_idx],
                               per_review=config.crops_per_review, seed=config.seed)
    short = short_text_set([labelled.texts[i] for i in val_idx], y_val, ratings[val_idx], seed=config.seed)
    log.info("short texts: %d training snippets, %d validation sentences", len(crops), len(short))
    timings["tokenise_s"] = time.perf_counter() - t0

    # 3. Vocabulary from training text only (validation stays unseen), with the truncation rule.
    vocab = Vocabulary.build(train_tokens + unlabelled_tokens, max_size=config.max_vocab,
                             min_count=config.min_count, max_len=config.max_len, head=config.head_len)

    # 4. word2vec on the same text, then an embedding matrix aligned with the vocabulary.
    t0 = time.perf_counter()
    w2v = train_word2vec(train_tokens + unlabelled_tokens, dim=config.w2v_dim, window=config.w2v_window,
                         min_count=config.min_count, epochs=config.w2v_epochs, sg=config.w2v_sg,
                         negative=config.w2v_negative, workers=config.w2v_workers, seed=config.seed,
                         previous=previous_word2vec)
    matrix, embedding_stats = embedding_matrix(vocab, w2v.wv, seed=config.seed)
    timings["word2vec_s"] = time.perf_counter() - t0
    del unlabelled_tokens

    # 5. Encode (truncate head+tail) and build the classifier. Snippets join the whole reviews,
    #    each weighing crop_weight in the loss.
    x_train = encode_all(vocab, train_tokens) + vocab.encode_many(crops.texts)
    y_fit = np.concatenate([y_train, crops.labels]).astype(np.int8)
    w_fit = np.concatenate([np.ones(len(train_idx)), np.full(len(crops), config.crop_weight)])
    x_val = encode_all(vocab, [tokens[i] for i in val_idx])
    x_short = vocab.encode_many(short.texts)
    del tokens, train_tokens
    model = build_classifier(config, matrix)
    logits_fn = logit_function(serving_model(model))
    train_ds = as_dataset(lambda: length_bucketed_batches(x_train, y_fit, config.batch_size, config.bucket_chunk,
                                                          rng), w_fit)
    steps = -(-len(x_train) // config.batch_size)

    # 6. Train: word2vec embedding frozen first, then fine-tuned at a lower rate; the learning
    #    rate decays each epoch; keep the weights of the best validation loss (early stopping).
    #    The n-gram table is still zero here, so this trains the LSTM branch alone.
    t0 = time.perf_counter()
    phases = [("frozen", False)] * config.frozen_epochs + [("finetune", True)] * config.finetune_epochs
    history: list[dict] = []
    best = (np.inf, None, 0)
    since_best = 0
    current_phase = None
    for epoch, (phase, trainable) in enumerate(phases, start=1):
        if phase != current_phase:
            set_embedding_trainable(model, trainable, config)
            current_phase, epoch_in_phase = phase, 0
        base_lr = config.finetune_learning_rate if trainable else config.learning_rate
        lr = base_lr * config.lr_decay ** epoch_in_phase
        model.optimizer.learning_rate.assign(lr)
        epoch_in_phase += 1
        e0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # progress to stderr: stdout is the CLI's JSON result
            fit = model.fit(train_ds, epochs=1, steps_per_epoch=steps, verbose=2 if quiet else 1)
        val_logits = predict_logits(logits_fn, x_val)
        val_probs = 1 / (1 + np.exp(-val_logits))
        val_loss = float(-np.mean(y_val * np.log(np.clip(val_probs, 1e-7, 1)) +
                                  (1 - y_val) * np.log(np.clip(1 - val_probs, 1e-7, 1))))
        row = {"epoch": epoch, "phase": phase, "lr": lr, "loss": float(fit.history["loss"][-1]),
               "accuracy": float(fit.history["accuracy"][-1]), "val_loss": val_loss,
               "val_accuracy": float(((val_probs >= 0.5) == (y_val == 1)).mean()),
               "seconds": time.perf_counter() - e0}
        history.append(row)
        log.info("epoch %d (%s): %s", epoch, phase, json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                                               for k, v in row.items()}))
        if val_loss < best[0]:
            best, since_best = (val_loss, model.get_weights(), epoch), 0
        else:
            since_best += 1
            if since_best > config.patience:
                log.info("early stopping after epoch %d (best epoch %d)", epoch, best[2])
                break
    model.set_weights(best[1])
    timings["train_s"] = time.perf_counter() - t0

    # 7. The n-gram branch: NBSVM fitted in closed form on the same training rows (snippets
    #    included), then one logistic regression on validation weighs the two branches (folded
    #    into the Dense layer: the graph stays Embedding → LSTM → pooling ⊕ n-grams → Dense).
    t0 = time.perf_counter()
    branches = {"lstm": predict_logits(logits_fn, x_val)}
    short_branches = {"lstm": predict_logits(logits_fn, x_short)}
    combination: dict = {}
    if config.ngram_order:
        orders = ngram_orders(config)
        table, intercept = fit_nbsvm(x_train, y_fit, len(vocab), config.ngram_buckets, orders, sample_weight=w_fit,
                                     c=config.ngram_c, alpha=config.ngram_alpha)
        branches["ngrams"] = ngram_scores(table, pad_batch(x_val), len(vocab), config.ngram_buckets, orders) + intercept
        short_branches["ngrams"] = ngram_scores(table, pad_batch(x_short), len(vocab), config.ngram_buckets,
                                                orders)[:len(x_short)] + intercept
        weights, bias, crossfit = fit_combination(np.column_stack([branches["lstm"], branches["ngrams"]]), y_val,
                                                  config.seed)
        install_ngram_branch(model, table, intercept, weights, bias)
        combination = {"method": "logistic regression on validation logits", "lstm_weight": float(weights[0]),
                       "ngram_weight": float(weights[1]), "bias": bias, "accuracy_crossfit": crossfit}
        log.info("n-gram branch: %s", combination)
    timings["ngrams_s"] = time.perf_counter() - t0

    # 8. Calibrate on validation: one temperature for the logits (Guo et al. 2017).
    val_logits = predict_logits(logits_fn, x_val)
    short_logits = predict_logits(logits_fn, x_short)
    temperature = fit_temperature(y_val, val_logits)
    evaluation = evaluate_logits(y_val, val_logits, temperature, config.ece_bins)
    short_eval = evaluate_logits(short.labels, short_logits, temperature, config.ece_bins) if len(short) else None
    ablation = {"validation": branch_accuracies(y_val, {**branches, "combined": val_logits}),
                "short_texts": branch_accuracies(short.labels, {**short_branches, "combined": short_logits})
                if len(short) else {}}
    log.info("validation: accuracy %.4f, ECE %.4f → %.4f after T=%.3f; short texts: %s",
             evaluation["calibrated"]["accuracy"], evaluation["uncalibrated"]["ece"],
             evaluation["calibrated"]["ece"], temperature,
             "none" if short_eval is None else f"accuracy {short_eval['calibrated']['accuracy']:.4f} on {len(short)}")

    # 9. Write the artifact in a staging directory, check runtime parity, run the behaviour suite
    #    on the exported graph, publish atomically.
    t0 = time.perf_counter()
    with registry.staging_dir(name) as staging:
        serving = serving_model(model, temperature)
        model.save(staging / KERAS_FILE)
        serving.export(str(staging / SAVED_MODEL_DIR), format="tf_saved_model", verbose=False)
        import onnx

        onnx.save(build_onnx_model(extract_weights(model, config), temperature), str(staging / ONNX_FILE))
        vocab.save(staging / TOKENIZER_FILE)
        w2v.save(str(staging / WORD2VEC_FILE))
        parity = check_parity(serving, staging, x_val, config, temperature)
        behaviour = run_suite(onnx_scorer(staging, vocab, temperature), load_suite())
        log.info("behaviour suite: %.1f %% of %d cases pass", 100 * behaviour["pass_rate"], behaviour["cases"])
        timings["export_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - started
        timings["total_cpu_s"] = time.process_time() - cpu_started
        metrics = {**{k: v for k, v in evaluation["calibrated"].items()},
                   "ece_uncalibrated": evaluation["uncalibrated"]["ece"],
                   "accuracy_uncalibrated": evaluation["uncalibrated"]["accuracy"],
                   "best_epoch": best[2], "split": "validation"}
        short_metrics = None if short_eval is None else {
            "version": SHORT_TEXT_VERSION, "sentences": len(short), "reviews": int(len(np.unique(short.source))),
            **{k: short_eval["calibrated"][k] for k in ("accuracy", "f1", "roc_auc", "log_loss", "ece")}}
        manifest = {
            "format": ARTIFACT_FORMAT,
            "name": name,
            "created_at": time.time(),
            "config": config.to_dict(),
            "calibration": {"method": "temperature", "temperature": temperature, "fitted_on": "validation",
                            "baked_into": "probability output of model.onnx and saved_model/"},
            "metrics": metrics,
            "short_text_metrics": short_metrics,
            "ablation": ablation,
            "combination": combination,
            "behaviour": {k: v for k, v in behaviour.items() if k != "tests"},
            "history": history,
            "embedding": embedding_stats,
            "parity": parity,
            "timings": timings,
            "data": {"train_rows": len(train_idx), "validation_rows": len(val_idx), "training_snippets": len(crops),
                     "unlabelled_rows": len(inputs.unlabelled), "skipped_rows": labelled.skipped},
            "lineage": {"parent_version": parent_version, "data_fingerprints": inputs.fingerprints,
                        "git_commit": git_commit()},
            "packages": package_versions(),
            "python": sys.version.split()[0],
            **(extra_manifest or {}),
        }
        write_report(staging / REPORT_DIR, f"Model {name}: validation report", evaluation, history=history,
                     context={"validation rows": len(val_idx), "best epoch": best[2],
                              "training time (s)": round(timings["total_s"])},
                     sections=[quality_section(short_metrics, ablation, combination), markdown_table(behaviour)],
                     extra_metrics={"short_texts": short_metrics, "ablation": ablation, "behaviour": behaviour})
        write_json_atomic(staging / MANIFEST, manifest)
        with registry.lock(name):
            version = registry.commit_version(name, staging)
            should_promote = promote == "always" or (promote == "auto" and registry.production_version(name) is None)
            if should_promote:
                registry.promote(name, version)
    path = registry.version_dir(name, version)
    log.info("published %s version %d at %s (promoted: %s) in %.0f s", name, version, path, should_promote,
             timings["total_s"])
    return TrainResult(version, path, manifest, should_promote)


def onnx_scorer(staging: Path, vocab: Vocabulary, temperature: float):
    """Return texts → calibrated probabilities through the exported ONNX graph (the service's path)."""
    from inference.predictor import OnnxRuntimeBackend, sigmoid

    backend = OnnxRuntimeBackend(staging / ONNX_FILE)

    def score(texts: Sequence[str]) -> np.ndarray:
        return sigmoid(predict_logits(backend.logits, vocab.encode_many(texts), batch_size=64) / temperature)

    return score


def quality_section(short_metrics: dict | None, ablation: dict, combination: dict) -> str:
    """Return the report's Markdown on short texts and on what each branch contributes."""
    lines = ["## Short texts and branches", ""]
    if short_metrics:
        lines += [f"Short-text validation (v{short_metrics['version']}): {short_metrics['sentences']} opinionated "
                  f"sentences of 5-30 tokens from {short_metrics['reviews']} clearly rated validation reviews "
                  f"(training/short_texts.py): accuracy **{short_metrics['accuracy']:.4f}**, "
                  f"ECE {short_metrics['ece']:.4f}.", ""]
    else:
        lines += ["No short-text validation: the training data has no rating column.", ""]
    lines += ["| branch | validation accuracy | short-text accuracy |", "| --- | --- | --- |"]
    for branch, accuracy in ablation["validation"].items():
        short_accuracy = ablation["short_texts"].get(branch)
        lines.append(f"| {branch} | {accuracy:.4f} | "
                     f"{'' if short_accuracy is None or not short_metrics else f'{short_accuracy:.4f}'} |")
    if combination:
        lines += ["", f"Combined = {combination['lstm_weight']:.3f} × LSTM + {combination['ngram_weight']:.3f} × "
                      f"n-grams + {combination['bias']:.3f} (fitted on validation; 2-fold cross-fitted accuracy "
                      f"{combination['accuracy_crossfit']:.4f})."]
    return "\n".join(lines) + "\n"


# -- command line ---------------------------------------------------------------------------------
def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _none_or(kind):
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    """Return the CLI parser; every TrainConfig field is also a flag."""
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train a sentiment model (word2vec + LSTM), evaluate it, and publish a new version "
                    "to the model registry.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full",
                        help="named configuration: full = quality run, small = CI-sized 2k sample, tiny = tests")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding the data files (default: $SENTIMENT_DATA_DIR or ../shared/data/imdb)")
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("SENTIMENT_MODEL_DIR", "models")),
                        help="model registry root (default: $SENTIMENT_MODEL_DIR or ./models)")
    parser.add_argument("--model-name", default=os.environ.get("SENTIMENT_MODEL_NAME", "sentiment"),
                        help="model name inside the registry")
    parser.add_argument("--promote", choices=("auto", "always", "never"), default="auto",
                        help="mark the new version production: auto = only if none is yet")
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing if the registry already has a production version (for the quickstart)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    group = parser.add_argument_group("hyperparameters (override the preset; meanings in training/config.py)")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = next((t for t in typing.get_args(hints[f.name]) if t is not type(None)), hints[f.name])
        if kind is bool:
            group.add_argument(flag, type=_parse_bool, default=argparse.SUPPRESS, metavar="BOOL",
                               help=f"true/false (full preset: {f.default})")
        else:
            group.add_argument(flag, type=_none_or(kind), default=argparse.SUPPRESS, metavar=kind.__name__.upper(),
                               help=f"full preset: {f.default}" + ("; 'none' clears it" if f.default is None else ""))
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Return the preset with every flag given on the command line applied."""
    config = preset(args.preset)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    return config.replace(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the training CLI."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("gensim").setLevel(logging.WARNING)
    registry = Registry(args.model_dir)
    if args.if_missing and registry.production_version(args.model_name) is not None:
        log.info("model %s already has production version %s; nothing to do", args.model_name,
                 registry.production_version(args.model_name))
        return 0
    config = config_from_args(args)
    from training.data import DataError

    try:
        inputs = load_inputs(config, args.data_dir or default_data_dir())
    except DataError as exc:
        log.error("%s", exc)
        return 2
    result = train_version(config, inputs, registry, args.model_name, promote=args.promote)
    print(json.dumps({"version": result.version, "path": str(result.path), "promoted": result.promoted,
                      "metrics": result.manifest["metrics"], "timings": result.manifest["timings"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
