"""SharedProjection on array API inputs (torch, CuPy, ...): the closed form.

With ``sklearn.set_config(array_api_dispatch=True)`` an estimator may receive
X from any namespace that follows the array API standard: torch tensors on the
CPU or a GPU, CuPy arrays, ``array_api_strict`` arrays. The functions here fit
and apply the shared projection *in X's namespace and on X's device*: nothing
is copied to numpy, so a GPU does the ``n x D x D`` Gram, which is all of the
cost on many rows.

What runs in the namespace: ``fit``, ``partial_fit``, ``transform`` and
``score`` with the exact solvers (this module), and ``fit`` with
``solver="gradient"`` (``_gradient``, which uses :class:`ArrayAPIAccumulator`
and the helpers here; see its module docstring).

:func:`fit_xp` and ``partial_fit`` share one mechanism: an
:class:`ArrayAPIAccumulator` (``fit``: one update with all of X;
``partial_fit``: one update per batch, kept between calls), then
:func:`solve_accumulated`. They follow the numpy path
(``_statistics.CovarianceAccumulator`` then ``_solvers.solve``) step for step
and give the same answer:

1. Means and the covariance of the stacked modalities, ``1/n``, from the Gram
   of row chunks shifted by the mean of the first chunk of the first batch
   (so what is summed is close to centred and no digits are lost to large
   means), accumulated in float64 where the device has it (torch CUDA does,
   Apple's MPS does not: there everything is float32, see
   :func:`accumulation_dtype`). Memory is ``O(D^2 + chunk)`` however many
   rows or batches; each batch is checked for NaN and infinity before its
   sums are added (one device sync per batch), so a refused batch leaves the
   sums as they were.
2. ``scale=True``: each feature divided by its standard deviation (constant
   features keep 1), exactly as the numpy path does.
3. The ridge ``lambda_m`` on each diagonal block, then the diagonal
   equilibration of ``_solvers.solve`` (row and column ``i`` divided by
   ``sqrt(C_ii)``).
4. The generalised symmetric eigenproblem ``C_reg w = r D w``. The array API
   standard has ``linalg.eigh`` but no generalised eigensolver, so it is
   reduced to a standard one by the Cholesky factor of the block-diagonal
   ``D = L L^T`` (``L = blockdiag(L_m)``): with ``y = L^T w``,
   ``L^-1 C_reg L^-T y = r y``. The standard has no ``solve_triangular``
   either, so each small factor ``L_m`` (``d_m x d_m``) is inverted once with
   ``linalg.solve(L_m, I)``, a general LU solve: ``O(d_m^3)``, negligible next
   to the ``O(n D^2)`` Gram, and as accurate here as a triangular solve since
   after equilibration ``L_m`` is as well conditioned as the data allows.
   The diagonal blocks of ``L^-1 C_reg L^-T`` are then exactly ``I``, and only
   the cross blocks ``L_m^-1 C_ml L_l^-T`` are computed.
5. The conventions of ``_solvers._finish``: correlations ``(r - 1)/(M - 1)``
   clipped at 1, weights the eigenvectors times ``sqrt(M)``, the sign of each
   component such that the largest-magnitude weight of the first modality is
   positive.

Limits (each raises an error that says so):

* complete data only: a NaN block, i.e. a missing modality, is not supported
  on this path yet, for any solver (the pairwise-complete statistics and the
  gradient solver's reweighting are numpy-only);
* numeric ridges only: ``reg="auto"`` (Ledoit-Wolf) needs fourth moments and
  is numpy-only, so such an estimator's tags do not claim array API support;
* every ``C_mm + lambda_m I`` must be positive definite (the numpy path's
  ``solver="svd"`` also handles singular blocks). With ``partial_fit`` and
  ``reg=0`` this means more rows than features in every modality so far: an
  earlier call raises, keeping its rows;
* every batch of ``partial_fit`` from the namespace and device of the first
  (the sums live there): another raises, naming ``partial_fit``;
* ``solver="gradient"`` takes dense array API X (sparse input is numpy /
  scipy only) and has no ``partial_fit``, as for numpy.

Dtypes: the fitted quantities (means, weights, correlations, scales) are in
the accumulation dtype, float64 where the device supports it, as the numpy
path keeps float64 attributes for float32 X. ``transform_xp`` returns X's
dtype (float32 in, float32 out).

Agreement with the numpy path, measured on CPU (torch and array_api_strict,
the data of ``tests/test_array_api.py``; largest error relative to each
array's largest entry):

* float64 sums (float64 or float32 X; every device with float64): ``fit``
  and ``partial_fit`` correlations 2e-15, weights 3e-14 (``partial_fit``
  against ``fit`` on all the batches and against numpy's ``partial_fit``
  alike); ``solver="gradient"`` takes the same epochs and steps as numpy
  (same ``random_state``), correlations 1e-15, weights 7e-14;
* float32 sums (a device without float64, simulated): ``fit`` and
  ``partial_fit`` correlations 8e-7, weights 9e-6, transform 7e-6;
  ``solver="gradient"`` usually 1e-7 on the correlations, but its rounding
  can steer a run to another approximate optimum of the same quality:
  correlations then differed by up to 7e-5 and weights by up to 8e-2, the
  solver's own accuracy, with the correlation sum within 1e-3 of the numpy
  run's and the closed form's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np
from sklearn.externals.array_api_compat import array_namespace
from sklearn.externals.array_api_compat import device as array_device

from ._modalities import raise_infinite
from ._namespace import (  # noqa: F401 (re-exported until callers move)
    accumulation_dtype,
    get_array_namespace,
    to_numpy,
)
from ._namespace import to_namespace as _to_namespace
from ._statistics import BlockCovariance, CovarianceAccumulator

# Bytes per row chunk (in the accumulation dtype). Larger than the numpy
# path's 16 MiB: a GPU wants big matrix products, and one chunk next to X
# (which is on the device anyway) is small.
_CHUNK_BYTES = 64 * 2**20


@dataclass
class ArrayAPIFit:
    """What :func:`fit_xp` returns; every array is in X's namespace and device.

    Attributes
    ----------
    means : dict of str -> array of shape (d_m,)
    weights : dict of str -> array of shape (d_m, n_components)
        The ``scale=True`` scaling is folded in, as in ``weights_``.
    correlations : array of shape (n_components,)
        Descending, ``(r - 1) / (M - 1)`` clipped at 1.
    scale : dict of str -> array of shape (d_m,) or None
        Per-feature standard deviation with ``scale=True``, else None.
    n_samples : int
    accumulator : ArrayAPIAccumulator or None
        The sums the fit came from; more rows can be added to them.
    """

    means: dict
    weights: dict
    correlations: object
    scale: dict
    n_samples: int
    accumulator: object = None


def fit_xp(X, modalities, ridges, *, n_components, scale=False):
    """Closed-form shared projection of complete X, in X's namespace.

    One :class:`ArrayAPIAccumulator` pass over X, then
    :func:`solve_accumulated`: the same two steps as ``partial_fit`` takes
    batch by batch.

    Parameters
    ----------
    X : array API array of shape (n_samples, n_features), real floating
        Every modality present in every row (no NaN), finite.
    modalities : dict of str -> ndarray of int
        The resolved ``modalities_`` (numpy int indices into X's columns).
    ridges : list of float
        ``lambda_m`` per modality, in the order of ``modalities``.
    n_components : int
        At most the narrowest modality's width.
    scale : bool, default=False
        Standardise each feature before the ridge, as ``scale=True`` does.

    Returns
    -------
    ArrayAPIFit
    """
    _check_ridges(list(modalities), ridges)
    _check_n_components(modalities, n_components)
    if X.shape[0] < 2:
        raise ValueError(f"At least 2 rows are needed to fit, got {X.shape[0]}.")
    accumulator = ArrayAPIAccumulator(modalities).update(X)
    return solve_accumulated(
        accumulator, ridges, n_components=n_components, scale=scale
    )


def solve_accumulated(accumulator, ridges, *, n_components, scale=False):
    """The closed form from an :class:`ArrayAPIAccumulator`'s sums.

    Parameters
    ----------
    accumulator : ArrayAPIAccumulator
        At least 2 rows added.
    ridges : list of float
        ``lambda_m`` per modality, in the order of its modalities.
    n_components : int
    scale : bool, default=False

    Returns
    -------
    ArrayAPIFit
        Its ``accumulator`` is ``accumulator`` (more rows may be added).
    """
    modalities = accumulator.modalities
    names = list(modalities)
    _check_ridges(names, ridges)
    _check_n_components(modalities, n_components)
    moments = accumulator.finalize()
    mean, covariance = moments.mean, moments.covariance
    xp = array_namespace(covariance)
    dev = array_device(covariance)
    dtype = covariance.dtype
    blocks = accumulator.blocks
    if scale:
        std = xp.sqrt(_diagonal(xp, covariance))
        floor = xp.finfo(dtype).eps * max(float(xp.max(std)), 1.0)
        std = xp.where(std > floor, std, xp.ones_like(std))
        covariance = covariance / (std[:, None] * std[None, :])
    else:
        std = None

    ridge_vector = xp.concat(
        [
            xp.full((block.stop - block.start,), float(ridge), dtype=dtype, device=dev)
            for block, ridge in zip(blocks, ridges)
        ]
    )
    regularised = covariance + _diag_matrix(xp, ridge_vector)
    correlations, weights = _solve_cholesky(
        xp, regularised, blocks, n_components, names
    )
    if std is not None:
        weights = weights / std[:, None]
    return ArrayAPIFit(
        means={name: mean[block] for name, block in zip(names, blocks)},
        weights={name: weights[block, :] for name, block in zip(names, blocks)},
        correlations=correlations,
        scale={
            name: (std[block] if std is not None else None)
            for name, block in zip(names, blocks)
        },
        n_samples=moments.n_samples,
        accumulator=accumulator,
    )


def project_xp(X, modalities, means, weights):
    """Per-modality projections ``(X_m - mean_m) @ W_m`` of complete X.

    Parameters
    ----------
    X : array API array of shape (n_samples, n_features)
    modalities : dict of str -> ndarray of int
    means, weights : dict of str -> array
        As returned by :func:`fit_xp` (or numpy arrays, moved to X's device).

    Returns
    -------
    list of arrays of shape (n_samples, n_components), in X's dtype
    """
    xp = array_namespace(X)
    dev = array_device(X)
    projections = []
    for name, indices in modalities.items():
        W = _to_namespace(xp, weights[name], X.dtype, dev)
        offset = _to_namespace(xp, means[name], X.dtype, dev) @ W
        block = _take_columns(xp, X, indices, dev)
        projections.append(block @ W - offset)
    if not all(bool(xp.all(xp.isfinite(p))) for p in projections):
        _raise_non_finite(xp, X, modalities)
    return projections


def transform_xp(X, modalities, means, weights, output="mean"):
    """``SharedProjection.transform`` for complete X, in X's namespace.

    Parameters
    ----------
    X : array API array of shape (n_samples, n_features)
    modalities : dict of str -> ndarray of int
    means, weights : dict of str -> array
    output : "mean", "concat" or a modality name

    Returns
    -------
    array of X's namespace, device and dtype
    """
    xp = array_namespace(X)
    projections = project_xp(X, modalities, means, weights)
    if output == "concat":
        return xp.concat(projections, axis=1)
    if output in modalities:
        return projections[list(modalities).index(output)]
    if output != "mean":
        raise ValueError(
            f"output={output!r} is not 'mean', 'concat' or a modality name; "
            f"modalities are {list(modalities)}."
        )
    total = projections[0]
    for projection in projections[1:]:
        total = total + projection
    return total / len(projections)


def score_xp(X, modalities, means, weights):
    """``SharedProjection.score`` for complete X: mean pairwise correlation.

    The Pearson correlation of the projections of each pair of modalities,
    averaged over pairs and components (a component with no variance counts
    0), as the numpy path computes it.

    Returns
    -------
    float
    """
    xp = array_namespace(X)
    dev = array_device(X)
    dtype = accumulation_dtype(xp, dev)
    projections = [
        xp.astype(p, dtype) for p in project_xp(X, modalities, means, weights)
    ]
    centred = [p - xp.mean(p, axis=0) for p in projections]
    norms = [xp.sqrt(xp.sum(c * c, axis=0)) for c in centred]
    total, count = 0.0, 0
    for m in range(len(centred)):
        for l in range(m + 1, len(centred)):
            denominator = norms[m] * norms[l]
            numerator = xp.sum(centred[m] * centred[l], axis=0)
            safe = xp.where(denominator > 0, denominator, xp.ones_like(denominator))
            values = xp.where(
                denominator > 0, numerator / safe, xp.zeros_like(numerator)
            )
            total += float(xp.sum(values))
            count += values.shape[0]
    return total / count


# -- statistics -------------------------------------------------------------


class ArrayAPIAccumulator(CovarianceAccumulator):
    """``_statistics.CovarianceAccumulator`` as the array API path used it.

    Kept so that the callers written for it (this module's :func:`fit_xp`,
    ``projection``, ``_gradient``) run unchanged on the one accumulator:
    ``n_features`` is read from the modalities, and array API batches with a
    missing modality are refused with this path's historical message (the
    accumulator itself handles them pairwise-complete, as for numpy).
    """

    _missing_message = (
        "X contains NaN. Missing modalities (a modality block of NaN in a "
        "row) are not supported yet for array API inputs ({xp}); "
        "only complete data is. Fit on the rows that carry every modality, "
        "or convert X to a numpy array (the numpy path uses every row for "
        "every statistic it can inform)."
    )

    def __init__(self, modalities, n_features=None, *, fourth_moments=False):
        if n_features is None:
            n_features = 1 + max(int(np.max(i)) for i in modalities.values())
        super().__init__(modalities, n_features, fourth_moments=fourth_moments)

    def _accumulation_dtype(self, xp, dev):
        # This module's name, looked up at call time (tests simulate a
        # device without float64 by replacing it).
        if self.gram is not None:
            return self.gram.dtype
        return accumulation_dtype(xp, dev)


# The statistics' result under its former name.
AccumulatedMoments = BlockCovariance


def _raise_non_finite(xp, X, modalities):
    if bool(xp.any(xp.isinf(X))):
        raise_infinite()
    if bool(xp.any(xp.isnan(X))):
        raise ValueError(
            "X contains NaN. Missing modalities (a modality block of NaN in a "
            f"row) are not supported yet for array API inputs ({xp.__name__}); "
            "only complete data is. Fit on the rows that carry every modality, "
            "or convert X to a numpy array (the numpy path uses every row for "
            "every statistic it can inform)."
        )
    raise ValueError(
        "The sums over X overflowed: its values are too large for the "
        "accumulation dtype. Rescale X (e.g. StandardScaler) first."
    )


# -- solver -----------------------------------------------------------------


def _solve_cholesky(xp, regularised, blocks, n_components, names):
    """Top of ``C_reg w = r D w`` by Cholesky reduction; see the module doc."""
    dev = array_device(regularised)
    dtype = regularised.dtype
    # Diagonal equilibration, as _solvers.solve: unit diagonal, same spectrum.
    diagonal = xp.sqrt(_diagonal(xp, regularised))
    tiny = float(np.finfo(np.float64).tiny) ** 0.25
    diagonal = xp.where(diagonal > tiny, diagonal, xp.ones_like(diagonal))
    equilibrated = regularised / (diagonal[:, None] * diagonal[None, :])

    inverse_factors = []
    for name, block in zip(names, blocks):
        inverse_factors.append(
            _inverse_cholesky(xp, equilibrated[block, block], name, dtype, dev)
        )
    # L^-1 C_reg L^-T: identity diagonal blocks, whitened cross blocks.
    rows = []
    for m, block_m in enumerate(blocks):
        row = []
        for l, block_l in enumerate(blocks):
            width_m = block_m.stop - block_m.start
            if l == m:
                row.append(xp.eye(width_m, dtype=dtype, device=dev))
            else:
                row.append(
                    inverse_factors[m]
                    @ equilibrated[block_m, block_l]
                    @ inverse_factors[l].T
                )
        rows.append(xp.concat(row, axis=1))
    whitened = xp.concat(rows, axis=0)
    whitened = (whitened + whitened.T) / 2
    values, vectors = xp.linalg.eigh(whitened)
    dimension = whitened.shape[0]
    values = xp.flip(values[dimension - n_components :], axis=0)
    vectors = xp.flip(vectors[:, dimension - n_components :], axis=1)
    # w_m = L_m^-T y_m, then undo the equilibration.
    weights = xp.concat(
        [inverse_factors[m].T @ vectors[block, :] for m, block in enumerate(blocks)],
        axis=0,
    )
    # The sign convention looks at the equilibrated weights, as
    # _solvers.solve does (it divides by the diagonal after _finish).
    correlations, weights = _finish(xp, values, weights, blocks)
    return correlations, weights / diagonal[:, None]


def _inverse_cholesky(xp, block, name, dtype, dev):
    """``L^-1`` for ``block = L L^T``; a clear error when not positive definite."""
    try:
        factor = xp.linalg.cholesky(block)
    except Exception as exc:  # numpy/torch LinAlgError, CuPy...
        _raise_not_positive_definite(name, exc)
    # Some backends (CuPy) return NaN instead of raising.
    if not bool(xp.all(xp.isfinite(factor))):
        _raise_not_positive_definite(name, None)
    # Whether the block is numerically singular is decided relative to its
    # scale and width, not by whether the rounded factorisation happened to
    # succeed: an exactly rank-deficient block leaves a pivot of rounding size
    # (~1e-16 on one CPU, a failure on another), which must not count as rank.
    pivots = _diagonal(xp, factor) ** 2
    width = block.shape[0]
    tolerance = width * float(xp.finfo(dtype).eps) * float(xp.max(_diagonal(xp, block)))
    if float(xp.min(pivots)) <= tolerance:
        _raise_not_positive_definite(name, None)
    identity = xp.eye(block.shape[0], dtype=dtype, device=dev)
    inverse = xp.linalg.solve(factor, identity)
    # Exactly lower triangular, as L^-1 is: drop the LU solve's rounding above.
    return xp.tril(inverse)


class NotPositiveDefiniteError(ValueError):
    """A regularised covariance block is not positive definite."""


def _raise_not_positive_definite(name, exc):
    raise NotPositiveDefiniteError(
        f"Modality {name!r}: its regularised covariance C_mm + reg*I is not "
        "positive definite (rank-deficient data with reg=0?), which the array "
        "API path (a Cholesky reduction) needs. Set reg > 0 for it, or convert "
        "X to a numpy array, where solver='svd' handles singular blocks."
    ) from exc


def _finish(xp, values, vectors, blocks):
    """The conventions of ``_solvers._finish``, in xp."""
    n_modalities = len(blocks)
    correlations = (values - 1.0) / (n_modalities - 1)
    correlations = xp.where(
        correlations > 1.0, xp.ones_like(correlations), correlations
    )
    weights = vectors * math.sqrt(n_modalities)
    return correlations, weights * sign_convention(xp, weights[blocks[0], :])[None, :]


def sign_convention(xp, first):
    """Per column of ``first``, the sign making its largest-magnitude entry >= 0.

    ``first`` is the first modality's (equilibrated) weights; the convention
    of ``_solvers._finish`` (a zero column keeps sign 1).

    Returns
    -------
    array of shape (n_columns,), entries -1 or 1, in ``first``'s dtype
    """
    largest = xp.argmax(xp.abs(first), axis=0)
    rows = xp.arange(first.shape[0], device=array_device(first))
    chosen = xp.sum(
        xp.where(rows[:, None] == largest[None, :], first, xp.zeros_like(first)),
        axis=0,
    )
    return xp.where(chosen < 0, -xp.ones_like(chosen), xp.ones_like(chosen))


# -- helpers ----------------------------------------------------------------


def _check_ridges(names, ridges):
    if len(ridges) != len(names):
        raise ValueError(f"Expected one ridge per modality {names}, got {len(ridges)}.")
    for name, ridge in zip(names, ridges):
        if isinstance(ridge, str) or not isinstance(ridge, Real):
            raise ValueError(
                f"reg for modality {name!r} is {ridge!r}: array API inputs "
                "need a numeric reg >= 0. reg='auto' (Ledoit-Wolf shrinkage) "
                "is only available for numpy input for now; fit on numpy, or "
                "give the reg_ a numpy fit on a subsample chose."
            )
        if not ridge >= 0:
            raise ValueError(f"reg for modality {name!r} must be >= 0, got {ridge}.")


def _check_n_components(modalities, n_components):
    widths = [len(indices) for indices in modalities.values()]
    if n_components > min(widths):
        raise ValueError(
            f"n_components={n_components} is larger than the narrowest "
            f"modality, which has {min(widths)} feature(s)."
        )


def _diagonal(xp, matrix):
    if hasattr(xp, "linalg") and hasattr(xp.linalg, "diagonal"):
        return xp.linalg.diagonal(matrix)
    eye = xp.eye(matrix.shape[0], dtype=matrix.dtype, device=array_device(matrix))
    return xp.sum(matrix * eye, axis=1)


def _diag_matrix(xp, vector):
    eye = xp.eye(vector.shape[0], dtype=vector.dtype, device=array_device(vector))
    return eye * vector[None, :]


def _take_columns(xp, X, indices, dev):
    indices = np.asarray(indices)
    if indices.size and indices[-1] - indices[0] + 1 == indices.size:
        return X[:, int(indices[0]) : int(indices[-1]) + 1]
    return xp.take(X, xp.asarray(indices, device=dev), axis=1)
