"""SharedProjection's closed form on array API inputs, as plain functions.

Thin entry points over the one numerical core, kept for callers that work
without an estimator (``benchmarks/gpu.py``, the tests): :func:`fit_xp` is
``ArrayAPIAccumulator`` (the sums, in X's namespace and on its device) then
``_closed_form.solve_statistics`` (the Cholesky reduction for namespaces
other than numpy); :func:`transform_xp` and :func:`score_xp` are
``_shared_space.SharedSpace``. Nothing numerical is written here but the
accumulator, which the statistics layer will absorb.

Limits (each raises an error that says so): complete data only (no NaN
block) and numeric ridges on this path; every ``C_mm + lambda_m I`` positive
definite (the Cholesky reduction); every ``partial_fit`` batch from the
namespace and device of the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

import numpy as np

from ._closed_form import (  # noqa: F401 (NotPositiveDefiniteError re-exported)
    NotPositiveDefiniteError,
    _diagonal,
    solve_statistics,
)
from ._modalities import raise_infinite
from ._namespace import (  # noqa: F401 (re-exported until callers move)
    accumulation_dtype,
    get_array_namespace,
    to_numpy,
)
from ._shared_space import SharedSpace
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
    blocks = accumulator.blocks
    solution = solve_statistics(
        moments,
        list(ridges),
        names=names,
        blocks=blocks,
        n_components=n_components,
        scale=scale,
        solver="svd",
    )
    std = solution.std
    return ArrayAPIFit(
        means={name: moments.mean[b] for name, b in zip(names, blocks)},
        weights={name: solution.weights[b, :] for name, b in zip(names, blocks)},
        correlations=solution.correlations,
        scale={
            name: (None if std is None else std[b]) for name, b in zip(names, blocks)
        },
        n_samples=moments.n_samples,
        accumulator=accumulator,
    )


def _space(modalities, means, weights):
    correlations = np.zeros(next(iter(weights.values())).shape[1])
    return SharedSpace(modalities, means, weights, correlations)


def project_xp(X, modalities, means, weights):
    """Per-modality projections ``(X_m - mean_m) @ W_m`` of complete X."""
    return _space(modalities, means, weights).project(X)[0]


def transform_xp(X, modalities, means, weights, output="mean"):
    """``SharedProjection.transform`` in X's namespace."""
    if output not in ("mean", "concat") and output not in modalities:
        raise ValueError(
            f"output={output!r} is not 'mean', 'concat' or a modality name; "
            f"modalities are {list(modalities)}."
        )
    space = _space(modalities, means, weights)
    projections, present = space.project(X)
    return space.combine(projections, present, output)


def score_xp(X, modalities, means, weights):
    """``SharedProjection.score`` in X's namespace."""
    space = _space(modalities, means, weights)
    projections, present = space.project(X)
    return space.score(projections, present)


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
