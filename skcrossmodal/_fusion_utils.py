"""Small helpers shared by the fusion estimators (weights, rows, blocks)."""

from __future__ import annotations

from numbers import Real

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import LinearOperator, svds
from sklearn.externals.array_api_compat import array_namespace
from sklearn.externals.array_api_compat import device as array_device

from ._modalities import (
    raise_infinite,
    raise_no_modality,
    raise_partial_nan,
    take_columns,
)

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


# -- array API (torch, CuPy, array_api_strict, ...) ---------------------------
#
# The same steps as above, written against the array API standard so that
# they run in X's namespace and on X's device (see skcrossmodal._array_api).
# Each syncs with the host only for a bool or a scalar (a check, a scale).


def xp_take_columns(xp, X, indices):
    """``X[:, indices]`` in X's namespace; a slice when the run is contiguous."""
    indices = np.asarray(indices)
    if indices.size and indices[-1] - indices[0] + 1 == indices.size:
        return X[:, int(indices[0]) : int(indices[-1]) + 1]
    return xp.take(X, xp.asarray(indices, device=array_device(X)), axis=1)


def xp_take_rows(xp, X, rows):
    """The rows of X where the 1-D boolean ``rows`` is True (X itself if all)."""
    if bool(xp.all(rows)):
        return X
    return xp.take(X, xp.nonzero(rows)[0], axis=0)


def _first_true(xp, mask):
    """Position of the first True of a 1-D boolean array, and how many are True."""
    as_int = xp.astype(mask, xp.int64)
    return int(xp.argmax(as_int)), int(xp.sum(as_int))


def xp_presence_mask(X, modalities):
    """:func:`~skcrossmodal._base.check_finite_blocks` in X's namespace.

    Rejects infinity, partly-NaN blocks and rows without any modality, with
    the numpy path's messages, and returns the ``(n, M)`` boolean mask of the
    modalities present.
    """
    xp = array_namespace(X)
    if bool(xp.any(xp.isinf(X))):
        raise_infinite()
    is_nan = xp.isnan(X)
    present, missing = [], []
    for indices in modalities.values():
        block = xp_take_columns(xp, is_nan, indices)
        present.append(~xp.any(block, axis=1))
        missing.append(xp.all(block, axis=1))
    present = xp.stack(present, axis=1)
    partial = ~(present | xp.stack(missing, axis=1))
    if bool(xp.any(partial)):
        flat, _ = _first_true(xp, xp.reshape(partial, (-1,)))
        row, position = divmod(flat, len(modalities))
        name = list(modalities)[position]
        indices = modalities[name]
        row_nan = xp_take_columns(xp, is_nan[row : row + 1, :], indices)
        _, count = _first_true(xp, xp.reshape(row_nan, (-1,)))
        raise_partial_nan(name, row, count, len(indices))
    empty = ~xp.any(present, axis=1)
    if bool(xp.any(empty)):
        raise_no_modality(*_first_true(xp, empty))
    return present


def xp_present_anywhere(present):
    """Host booleans: is each modality present in at least one row?"""
    xp = array_namespace(present)
    seen = xp.any(present, axis=0)
    return np.array([bool(seen[m]) for m in range(seen.shape[0])])


def xp_require_every_modality(present, names):
    """:func:`require_every_modality` for a presence mask in any namespace."""
    require_every_modality(xp_present_anywhere(present)[None, :], names)


def xp_row_coefficients(present, weights, names):
    """:func:`row_coefficients` in the presence mask's namespace and device.

    ``weights`` is an array of that namespace, in the accumulation dtype.
    """
    xp = array_namespace(present)
    raw = xp.astype(present, weights.dtype) * weights[None, :]
    total = xp.sum(raw, axis=1)
    bad = total <= 0
    if bool(xp.any(bad)):
        row, count = _first_true(xp, bad)
        carried = [name for m, name in enumerate(names) if bool(present[row, m])]
        raise ValueError(
            f"Row {row} of X carries only modalities with weight 0 "
            f"({carried}; {count} such row(s) in all), so its weighted "
            "combination is undefined. Give those modalities a positive weight "
            "or drop the rows."
        )
    return raw / total[:, None]


def xp_nan_to_zero(X):
    """X with its NaN entries replaced by 0, in X's namespace (a new array)."""
    xp = array_namespace(X)
    return xp.where(xp.isnan(X), xp.zeros_like(X), X)


def xp_top_singular_value(block):
    """:func:`top_singular_value` of a dense array of any namespace.

    The same method as for numpy up to ``_GRAM_LIMIT`` (the top eigenvalue
    of the smaller Gram matrix); above it, ``linalg.svdvals`` (exact, where
    numpy uses ARPACK, which the standard does not have).
    """
    xp = array_namespace(block)
    n_rows, n_cols = block.shape
    if min(n_rows, n_cols) == 0:
        return 0.0
    if min(n_rows, n_cols) == 1:
        return float(xp.sqrt(xp.sum(block * block)))
    if min(n_rows, n_cols) <= _GRAM_LIMIT:
        gram = block.T @ block if n_cols <= n_rows else block @ block.T
        top = float(xp.linalg.eigvalsh(gram)[-1])
        return float(np.sqrt(max(top, 0.0)))
    return float(xp.linalg.svdvals(block)[0])
