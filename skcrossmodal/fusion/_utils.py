"""Helpers of the fusion estimators, each written once for every namespace.

Numpy arrays go through ``array_api_compat``'s numpy wrapper like torch,
CuPy or ``array_api_strict`` arrays, so one function body serves them all;
scipy sparse matrices, which follow no array API, get a local branch where
they need one, and numpy a local branch only where scipy is measurably
better (ARPACK for the top singular value of a large block).
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import LinearOperator, svds
from sklearn.externals import array_api_compat

from .._modalities import _first_true, take_columns
from .._namespace import array_namespace

# Above this many rows *and* columns, the top singular value of a block is
# found with ARPACK (numpy, sparse) or ``svdvals`` (other namespaces) instead
# of an eigendecomposition of its smaller Gram matrix.
_GRAM_LIMIT = 2000


def namespace(X):
    """X's array namespace; array_api_compat's numpy for numpy and sparse."""
    if sparse.issparse(X):
        return array_api_compat.numpy
    return array_namespace(X)


def check_weights(weights, names):
    """Return the weights in modality order (numpy), normalised to sum to 1.

    ``None`` gives equal weights. A dict needs exactly one entry per modality,
    each a finite real number >= 0, and not all of them 0. The weights are
    divided by the largest first, so that neither 1e-300 nor 1e300 weights
    underflow or overflow the sum: only their ratios matter.
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
    largest = values.max()
    if largest <= 0:
        raise ValueError(
            "`weights` are all 0; give at least one modality a positive weight."
        )
    values = values / largest
    return values / values.sum()


def row_coefficients(present, weights, names):
    """Per-row weights renormalised over the modalities present.

    ``present`` is the (n, M) presence mask and ``weights`` a float array of
    its namespace and device. Returns the (n, M) array whose row ``i`` is
    ``weights * present[i]`` divided by its sum, so that it sums to 1 over
    the modalities the row carries.
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


def require_every_modality(present, names):
    """Raise if some modality is missing in every row used for fitting."""
    xp = array_namespace(present)
    seen = xp.any(present, axis=0)
    empty = [name for m, name in enumerate(names) if not bool(seen[m])]
    if empty:
        raise ValueError(
            f"Modality {empty[0]!r} is missing (all NaN) in every row of X, so "
            "nothing can be fitted for it. Fit on rows that carry every "
            "modality at least once, or leave it out of `modalities`."
        )


def take_rows(X, rows):
    """The rows of X where the 1-D boolean ``rows`` is True (X itself if all)."""
    xp = array_namespace(rows)
    if bool(xp.all(rows)):
        return X
    if sparse.issparse(X):
        return X[np.flatnonzero(np.asarray(rows))]
    xp = array_namespace(X)
    return xp.take(X, xp.nonzero(rows)[0], axis=0)


def block_rows(X, indices, rows):
    """The block of one modality restricted to ``rows`` (a boolean mask)."""
    return take_rows(take_columns(X, indices), rows)


def nan_to_zero(X):
    """X (dense of any namespace, or sparse) with its NaN entries 0, a new array."""
    if sparse.issparse(X):
        X = X.copy()
        X.data[np.isnan(X.data)] = 0
        X.eliminate_zeros()
        return X
    xp = array_namespace(X)
    return xp.where(xp.isnan(X), xp.zeros_like(X), X)


def max_abs(block):
    """The largest absolute value of a dense or sparse block, a Python float."""
    if sparse.issparse(block):
        return float(np.abs(block.data).max()) if block.nnz else 0.0
    if math.prod(block.shape) == 0:
        return 0.0
    xp = array_namespace(block)
    # Two reductions rather than abs(), which would copy the block.
    return max(float(xp.max(block)), -float(xp.min(block)))


def power_of_two_scale(largest, largest_value):
    """A power of two bringing ``largest`` near 1, or 1.0 if squares are safe.

    Values whose squares stay well inside the dtype's range (``|x|`` between
    ``2**-e`` and ``2**e``, ``e`` a quarter of the exponent range: 2**256 in
    float64, 2**32 in float32) are left alone. Multiplying by a power of two
    is exact, so an estimator fitted on the scaled values gives the scaled
    answer bit for bit. ``largest_value`` is the dtype's largest finite
    value (``finfo(dtype).max``).
    """
    limit = math.frexp(largest_value)[1] // 4
    if largest == 0 or 2.0**-limit <= largest <= 2.0**limit:
        return 1.0
    return math.ldexp(1.0, -math.frexp(largest)[1])


def top_singular_value(block):
    """Largest singular value of a dense (any namespace) or sparse 2-D array.

    Up to ``_GRAM_LIMIT`` rows or columns: the square root of the top
    eigenvalue of the smaller Gram matrix (exact up to the square root, and
    small). Above: ARPACK for numpy and sparse blocks (one singular value, no
    dense decomposition), ``linalg.svdvals`` for other namespaces (the
    standard has no iterative solver). Squares are formed, so callers pass a
    block scaled to a largest value near 1.
    """
    n_rows, n_cols = block.shape
    if min(n_rows, n_cols) == 0:
        return 0.0
    if sparse.issparse(block):
        if min(n_rows, n_cols) == 1:
            return float(np.sqrt(block.multiply(block).sum()))
        if min(n_rows, n_cols) <= _GRAM_LIMIT:
            gram = block.T @ block if n_cols <= n_rows else block @ block.T
            return _sqrt_top_eigenvalue(np, gram.toarray())
        return _arpack_top_singular_value(block)
    xp = array_namespace(block)
    if min(n_rows, n_cols) == 1:
        return float(xp.sqrt(xp.sum(block * block)))
    if min(n_rows, n_cols) <= _GRAM_LIMIT:
        gram = block.T @ block if n_cols <= n_rows else block @ block.T
        return _sqrt_top_eigenvalue(xp, gram)
    if array_api_compat.is_numpy_namespace(xp):
        return _arpack_top_singular_value(block)
    return float(xp.linalg.svdvals(block)[0])


def _sqrt_top_eigenvalue(xp, gram):
    top = float(xp.linalg.eigvalsh(gram)[-1])
    return math.sqrt(max(top, 0.0))


def _arpack_top_singular_value(block):
    operator = LinearOperator(
        block.shape,
        matvec=lambda v: block @ v,
        rmatvec=lambda v: block.T @ v,
        dtype=np.float64,
    )
    return float(svds(operator, k=1, return_singular_vectors=False, random_state=0)[0])
