r"""Fusion of modalities: weighted sums, early fusion and late fusion.

The seed article's first family, :math:`F = \alpha F_{text} + \beta F_{image}
+ \gamma F_{audio}`:

- :class:`WeightedFusion` (transformer): the weighted sum of the modality
  blocks, with an explicit alignment to a common width when widths differ;
- :class:`ConcatFusion` (transformer): early fusion, each block centred and
  scaled so that a wide modality does not drown a narrow one;
- :class:`LateFusionClassifier` and :class:`LateFusionRegressor`: one
  estimator per modality, combined by a weighted vote or by stacking.

All of them read the modalities of X from the ``modalities`` parameter (the
same rule as :class:`~skcrossmodal.SharedProjection`), and a row whose
modality block is all NaN is missing that modality.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
from scipy import sparse
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    RegressorMixin,
    TransformerMixin,
    _fit_context,
    clone,
)
from sklearn.decomposition import PCA
from sklearn.externals.array_api_compat import device as array_device
from sklearn.externals.array_api_compat import numpy as numpy_namespace
from sklearn.linear_model import LogisticRegression, Ridge, RidgeCV
from sklearn.model_selection import check_cv, cross_val_predict
from sklearn.utils import get_tags
from sklearn.utils._array_api import check_same_namespace
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import (
    _check_feature_names_in,
    _check_sample_weight,
    _check_y,
    check_is_fitted,
)

from ._array_api import accumulation_dtype, get_array_namespace
from ._base import VersionedPickleMixin, check_finite_blocks, validate_modal_data
from ._fusion_utils import (
    block_rows,
    check_weights,
    nan_to_zero,
    require_every_modality,
    row_coefficients,
    top_singular_value,
    xp_nan_to_zero,
    xp_presence_mask,
    xp_require_every_modality,
    xp_row_coefficients,
    xp_take_columns,
    xp_take_rows,
    xp_top_singular_value,
)
from ._modalities import take_columns
from .projection import SharedProjection

__all__ = [
    "ConcatFusion",
    "LateFusionClassifier",
    "LateFusionRegressor",
    "WeightedFusion",
]


def _handle_zero_scale(scale, largest_mean):
    """Scale 1 for a constant block (as StandardScaler does for a feature).

    ``largest_mean`` is the largest absolute value of the block's mean.
    """
    tiny = 10 * np.finfo(np.float64).eps * max(1.0, float(largest_mean))
    return scale if scale > tiny else 1.0


class WeightedFusion(VersionedPickleMixin, TransformerMixin, BaseEstimator):
    r"""Weighted sum of the modality blocks (the seed's :math:`\sum_m w_m F_m`).

    Each output row is the weighted average of the modality blocks that the
    row carries,

    .. math::

        F_i = \frac{\sum_{m \in P_i} w_m\, A_m(x_i^m)}{\sum_{m \in P_i} w_m},

    with :math:`P_i` the modalities present in row ``i`` and :math:`A_m` the
    alignment of modality ``m`` to the common width (the identity when
    ``align=None``). When every modality is present this is
    :math:`\alpha F_{text} + \beta F_{image} + \dots` with the weights
    normalised to sum to 1; a row missing a modality gets the weighted sum
    renormalised over the modalities it has.

    Parameters
    ----------
    weights : dict or None, default=None
        ``{modality: weight}``, one finite number >= 0 per modality, not all
        0. Only the ratios matter (they are normalised to sum to 1); ``None``
        gives every modality the same weight. A plain parameter, so
        ``GridSearchCV(..., {"weights": [{"a": 1, "b": 2}, ...]})`` works.

    modalities : dict or None, default=None
        Which columns of X belong to which modality, exactly as in
        :class:`~skcrossmodal.SharedProjection`: ``None`` reads
        ``"<modality>__<feature>"`` feature names, a dict maps a name to
        columns in any form ``ColumnTransformer`` accepts.

    align : {None, "pca", "shared"}, default=None
        How each modality is brought to the common width ``n_components``.

        - ``None``: no alignment; every modality must have the same width and
          column ``j`` of each block is summed. Use it when the columns
          correspond, e.g. after ``SharedProjection(output="concat")``.
        - ``"pca"``: a :class:`~sklearn.decomposition.PCA` per modality,
          fitted on the rows that carry it. This gives equal widths, but
          component ``j`` of one modality has no reason to match component
          ``j`` of another: put modalities on comparable scales first (e.g.
          with :class:`ConcatFusion`) and prefer ``"shared"`` when the
          modalities share structure.
        - ``"shared"``: a :class:`~skcrossmodal.SharedProjection` (ridge /
          multi-set CCA) fitted on X, whose components are paired across
          modalities by construction. With ``weights=None`` the result
          equals ``SharedProjection(output="mean")``.

    n_components : int or None, default=None
        The common width for ``align="pca"`` or ``"shared"``; ``None`` uses
        the narrowest modality's width. Ignored when ``align=None``.

    reg : float >= 0, "auto" or dict, default=0.0
        Passed to :class:`~skcrossmodal.SharedProjection` when
        ``align="shared"``; ignored otherwise.

    random_state : int, RandomState instance or None, default=None
        Passed to each PCA when ``align="pca"`` (used by its randomized
        solver on large blocks).

    Attributes
    ----------
    modalities_ : dict of str -> ndarray of int
        Column indices of each modality in X.
    weights_ : dict of str -> float
        The weights used, normalised to sum to 1.
    aligners_ : dict of str -> PCA
        The fitted PCA of each modality. Only with ``align="pca"``.
    shared_projection_ : SharedProjection
        The fitted shared projection. Only with ``align="shared"``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string feature names.

    See Also
    --------
    ConcatFusion : Early fusion: the scaled blocks side by side.
    LateFusionClassifier : One classifier per modality, combined.

    Notes
    -----
    A row with no modality present, or carrying only modalities of weight 0,
    raises a ValueError in ``transform``. Sparse X keeps sparse output with
    ``align=None``; ``float32`` input gives ``float32`` output.

    **Array API.** Under ``sklearn.set_config(array_api_dispatch=True)``, X
    may be an array of any namespace that follows the array API standard
    (torch on the CPU or a GPU, CuPy, ``array_api_strict``): ``fit`` and
    ``transform`` compute in X's namespace and on its device, and return an
    array of that namespace, dtype and device. Missing modalities (NaN
    blocks) are handled as for numpy, and ``weights_`` stay Python floats.
    ``align="pca"`` fits scikit-learn's ``PCA`` in X's namespace (its own
    choice of solver; the randomized one with QR normalisation, the one it
    supports there). ``align="shared"`` relies on
    :class:`~skcrossmodal.SharedProjection`'s array API path, so it needs a
    numeric ``reg`` and a fit on rows that carry every modality
    (``transform`` then accepts missing ones); anything else raises a
    ValueError that says what to do. ``transform`` needs X in the namespace
    and on the device that ``fit`` saw.

    Examples
    --------
    >>> import numpy as np
    >>> from skcrossmodal import WeightedFusion
    >>> X = np.array([[1.0, 2.0, 10.0, 20.0],
    ...               [3.0, 4.0, np.nan, np.nan]])
    >>> fusion = WeightedFusion({"text": 1, "image": 3},
    ...                         modalities={"text": [0, 1], "image": [2, 3]})
    >>> fusion.fit_transform(X)
    array([[ 7.75, 15.5 ],
           [ 3.  ,  4.  ]])
    """

    _parameter_constraints: dict = {
        "weights": [dict, None],
        "modalities": [dict, None],
        "align": [StrOptions({"pca", "shared"}), None],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "reg": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"}), dict],
        "random_state": ["random_state"],
    }

    # The normalised weights in the namespace and device of fit's X (what
    # transform checks its X against); None in models pickled before it.
    _weight_vector = None

    def __init__(
        self,
        weights=None,
        *,
        modalities=None,
        align=None,
        n_components=None,
        reg=0.0,
        random_state=None,
    ):
        self.weights = weights
        self.modalities = modalities
        self.align = align
        self.n_components = n_components
        self.reg = reg
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the alignment (if any) and check the weights.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            The modalities side by side; a modality block of NaN in a row
            marks it missing there.
        y : None
            Ignored.

        Returns
        -------
        self : WeightedFusion
        """
        X = validate_modal_data(self, X, reset=True)
        names = list(self.modalities_)
        xp = get_array_namespace(X)
        if xp is None:
            present = check_finite_blocks(X, self.modalities_)
            require_every_modality(present, names)
        else:
            present = xp_presence_mask(X, self.modalities_)
            xp_require_every_modality(present, names)
        weights = check_weights(self.weights, names)
        self.weights_ = dict(zip(names, weights.tolist()))
        if xp is not None:
            device = array_device(X)
            weights = xp.asarray(
                weights, dtype=accumulation_dtype(xp, device), device=device
            )
        self._weight_vector = weights
        widths = {name: len(cols) for name, cols in self.modalities_.items()}

        if self.align is None:
            if len(set(widths.values())) > 1:
                raise ValueError(
                    f"WeightedFusion sums the modality blocks, but their widths "
                    f"differ: {widths}. Set align='pca' (a PCA per modality to "
                    "n_components) or align='shared' (a SharedProjection to "
                    "n_components) to bring them to a common width first."
                )
            self._n_features_out = next(iter(widths.values()))
            return self

        narrowest = min(widths, key=widths.get)
        n_components = self.n_components or widths[narrowest]
        if n_components > widths[narrowest]:
            raise ValueError(
                f"n_components={n_components} is larger than modality "
                f"{narrowest!r}, which has {widths[narrowest]} feature(s). Choose "
                "n_components <= the narrowest modality's width."
            )
        self._n_features_out = n_components
        if self.align == "pca":
            self.aligners_ = {}
            for position, (name, cols) in enumerate(self.modalities_.items()):
                if xp is None:
                    block = block_rows(X, cols, present[:, position])
                    pca = PCA(
                        n_components,
                        svd_solver=_pca_solver(block, n_components),
                        random_state=self.random_state,
                    )
                else:
                    block = xp_take_rows(
                        xp, xp_take_columns(xp, X, cols), present[:, position]
                    )
                    # PCA's own choice of solver; its randomized solver needs
                    # the QR normaliser under array API dispatch (it would
                    # switch to it with a warning).
                    pca = PCA(
                        n_components,
                        power_iteration_normalizer="QR",
                        random_state=self.random_state,
                    )
                self.aligners_[name] = pca.fit(block)
        else:
            if xp is not None:
                self._check_shared_array_api(xp, present)
            self.shared_projection_ = SharedProjection(
                n_components,
                modalities=dict(self.modalities_),
                reg=self.reg,
                output="concat",
            ).fit(X)
        return self

    def transform(self, X):
        """Weighted sum of the (aligned) modality blocks of each row.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Rows with at least one modality of positive weight present.

        Returns
        -------
        X_new : {ndarray, sparse matrix} of shape (n_samples, n_components)
            Same float dtype as X; sparse only for sparse X with
            ``align=None``.
        """
        check_is_fitted(self)
        X = validate_modal_data(self, X, reset=False)
        check_same_namespace(X, self, attribute="_weight_vector", method="transform")
        xp = get_array_namespace(X)
        if xp is not None:
            return self._transform_xp(X, xp)
        names = list(self.modalities_)
        present = check_finite_blocks(X, self.modalities_)
        weights = np.array([self.weights_[name] for name in names])
        coef = row_coefficients(present, weights, names).astype(X.dtype)
        blocks = self._aligned_blocks(X, present)
        if sparse.issparse(X) and self.align is None:
            scaled = [block.multiply(c[:, None]) for block, c in zip(blocks, coef.T)]
            total = scaled[0]
            for block in scaled[1:]:
                total = total + block
            return total.tocsr().astype(X.dtype)
        total = np.zeros((X.shape[0], self._n_features_out), dtype=X.dtype)
        for block, c in zip(blocks, coef.T):
            total += c[:, None] * block
        return total

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: ``"weightedfusion0"``, ...

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Only checked against the fitted feature names.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features, generate_names=False)
        prefix = type(self).__name__.lower()
        return np.asarray(
            [f"{prefix}{j}" for j in range(self._n_features_out)], dtype=object
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # NaN is accepted only as whole missing blocks; arbitrary NaN is an
        # error, which is what allow_nan=False promises to sklearn's checks.
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        # torch / CuPy / any array API input under array_api_dispatch; with
        # align="shared" only where SharedProjection's array API path applies
        # (numeric reg).
        tags.array_api_support = self.align != "shared" or not _has_auto_reg(self.reg)
        return tags

    def _check_shared_array_api(self, xp, present):
        """align="shared" on array API input: what SharedProjection covers."""
        if _has_auto_reg(self.reg):
            raise ValueError(
                f"WeightedFusion(align='shared', reg={self.reg!r}) on array API "
                f"input ({xp.__name__}): reg='auto' (Ledoit-Wolf) is only "
                "available for numpy input. Give a number, or a dict of numbers "
                "(e.g. the reg_ a numpy fit on a subsample chose), or pass numpy "
                "input."
            )
        if not bool(xp.all(present)):
            raise ValueError(
                "WeightedFusion(align='shared') on array API input "
                f"({xp.__name__}) needs every modality in every row for fit: "
                "SharedProjection's array API path supports complete data "
                "only. Fit on the rows that carry every modality (transform "
                "then accepts missing modalities), use align=None or "
                "align='pca', or pass numpy input."
            )

    def _transform_xp(self, X, xp):
        """``transform`` in X's namespace and device (torch, CuPy, ...)."""
        names = list(self.modalities_)
        present = xp_presence_mask(X, self.modalities_)
        coef = xp_row_coefficients(present, self._weight_vector, names)
        coef = xp.astype(coef, X.dtype)
        total = xp.zeros(
            (X.shape[0], self._n_features_out), dtype=X.dtype, device=array_device(X)
        )
        for position, block in enumerate(self._aligned_blocks_xp(X, xp, present)):
            total = total + coef[:, position : position + 1] * block
        return total

    def _aligned_blocks_xp(self, X, xp, present):
        """Each modality at the common width, 0 in rows that miss it."""
        complete = bool(xp.all(present))
        source = X if complete else xp_nan_to_zero(X)
        columns = list(self.modalities_.values())
        if self.align is None:
            return [xp_take_columns(xp, source, cols) for cols in columns]
        blocks = []
        for position, (name, cols) in enumerate(self.modalities_.items()):
            block = xp_take_columns(xp, source, cols)
            if self.align == "pca":
                aligned = self.aligners_[name].transform(block)
            else:
                # SharedProjection's projection of one modality, as its
                # transform computes it, for the rows that carry it.
                projection = self.shared_projection_
                weights = xp.astype(projection.weights_[name], X.dtype)
                offset = xp.astype(projection.means_[name], X.dtype) @ weights
                aligned = block @ weights - offset
            if not complete:
                aligned = xp.where(
                    present[:, position : position + 1],
                    aligned,
                    xp.zeros_like(aligned),
                )
            blocks.append(aligned)
        return blocks

    def _aligned_blocks(self, X, present):
        """Each modality at the common width, 0 in rows that miss it."""
        if self.align is None:
            X = nan_to_zero(X)
            return [take_columns(X, cols) for cols in self.modalities_.values()]
        if self.align == "shared":
            projected = np.nan_to_num(self.shared_projection_.transform(X), nan=0.0)
            k = self._n_features_out
            return [
                projected[:, j * k : (j + 1) * k] for j in range(len(self.modalities_))
            ]
        blocks = []
        for position, (name, cols) in enumerate(self.modalities_.items()):
            rows = present[:, position]
            aligned = np.zeros((X.shape[0], self._n_features_out), dtype=X.dtype)
            if rows.any():
                block = block_rows(X, cols, rows)
                aligned[rows] = self.aligners_[name].transform(block)
            blocks.append(aligned)
        return blocks


def _has_auto_reg(reg):
    values = reg.values() if isinstance(reg, dict) else [reg]
    return any(isinstance(value, str) for value in values)


def _pca_solver(block, n_components):
    """PCA's own choice, except on sparse blocks ARPACK cannot handle."""
    if sparse.issparse(block) and n_components >= min(block.shape):
        return "covariance_eigh"
    return "auto"


class ConcatFusion(VersionedPickleMixin, TransformerMixin, BaseEstimator):
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
    does not depend on how many rows were fitted. A constant block keeps
    scale 1.

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
    def fit(self, X, y=None):
        """Fit each block's mean and scale.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            The modalities side by side; a modality block of NaN in a row
            marks it missing there.
        y : None
            Ignored.

        Returns
        -------
        self : ConcatFusion
        """
        X = validate_modal_data(self, X, reset=True)
        xp = get_array_namespace(X)
        if xp is not None:
            return self._fit_xp(X, xp)
        self._check_sparse(X)
        names = list(self.modalities_)
        present = check_finite_blocks(X, self.modalities_)
        require_every_modality(present, names)
        self.means_, self.scales_ = {}, {}
        for position, (name, cols) in enumerate(self.modalities_.items()):
            block = block_rows(X, cols, present[:, position])
            n_rows = block.shape[0]
            if sparse.issparse(block):
                block = block.astype(np.float64)
                mean = np.asarray(block.mean(axis=0)).reshape(-1)
            else:
                block = np.asarray(block, dtype=np.float64)
                mean = block.mean(axis=0)
                if self.center:
                    block = block - mean
            if self.scaling is None:
                scale = 1.0
            elif self.scaling == "frobenius":
                squares = (
                    block.multiply(block).sum()
                    if sparse.issparse(block)
                    else np.einsum("ij,ij->", block, block)
                )
                scale = float(np.sqrt(squares / n_rows))
            else:
                scale = top_singular_value(block) / np.sqrt(n_rows)
            self.means_[name] = mean
            self.scales_[name] = _handle_zero_scale(scale, np.max(np.abs(mean)))
        self._offset_scale_fill = self._column_vectors(numpy_namespace)
        return self

    def _fit_xp(self, X, xp):
        """``fit`` in X's namespace and device (torch, CuPy, ...)."""
        names = list(self.modalities_)
        present = xp_presence_mask(X, self.modalities_)
        xp_require_every_modality(present, names)
        dtype = accumulation_dtype(xp, array_device(X))
        self.means_, self.scales_ = {}, {}
        for position, (name, cols) in enumerate(self.modalities_.items()):
            block = xp_take_rows(xp, xp_take_columns(xp, X, cols), present[:, position])
            block = xp.astype(block, dtype, copy=False)
            n_rows = block.shape[0]
            mean = xp.mean(block, axis=0)
            if self.center:
                block = block - mean
            if self.scaling is None:
                scale = 1.0
            elif self.scaling == "frobenius":
                scale = float(xp.sqrt(xp.sum(block * block) / n_rows))
            else:
                scale = xp_top_singular_value(block) / math.sqrt(n_rows)
            self.means_[name] = mean
            self.scales_[name] = _handle_zero_scale(scale, float(xp.max(xp.abs(mean))))
        self._offset_scale_fill = self._column_vectors(xp)
        return self

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

    def transform(self, X):
        """Centre and scale each block; fill missing blocks with their mean.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Rows with at least one modality present.

        Returns
        -------
        X_new : {ndarray, sparse matrix} of shape (n_samples, n_features)
            X's columns in X's order, same float dtype (sparse stays CSR).
        """
        check_is_fitted(self)
        X = validate_modal_data(self, X, reset=False)
        check_same_namespace(
            X, self, attribute="_offset_scale_fill", method="transform"
        )
        xp = get_array_namespace(X)
        if xp is not None:
            return self._transform_xp(X, xp)
        self._check_sparse(X)
        present = check_finite_blocks(X, self.modalities_)
        columns = self._offset_scale_fill
        if columns is None:  # a model pickled before it was stored
            columns = self._column_vectors(numpy_namespace)
        offset, divisor, fill = columns[0], columns[1], columns[2]
        if sparse.issparse(X):
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
        out = ((X - offset) / divisor).astype(X.dtype, copy=False)
        for position, indices in enumerate(self.modalities_.values()):
            missing_rows = np.flatnonzero(~present[:, position])
            if missing_rows.size:
                out[np.ix_(missing_rows, indices)] = fill[indices].astype(X.dtype)
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
        # NaN is accepted only as whole missing blocks; arbitrary NaN is an
        # error, which is what allow_nan=False promises to sklearn's checks.
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = not self.center
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        # torch / CuPy / any array API input under array_api_dispatch.
        tags.array_api_support = True
        return tags

    def _transform_xp(self, X, xp):
        """``transform`` in X's namespace and device (torch, CuPy, ...)."""
        present = xp_presence_mask(X, self.modalities_)
        columns = self._offset_scale_fill
        # In the accumulation dtype (float64 where the device has it), then
        # X's dtype, as the numpy path computes it.
        out = xp.astype((X - columns[0, :]) / columns[1, :], X.dtype)
        if bool(xp.all(present)):
            return out
        owner = np.empty(X.shape[1], dtype=np.int64)
        for position, cols in enumerate(self.modalities_.values()):
            owner[cols] = position
        present_columns = xp.take(
            present, xp.asarray(owner, device=array_device(X)), axis=1
        )
        fill = xp.astype(columns[2, :], X.dtype)
        return xp.where(present_columns, out, xp.broadcast_to(fill, out.shape))

    def _check_sparse(self, X):
        if sparse.issparse(X) and self.center:
            raise ValueError(
                "ConcatFusion cannot centre sparse input (it would become "
                "dense). Pass center=False to scale the sparse blocks without "
                "centring, or convert X to a dense array."
            )


# -- late fusion --------------------------------------------------------------


def _fit_one(estimator, X, y, sample_weight):
    if sample_weight is None:
        return estimator.fit(X, y)
    return estimator.fit(X, y, sample_weight=sample_weight)


class _BaseLateFusion(VersionedPickleMixin, BaseEstimator):
    """Shared fit logic: one estimator per modality on its own columns."""

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"]), dict, None],
        "modalities": [dict, None],
        "weights": [dict, None],
        "final_estimator": [HasMethods(["fit"]), None],
        "cv": ["cv_object"],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        estimator=None,
        *,
        modalities=None,
        weights=None,
        method=None,
        final_estimator=None,
        cv=None,
        n_jobs=None,
    ):
        self.estimator = estimator
        self.modalities = modalities
        self.weights = weights
        self.method = method
        self.final_estimator = final_estimator
        self.cv = cv
        self.n_jobs = n_jobs

    def _base_estimators(self, names):
        if isinstance(self.estimator, dict):
            unknown = [key for key in self.estimator if key not in names]
            absent = [name for name in names if name not in self.estimator]
            if unknown or absent:
                raise ValueError(
                    "`estimator` as a dict needs exactly one estimator per "
                    f"modality {names}; unknown: {unknown}, missing: {absent}."
                )
            for name, est in self.estimator.items():
                if not hasattr(est, "fit"):
                    raise TypeError(
                        f"`estimator[{name!r}]` must be an estimator with a fit "
                        f"method, got {type(est).__name__}."
                    )
            return {name: clone(self.estimator[name]) for name in names}
        template = self.estimator
        if template is None:
            template = self._default_estimator()
        return {name: clone(template) for name in names}

    def _fit_late(self, X, y, sample_weight):
        """Validate, fit the per-modality estimators, and stack if asked."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target "
                "y is None."
            )
        X = validate_modal_data(self, X, reset=True)
        y = _check_y(y, estimator=self)
        if y.shape[0] != X.shape[0]:
            raise ValueError(
                f"X and y have inconsistent numbers of samples: {X.shape[0]} "
                f"and {y.shape[0]}."
            )
        y = self._prepare_y(y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        names = list(self.modalities_)
        present = check_finite_blocks(X, self.modalities_)
        require_every_modality(present, names)
        self.weights_ = dict(zip(names, check_weights(self.weights, names).tolist()))
        bases = self._base_estimators(names)
        self._check_base_estimators(bases)

        def subset(position):
            rows = present[:, position]
            cols = self.modalities_[names[position]]
            weight = None if sample_weight is None else sample_weight[rows]
            return block_rows(X, cols, rows), y[rows], weight

        fitted = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_one)(bases[name], *subset(position))
            for position, name in enumerate(names)
        )
        self.estimators_ = dict(zip(names, fitted))
        self._fill_ = {
            name: self._missing_fill(*subset(position)[1:])
            for position, name in enumerate(names)
        }

        if self.method == "stacking":
            columns = []
            for position, name in enumerate(names):
                X_m, y_m, w_m = subset(position)
                cv = check_cv(self.cv, y_m, classifier=self._is_classifier())
                params = None if w_m is None else {"sample_weight": w_m}
                out_of_fold = cross_val_predict(
                    clone(bases[name]),
                    X_m,
                    y_m,
                    cv=cv,
                    method=self._stack_method,
                    n_jobs=self.n_jobs,
                    params=params,
                )
                rows = present[:, position]
                full = np.empty((X.shape[0],) + self._output_shape_tail())
                full[rows] = self._encode_out_of_fold(out_of_fold, y_m)
                columns.append(self._meta_block(name, full, rows))
            meta = np.hstack(columns)
            final = (
                self._default_final_estimator()
                if self.final_estimator is None
                else clone(self.final_estimator)
            )
            self.final_estimator_ = _fit_one(final, meta, y, sample_weight)
        return self

    def _per_modality_outputs(self, X):
        """(list of per-modality outputs on present rows, presence mask)."""
        check_is_fitted(self)
        X = validate_modal_data(self, X, reset=False)
        present = check_finite_blocks(X, self.modalities_)
        outputs = []
        for position, (name, cols) in enumerate(self.modalities_.items()):
            rows = present[:, position]
            if rows.any():
                out = getattr(self.estimators_[name], self._stack_method)(
                    block_rows(X, cols, rows)
                )
                outputs.append(self._encode_fitted(name, out))
            else:
                outputs.append(None)
        return outputs, present

    def _combined(self, X):
        """Soft-vote / mean output, or the stacked meta-features."""
        outputs, present = self._per_modality_outputs(X)
        names = list(self.modalities_)
        if self.method == "stacking":
            blocks = []
            for position, (name, out) in enumerate(zip(names, outputs)):
                rows = present[:, position]
                full = np.empty((present.shape[0],) + self._output_shape_tail())
                if out is not None:
                    full[rows] = out
                blocks.append(self._meta_block(name, full, rows))
            return np.hstack(blocks), True
        weights = np.array([self.weights_[name] for name in names])
        coef = row_coefficients(present, weights, names)
        total = np.zeros((present.shape[0],) + self._output_shape_tail())
        for position, out in enumerate(outputs):
            rows = present[:, position]
            if out is None:
                continue
            c = coef[rows, position]
            total[rows] += c.reshape((-1,) + (1,) * (out.ndim - 1)) * out
        return total, False

    def _meta_block(self, name, values, rows):
        """Meta-features of one modality; the fill value where it is missing."""
        values = np.array(values, dtype=np.float64, copy=True)
        values[~rows] = self._fill_[name]
        return self._trim_meta(values)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # NaN is accepted only as whole missing blocks (see the transformers).
        tags.input_tags.allow_nan = False
        if isinstance(self.estimator, dict):
            estimators = list(self.estimator.values())
        else:
            estimators = [
                self._default_estimator() if self.estimator is None else self.estimator
            ]
        tags.input_tags.sparse = all(
            get_tags(est).input_tags.sparse for est in estimators
        )
        return tags


class LateFusionClassifier(ClassifierMixin, _BaseLateFusion):
    r"""Late fusion: one classifier per modality, combined by vote or stacking.

    Each modality gets its own clone of ``estimator`` (or its own estimator
    from a dict), fitted on that modality's columns and on the rows that
    carry it. Their class probabilities are then combined:

    - ``method="soft_vote"``: the weighted average of the per-modality
      ``predict_proba`` over the modalities present in the row,
      :math:`p_i = \sum_{m \in P_i} w_m p_m(x_i^m) / \sum_{m \in P_i} w_m`;
    - ``method="stacking"``: as :class:`~sklearn.ensemble.StackingClassifier`,
      ``final_estimator`` is fitted on the cross-validated (out-of-fold)
      ``predict_proba`` of each modality, then every per-modality estimator
      is refitted on all its rows. In a binary problem only the probability
      of the second class is kept per modality, as sklearn does.

    Parameters
    ----------
    estimator : estimator, dict or None, default=None
        The classifier cloned for every modality (``None``:
        ``LogisticRegression()``), or a dict ``{modality: classifier}`` to
        use different models per modality. Each needs ``predict_proba``.
        Nested parameters of a single estimator are tunable as usual
        (``estimator__C``); with a dict, tune by passing different dicts.

    modalities : dict or None, default=None
        Which columns of X belong to which modality, exactly as in
        :class:`~skcrossmodal.SharedProjection`.

    weights : dict or None, default=None
        ``{modality: weight}`` for the soft vote, finite and >= 0, not all 0;
        only the ratios matter. ``None``: equal weights. Checked, but unused,
        with ``method="stacking"``, where ``final_estimator`` learns the
        combination. Grid-searchable:
        ``GridSearchCV(clf, {"weights": [{"a": 1, "b": 2}, ...]})``.

    method : {"soft_vote", "stacking"}, default="soft_vote"
        How the per-modality probabilities are combined.

    final_estimator : classifier or None, default=None
        The stacking classifier (``None``: ``LogisticRegression()``). Only
        used with ``method="stacking"``.

    cv : int, cross-validation generator, iterable or None, default=None
        Splits for the out-of-fold predictions of ``method="stacking"``, as in
        :func:`~sklearn.model_selection.cross_val_predict`; ``None`` is
        5-fold stratified. Applied to each modality's own rows.

    n_jobs : int or None, default=None
        Jobs for fitting the per-modality estimators (and for the
        cross-validation of stacking).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    modalities_ : dict of str -> ndarray of int
        Column indices of each modality in X.
    estimators_ : dict of str -> estimator
        The fitted classifier of each modality.
    weights_ : dict of str -> float
        The soft-vote weights, normalised to sum to 1.
    priors_ : dict of str -> ndarray of shape (n_classes,)
        Class frequencies among the rows that carry each modality (weighted
        by ``sample_weight``): the meta-features used by stacking where the
        modality is missing.
    final_estimator_ : estimator
        The fitted stacking classifier. Only with ``method="stacking"``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string feature names.

    See Also
    --------
    sklearn.ensemble.VotingClassifier : Soft vote of estimators on all columns.
    sklearn.ensemble.StackingClassifier : Stacking on all columns.
    LateFusionRegressor : The regression twin.

    Notes
    -----
    **Missing modalities.** A modality missing in a row (all NaN) is left out
    of that row: the per-modality estimator is fitted on the rows carrying it,
    and the soft vote averages the modalities present, with the weights
    renormalised over them. For stacking, the meta-features of a missing
    modality are its class prior ``priors_[m]`` (what a model that knows
    nothing about the row would predict), both when fitting the final
    estimator and when predicting. Each per-modality estimator sees a NumPy
    array (or sparse matrix) of its own columns, without feature names.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skcrossmodal import LateFusionClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> halves = {"left": [c for c in range(64) if c % 8 < 4],
    ...           "right": [c for c in range(64) if c % 8 >= 4]}
    >>> X[:5, halves["right"]] = np.nan  # the right half is missing in 5 rows
    >>> clf = LateFusionClassifier(
    ...     make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    ...     modalities=halves, method="stacking",
    ... ).fit(X[:1500], y[:1500])
    >>> clf.predict(X[:5])
    array([0, 1, 2, 3, 4])
    >>> bool(clf.score(X[1500:], y[1500:]) > 0.85)
    True
    """

    _parameter_constraints: dict = {
        **_BaseLateFusion._parameter_constraints,
        "method": [StrOptions({"soft_vote", "stacking"})],
    }

    _stack_method = "predict_proba"

    def __init__(
        self,
        estimator=None,
        *,
        modalities=None,
        weights=None,
        method="soft_vote",
        final_estimator=None,
        cv=None,
        n_jobs=None,
    ):
        super().__init__(
            estimator,
            modalities=modalities,
            weights=weights,
            method=method,
            final_estimator=final_estimator,
            cv=cv,
            n_jobs=n_jobs,
        )

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Fit one classifier per modality (and the stacking classifier).

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            The modalities side by side; a modality block of NaN in a row
            marks it missing there.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Passed to every estimator's ``fit`` (on its rows).

        Returns
        -------
        self : LateFusionClassifier
        """
        self._fit_late(X, y, sample_weight)
        self.priors_ = dict(self._fill_)
        return self

    def predict_proba(self, X):
        """Class probabilities from the modalities present in each row.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Rows with at least one modality present.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        values, stacked = self._combined(X)
        if not stacked:
            return values
        proba = self.final_estimator_.predict_proba(values)
        return self._align_classes(self.final_estimator_.classes_, proba)

    def predict(self, X):
        """Predicted class of each row.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Rows with at least one modality present.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    # -- hooks for the base class -----------------------------------------

    @staticmethod
    def _default_estimator():
        return LogisticRegression()

    @staticmethod
    def _default_final_estimator():
        return LogisticRegression()

    @staticmethod
    def _is_classifier():
        return True

    def _prepare_y(self, y):
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        return y

    def _check_base_estimators(self, bases):
        for name, est in bases.items():
            if not hasattr(est, "predict_proba"):
                raise ValueError(
                    f"The estimator for modality {name!r} "
                    f"({type(est).__name__}) has no predict_proba, which late "
                    "fusion needs for both methods. Use a probabilistic "
                    "classifier, e.g. SVC(probability=True) or wrap it in "
                    "CalibratedClassifierCV."
                )

    def _missing_fill(self, y_m, w_m):
        counts = np.array(
            [
                (w_m[y_m == label].sum() if w_m is not None else np.sum(y_m == label))
                for label in self.classes_
            ],
            dtype=np.float64,
        )
        return counts / counts.sum()

    def _align_classes(self, classes, values):
        """Columns of ``values`` (for ``classes``) placed in ``classes_``."""
        if len(classes) == len(self.classes_):
            return values
        full = np.zeros((values.shape[0], len(self.classes_)))
        full[:, np.searchsorted(self.classes_, classes)] = values
        return full

    def _encode_fitted(self, name, proba):
        return self._align_classes(self.estimators_[name].classes_, proba)

    def _encode_out_of_fold(self, proba, y_m):
        # cross_val_predict orders columns by np.unique(y_m).
        return self._align_classes(np.unique(y_m), proba)

    def _output_shape_tail(self):
        return (len(self.classes_),)

    def _trim_meta(self, values):
        return values[:, 1:] if len(self.classes_) == 2 else values


