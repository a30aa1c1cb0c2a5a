"""Small helpers shared by the fusion estimators (weights, rows, blocks)."""

from __future__ import annotations

from numbers import Real

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import LinearOperator, svds

from ._modalities import take_columns

# Above this many rows *and* columns, the top singular value of a block is
# found with ARPACK instead of an eigendecomposition of its small Gram matrix.
_GRAM_LIMIT = 2000


def check_weights(weights, names):
    """Return the weights in modality order, normalised to sum to 1.

    ``None`` gives equal weights. A dict needs exactly one entry per modality,
    each a finite real number >= 0, and not all of them 0.
    """
    if weights is None:
        return np.full(len(names), 1.0 / len(names))
    if not isinstance(weights, dict):
        raise TypeError(
            "`weights` must be None or a dict {modality: weight}, got "
            f"{type(weights).__name__}."
        )
    unknown = [key for key in weights if key not in names]
    absent = [name for name in names if name not in weights]
    if unknown or absent:
        raise ValueError(
            f"`weights` needs exactly one entry per modality {list(names)}; "
            f"unknown: {unknown}, missing: {absent}. Give a dict such as "
            f"{ {name: 1.0 for name in names} }."
        )
    values = []
    for name in names:
        value = weights[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, Real)
            or not np.isfinite(value)
            or value < 0
        ):
            raise ValueError(
                f"`weights[{name!r}]` must be a finite number >= 0, got {value!r}."
            )
        values.append(float(value))
    values = np.asarray(values)
    if values.sum() <= 0:
        raise ValueError(
            "`weights` are all 0; give at least one modality a positive weight."
        )
    return values / values.sum()


def row_coefficients(present, weights, names):
    """Per-row weights renormalised over the modalities present.

    Returns an ``(n, M)`` array whose row ``i`` is ``w * present[i]`` divided
    by its sum, so that it sums to 1 over the modalities the row carries.
    """
    raw = present * weights[None, :]
    total = raw.sum(axis=1)
    bad = np.flatnonzero(total <= 0)
    if bad.size:
        carried = [name for name, p in zip(names, present[bad[0]]) if p]
        raise ValueError(
            f"Row {bad[0]} of X carries only modalities with weight 0 "
            f"({carried}; {bad.size} such row(s) in all), so its weighted "
            "combination is undefined. Give those modalities a positive weight "
            "or drop the rows."
        )
    return raw / total[:, None]


def require_every_modality(present, names):
    """Raise if some modality is missing in every row used for fitting."""
    seen = present.sum(axis=0)
    empty = [name for name, count in zip(names, seen) if count == 0]
    if empty:
        raise ValueError(
            f"Modality {empty[0]!r} is missing (all NaN) in every row of X, so "
            "nothing can be fitted for it. Fit on rows that carry every "
            "modality at least once, or leave it out of `modalities`."
        )


def block_rows(X, indices, rows):
    """The block of one modality restricted to ``rows`` (a boolean mask)."""
    block = take_columns(X, indices)
    if rows.all():
        return block
    return block[rows]


def nan_to_zero(X):
    """A copy of X (dense or sparse) whose NaN entries are 0."""
    if sparse.issparse(X):
        X = X.copy()
        X.data[np.isnan(X.data)] = 0
        X.eliminate_zeros()
        return X
    return np.where(np.isnan(X), 0, X).astype(X.dtype, copy=False)


def top_singular_value(block):
    """Largest singular value of a dense or sparse 2-D array."""
    n_rows, n_cols = block.shape
    if min(n_rows, n_cols) == 0:
        return 0.0
    if min(n_rows, n_cols) == 1:
        if sparse.issparse(block):
            return float(np.sqrt(block.multiply(block).sum()))
        return float(np.linalg.norm(block))
    if min(n_rows, n_cols) <= _GRAM_LIMIT:
        # Gram of the smaller side: exact up to the square root, and small.
        gram = block.T @ block if n_cols <= n_rows else block @ block.T
        gram = gram.toarray() if sparse.issparse(gram) else np.asarray(gram)
        top = np.linalg.eigvalsh(gram)[-1]
        return float(np.sqrt(max(top, 0.0)))
    operator = LinearOperator(
        block.shape,
        matvec=lambda v: block @ v,
        rmatvec=lambda v: block.T @ v,
        dtype=np.float64,
    )
    return float(svds(operator, k=1, return_singular_vectors=False, random_state=0)[0])
