"""A dense embedder: a transformer as an ONNX graph run by onnxruntime.

`kinds.load_model(name)` resolves and verifies the model directory (see registry.py) and opens it
as the kind its manifest names; `model.embed(texts)` is the simple library entry point, and
`vecpipe.core.models.batching` streams large inputs through `model.vectors_of`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from vecpipe.core.errors import ModelError, UsageError
from vecpipe.core.models.base import EmbeddingModel, default_threads
from vecpipe.core.models.manifest import GRAPH_FILE

__all__ = ["EmbeddingModel", "Model", "default_threads"]


class Model(EmbeddingModel):
    """A model whose vectors come from an ONNX graph run by onnxruntime."""

    _session = None
    # onnxruntime repacks the weights for its GEMM kernels when the session opens: ~45 ms more
    # load for MiniLM, paid back over many batches but not by a one-off query (which runs ~5 ms
    # slower without it). Set False before the first batch for a one-off.
    prepack_weights = True

    def vectors_of(self, id_lists: list[list[int]], batch_tokens: int, max_batch: int) -> np.ndarray:
        """Padded batches in ascending length, each under the padded-token budget."""
        lengths = np.fromiter((len(ids) for ids in id_lists), dtype=np.int64, count=len(id_lists))
        out = np.empty((len(id_lists), self.dim), dtype=np.float32)
        for group in token_budget_batches(lengths, batch_tokens, max_batch):
            width = int(lengths[group[-1]])
            ids = np.zeros((len(group), width), dtype=np.int64)
            mask = np.zeros((len(group), width), dtype=np.int64)
            for row, idx in enumerate(group):
                seq = id_lists[idx]
                ids[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
            vectors = self.run(ids, mask)
            if vectors.ndim != 2 or vectors.shape[1] != self.dim:  # a hand-edited manifest, or a graph swapped in
                raise ModelError(f"the graph gives vectors of {vectors.shape[-1]} dimensions but vecpipe.json says {self.dim}", str(self.dir))
            out[group] = vectors
        return out

    @property
    def session(self):
        if self._session is None:
            self._session = _open_session(self.dir / GRAPH_FILE, self.threads, self.prepack_weights)
            self._outputs = {o.name for o in self._session.get_outputs()}
            self._inputs = [i.name for i in self._session.get_inputs()]
        return self._session

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Pooled (not normalized) float32 vectors for one padded batch."""
        session = self.session
        given = {"input_ids": ids, "attention_mask": mask}
        feed = {name: given[name] if name in given else np.zeros_like(ids) for name in self._inputs}  # token_type_ids: one type
        if self.pooling == self.manifest["pooling"] and "sentence_embedding" in self._outputs:
            return session.run(["sentence_embedding"], feed)[0]
        tokens = session.run(["token_embeddings"], feed)[0]
        return pool_tokens(tokens, mask, self.pooling)


def token_budget_batches(lengths: np.ndarray, batch_tokens: int, max_batch: int) -> Iterator[np.ndarray]:
    """Index groups in ascending length, each under the padded-token budget."""
    order = np.argsort(lengths, kind="stable")
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < max_batch and (end - start + 1) * lengths[order[end]] <= batch_tokens:
            end += 1
        yield order[start:end]
        start = end


def pool_tokens(tokens: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    maskf = mask.astype(np.float32)
    if pooling == "mean":
        summed = np.einsum("bs,bsh->bh", maskf, tokens)
        return summed / np.maximum(maskf.sum(1, keepdims=True), 1e-9)
    if pooling == "cls":
        return np.ascontiguousarray(tokens[:, 0])
    if pooling == "max":
        return np.where(maskf[..., None] > 0, tokens, -1e9).max(1)
    if pooling == "last":  # the last unmasked position, under right or left padding
        last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
        return tokens[np.arange(len(tokens)), last]
    raise UsageError(f"unknown pooling {pooling!r}")


def _open_session(path: Path, threads: int, prepack: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # shape-merge warnings from the optimizer are noise for users
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise ModelError(f"onnxruntime cannot load the model ({str(exc).splitlines()[0]})", str(path)) from None