class LateFusionRegressor(RegressorMixin, _BaseLateFusion):
    r"""Late fusion: one regressor per modality, combined by mean or stacking.

    The regression twin of :class:`LateFusionClassifier`:

    - ``method="mean"``: the weighted mean of the per-modality predictions
      over the modalities present in the row,
      :math:`\hat y_i = \sum_{m \in P_i} w_m \hat y_m(x_i^m) /
      \sum_{m \in P_i} w_m`;
    - ``method="stacking"``: as :class:`~sklearn.ensemble.StackingRegressor`,
      ``final_estimator`` is fitted on each modality's cross-validated
      predictions, then every per-modality estimator is refitted on all its
      rows.

    Parameters
    ----------
    estimator : estimator, dict or None, default=None
        The regressor cloned for every modality (``None``: ``Ridge()``), or a
        dict ``{modality: regressor}``.

    modalities : dict or None, default=None
        Which columns of X belong to which modality, exactly as in
        :class:`~skcrossmodal.SharedProjection`.

    weights : dict or None, default=None
        ``{modality: weight}`` for the weighted mean, finite and >= 0, not all
        0; only the ratios matter. Checked, but unused, with
        ``method="stacking"``. Grid-searchable.

    method : {"mean", "stacking"}, default="mean"
        How the per-modality predictions are combined.

    final_estimator : regressor or None, default=None
        The stacking regressor (``None``: ``RidgeCV()``).

    cv : int, cross-validation generator, iterable or None, default=None
        Splits for the out-of-fold predictions of stacking; ``None`` is
        5-fold. Applied to each modality's own rows.

    n_jobs : int or None, default=None
        Jobs for fitting the per-modality estimators (and for the
        cross-validation of stacking).

    Attributes
    ----------
    modalities_ : dict of str -> ndarray of int
        Column indices of each modality in X.
    estimators_ : dict of str -> estimator
        The fitted regressor of each modality.
    weights_ : dict of str -> float
        The weights of the mean, normalised to sum to 1.
    target_means_ : dict of str -> float
        Mean of y over the rows that carry each modality (weighted by
        ``sample_weight``): the meta-feature used by stacking where the
        modality is missing.
    final_estimator_ : estimator
        The fitted stacking regressor. Only with ``method="stacking"``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string feature names.

    See Also
    --------
    sklearn.ensemble.VotingRegressor : Weighted mean of estimators on all columns.
    sklearn.ensemble.StackingRegressor : Stacking on all columns.
    LateFusionClassifier : The classification twin.

    Notes
    -----
    Missing modalities are handled as in :class:`LateFusionClassifier`, with
    ``target_means_`` in place of the class priors.

    Examples
    --------
    >>> import numpy as np
    >>> from skcrossmodal import LateFusionRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4))
    >>> y = X @ np.array([1.0, 2.0, 1.0, 2.0])
    >>> reg = LateFusionRegressor(modalities={"a": [0, 1], "b": [2, 3]})
    >>> reg.fit(X, y).predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints: dict = {
        **_BaseLateFusion._parameter_constraints,
        "method": [StrOptions({"mean", "stacking"})],
    }

    _stack_method = "predict"

    def __init__(
        self,
        estimator=None,
        *,
        modalities=None,
        weights=None,
        method="mean",
        final_estimator=None,
        cv=None,
        n_jobs=None,
    ):
        super().__init__(
            estimator,
            modalities=modalities,
            weights=weights,
            method=method,
            final_estimator=final_estimator,
            cv=cv,
            n_jobs=n_jobs,
        )

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Fit one regressor per modality (and the stacking regressor).

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            The modalities side by side; a modality block of NaN in a row
            marks it missing there.
        y : array-like of shape (n_samples,)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Passed to every estimator's ``fit`` (on its rows).

        Returns
        -------
        self : LateFusionRegressor
        """
        super()._fit_late(X, y, sample_weight)
        self.target_means_ = {name: float(v[0]) for name, v in self._fill_.items()}
        return self

    def predict(self, X):
        """Predicted target of each row, from the modalities it carries.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Rows with at least one modality present.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        values, stacked = self._combined(X)
        if stacked:
            return np.asarray(self.final_estimator_.predict(values)).reshape(-1)
        return values[:, 0]

    # -- hooks for the base class -----------------------------------------

    @staticmethod
    def _default_estimator():
        return Ridge()

    @staticmethod
    def _default_final_estimator():
        return RidgeCV()

    @staticmethod
    def _is_classifier():
        return False

    def _prepare_y(self, y):
        return np.asarray(y, dtype=np.float64)

    def _check_base_estimators(self, bases):
        pass

    def _missing_fill(self, y_m, w_m):
        return np.array([np.average(y_m, weights=w_m)])

    def _encode_fitted(self, name, prediction):
        return np.asarray(prediction, dtype=np.float64).reshape(-1, 1)

    def _encode_out_of_fold(self, prediction, y_m):
        return np.asarray(prediction, dtype=np.float64).reshape(-1, 1)

    def _output_shape_tail(self):
        return (1,)

    def _trim_meta(self, values):
        return values
