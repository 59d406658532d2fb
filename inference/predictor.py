"""Turn texts into calibrated positive-class probabilities with one model version.

Shared by the HTTP service and the batch scorer, so that both use the exact tokenizer,
truncation, bucketing and calibration the model was trained and validated with.
ONNX Runtime is the default runtime; TensorFlow is imported only if the SavedModel runtime
is explicitly requested.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from embeddings.vocabulary import pad_batch
from inference import RUNTIMES
from inference.batching import BatchPolicy, CostModel, plan_batches
from registry.artifact import ONNX_FILE, SAVED_MODEL_DIR, Artifact

log = logging.getLogger(__name__)

POSITIVE, NEGATIVE = "positive", "negative"


class Backend(Protocol):
    """A runtime that maps a right-padded int64 id matrix (B, T) to B raw logits."""

    def logits(self, ids: np.ndarray) -> np.ndarray: ...


class OnnxRuntimeBackend:
    """Runs ``model.onnx`` with ONNX Runtime on the CPU."""

    def __init__(self, model_path: Path, intra_op_threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning threads burn a core between requests; a server shares its cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """Return the raw logits for one padded batch."""
        return self.session.run(["logit"], {"input_ids": ids})[0].reshape(-1)

    def probabilities(self, ids: np.ndarray) -> np.ndarray:
        """Return the graph's own calibrated probabilities (temperature baked in) for one padded batch."""
        return self.session.run(["probability"], {"input_ids": ids})[0].reshape(-1)


class SavedModelBackend:
    """Runs ``saved_model/`` with TensorFlow (heavier: ~0.8 GB per process)."""

    def __init__(self, saved_model_path: Path, intra_op_threads: int = 1) -> None:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TF already initialised in this process (e.g. right after training)
            log.debug("TensorFlow thread pools already set; keeping them")
        self._tf = tf
        self.model = tf.saved_model.load(str(saved_model_path))

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """Return the raw logits for one padded batch."""
        out = self.model.serve(self._tf.constant(ids, dtype=self._tf.int64))
        return np.asarray(out["logit"]).reshape(-1)

    def probabilities(self, ids: np.ndarray) -> np.ndarray:
        """Return the SavedModel's own calibrated probabilities (what TF Serving would return)."""
        out = self.model.serve(self._tf.constant(ids, dtype=self._tf.int64))
        return np.asarray(out["probability"]).reshape(-1)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Return a numerically stable logistic function of ``x`` (the one every package uses).

    numpy rather than ``scipy.special.expit``: the api and scorer images carry no scipy.
    """
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))  # once: the service calibrates every model call's scores with this
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class Predictor:
    """One loaded model version: encode texts, score them in length-sorted batches, calibrate."""

    def __init__(
        self,
        artifact: Artifact,
        backend: Backend,
        *,
        max_batch_size: int = 64,
        max_batch_tokens: int = BatchPolicy.max_batch_tokens,
    ) -> None:
        self.artifact = artifact
        self.backend = backend
        self.name: str = artifact.name
        self.version: int = artifact.version
        self.vocabulary = artifact.vocabulary()
        self.temperature = artifact.temperature
        self.policy = BatchPolicy(max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens)
        self._cost_measured = False
        self._cost_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        runtime: str = "onnx",
        intra_op_threads: int = 1,
        max_batch_size: int = 64,
        max_batch_tokens: int = BatchPolicy.max_batch_tokens,
    ) -> "Predictor":
        """Load the model version stored at ``path`` with the named runtime."""
        artifact = Artifact.open(path)
        if runtime == "onnx":
            backend: Backend = OnnxRuntimeBackend(artifact.file(ONNX_FILE), intra_op_threads)
        elif runtime == "savedmodel":
            backend = SavedModelBackend(artifact.file(SAVED_MODEL_DIR), intra_op_threads)
        else:
            raise ValueError(f"unknown runtime {runtime!r}; choose one of {RUNTIMES}")
        log.info("loaded model %s version %s (%s runtime)", artifact.name, artifact.version, runtime)
        return cls(artifact, backend, max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens)

    # -- the core ------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Tokenise and encode texts exactly as at training time."""
        return self.vocabulary.encode_many(texts)

    @property
    def max_batch_size(self) -> int:
        """Return the most texts one model call takes."""
        return self.policy.max_batch_size

    def measure_cost(self) -> CostModel:
        """Time this runtime on this machine and plan batches with the result from now on."""
        with self._cost_lock:
            cost = CostModel.measure(
                self.backend.logits,
                max_len=self.vocabulary.max_len,
                max_batch_size=self.policy.max_batch_size,
                vocab_size=len(self.vocabulary),
            )
            self.policy = dataclasses.replace(self.policy, cost=cost)
            self._cost_measured = True
        return cost

    def plan(self, lengths: Sequence[int]) -> list[np.ndarray]:
        """Return the groups of indices to score in one model call each (see inference.batching).

        The first plan of more than one text measures the cost model unless warm-up did.
        """
        if len(lengths) > 1 and not self._cost_measured:
            self.measure_cost()
        return plan_batches(lengths, self.policy)

    def logits_for_ids(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """Return raw logits, scoring length-sorted groups chosen by :meth:`plan` (order preserved)."""
        n = len(sequences)
        out = np.empty(n, dtype=np.float64)
        for idx in self.plan([len(s) for s in sequences]):
            out[idx] = self.backend.logits(pad_batch([sequences[i] for i in idx]))
        return out

    def score_together(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """Return calibrated probabilities for sequences scored in a single model call.

        Unlike :meth:`score_ids` there is no plan: for callers that already grouped the sequences
        (the service's batcher, through :meth:`plan`) or compare scores of nearly equal sequences
        (occlusion), and bound the group themselves.
        """
        if not sequences:
            return np.empty(0, dtype=np.float64)
        logits = self.backend.logits(pad_batch(sequences))
        if len(logits) != len(sequences):
            raise RuntimeError(f"the model returned {len(logits)} scores for {len(sequences)} sequences")
        return self.calibrate(logits)

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        """Map raw logits to calibrated probabilities with the stored temperature."""
        return sigmoid(np.asarray(logits, dtype=np.float64) / self.temperature)

    def score_ids(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """Return calibrated positive-class probabilities for encoded texts."""
        return self.calibrate(self.logits_for_ids(sequences))

    def score_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Return calibrated positive-class probabilities for raw texts."""
        return self.score_ids(self.encode(texts))

    @staticmethod
    def label_for(probability: float) -> str:
        """Return the label a probability stands for (threshold 0.5)."""
        return POSITIVE if probability >= 0.5 else NEGATIVE

    def warm_up(self) -> None:
        """Run the model once per batch shape class and check its output is finite.

        Raises ValueError when the model produces NaN/inf: such a version must not be served.
        """
        probe = ["a wonderful, moving film", "dull and far too long! " * 40]
        scores = self.score_texts(probe * 2)
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"model {self.name} v{self.version} produced non-finite scores on warm-up")
        self.measure_cost()
