"""The fitted shared space and the one routine that projects into it.

A shared space is what every solver produces and every consumer reads: for
each modality ``m`` its column indices in X, its means ``mu_m`` and its
weights ``W_m`` (any feature scaling folded in), and the canonical
correlations. Projecting a row's modality ``m`` is ``(x_m - mu_m) W_m``, for
``SharedProjection.transform`` and ``score``, the retrieval embeddings and
``WeightedFusion(align="shared")`` alike: it is written once, here, generic
over the array namespace (numpy, scipy sparse, torch, CuPy, ...), so the
paths cannot drift apart.

Numerics: dense blocks are centred *before* the product, ``(X_m - mu_m) W_m``
(not ``X_m W_m - mu_m W_m``, which loses the digits of a large mean), a row
chunk at a time so the centred copy stays small. Sparse blocks cannot be
centred without densifying them; their product is formed in float64 and the
offset ``mu_m W_m`` subtracted after, which is exact up to the float64
rounding of the offset.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import sparse
from sklearn.externals.array_api_compat import array_namespace
from sklearn.externals.array_api_compat import device as array_device

from ._modalities import check_finite_blocks, take_columns
from ._namespace import accumulation_dtype, to_namespace

# Bytes of one centred row chunk of a dense block in project().
_CHUNK_BYTES = 16 * 2**20


class SharedSpace:
    """Means, weights and correlations of a fitted shared space.

    Parameters
    ----------
    modalities : dict of str -> ndarray of int
        Column indices of each modality in X (``modalities_``).
    means : dict of str -> array of shape (d_m,)
    weights : dict of str -> array of shape (d_m, n_components)
        Any feature scaling is folded in.
    correlations : array of shape (n_components,)
    """

    def __init__(self, modalities, means, weights, correlations):
        self.modalities = modalities
        self.means = means
        self.weights = weights
        self.correlations = correlations

    @property
    def names(self):
        return list(self.modalities)

    @property
    def n_components(self):
        return int(self.correlations.shape[0])

    def project(self, X, names=None, *, present=None):
        """Per-modality projections ``(X_m - mu_m) W_m`` and the presence mask.

        Parameters
        ----------
        X : {ndarray, sparse matrix, array API array} of shape (n, n_features)
            Validated input; a modality block of NaN marks it missing.
        names : list of str, default=None
            The modalities to project (all by default).
        present : array of shape (n, M) of bool, default=None
            The presence mask if the caller has it (else it is computed, with
            the checks for infinity, partial NaN and empty rows).

        Returns
        -------
        projections : list of arrays of shape (n, n_components)
            In X's namespace, device and float dtype (float64 for sparse X of
            another dtype); NaN in the rows where the modality is missing.
        present : array of shape (n, M) of bool
            For every modality of the space, in its order.
        """
        if present is None:
            present = check_finite_blocks(X, self.modalities)
        names = self.names if names is None else list(names)
        projections = [
            self._project_block(X, name, present[:, self.names.index(name)])
            for name in names
        ]
        return projections, present

    def _project_block(self, X, name, present_rows):
        indices = self.modalities[name]
        block = take_columns(X, indices)
        if sparse.issparse(X):
            dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
            W = np.asarray(self.weights[name], dtype=np.float64)
            offset = np.asarray(self.means[name], dtype=np.float64) @ W
            product = np.asarray(block.astype(np.float64) @ W) - offset
            product[~np.asarray(present_rows)] = np.nan
            return product.astype(dtype, copy=False)
        xp = array_namespace(X)
        dev = array_device(X)
        W = to_namespace(xp, self.weights[name], X.dtype, dev)
        mean = to_namespace(xp, self.means[name], X.dtype, dev)
        n_rows, width = block.shape
        step = max(1, _CHUNK_BYTES // (8 * max(width, 1)))
        parts = [
            (block[start : min(start + step, n_rows), :] - mean) @ W
            for start in range(0, n_rows, step)
        ]
        if not parts:
            return xp.zeros((0, W.shape[1]), dtype=X.dtype, device=dev)
        product = parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)
        nan = xp.asarray(float("nan"), dtype=X.dtype, device=dev)
        return xp.where(present_rows[:, None], product, nan)

    def combine(self, projections, present, output):
        """``transform``'s output from :meth:`project`'s result.

        ``output`` is ``"mean"`` (average over the modalities present in each
        row), ``"concat"`` (side by side, NaN where missing) or a modality
        name (its projection, NaN where it is missing).
        """
        xp = array_namespace(projections[0])
        if output == "concat":
            return xp.concat(projections, axis=1)
        if output != "mean":  # "mean" and "concat" are options, whatever the names
            return projections[self.names.index(output)]
        dtype = projections[0].dtype
        total = xp.zeros_like(projections[0])
        for position, projection in enumerate(projections):
            rows = present[:, position][:, None]
            total = total + xp.where(rows, projection, xp.zeros_like(projection))
        counts = xp.sum(xp.astype(present, dtype), axis=1)
        return total / counts[:, None]

    def score(self, projections, present):
        """Mean held-out canonical correlation of the projections.

        The Pearson correlation of each pair of modalities' projections on the
        rows that carry both, averaged over pairs and components. A pair with
        fewer than two such rows, or a component constant on them, has no
        correlation: it is left out with a warning, and when nothing can be
        measured the score is NaN (never a plausible-looking number).
        """
        xp = array_namespace(projections[0])
        dev = array_device(projections[0])
        dtype = accumulation_dtype(xp, dev)
        values, undefined = [], []
        names = self.names
        for m in range(len(projections)):
            for l in range(m + 1, len(projections)):
                rows = present[:, m] & present[:, l]
                weight = xp.astype(rows, dtype)[:, None]
                count = float(xp.sum(weight))
                if count < 2:
                    undefined.append(f"{names[m]!r}-{names[l]!r} (no paired rows)")
                    continue
                a = _masked(xp, projections[m], rows, dtype)
                b = _masked(xp, projections[l], rows, dtype)
                # Centring a constant column leaves rounding noise of about
                # eps times its magnitude: "constant" is judged against the
                # un-centred norm, never against the (noise) spread itself.
                eps = float(xp.finfo(dtype).eps)
                tiny_a = 64 * eps * xp.sqrt(xp.sum(a * a, axis=0))
                tiny_b = 64 * eps * xp.sqrt(xp.sum(b * b, axis=0))
                a = (a - xp.sum(a, axis=0) / count) * weight
                b = (b - xp.sum(b, axis=0) / count) * weight
                norm_a = xp.sqrt(xp.sum(a * a, axis=0))
                norm_b = xp.sqrt(xp.sum(b * b, axis=0))
                product = xp.sum(a * b, axis=0)
                for j in range(product.shape[0]):
                    na, nb = float(norm_a[j]), float(norm_b[j])
                    if na <= float(tiny_a[j]) or nb <= float(tiny_b[j]):
                        undefined.append(
                            f"component {j} of {names[m]!r}-{names[l]!r} (constant)"
                        )
                        continue
                    values.append(float(product[j]) / (na * nb))
        if undefined:
            warnings.warn(
                "Some canonical correlations cannot be measured on these rows "
                f"and are left out of the score: {', '.join(undefined[:5])}"
                + (f" and {len(undefined) - 5} more" if len(undefined) > 5 else "")
                + ". Score on rows that carry at least two modalities, with "
                "more than one distinct value.",
                UserWarning,
                stacklevel=3,
            )
        if not values:
            return float("nan")
        return float(np.mean(values))


def _masked(xp, projection, rows, dtype):
    values = xp.astype(projection, dtype)
    return xp.where(rows[:, None], values, xp.zeros_like(values))
