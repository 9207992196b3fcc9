"""Fewer dimensions: keep a prefix (Matryoshka truncation), or rotate with a PCA learned from a
sample first.

A prefix only works well for models trained with Matryoshka representation learning, whose
first dimensions carry the most. For other models (like the default all-MiniLM-L6-v2) a PCA
rotation puts the directions of most variance first, so that its prefix keeps more. The PCA is
fitted from streamed sums (mean and scatter matrix, merged batch by batch in float64), then
decomposed with numpy's SVD, so a sample of any size fits in constant memory.

Truncated vectors are re-normalized by default, so cosine and dot product still agree; a
vector that truncates to all zeros stays zero rather than becoming NaN.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from vecpipe.core.errors import DataError, UsageError
from vecpipe.core.vectors.npz import SavedArrays, artifact_bytes, check_same_space, count_from, load_npz, provenance_from, space_of
from vecpipe.core.vector_batch import VectorBatch, require_float

PCA_FORMAT = "vecpipe pca 1"


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    """Unit rows; all-zero rows stay zero. Rows are scaled by their largest value first, so that
    squaring neither overflows float32 (values beyond 1e19) nor underflows (below 1e-19)."""
    largest = np.abs(matrix).max(axis=1, keepdims=True)
    scaled = matrix / np.where(largest == 0, 1, largest)
    norms = np.linalg.norm(scaled, axis=1, keepdims=True)
    return scaled / np.where(norms == 0, 1, norms)


def truncate_prefix(matrix: np.ndarray, dim: int, renormalize: bool = True) -> np.ndarray:
    """The first `dim` dimensions of each row (float32), re-normalized unless told not to."""
    kept = matrix[:, :dim].astype(np.float32)
    return l2_normalize(kept) if renormalize else kept


@dataclass(frozen=True)
class PCA(SavedArrays):
    """A PCA rotation: `(x - mean) @ components[:dim].T`, components by decreasing variance."""

    mean: np.ndarray  # (input_dim,) float32
    components: np.ndarray  # (n_components, input_dim) float32, orthonormal rows
    explained_variance: np.ndarray  # (n_components,) float32
    count: int  # how many vectors it was fitted on (0 when the file does not say)
    provenance: dict  # the vector space it was fitted in
    file_bytes: bytes = field(repr=False)  # the .npz exactly as saved or loaded
    path: str | None = None

    @property
    def input_dim(self) -> int:
        return self.mean.shape[0]

    @property
    def n_components(self) -> int:
        return self.components.shape[0]

    @classmethod
    def fitted(cls, mean: np.ndarray, components: np.ndarray, variance: np.ndarray, count: int, provenance: dict) -> "PCA":
        mean, components, variance = (a.astype(np.float32) for a in (mean, components, variance))
        arrays = {"mean": mean, "components": components, "explained_variance": variance}
        return cls(mean, components, variance, count, space_of(provenance), artifact_bytes(PCA_FORMAT, arrays, count, provenance))

    @classmethod
    def load(cls, path: str) -> "PCA":
        arrays, data = load_npz(path, ("mean", "components"), "PCA")
        mean, components = arrays["mean"], arrays["components"]
        if mean.ndim != 1 or components.ndim != 2 or components.shape[1] != mean.shape[0] or components.shape[0] == 0 \
                or mean.dtype.kind != "f" or components.dtype.kind != "f":
            raise DataError(f"PCA file needs a float mean (dim,) and components (n, dim), not {mean.shape} and {components.shape}", path)
        if not (np.isfinite(mean).all() and np.isfinite(components).all()):
            raise DataError("PCA file holds NaN or infinite values", path)
        variance = arrays.get("explained_variance", np.zeros(components.shape[0]))
        return cls(mean.astype(np.float32), components.astype(np.float32), variance.astype(np.float32),
                   count_from(arrays), provenance_from(arrays, path), data, path)

    def project(self, matrix: np.ndarray, dim: int) -> np.ndarray:
        return (matrix.astype(np.float32) - self.mean) @ self.components[:dim].T

    def check_fits(self, batch: VectorBatch, dim: int) -> None:
        name = self.path or "the PCA"
        if "pca_sha256" in batch.provenance:
            raise batch.error(0, "these vectors are already PCA-rotated; use --dim to shorten them further")
        if self.input_dim != batch.matrix.shape[1]:
            raise batch.error(0, f"{name} was fitted on {self.input_dim}-dimensional vectors; these have {batch.matrix.shape[1]}")
        if dim > self.n_components:
            raise UsageError(f"--pca {dim} asks for more components than {name} holds ({self.n_components})")
        check_same_space(self.provenance, batch.provenance, "PCA", name, batch.source, batch.lines[0])


class PCAFitter:
    """Streams batches into a mean and scatter matrix (Chan et al.'s pairwise update, float64)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.scatter: np.ndarray | None = None
        self.provenance: dict = {}

    def add(self, batch: VectorBatch) -> None:
        require_float(batch, "a PCA fit", "fit on the vectors before quantizing")
        if "pca_sha256" in batch.provenance:
            raise batch.error(0, "the sample is already PCA-rotated; fit on unrotated vectors")
        x = batch.matrix.astype(np.float64)
        mean = x.mean(axis=0)
        centered = x - mean
        scatter = centered.T @ centered
        if self.mean is None:
            self.mean, self.scatter, self.provenance = mean, scatter, batch.provenance
        else:
            total = self.count + len(x)
            delta = mean - self.mean
            self.mean = self.mean + delta * (len(x) / total)
            self.scatter += scatter + np.outer(delta, delta) * (self.count * len(x) / total)
        self.count += len(x)

    def fit(self, n_components: int) -> PCA:
        if self.mean is None:
            raise UsageError("the PCA sample is empty")
        if n_components > self.mean.shape[0]:
            raise UsageError(f"--pca {n_components} is more than the sample's {self.mean.shape[0]} dimensions")
        if self.count <= n_components:
            raise UsageError(f"a PCA to {n_components} dimensions needs more than {n_components} sample vectors; the sample has {self.count}")
        covariance = self.scatter / (self.count - 1)
        _, variance, rows = np.linalg.svd(covariance, hermitian=True)
        components = _deterministic_signs(rows[:n_components])
        return PCA.fitted(self.mean, components, variance[:n_components], self.count, self.provenance)


def _deterministic_signs(components: np.ndarray) -> np.ndarray:
    """Flip each component so its largest entry is positive: the same sample gives the same file."""
    largest = np.abs(components).argmax(axis=1)
    signs = np.sign(components[np.arange(len(components)), largest])
    return components * signs[:, None]


def fit_pca(batches: Iterable[VectorBatch], n_components: int) -> PCA:
    fitter = PCAFitter()
    for batch in batches:
        fitter.add(batch)
    return fitter.fit(n_components)


def check_dim(dim: int, batch: VectorBatch, option: str = "--dim") -> None:
    if dim < 1:
        raise UsageError(f"{option} must be at least 1, not {dim}")
    if dim > batch.matrix.shape[1]:
        raise UsageError(f"{option} {dim} is larger than the vectors ({batch.matrix.shape[1]} dimensions)", batch.source, batch.lines[0])


def truncate_batch(batch: VectorBatch, dim: int, renormalize: bool = True, pca: PCA | None = None) -> VectorBatch:
    """`batch` cut to `dim` dimensions (after rotating with `pca`, when given)."""
    require_float(batch, "truncate", "truncate first, then quantize")
    if pca is None:
        check_dim(dim, batch)
        matrix = truncate_prefix(batch.matrix, dim, renormalize)
    else:
        check_dim(dim, batch, "--pca")
        pca.check_fits(batch, dim)
        matrix = pca.project(batch.matrix, dim)
        matrix = l2_normalize(matrix) if renormalize else matrix
    matrix = matrix.astype(batch.matrix.dtype, copy=False)  # float16 stays float16
    provenance = truncated_provenance(batch.provenance, dim, batch.matrix.shape[1], renormalize, pca)
    return VectorBatch(batch.ids, batch.fields, matrix, provenance, batch.lines, batch.source)


def truncated_provenance(provenance: dict, dim: int, input_dim: int, renormalize: bool, pca: PCA | None) -> dict:
    result = dict(provenance)
    result["dim"] = dim
    result["truncate_dim"] = dim
    unchanged = pca is None and dim == input_dim
    result["normalized"] = renormalize or (unchanged and bool(provenance.get("normalized")))
    if pca is not None:
        result["pca_sha256"] = pca.sha256
    return result


def matryoshka_warning(manifest: dict | None, dim: int) -> str | None:
    """A one-line warning when the model lists its Matryoshka dimensions and `dim` is not one."""
    dims = (manifest or {}).get("matryoshka_dims")
    if not dims or dim in dims or dim == manifest.get("dim"):
        return None
    listed = ", ".join(str(d) for d in sorted(dims, reverse=True))
    name = manifest.get("name", "the model")
    return f"{name} was trained for Matryoshka dimensions {listed}; {dim} is not one, so it may lose more quality"
