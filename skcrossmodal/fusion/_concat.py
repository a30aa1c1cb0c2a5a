"""ConcatFusion: early fusion, each modality block centred and scaled."""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import (
    _check_feature_names_in,
    _check_sample_weight,
    check_is_fitted,
)

from .._base import VersionedPickleMixin
from .._namespace import (
    accumulation_dtype,
    array_device,
    get_array_namespace,
    to_namespace,
    to_numpy,
)
from ._base import ModalInputMixin, error_context
from ._utils import (
    block_rows,
    max_abs,
    namespace,
    nan_to_zero,
    top_singular_value,
)


class ConcatFusion(
    VersionedPickleMixin, ModalInputMixin, TransformerMixin, BaseEstimator
):
    r"""Early fusion: the modality blocks side by side, each centred and scaled.

    Concatenating raw blocks lets a wide (or large-valued) modality drown a
    narrow one. ``ConcatFusion`` divides each block :math:`X_m` (centred with
    its mean :math:`\mu_m` when ``center=True``) by one number per block:

    - ``scaling=None``: 1 (centring only);
    - ``"frobenius"``: :math:`\lVert X_m - \mu_m \rVert_F / \sqrt{n_m}`, so
      each block has total variance 1 (the sum of its features' variances);
    - ``"mfa"``: :math:`\sigma_1(X_m - \mu_m) / \sqrt{n_m}`, the first
      singular value of the centred block over :math:`\sqrt{n_m}` (the
      standard deviation along its first principal axis), as in multiple
      factor analysis: each block's first principal variance becomes 1.

    :math:`n_m` is the number of rows that carry modality ``m``, so the scale
    does not depend on how many rows were fitted. A constant block (with
    ``center=True``) or an all-zero block keeps scale 1, as
    :class:`~sklearn.preprocessing.StandardScaler` does for a constant
    feature; "constant" is judged relative to the block's own magnitude, so
    features in units of 1e-19 or values near 1e+200 are scaled like any
    other.

    Parameters
    ----------
    scaling : {"frobenius", "mfa"} or None, default="frobenius"
        The block scaling, see above.

    modalities : dict or None, default=None
        Which columns of X belong to which modality, exactly as in
        :class:`~skcrossmodal.SharedProjection`.

    center : bool, default=True
        Subtract each feature's mean (over the rows carrying its modality)
        before scaling, and use the centred block for the scale. Sparse X
        needs ``center=False`` (centring would make it dense); the scales are
        then those of the uncentred block.

    Attributes
    ----------
    modalities_ : dict of str -> ndarray of int
        Column indices of each modality in X.
    means_ : dict of str -> ndarray of shape (n_features_m,)
        Mean of each modality over the rows that carry it (also computed
        when ``center=False``, for filling missing blocks).
    scales_ : dict of str -> float
        The divisor of each block.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string feature names.

    See Also
    --------
    WeightedFusion : Weighted sum of the blocks.
    sklearn.preprocessing.StandardScaler : Scales each feature, not each block.

    Notes
    -----
    **Column order.** The output has X's columns in X's order (X is already
    the concatenation); only their values change, so a modality keeps its
    columns and a later step can reuse the same ``modalities``.

    **Missing modalities.** A block missing in a row (all NaN) is filled with
    the block's fitted mean, i.e. 0 after centring: it contributes nothing
    to a linear model downstream. The statistics of each block use the rows
    that carry it.

    **Array API.** Under ``sklearn.set_config(array_api_dispatch=True)``, X
    may be an array of any namespace that follows the array API standard
    (torch on the CPU or a GPU, CuPy, ``array_api_strict``), with every
    ``scaling`` and ``center`` and with missing modalities: ``fit`` and
    ``transform`` compute in X's namespace and on its device, and
    ``transform`` returns an array of that namespace, dtype and device. The
    statistics are computed in float64 where the device has it, as the numpy
    path does; ``means_`` are arrays of X's namespace on its device,
    ``scales_`` Python floats. For ``"mfa"`` the first singular value is, as
    for numpy, the square root of the top eigenvalue of the block's smaller
    Gram matrix, and above 2000 rows and columns ``linalg.svdvals`` (where
    numpy uses ARPACK). ``transform`` needs X in the namespace and on the
    device that ``fit`` saw.

    **Numerics.** A block whose sums or squares leave float64's range is
    multiplied by a power of two before its mean and scale are computed
    again (and they are divided by it after, exactly), so no square
    overflows or underflows whatever the unit of the features. A
    ``transform`` whose result float64 cannot hold (new values so far from
    the fitted ones that centring and scaling overflow) raises a ValueError
    rather than returning infinity.

    Examples
    --------
    >>> import numpy as np
    >>> from skcrossmodal import ConcatFusion
    >>> rng = np.random.default_rng(0)
    >>> X = np.hstack([rng.normal(size=(100, 2)), 50 * rng.normal(size=(100, 30))])
    >>> fusion = ConcatFusion("frobenius", modalities={"a": slice(0, 2),
    ...                                                "b": slice(2, 32)})
    >>> Z = fusion.fit_transform(X)
    >>> [round(float(Z[:, cols].var(axis=0).sum()), 6) for cols in (slice(0, 2),
    ...                                                            slice(2, 32))]
    [1.0, 1.0]
    """

    _parameter_constraints: dict = {
        "scaling": [StrOptions({"frobenius", "mfa"}), None],
        "modalities": [dict, None],
        "center": ["boolean"],
    }

    # Per-column offset, divisor and fill (rows 0-2) in the namespace and
    # device of fit's X; None in models pickled before it was stored.
    _offset_scale_fill = None

    def __init__(self, scaling="frobenius", *, modalities=None, center=True):
        self.scaling = scaling
        self.modalities = modalities
        self.center = center

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Fit each block's mean and scale.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            The modalities side by side; a modality block of NaN in a row
            marks it missing there.
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows in each block's mean and scale (a weight of
            ``k`` counts the row ``k`` times; :math:`n_m` becomes the total
            weight of the rows carrying modality ``m``).

        Returns
        -------
        self : ConcatFusion
        """
        X, present = self._validate_blocks(X, reset=True)
        self._check_sparse(X)
        xp = namespace(X)
        device = "cpu" if sparse.issparse(X) else array_device(X)
        dtype = np.float64 if sparse.issparse(X) else accumulation_dtype(xp, device)
        if sample_weight is not None:
            with error_context("sample_weight needs one weight >= 0 per row of X"):
                if get_array_namespace(sample_weight) is not None:
                    sample_weight = to_numpy(sample_weight)
                # Checked against a host stand-in of X's shape: the weights
                # are host values, whatever X's namespace.
                sample_weight = _check_sample_weight(
                    sample_weight,
                    np.empty((X.shape[0], 0)),
                    dtype=np.float64,
                    ensure_non_negative=True,
                )
        means, scales = {}, {}
        for position, (name, cols) in enumerate(self.modalities_.items()):
            rows = present[:, position]
            block = block_rows(X, cols, rows)
            if sparse.issparse(block):
                block = block.astype(dtype, copy=False)
            else:
                block = xp.astype(block, dtype, copy=False)
            weight = None
            if sample_weight is not None:
                weight = sample_weight[to_numpy(rows)]
                if not weight.sum() > 0:
                    raise ValueError(
                        f"sample_weight is 0 on every row of X that carries "
                        f"modality {name!r}, so it has no mean or scale. Give "
                        "some of those rows a positive weight."
                    )
                # Each row's share of the block's total weight, as a column.
                weight = weight / weight.sum()
                if not sparse.issparse(block):
                    weight = to_namespace(xp, weight, dtype, device)[:, None]
            means[name], scales[name] = self._block_statistics(name, block, xp, weight)
        # Set only once every block succeeded.
        self.means_, self.scales_ = means, scales
        self._offset_scale_fill = self._column_vectors(namespace(means[name]))
        return self

    def transform(self, X):
        """Centre and scale each block; fill missing blocks with their mean.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Rows with at least one modality present.

        Returns
        -------
        X_new : {ndarray, sparse matrix, array} of shape (n_samples, n_features)
            X's columns in X's order, same float dtype (and namespace,
            device; sparse stays CSR).
        """
        check_is_fitted(self)
        X, present = self._validate_blocks(
            X, reset=False, fitted_array="_offset_scale_fill"
        )
        self._check_sparse(X)
        columns = self._offset_scale_fill
        if columns is None:  # a model pickled before it was stored
            columns = self._column_vectors(namespace(X))
        if sparse.issparse(X):
            out = self._transform_sparse(X, present, columns)
            finite = bool(np.isfinite(out.data).all())
        else:
            xp = namespace(X)
            # In the accumulation dtype (float64 where the device has it),
            # then X's dtype: one rounding.
            out = xp.astype((X - columns[0, :]) / columns[1, :], X.dtype, copy=False)
            if isinstance(out, np.ndarray):
                # numpy: write the fill into the missing rows of the new
                # array in place (2x faster than a masked copy of it all).
                fill = np.asarray(columns[2, :])
                for position, indices in enumerate(self.modalities_.values()):
                    missing_rows = np.flatnonzero(~present[:, position])
                    if missing_rows.size:
                        out[np.ix_(missing_rows, indices)] = fill[indices]
            elif not bool(xp.all(present)):
                owner = np.empty(X.shape[1], dtype=np.int64)
                for position, cols in enumerate(self.modalities_.values()):
                    owner[cols] = position
                present_columns = xp.take(
                    present, xp.asarray(owner, device=array_device(X)), axis=1
                )
                fill = xp.astype(columns[2, :], X.dtype)
                out = xp.where(present_columns, out, xp.broadcast_to(fill, out.shape))
            # max and min are NaN or infinite when any entry is: two
            # reductions, no boolean copy of the output.
            finite = out.shape[0] == 0 or (
                math.isfinite(float(xp.max(out))) and math.isfinite(float(xp.min(out)))
            )
        if not finite:
            raise ValueError(
                f"ConcatFusion.transform: centring and scaling X overflows "
                f"{X.dtype}: some values of X are so far from the fitted means, "
                f"relative to the fitted scales {self.scales_}, that the result "
                "cannot be held. Check X's units against the data fit saw."
            )
        return out

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns, one per input column.

        With ``modalities=None`` the input names (already
        ``"<modality>__<feature>"``) are kept; with a dict each becomes
        ``"<modality>__<input name>"``, so that a following skcrossmodal step
        with ``modalities=None`` finds the modalities.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input feature names; by default the fitted ones, or
            ``x0, x1, ...``.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        names = _check_feature_names_in(self, input_features)
        if self.modalities is None:
            return np.asarray(names, dtype=object)
        out = np.empty(len(names), dtype=object)
        for modality, cols in self.modalities_.items():
            out[cols] = [f"{modality}__{names[j]}" for j in cols]
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = not self.center
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        # torch / CuPy / any array API input under array_api_dispatch.
        tags.array_api_support = True
        return tags

    def _block_statistics(self, name, block, xp, weight=None):
        """Mean (an array like ``block``'s) and scale (a float) of one block.

        Computed on the block as it is; when its sums or squares leave
        float64's range (values near 1e+200 or 1e-161), again on the block
        times a power of two that brings its largest value near 1, the
        statistics divided by it after (exact). "Constant" is judged relative
        to the block's own magnitude.
        """
        statistics = self._statistics(name, block, 1.0, xp, weight)
        if statistics is None:
            factor = math.ldexp(1.0, -math.frexp(max_abs(block))[1])
            statistics = self._statistics(name, block * factor, factor, xp, weight)
        return statistics

    def _statistics(self, name, block, factor, xp, weight):
        """Statistics of ``block`` (the data times ``factor``), in the data's
        unit; None when unscaled (``factor`` 1) sums or squares are out of
        range. ``weight``: each row's share of the total weight (a column in
        the block's namespace; 1-D numpy for sparse), or None (equal)."""
        n_rows = block.shape[0]
        check_range = factor == 1.0
        uncentred = block
        if weight is not None and sparse.issparse(block):
            mean = np.asarray(block.T @ weight).reshape(-1)
        elif weight is not None:
            mean = xp.sum(weight * block, axis=0)
        elif sparse.issparse(block):
            mean = np.asarray(block.mean(axis=0)).reshape(-1)
        else:
            mean = xp.mean(block, axis=0)
        if check_range and not bool(
            namespace(mean).all(namespace(mean).isfinite(mean))
        ):
            return None
        if self.center:
            block = block - mean
        if self.scaling is None:
            return mean / factor, 1.0
        if weight is not None:
            # Rows times the square root of their share: squares and the
            # top singular value are then the weighted ones.
            root = np.sqrt(weight) if sparse.issparse(block) else xp.sqrt(weight)
            block = (
                sparse.csr_matrix(block.multiply(root[:, None]))
                if sparse.issparse(block)
                else block * root
            )
            total = _sum_of_squares(block)
        else:
            total = _sum_of_squares(block) / n_rows
        if total == 0:
            if check_range and max_abs(block) > 0:  # squares underflowed
                return None
            return mean / factor, 1.0  # all zero, or constant when centred
        if check_range and not _SQUARES_LOW < total < math.inf:
            return None
        if self.center and _is_constant(total, mean, n_rows, namespace(mean)):
            # Rows that are all equal: their value is the mean, exactly (the
            # computed mean can be a rounding off, which would not centre
            # the block to exactly 0).
            if bool(xp.all(uncentred == uncentred[0:1, :])):
                mean = uncentred[0, :]
            return mean / factor, 1.0
        if self.scaling == "frobenius":
            spread = math.sqrt(total)
        else:
            spread = top_singular_value(block)
            if weight is None:
                spread /= math.sqrt(n_rows)
        scale = spread / factor
        if not math.isfinite(scale) or scale == 0:
            raise ValueError(
                f"ConcatFusion: the scale of modality {name!r} ({spread!r} "
                f"divided by {factor!r}) cannot be held in float64. Rescale "
                "that modality's features (e.g. divide them by a constant) "
                "before fitting."
            )
        return mean / factor, scale

    def _column_vectors(self, xp):
        """Per-column offset, divisor and missing-block fill, as rows of one array.

        In the namespace (and on the device) of ``means_``; the fill of a
        column is the value its modality's fitted mean takes after
        ``transform``: 0 when centring.
        """
        offsets, divisors, fills = [], [], []
        for name in self.modalities_:
            mean, scale = self.means_[name], self.scales_[name]
            offset = mean if self.center else xp.zeros_like(mean)
            offsets.append(offset)
            divisors.append(
                xp.full(
                    mean.shape,
                    float(scale),
                    dtype=mean.dtype,
                    device=array_device(mean),
                )
            )
            fills.append((mean - offset) / float(scale))
        stacked = xp.stack([xp.concat(offsets), xp.concat(divisors), xp.concat(fills)])
        # The modalities' columns, stacked in modality order, back in X's order.
        order = np.argsort(np.concatenate(list(self.modalities_.values())))
        return xp.take(stacked, xp.asarray(order, device=array_device(stacked)), axis=1)

    def _transform_sparse(self, X, present, columns):
        """``transform`` of a sparse X (center=False): stays sparse."""
        divisor, fill = np.asarray(columns[1]), np.asarray(columns[2])
        out = nan_to_zero(X).multiply(1.0 / divisor[None, :]).tocsr()
        # Rows missing modality m get m's fill value (not stored when 0).
        rows, cols = [np.empty(0, dtype=np.intp)], [np.empty(0, dtype=np.intp)]
        for position, indices in enumerate(self.modalities_.values()):
            missing_rows = np.flatnonzero(~present[:, position])
            rows.append(np.repeat(missing_rows, indices.size))
            cols.append(np.tile(indices, missing_rows.size))
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        if rows.size:
            filler = sparse.coo_matrix(
                (fill[cols], (rows, cols)), shape=X.shape, dtype=np.float64
            )
            out = (out + filler).tocsr()
        out = out.astype(X.dtype)
        out.eliminate_zeros()
        return out

    def _check_sparse(self, X):
        if sparse.issparse(X) and self.center:
            raise ValueError(
                "ConcatFusion cannot centre sparse input (it would become "
                "dense). Pass center=False to scale the sparse blocks without "
                "centring, or convert X to a dense array."
            )


# A mean square below this may have lost digits to underflow (values near
# 2**-300 and below): the block is then scaled first.
_SQUARES_LOW = 2.0**-600


def _sum_of_squares(block):
    """Sum of the squared entries of a dense (any namespace) or sparse block."""
    if sparse.issparse(block):
        return float(block.multiply(block).sum())
    if isinstance(block, np.ndarray):
        # numpy: einsum forms no squared copy of the block (about 2x faster).
        return float(np.einsum("ij,ij->", block, block))
    xp = namespace(block)
    return float(xp.sum(block * block))


def _is_constant(total_variance, mean, n_rows, xp):
    """Whether a centred block is constant up to the rounding of its mean.

    scikit-learn's rule for a constant feature (``StandardScaler``), applied
    to the block's total variance and the squares of its means: the variance
    a constant block can show from rounding its mean is at most
    ``(n * eps * mean)**2``. Both sides scale alike with the unit, so the
    rule is scale-free.
    """
    eps = float(xp.finfo(mean.dtype).eps)
    squared_means = float(xp.sum(mean * mean))
    bound = n_rows * eps * total_variance + (n_rows * eps) ** 2 * squared_means
    return total_variance <= bound
