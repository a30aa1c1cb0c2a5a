"""Regularise once, solve once: the closed-form shared space from statistics.

The step between the sufficient statistics (``_statistics``: means and the
block covariance ``C``) and the fitted shared space (``_shared_space``):

1. ``scale=True``: each feature's standard deviation (:func:`feature_scales`);
2. the ridge of each modality resolved to a number (:func:`resolve_ridges`):
   a float as given, or ``"auto"``, the Ledoit-Wolf shrinkage of the
   modality's (scaled) covariance towards ``mu_m I``;
3. ``C_reg``: the (scaled) covariance with the ridges on its diagonal blocks
   and the Ledoit-Wolf factors on every block (``_solvers.add_ridge``);
4. the top of ``C_reg w = r D w`` (``_solvers`` for numpy: LAPACK, whitening
   or generalised ``eigh``; :func:`solve_cholesky` for any other namespace);
5. the conventions of ``_conventions.finish``, then the scaling undone.

Every estimator that fits in closed form (``SharedProjection`` in memory,
streamed, on Dask or on a GPU) calls :func:`solve_statistics`; nothing
between the statistics and the solver is written anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

import numpy as np

from ._batch_sums import raise_overflow, raise_underflow
from ._conventions import equilibration_factors, finish
from ._memory import physical_memory
from ._namespace import (
    array_device,
    array_namespace,
    get_array_namespace,
    smallest_square,
)
from ._solvers import add_ridge, solve


def is_auto(value):
    """Is this ``reg`` value (or a dict's entry) the string ``"auto"``?"""
    return isinstance(value, str) and value == "auto"


def reg_values(reg, names):
    """``reg`` (a number, ``"auto"`` or a dict) as one value per modality."""
    if isinstance(reg, dict):
        return [reg[name] for name in names]
    return [reg] * len(names)


def any_auto(reg):
    values = reg.values() if isinstance(reg, dict) else [reg]
    return any(is_auto(value) for value in values)


def feature_scales(xp, variances, mean):
    """Per-feature standard deviations for ``scale=True``; 1 for a constant.

    A feature is constant when its standard deviation is at the rounding
    level of its own values (``64 eps |mean|``) or zero: judged against the
    feature's own magnitude, so a feature measured in units of 1e-19 is
    scaled like any other, and a constant with a large mean is not mistaken
    for a signal by the rounding of its accumulated variance.
    """
    std = xp.sqrt(xp.where(variances > 0, variances, xp.zeros_like(variances)))
    eps = float(xp.finfo(std.dtype).eps)
    constant = (std == 0) | (std <= 64 * eps * xp.abs(mean))
    return xp.where(constant, xp.ones_like(std), std)


@dataclass
class ClosedForm:
    """What :func:`solve_statistics` returns (stacked over the modalities).

    ``weights`` have the scaling folded in; ``std`` is None without
    ``scale``; ``reg`` and ``shrinkage`` hold one float per modality.
    """

    correlations: object
    weights: object
    std: object
    reg: list
    shrinkage: list


def solve_statistics(stats, reg, *, names, blocks, n_components, scale, solver):
    """The closed-form shared space of the statistics ``stats``.

    Parameters
    ----------
    stats : object with ``mean``, ``covariance`` (any namespace) and, for
            ``reg="auto"``, ``ledoit_wolf_shrinkage(position, scale)``
        The finalized statistics; ``covariance`` is consumed (overwritten).
    reg : list
        One value per modality: a float >= 0 or ``"auto"``.
    names : list of str
    blocks : list of slice
        Each modality's columns in the stacked statistics.
    n_components : int
    scale : bool
    solver : {"svd", "eigh"}
        numpy only; other namespaces take the Cholesky reduction.

    Returns
    -------
    ClosedForm
    """
    covariance = stats.covariance
    xp = array_namespace(covariance)
    numpy = get_array_namespace(covariance) is None
    diagonal = _diagonal(xp, covariance)
    _check_representable(xp, diagonal)
    std = feature_scales(xp, diagonal, stats.mean) if scale else None
    ridges, shrinkages = [], []
    for position, value in enumerate(reg):
        shrinkage = 0.0
        if is_auto(value):
            if not numpy:
                raise ValueError(
                    f"reg for modality {names[position]!r} is 'auto': "
                    "Ledoit-Wolf shrinkage needs fourth moments, kept for "
                    "numpy input only. Give a number (e.g. the reg_ of a "
                    "numpy fit on a subsample), or pass numpy input."
                )
            block_std = np.ones(blocks[position].stop - blocks[position].start)
            if std is not None:
                block_std = std[blocks[position]]
            shrinkage, target = stats.ledoit_wolf_shrinkage(position, block_std)
            value = shrinkage * target
        ridges.append(float(value))
        shrinkages.append(float(shrinkage))
    if std is not None:  # after Ledoit-Wolf, which reads the unscaled blocks
        covariance /= std[:, None]
        covariance /= std[None, :]
    if numpy:
        regularised = add_ridge(
            covariance,
            blocks,
            ridges,
            keep=[1.0 - s for s in shrinkages],
            overwrite=True,
        )
        correlations, weights = solve(
            regularised, blocks, n_components, names, solver=solver, overwrite=True
        )
    else:
        dev = array_device(covariance)
        ridge_vector = xp.concat(
            [
                xp.full((b.stop - b.start,), r, dtype=covariance.dtype, device=dev)
                for b, r in zip(blocks, ridges)
            ]
        )
        regularised = covariance + _diag_matrix(xp, ridge_vector)
        correlations, weights = solve_cholesky(
            xp, regularised, blocks, n_components, names
        )
    if std is not None:
        weights = weights / std[:, None]
    return ClosedForm(correlations, weights, std, ridges, shrinkages)


def _check_representable(xp, variances):
    """Raise when the statistics cannot hold X's second moments.

    The sums are of squares of X's values: past ~1e154 they overflow
    float64 (the variances come out infinite or NaN), and below ~1e-146
    they fall under float64's normal range (1e-308), where digits are lost
    silently (denormals) and the answer would be wrong without any sign.
    Both are judged per feature, on its own variance, so data in any units
    within those bounds is solved as well as the units 1. Below ~1e-162 the
    squares vanish and the variance is 0, as for a constant feature: the
    accumulator tells the two apart on the first rows it sees
    (``_batch_sums.check_spread_representable``).
    """
    dtype = variances.dtype
    if not bool(xp.all(xp.isfinite(variances))):
        raise_overflow(dtype)
    lossy = (variances > 0) & (variances < smallest_square(dtype))
    if bool(xp.any(lossy)):
        raise_underflow(dtype)


# D x D float64 arrays alive at the peak of a closed-form fit (the Gram,
# the covariance, the solver's work arrays; measured 3.7 at D = 2400).
_PEAK_SQUARE_ARRAYS = 4


def check_memory(n_features):
    """Refuse a closed form whose D x D arrays cannot fit in this machine."""
    needed = _PEAK_SQUARE_ARRAYS * 8 * float(n_features) ** 2
    available = physical_memory()
    if available is not None and needed > available:
        raise MemoryError(
            f"The closed form on {n_features} features needs about "
            f"{needed / 2**30:.1f} GiB ({_PEAK_SQUARE_ARRAYS} matrices of "
            f"{n_features} x {n_features} float64), more than this machine's "
            f"{available / 2**30:.1f} GiB. Use GradientSharedProjection "
            "(or solver='gradient'), whose memory is O(n_features * "
            "n_components), or reduce the width (e.g. TruncatedSVD per "
            "modality)."
        )


def check_reg(reg, names):
    """Validate ``reg`` as a dict against the modality names."""
    if not isinstance(reg, dict):
        return
    unknown = set(reg) - set(names)
    absent = set(names) - set(reg)
    if unknown or absent:
        raise ValueError(
            f"reg as a dict needs exactly one entry per modality {names}; "
            f"unknown: {sorted(unknown)}, missing: {sorted(absent)}."
        )
    for name, value in reg.items():
        if not (is_auto(value) or (isinstance(value, Real) and value >= 0)):
            raise ValueError(
                f"reg[{name!r}] must be a float >= 0 or 'auto', got {value!r}."
            )


# -- any namespace: the Cholesky reduction --------------------------------


class NotPositiveDefiniteError(ValueError):
    """A regularised covariance block is not positive definite."""


def solve_cholesky(xp, regularised, blocks, n_components, names):
    """Top of ``C_reg w = r D w`` by Cholesky reduction, in any namespace.

    The array API standard has ``linalg.eigh`` but no generalised
    eigensolver, so the problem is reduced to a standard one by the Cholesky
    factor of the block-diagonal ``D = L L^T``: with ``y = L^T w``,
    ``L^-1 C_reg L^-T y = r y``. Each small factor ``L_m`` is inverted once
    (``linalg.solve(L_m, I)``: the standard has no triangular solve), after
    the diagonal equilibration of ``_solvers.solve`` (unit diagonal, same
    spectrum), so ``L_m`` is as well conditioned as the data allows.
    """
    dev = array_device(regularised)
    dtype = regularised.dtype
    diagonal = equilibration_factors(_diagonal(xp, regularised))
    equilibrated = regularised / (diagonal[:, None] * diagonal[None, :])
    inverse_factors = [
        _inverse_cholesky(xp, equilibrated[block, block], name, dtype, dev)
        for name, block in zip(names, blocks)
    ]
    # L^-1 C_reg L^-T: identity diagonal blocks, whitened cross blocks.
    rows = []
    for m, block_m in enumerate(blocks):
        row = []
        for l, block_l in enumerate(blocks):
            if l == m:
                width = block_m.stop - block_m.start
                row.append(xp.eye(width, dtype=dtype, device=dev))
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
    # w_m = L_m^-T y_m, then undo the equilibration (after the sign
    # convention, which looks at the equilibrated weights as the numpy path).
    weights = xp.concat(
        [inverse_factors[m].T @ vectors[block, :] for m, block in enumerate(blocks)],
        axis=0,
    )
    correlations, weights = finish(values, weights, blocks)
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
    largest = float(xp.max(_diagonal(xp, block)))
    if float(xp.min(pivots)) <= width * float(xp.finfo(dtype).eps) * largest:
        _raise_not_positive_definite(name, None)
    identity = xp.eye(width, dtype=dtype, device=dev)
    # Exactly lower triangular, as L^-1 is: drop the LU solve's rounding above.
    return xp.tril(xp.linalg.solve(factor, identity))


def _raise_not_positive_definite(name, exc):
    raise NotPositiveDefiniteError(
        f"Modality {name!r}: its regularised covariance C_mm + reg*I is not "
        "positive definite (rank-deficient data with reg=0?), which the array "
        "API path (a Cholesky reduction) needs. Set reg > 0 for it, or convert "
        "X to a numpy array, where solver='svd' handles singular blocks."
    ) from exc


def _diagonal(xp, matrix):
    if hasattr(xp, "linalg") and hasattr(xp.linalg, "diagonal"):
        return xp.linalg.diagonal(matrix)
    eye = xp.eye(matrix.shape[0], dtype=matrix.dtype, device=array_device(matrix))
    return xp.sum(matrix * eye, axis=1)


def _diag_matrix(xp, vector):
    eye = xp.eye(vector.shape[0], dtype=vector.dtype, device=array_device(vector))
    return eye * vector[None, :]
