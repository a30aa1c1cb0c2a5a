"""WeightedFusion: the weighted sum of the (aligned) modality blocks."""

from __future__ import annotations

from numbers import Integral, Real

from scipy import sparse
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.decomposition import PCA
from sklearn.externals import array_api_compat
from sklearn.utils import get_tags
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._base import VersionedPickleMixin
from .._modalities import take_columns
from .._namespace import accumulation_dtype, array_device, to_namespace
from .._shared_space import SharedSpace
from ..projection import SharedProjection
from ._base import ModalInputMixin, error_context
from ._utils import (
    block_rows,
    check_weights,
    max_abs,
    namespace,
    nan_to_zero,
    power_of_two_scale,
    row_coefficients,
)


class WeightedFusion(
    VersionedPickleMixin,
    ModalInputMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    BaseEstimator,
):
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
        The fitted PCA of each modality. Only with ``align="pca"``. Each is
        fitted on its block times ``input_scales_[m]``.
    input_scales_ : dict of str -> float
        A power of two per modality, 1.0 unless the block's values are so
        large or small (beyond ``2**±256`` in float64, ``2**±32`` in float32)
        that the squares PCA forms would leave the dtype's range; the block
        is multiplied by it before its PCA and the projection divided by it
        after, which is exact. Only with ``align="pca"``.
    input_shifts_ : dict of str -> ndarray or None
        The column means (after ``input_scales_``) subtracted from each
        dense block before its PCA, at fit and transform, so that a large
        offset (1e8 + signal) cannot cancel the covariance's digits; None
        for a sparse block (its PCA centres implicitly). Only with
        ``align="pca"``.
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
    raises a ValueError in ``transform``. Only the ratios of the weights
    matter, at any magnitude (``{"a": 1e-300, "b": 3e-300}`` is
    ``{"a": 1, "b": 3}``). Sparse X keeps sparse output with
    ``align=None``; ``float32`` input gives ``float32`` output.

    **Array API.** Under ``sklearn.set_config(array_api_dispatch=True)``, X
    may be an array of any namespace that follows the array API standard
    (torch on the CPU or a GPU, CuPy, ``array_api_strict``): ``fit`` and
    ``transform`` compute in X's namespace and on its device, and return an
    array of that namespace, dtype and device. Missing modalities (NaN
    blocks) are handled as for numpy, and ``weights_`` stay Python floats.
    ``align="pca"`` fits scikit-learn's ``PCA`` in X's namespace (its own
    choice of solver; QR normalisation for the randomized one, the one it
    supports there). ``align="shared"`` fits a
    :class:`~skcrossmodal.SharedProjection` on X, so its fit supports what
    that estimator's supports for X's namespace (an error of that fit is
    re-raised with ``WeightedFusion(align='shared')`` in front of it);
    ``transform`` projects each modality, ``(X_m - means_[m]) weights_[m]``,
    with the one shared-space routine, in X's namespace, missing modalities
    included. ``transform`` needs X
    in the namespace and on the device that ``fit`` saw.

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
        X, present = self._validate_blocks(X, reset=True)
        names = list(self.modalities_)
        weights = check_weights(self.weights, names)
        widths = {name: len(cols) for name, cols in self.modalities_.items()}
        if self.align is None:
            if len(set(widths.values())) > 1:
                raise ValueError(
                    f"WeightedFusion sums the modality blocks, but their widths "
                    f"differ: {widths}. Set align='pca' (a PCA per modality to "
                    "n_components) or align='shared' (a SharedProjection to "
                    "n_components) to bring them to a common width first."
                )
            n_features_out = next(iter(widths.values()))
        else:
            narrowest = min(widths, key=widths.get)
            n_features_out = self.n_components or widths[narrowest]
            if n_features_out > widths[narrowest]:
                raise ValueError(
                    f"n_components={n_features_out} is larger than modality "
                    f"{narrowest!r}, which has {widths[narrowest]} feature(s). "
                    "Choose n_components <= the narrowest modality's width."
                )
        # Everything is computed before anything is set: a fit that fails
        # leaves a previous fit's alignment in place.
        if self.align == "pca":
            self.aligners_, self.input_scales_, self.input_shifts_ = self._fit_pca(
                X, present, n_features_out
            )
        elif self.align == "shared":
            with error_context(
                "WeightedFusion(align='shared') fits a SharedProjection"
            ):
                projection = SharedProjection(
                    n_features_out,
                    modalities=dict(self.modalities_),
                    reg=self.reg,
                    output=_unambiguous_output(names),
                ).fit(X)
            self.shared_projection_ = projection
        xp = namespace(X)
        device = "cpu" if sparse.issparse(X) else array_device(X)
        self._weight_vector = to_namespace(
            xp, weights, accumulation_dtype(xp, device), device
        )
        self.weights_ = dict(zip(names, weights.tolist()))
        self._n_features_out = n_features_out
        return self

    def transform(self, X):
        """Weighted sum of the (aligned) modality blocks of each row.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Rows with at least one modality of positive weight present.

        Returns
        -------
        X_new : {ndarray, sparse matrix, array} of shape (n_samples, n_components)
            Same float dtype (and namespace, device) as X; sparse only for
            sparse X with ``align=None``.
        """
        check_is_fitted(self)
        X, present = self._validate_blocks(
            X, reset=False, fitted_array="_weight_vector"
        )
        names = list(self.modalities_)
        xp = namespace(X)
        weights = self._weight_vector
        if weights is None:  # a model pickled before it was stored
            weights = xp.asarray([self.weights_[name] for name in names])
        coef = xp.astype(row_coefficients(present, weights, names), X.dtype)
        blocks = self._aligned_blocks(X, present)
        if sparse.issparse(X) and self.align is None:
            total = None
            for position, block in enumerate(blocks):
                scaled = block.multiply(coef[:, position : position + 1])
                total = scaled if total is None else total + scaled
            return sparse.csr_matrix(total).astype(X.dtype)
        device = "cpu" if sparse.issparse(X) else array_device(X)
        total = xp.zeros(
            (X.shape[0], self._n_features_out), dtype=X.dtype, device=device
        )
        for position, block in enumerate(blocks):
            total = total + coef[:, position : position + 1] * block
        return total

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        # torch / CuPy / any array API input under array_api_dispatch; with
        # align="shared" where SharedProjection supports it.
        tags.array_api_support = (
            self.align != "shared"
            or get_tags(SharedProjection(reg=self.reg)).array_api_support
        )
        return tags

    def _shared_space(self):
        """The fitted SharedProjection's space (its one projection routine).

        Built from its documented attributes for a projection that has no
        ``_space`` (pickled before it was stored).
        """
        projection = self.shared_projection_
        space = getattr(projection, "_space", None)
        if space is None:
            space = SharedSpace(
                projection.modalities_,
                projection.means_,
                projection.weights_,
                projection.canonical_correlations_,
            )
        return space

    def _fit_pca(self, X, present, n_components):
        """A PCA per modality on the rows that carry it, its input scale and
        shift.

        scikit-learn's PCA centres by subtracting ``n mean mean^T`` from the
        Gram matrix when it picks its "covariance_eigh" solver (tall, narrow
        blocks, dense or sparse): with an offset of 1e8 on unit-spread
        columns that cancels every digit of the covariance. So a dense block
        is shifted by its column means first (PCA's own centring then
        removes a mean of about 0, exactly), and a sparse block, which a
        shift would densify, gets ARPACK, which centres implicitly in each
        product; a sparse block no wider than ``n_components`` (ARPACK
        needs fewer components than columns) is small and densified.
        """
        aligners, scales, shifts = {}, {}, {}
        numpy_input = array_api_compat.is_numpy_namespace(namespace(X))
        largest_value = float(namespace(X).finfo(X.dtype).max)
        for position, (name, cols) in enumerate(self.modalities_.items()):
            block = block_rows(X, cols, present[:, position])
            factor = power_of_two_scale(max_abs(block), largest_value)
            if factor != 1.0:
                block = block * factor
            solver = _pca_solver(block, n_components)
            narrow = block.shape[1] <= n_components
            if sparse.issparse(block) and solver == "covariance_eigh" and narrow:
                block = block.toarray()
                solver = "auto"
            shifts[name] = None
            if not sparse.issparse(block):
                shifts[name] = namespace(block).mean(block, axis=0)
                block = block - shifts[name]
            pca = PCA(
                n_components,
                svd_solver=solver,
                # scikit-learn's randomized solver supports only QR outside
                # numpy; numpy keeps its default (LU), 17-27% faster there
                # (benchmarks: 5000 x 1000, k=20: 0.88 s against 1.03 s).
                power_iteration_normalizer="auto" if numpy_input else "QR",
                random_state=self.random_state,
            )
            aligners[name], scales[name] = pca.fit(block), factor
        return aligners, scales, shifts

    def _aligned_blocks(self, X, present):
        """Each modality at the common width, 0 in rows that miss it.

        Only the blocks of modalities missing somewhere are copied (NaN to
        0) and masked.
        """
        xp = namespace(X)
        everywhere = xp.all(present, axis=0)
        if self.align == "shared":
            # The one projection routine, (X_m - mu_m) W_m with NaN where m
            # is missing.
            projections, _ = self._shared_space().project(X, present=present)
        scales = getattr(self, "input_scales_", {})
        # Models pickled before the shifts existed have none.
        shifts = getattr(self, "input_shifts_", {})
        blocks = []
        for j, (name, cols) in enumerate(self.modalities_.items()):
            complete = bool(everywhere[j])
            if self.align == "shared":
                block = projections[j]
            else:
                block = take_columns(X, cols)
                if not complete:
                    block = nan_to_zero(block)
                if self.align is None:
                    blocks.append(block)
                    continue
                factor = scales.get(name, 1.0)
                if factor != 1.0:
                    block = block * factor
                shift = shifts.get(name)
                if shift is not None:
                    if sparse.issparse(block):
                        block = block.toarray()
                    block = block - shift
                block = self.aligners_[name].transform(block)
                if factor != 1.0:
                    block = block / factor
            if not complete:
                out_xp = namespace(block)
                block = out_xp.where(
                    present[:, j : j + 1], block, out_xp.zeros_like(block)
                )
            blocks.append(block)
        return blocks


def _unambiguous_output(names):
    """An ``output`` for the inner SharedProjection that no modality name
    makes ambiguous (WeightedFusion does not read it: it projects each
    modality itself). "concat" as before, unless a modality has that name."""
    for option in ("concat", "mean"):
        if option not in names:
            return option
    # Both are modality names: another modality's name, if there is one.
    others = [name for name in names if name not in ("concat", "mean")]
    # Otherwise the modalities are exactly "concat" and "mean", and
    # SharedProjection refuses, with a message that says to rename one.
    return others[0] if others else "concat"


def _pca_solver(block, n_components):
    """PCA's own choice for dense blocks (shifted to a mean of about 0 first);
    ARPACK for sparse ones (it centres implicitly, without cancellation),
    except where it cannot run: as many components as columns or rows."""
    if sparse.issparse(block):
        return "covariance_eigh" if n_components >= min(block.shape) else "arpack"
    return "auto"
