"""Train one model version end to end, top to bottom.

data (+ short-text crops) → tokenizer → vocabulary → word2vec → Embedding/LSTM classifier
(training/fit.py) → n-gram branch (NBSVM in closed form, training/ngrams.py) and its combination
→ temperature scaling → evaluation (full reviews, short texts, behaviour suite) → artifact (Keras,
SavedModel, ONNX, tokenizer, manifest) → registry. :func:`train_version` reads as that list of
named steps.

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
from training.lineage import text_key, write_training_data
from training.metrics import cross_fitted_probabilities, evaluate_logits
from training.short_texts import (
    SHORT_TEXT_VERSION,
    ShortTexts,
    negated_counterfactuals,
    opinion_sentences,
    polar_words,
    short_text_set,
    training_crops,
)

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
    x_train: list[np.ndarray]  # whole training reviews, short-text crops, negation pairs, self-training crops
    y_train: np.ndarray
    x_val: list[np.ndarray]  # epoch selection (early stopping) and the branch combination
    y_val: np.ndarray
    x_cal: list[np.ndarray]  # calibration: fits the temperature, never picks the epoch
    y_cal: np.ndarray
    w_train: np.ndarray | None = None  # loss weight per training row; None = all 1 (no crops, no pairs)
    training_snippets: int = 0  # crops after the whole reviews in x_train
    opinion_sentences: int = 0  # single opinionated sentences after the crops
    negation_rows: int = 0  # rows of negation pairs (original, negated) after the opinion sentences
    pseudo_snippets: int = 0  # crops of teacher-labelled unlabelled reviews, after the pairs
    x_short: list[np.ndarray] = field(default_factory=list)  # short-text validation: held-out sentences
    y_short: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    short_reviews: int = 0  # held-out reviews the short texts come from


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
    """Split, tokenise, build the vocabulary and word2vec, encode the splits; add the short texts."""
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
    unlabelled = self_training_inputs(
        config, vocab, inputs.unlabelled, corpus[len(train_idx) :], [labelled.texts[i] for i in held_out]
    )
    del corpus  # the unlabelled tokens are no longer needed; the labelled ones are encoded below

    def encode(index: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(vocab.ids_for_tokens(tokens[i]), dtype=np.int64) for i in index]

    data = Prepared(
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
    add_short_texts(data, config, labelled, train_idx, np.concatenate([val_idx, cal_idx]))
    if unlabelled:
        texts, ids = zip(*unlabelled)
        add_pseudo_labelled_crops(data, config, list(texts), list(ids), len(train_idx))
    return data


def add_short_texts(
    data: Prepared, config: TrainConfig, labelled: LabelledData, train_idx: np.ndarray, held_idx: np.ndarray
) -> None:
    """Add crops and negation pairs of clearly rated reviews to the training rows; cut the short-text set.

    A crop weighs ``crop_weight`` in the loss, each sentence of a negation pair ("was good", and
    "was not good" with the label flipped) ``negation_weight``, a whole review 1. The validation
    sentences come from held-out reviews only (epoch selection and calibration rows: never trained
    on). Without star ratings (a file with no rating column) there is none of them.
    """
    ratings = labelled.ratings_or_unknown()
    train_texts = [labelled.texts[i] for i in train_idx]
    train_labels, train_ratings = labelled.labels[train_idx], ratings[train_idx]
    if config.crops_per_review:
        crops = training_crops(
            train_texts, train_labels, train_ratings, per_review=config.crops_per_review, seed=config.seed
        )
        data.training_snippets = len(crops)
        append_training_rows(data, crops, config.crop_weight)
    if config.opinion_crops_per_review:
        reviews = len(train_idx)
        words = polar_words(data.x_train[:reviews], data.y_train[:reviews], data.vocab.tokens)
        opinions = opinion_sentences(
            train_texts,
            train_labels,
            train_ratings,
            words,
            per_review=config.opinion_crops_per_review,
            seed=config.seed,
        )
        data.opinion_sentences = len(opinions)
        append_training_rows(data, opinions, config.crop_weight)
        log.info("opinion sentences: %d, holding one of %d polar training words", len(opinions), len(words))
    if config.negation_weight:
        negated = negated_counterfactuals(train_texts, train_labels, train_ratings)
        data.negation_rows = len(negated)
        append_training_rows(data, negated, config.negation_weight)
    short = short_text_set(
        [labelled.texts[i] for i in held_idx], labelled.labels[held_idx], ratings[held_idx], seed=config.seed
    )
    data.x_short, data.y_short = data.vocab.encode_many(short.texts), short.labels
    data.short_reviews = int(len(np.unique(short.source)))
    log.info(
        "short texts: %d training snippets, %d negation pairs, %d validation sentences of %d reviews",
        data.training_snippets,
        data.negation_rows // 2,
        len(short),
        data.short_reviews,
    )


def append_training_rows(data: Prepared, rows: ShortTexts, weight: float) -> None:
    """Append short texts to the training rows, each weighing ``weight`` in the loss."""
    if not len(rows):
        return
    weights = data.w_train if data.w_train is not None else np.ones(len(data.x_train))
    data.x_train = data.x_train + data.vocab.encode_many(rows.texts)
    data.w_train = np.concatenate([weights, np.full(len(rows), weight)])
    data.y_train = np.concatenate([data.y_train, rows.labels]).astype(np.int8)


def self_training_inputs(
    config: TrainConfig,
    vocab: Vocabulary,
    texts: Sequence[str],
    tokens: Sequence[Sequence[str]],
    held_out_texts: Sequence[str],
) -> list[tuple[str, np.ndarray]]:
    """Return (text, ids) of the unlabelled reviews self-training may crop; none when it is off.

    An unlabelled text that is also a held-out review would carry the teacher's label into the
    rows that judge the model: such texts are left out (IMDB has none; other data may).
    """
    if not config.pseudo_crops_per_review:
        return []
    if not config.ngram_order:
        log.warning("self-training needs the n-gram branch as its teacher (ngram_order >= 1): skipped")
        return []
    held_keys = {text_key(t) for t in held_out_texts}
    return [
        (text, np.asarray(vocab.ids_for_tokens(t), dtype=np.int64))
        for text, t in zip(texts, tokens, strict=True)
        if text_key(text) not in held_keys
    ]


def add_pseudo_labelled_crops(
    data: Prepared, config: TrainConfig, texts: Sequence[str], ids: list[np.ndarray], reviews: int
) -> None:
    """Add snippets of the unlabelled reviews a teacher reads most confidently, with its label.

    Self-training: the 50k unlabelled IMDB reviews otherwise feed only word2vec. The teacher is
    NBSVM fitted in closed form on the ``reviews`` whole training reviews alone (no crops, no
    pairs), so nothing held out and nothing it labels feeds it. It keeps the ``pseudo_share`` of
    unlabelled reviews with the most extreme scores, half at each end (balanced classes whatever
    the teacher's bias), drops any of them it reads the other way (never relabelled by rank), and
    crops them like clearly rated reviews.
    """
    from training.model import ngram_orders
    from training.ngrams import fit_nbsvm, negation_for, ngram_scores

    if not 0 < config.pseudo_share <= 1:
        raise ValueError(f"pseudo_share must be in (0, 1], got {config.pseudo_share}")
    per_class = int(len(ids) * config.pseudo_share / 2)
    if per_class == 0:
        return
    orders, vocab_size, buckets = ngram_orders(config), len(data.vocab), config.ngram_buckets
    negation = negation_for(data.vocab, config.ngram_negation_window)
    table, intercept = fit_nbsvm(
        data.x_train[:reviews],
        data.y_train[:reviews],
        vocab_size,
        buckets,
        orders,
        c=config.ngram_c,
        alpha=config.ngram_alpha,
        negation=negation,
    )
    chunk = 2000
    scores = np.concatenate(
        [
            ngram_scores(table, pad_batch(ids[i : i + chunk]), vocab_size, buckets, orders, negation)
            for i in range(0, len(ids), chunk)
        ]
    )
    scores += intercept
    order = np.argsort(scores, kind="stable")
    # The per_class lowest and highest scores, each labelled by the side of 0 it is on: a review
    # the teacher reads as positive is never labelled negative for being in the lower half.
    low, high = order[:per_class], order[len(order) - per_class :]
    keep = np.concatenate([low[scores[low] < 0], high[scores[high] > 0]])
    labels = (scores[keep] > 0).astype(np.int8)
    crops = training_crops(
        [texts[i] for i in keep],
        labels,
        np.where(labels == 1, 10, 1),  # the teacher's label stands for a clear rating
        per_review=config.pseudo_crops_per_review,
        seed=config.seed,
    )
    data.pseudo_snippets = len(crops)
    append_training_rows(data, crops, config.crop_weight)
    log.info(
        "self-training: %d snippets of %d unlabelled reviews the n-gram teacher reads most confidently",
        len(crops),
        len(keep),
    )


# -- step 3: the n-gram branch --------------------------------------------------------------------
def fit_ngram_branch(
    model, logits_fn, data: Prepared, config: TrainConfig, timings: dict[str, float]
) -> tuple[dict, dict]:
    """Fit NBSVM on the training rows, weigh it against the LSTM on the epoch-selection split, install both.

    NBSVM is fitted in closed form on the same rows the LSTM trained on (crops and pairs too); one
    logistic regression on the epoch-selection split weighs the two branches' logits, and the
    weights are folded into the Dense layer (the graph stays Embedding → LSTM → pooling ⊕ n-grams →
    Dense). Returns (the combination, each branch's logits per held-out split) for the ablation.
    """
    from training.fit import predict_logits
    from training.model import install_ngram_branch, ngram_orders
    from training.ngrams import fit_combination, fit_nbsvm, ngram_scores

    splits = {"validation": data.x_val, "calibration": data.x_cal, "short_texts": data.x_short}
    branches = {split: {"lstm": predict_logits(logits_fn, x)} for split, x in splits.items()}
    if not config.ngram_order:
        return {}, branches
    t0 = time.perf_counter()
    orders, vocab_size, buckets = ngram_orders(config), len(data.vocab), config.ngram_buckets
    negation = model.get_layer("ngrams").negation  # the scope the graph applies, fitted alike
    table, intercept = fit_nbsvm(
        data.x_train,
        data.y_train,
        vocab_size,
        buckets,
        orders,
        sample_weight=data.w_train,
        c=config.ngram_c,
        alpha=config.ngram_alpha,
        negation=negation,
    )
    for split, x in splits.items():
        scores = ngram_scores(table, pad_batch(x), vocab_size, buckets, orders, negation)
        branches[split]["ngrams"] = scores + intercept
    validation = branches["validation"]
    weights, bias, crossfit = fit_combination(
        np.column_stack([validation["lstm"], validation["ngrams"]]), data.y_val, config.seed
    )
    install_ngram_branch(model, table, intercept, weights, bias)
    timings["ngrams_s"] = time.perf_counter() - t0
    combination = {
        "method": "logistic regression on the epoch-selection split's logits",
        "lstm_weight": float(weights[0]),
        "ngram_weight": float(weights[1]),
        "bias": bias,
        "accuracy_crossfit": crossfit,
    }
    log.info("n-gram branch: %s", combination)
    return combination, branches


def branch_accuracies(labels: np.ndarray, logits: dict[str, np.ndarray]) -> dict[str, float]:
    """Return the accuracy of each named logit vector (the ablation in the manifest)."""
    return {k: float(((np.asarray(v) > 0) == (labels == 1)).mean()) for k, v in logits.items()}


# -- step 4: calibrate ----------------------------------------------------------------------------
def calibrate(logits: np.ndarray, data: Prepared, config: TrainConfig) -> dict:
    """Fit one temperature on the calibration split's logits (Guo et al. 2017); return its evaluation.

    The served temperature is fitted on the whole split; the "after scaling" metrics come from
    2-fold cross-fitting (each row scaled by the temperature fitted on the other half), so no row
    is judged by a temperature it helped fit.
    """
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


def evaluate_held_out(
    logits_fn, data: Prepared, config: TrainConfig, combination: dict, branches: dict
) -> tuple[dict, dict]:
    """Calibrate, then score the short texts; return (calibration evaluation, quality fields of the manifest).

    The quality fields are the short-text validation metrics, the branch ablation and the
    combination. The ablation's "combined" column is the exported graph itself, measured on the
    calibration split, which neither the branches nor their combination were fitted on.
    """
    from training.fit import predict_logits

    branches["calibration"]["combined"] = predict_logits(logits_fn, data.x_cal)
    evaluation = calibrate(branches["calibration"]["combined"], data, config)
    short_metrics = None
    if len(data.x_short):
        logits = predict_logits(logits_fn, data.x_short)
        branches["short_texts"]["combined"] = logits
        calibrated = evaluate_logits(data.y_short, logits, evaluation["temperature"], config.ece_bins)[
            "calibrated"
        ]
        short_metrics = {
            "version": SHORT_TEXT_VERSION,
            "sentences": len(data.x_short),
            "reviews": data.short_reviews,
            **{k: calibrated[k] for k in ("accuracy", "f1", "roc_auc", "log_loss", "ece")},
        }
        log.info("short texts: accuracy %.4f on %d sentences", short_metrics["accuracy"], len(data.x_short))
    ablation = {"calibration": branch_accuracies(data.y_cal, branches["calibration"])}
    ablation["short_texts"] = (
        branch_accuracies(data.y_short, branches["short_texts"]) if short_metrics else {}
    )
    return evaluation, {"short_text_metrics": short_metrics, "ablation": ablation, "combination": combination}


# -- step 5: export -------------------------------------------------------------------------------
def export(
    model, data: Prepared, staging: Path, config: TrainConfig, temperature: float
) -> tuple[dict, dict]:
    """Write Keras, SavedModel, ONNX, tokenizer and word2vec files; return (runtime parity, behaviour suite).

    Both graphs output the raw ``logit`` and ``probability`` = sigmoid(logit / temperature), so a
    runtime serving either as-is (TF Serving, Triton) returns calibrated probabilities. The
    behaviour suite (training/behaviour.py) scores the exported ONNX graph, the service's path.
    """
    import onnx

    from training.behaviour import run_suite
    from training.model import extract_weights, serving_model
    from training.onnx_export import build_onnx_model

    serving = serving_model(model, temperature)
    model.save(staging / KERAS_FILE)
    serving.export(str(staging / SAVED_MODEL_DIR), format="tf_saved_model", verbose=False)
    onnx.save(build_onnx_model(extract_weights(model, config), temperature), str(staging / ONNX_FILE))
    data.vocab.save(staging / TOKENIZER_FILE)
    data.word2vec.save(str(staging / WORD2VEC_FILE))
    parity = check_parity(serving, staging, data.x_val + data.x_cal, config, temperature)
    behaviour = run_suite(onnx_scorer(staging, data.vocab))
    log.info("behaviour suite: %.1f %% of %d cases pass", 100 * behaviour["pass_rate"], behaviour["cases"])
    return parity, behaviour


def onnx_scorer(staging: Path, vocab: Vocabulary):
    """Return texts → the exported graph's own calibrated probabilities (length-sorted batches)."""
    from inference.predictor import OnnxRuntimeBackend
    from training.fit import predict_logits

    backend = OnnxRuntimeBackend(staging / ONNX_FILE)
    return lambda texts: predict_logits(backend.probabilities, vocab.encode_many(texts), batch_size=64)


# -- parity ---------------------------------------------------------------------------------------
def check_parity(
    serving, staging: Path, sequences: Sequence[np.ndarray], config: TrainConfig, temperature: float
) -> dict:
    """Compare Keras, ONNX Runtime and SavedModel outputs on real reviews of mixed lengths.

    Keras scores the reviews in random-order batches (lots of padding) and one at a time (none);
    ONNX Runtime and the SavedModel score them in the groups the service's planner makes. Both
    outputs are checked: the raw logit (as a probability, what the service calibrates itself) and
    the graph's calibrated ``probability`` (temperature baked in, what TF Serving returns), which
    must also equal the service's own calibration. All must agree within tolerance.
    """
    from inference.batching import BatchPolicy, plan_batches
    from inference.predictor import OnnxRuntimeBackend, SavedModelBackend, sigmoid

    lengths = np.array([len(s) for s in sequences])
    pick = np.argsort(lengths, kind="stable")[
        np.linspace(0, len(sequences) - 1, min(config.parity_reviews, len(sequences))).astype(int)
    ]
    rng = np.random.default_rng(config.seed)
    pick = rng.permutation(np.unique(pick))
    seqs = [sequences[i] for i in pick]

    def keras_outputs(batch: list) -> tuple[np.ndarray, np.ndarray]:
        out = serving.predict(pad_batch(batch), verbose=0)
        return sigmoid(np.asarray(out["logit"]).reshape(-1)), np.asarray(out["probability"]).reshape(-1)

    batched = [keras_outputs(seqs[i : i + 32]) for i in range(0, len(seqs), 32)]
    mixed, mixed_calibrated = (np.concatenate(parts) for parts in zip(*batched))
    alone = np.array([keras_outputs([s])[0][0] for s in seqs[:32]])
    groups = plan_batches([len(s) for s in seqs], BatchPolicy(max_batch_size=64))  # as the service groups

    def sorted_scores(score) -> np.ndarray:
        out = np.empty(len(seqs))
        for idx in groups:
            out[idx] = score(pad_batch([seqs[j] for j in idx]))
        return out

    onnx, saved = OnnxRuntimeBackend(staging / ONNX_FILE), SavedModelBackend(staging / SAVED_MODEL_DIR)
    onnx_logits, onnx_probability = sorted_scores(onnx.logits), sorted_scores(onnx.probabilities)
    service_probability = sigmoid(onnx_logits / temperature)

    def max_diff(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).max())

    result = {
        "reviews": len(seqs),
        "min_tokens": int(min(len(s) for s in seqs)),
        "max_tokens": int(max(len(s) for s in seqs)),
        "temperature": temperature,
        "onnx_vs_keras_max_abs_diff": max_diff(sigmoid(onnx_logits), mixed),
        "savedmodel_vs_keras_max_abs_diff": max_diff(sigmoid(sorted_scores(saved.logits)), mixed),
        "keras_alone_vs_batched_max_abs_diff": max_diff(alone, mixed[:32]),
        "onnx_probability_vs_keras_max_abs_diff": max_diff(onnx_probability, mixed_calibrated),
        "savedmodel_probability_vs_keras_max_abs_diff": max_diff(
            sorted_scores(saved.probabilities), mixed_calibrated
        ),
        "onnx_probability_vs_service_calibration_max_abs_diff": max_diff(
            onnx_probability, service_probability
        ),
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


# -- step 6: write the artifact and publish it -----------------------------------------------------
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
    quality: dict,
) -> dict:
    """Return the manifest: everything needed to trust, rebuild and trace this version.

    ``quality`` holds the short-text metrics, the branch ablation and combination, and the
    behaviour suite's pass rates.
    """
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
            "baked_into": "probability output of model.onnx and saved_model/ (logit stays raw)",
        },
        "metrics": metrics,
        **quality,
        "history": history,
        "embedding": data.embedding_stats,
        "parity": parity,
        "timings": timings,
        "data": {
            "train_rows": len(data.x_train)
            - data.training_snippets
            - data.opinion_sentences
            - data.negation_rows
            - data.pseudo_snippets,
            "validation_rows": len(data.x_val),
            "calibration_rows": len(data.x_cal),
            "training_snippets": data.training_snippets,
            "opinion_sentences": data.opinion_sentences,
            "negation_pairs": data.negation_rows // 2,
            "pseudo_labelled_snippets": data.pseudo_snippets,
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
    from training.behaviour import markdown_table
    from training.report import quality_section, write_report

    if reference is not None:
        write_json_atomic(staging / DRIFT_REFERENCE_FILE, reference)

    context = {
        "epoch-selection rows": manifest["data"]["validation_rows"],
        "calibration rows": manifest["data"]["calibration_rows"],
        "best epoch": manifest["metrics"]["best_epoch"],
        "training time (s)": round(manifest["timings"]["total_s"]),
    }
    title = f"Model {manifest['name']}: validation report"
    sections = [
        quality_section(manifest["short_text_metrics"], manifest["ablation"], manifest["combination"]),
        markdown_table(manifest["behaviour"]),
    ]
    extra = {k: manifest[k] for k in ("short_text_metrics", "ablation", "combination", "behaviour")}
    write_report(
        staging / REPORT_DIR,
        title,
        evaluation,
        history=history,
        context=context,
        sections=sections,
        extra=extra,
    )
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
    from training.model import build_classifier, serving_model
    from training.ngrams import negation_for

    started, cpu_started = time.perf_counter(), time.process_time()
    timings: dict[str, float] = {}
    keras.utils.set_random_seed(config.seed)

    # 1. Data → ids: split, tokenise, vocabulary and word2vec from training text only, encode;
    #    crops and negation pairs of clearly rated training reviews join the training rows.
    data = prepare(config, inputs, previous_word2vec, timings)

    # 2. Fit the LSTM: embedding frozen, then fine-tuned; the best validation epoch is kept.
    t0 = time.perf_counter()
    model = build_classifier(
        config, data.embedding, negation_for(data.vocab, config.ngram_negation_window).ids
    )
    logits_fn = logit_function(serving_model(model))  # the n-gram table is all zeros until step 3
    train, validation = (data.x_train, data.y_train), (data.x_val, data.y_val)
    fitted = fit(
        model, logits_fn, train, validation, config, np.random.default_rng(config.seed), data.w_train
    )
    timings["train_s"] = time.perf_counter() - t0

    # 3. The n-gram branch: NBSVM in closed form, weighed against the LSTM, folded into the Dense layer.
    combination, branches = fit_ngram_branch(model, logits_fn, data, config, timings)

    # 4. Calibrate on the calibration split (one temperature); score the short texts; the ablation.
    evaluation, quality = evaluate_held_out(logits_fn, data, config, combination, branches)

    # 5-6. Export into a staging folder (parity check, behaviour suite), write the manifest last, publish.
    t0 = time.perf_counter()
    log.info("export: Keras model, SavedModel and ONNX graph, then the runtime parity check")
    with registry.staging_dir(name) as staging:
        parity, behaviour = export(model, data, staging, config, evaluation["temperature"])
        timings["export_s"] = time.perf_counter() - t0
        log.info("export, parity check and behaviour suite done in %.0f s", timings["export_s"])
        timings["total_s"] = time.perf_counter() - started
        timings["total_cpu_s"] = time.process_time() - cpu_started
        quality["behaviour"] = behaviour
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
            quality=quality,
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
