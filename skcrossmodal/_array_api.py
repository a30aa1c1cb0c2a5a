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
from sklearn.externals.array_api_compat import array_namespace
from sklearn.externals.array_api_compat import device as array_device

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
from ._namespace import namespace_name as _name
from ._shared_space import SharedSpace

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


@dataclass
class AccumulatedMoments:
    """What :meth:`ArrayAPIAccumulator.finalize` returns (arrays in its xp).

    Attributes
    ----------
    mean : array of shape (n_columns,)
        Means of the stacked modalities.
    covariance : array of shape (n_columns, n_columns)
        Their ``1/n`` covariance, symmetric.
    n_samples : int
    """

    mean: object
    covariance: object
    n_samples: int


class ArrayAPIAccumulator:
    """Shifted sums of the stacked modalities, in the rows' namespace and device.

    The array API counterpart of ``_statistics.CovarianceAccumulator`` for
    complete data, and the one mechanism behind :func:`fit_xp` (one call to
    :meth:`update` with all of X), ``partial_fit`` (one call per batch) and
    the gradient solver's passes (the covariance of narrow modalities and of
    the projections). The shift is the mean of the first chunk of the first
    batch, so what is summed is close to centred and large means cost no
    digits; the sums are kept in :func:`accumulation_dtype` (float64 where
    the device has it) on the device of the first batch. Memory is the
    ``D x D`` sums plus one row chunk: ``O(D^2 + chunk)``, whatever the
    number of rows.

    The namespace and the device are read from the arrays themselves
    (nothing else is stored), so an accumulator pickles with the estimator.

    Parameters
    ----------
    modalities : dict of str -> ndarray of int
        The resolved ``modalities_``: numpy int indices into X's columns.
    """

    def __init__(self, modalities):
        self.modalities = modalities
        self.columns = np.concatenate([np.asarray(i) for i in modalities.values()])
        widths = [len(indices) for indices in modalities.values()]
        stops = np.cumsum(widths)
        self.blocks = [
            slice(int(stop - width), int(stop)) for width, stop in zip(widths, stops)
        ]
        # Set by the first update: the shift, the Gram of the shifted rows
        # and their column sums, all in the accumulation dtype.
        self.shift = self.gram = self.sums = None
        self.n_rows = 0

    @property
    def n_samples_seen(self):
        return self.n_rows

    @property
    def namespace(self):
        """The namespace of the sums, or None before the first update."""
        return None if self.gram is None else array_namespace(self.gram)

    @property
    def device(self):
        return None if self.gram is None else array_device(self.gram)

    def check_compatible(self, X, method="partial_fit"):
        """Raise unless X is an array of the namespace and device of the sums."""
        if self.gram is None:
            return
        try:
            xp = array_namespace(X)
        except TypeError:
            xp = None
        same = (
            xp is not None and xp is self.namespace and array_device(X) == self.device
        )
        if not same:
            raise ValueError(
                f"{method} got X of type {type(X).__module__}.{type(X).__name__}"
                + (f" on device {array_device(X)}" if xp is not None else "")
                + f", but the earlier batches were {_name(self.namespace)} "
                f"arrays on device {self.device}, where the statistics are "
                f"kept. Every batch of {method} must come from the same array "
                "namespace and device (and, for array API input, with "
                "sklearn's array_api_dispatch enabled). Move the batch there, "
                "or call fit to start again."
            )

    def update(self, X):
        """Add the rows of X (complete, finite; any number of rows).

        A batch with NaN or infinity raises and adds nothing.

        Returns
        -------
        self
        """
        self.check_compatible(X, method="update")
        xp = array_namespace(X)
        dev = array_device(X)
        if not xp.isdtype(X.dtype, "real floating"):
            raise TypeError(
                "X must have a real floating dtype (float32 or float64), got "
                f"{X.dtype}."
            )
        n_samples = X.shape[0]
        if n_samples == 0:
            return self
        columns = self.columns
        if columns.size and int(columns.max()) >= X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} columns; the modalities need "
                f"{int(columns.max()) + 1}."
            )
        in_order = np.array_equal(columns, np.arange(X.shape[1]))
        column_index = None if in_order else xp.asarray(columns, device=dev)
        dtype = accumulation_dtype(xp, dev) if self.gram is None else self.gram.dtype
        itemsize = 8 if dtype == xp.float64 else 4
        step = int(max(256, _CHUNK_BYTES // (itemsize * max(len(columns), 1))))

        # This batch's sums, added to the totals only once known finite.
        shift, gram, sums = self.shift, None, None
        for start in range(0, n_samples, step):
            chunk = X[start : min(start + step, n_samples), :]
            if column_index is not None:
                chunk = xp.take(chunk, column_index, axis=1)
            chunk = xp.astype(chunk, dtype)
            if shift is None:
                # The first chunk's mean: what is summed below is near centred.
                shift = xp.mean(chunk, axis=0)
            chunk = chunk - shift
            product = chunk.T @ chunk
            column_sums = xp.sum(chunk, axis=0)
            gram = product if gram is None else gram + product
            sums = column_sums if sums is None else sums + column_sums
        # NaN or infinity anywhere makes the column sums (or, on overflow, the
        # Gram's diagonal) non-finite: one check, one device sync per batch.
        finite = xp.all(xp.isfinite(sums)) & xp.all(xp.isfinite(_diagonal(xp, gram)))
        if not bool(finite & xp.all(xp.isfinite(shift))):
            _raise_non_finite(xp, X, self.modalities)
        if self.gram is None:
            self.shift, self.gram, self.sums = shift, gram, sums
        else:
            self.gram = self.gram + gram
            self.sums = self.sums + sums
        self.n_rows += int(n_samples)
        return self

    def finalize(self):
        """Means and the ``1/n`` covariance of the rows added so far.

        Returns
        -------
        AccumulatedMoments
        """
        if self.n_rows < 2:
            raise ValueError(f"At least 2 rows are needed to fit, got {self.n_rows}.")
        n_samples = self.n_rows
        delta = self.sums / n_samples
        covariance = self.gram / n_samples - delta[:, None] * delta[None, :]
        covariance = (covariance + covariance.T) / 2
        return AccumulatedMoments(
            mean=self.shift + delta, covariance=covariance, n_samples=n_samples
        )


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
