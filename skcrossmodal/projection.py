"""SharedProjection: one shared space for several modalities (ridge/multi-set CCA)."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _check_sample_weight

from ._base import VersionedPickleMixin, restore_on_error, validate_modal_data
from ._closed_form import (
    NotPositiveDefiniteError,
    any_auto,
    check_memory,
)
from ._dask import accumulate_dask, is_dask_collection, validate_dask_data
from ._docstrings import fill_doc
from ._gradient import _parameters as gradient_parameters
from ._namespace import get_array_namespace
from ._projection_gradient import fit_deprecated_gradient
from ._space_estimator import SharedSpaceMixin
from ._statistics import CovarianceAccumulator


@fill_doc(
    gradient_parameters=gradient_parameters.parameters_doc(
        '``solver="gradient"`` only.'
    )
)
class SharedProjection(
    VersionedPickleMixin, SharedSpaceMixin, TransformerMixin, BaseEstimator
):
    r"""Project several modalities into one shared space (ridge / multi-set CCA).

    This is the seed article's shared representation,

    .. math::

        \min_{W_1..W_M} \sum_{m<l} \frac{1}{n}\sum_i
            \lVert W_m^\top x_i^m - W_l^\top x_i^l \rVert^2
            + \sum_m (M-1) \lambda_m \lVert W_m \rVert_F^2 ,

    made well posed by the scale constraint :math:`W^\top D W = I` with
    :math:`D = \mathrm{blockdiag}(C_{mm} + \lambda_m I)` (without it, ``W = 0``
    wins). Under that constraint the objective equals
    :math:`M k - \mathrm{tr}(W^\top C_\lambda W)`, minimised by the top
    generalised eigenvectors of :math:`C_\lambda w = r D w`. For two
    modalities this is ridge CCA with the constraint
    :math:`W_m^\top (C_{mm} + \lambda_m I) W_m = I` on each modality, and the
    objective at the solution is :math:`2k - 2\sum_j \rho_j`.

    It is fitted in closed form: one pass over X for the means and the Gram
    matrix of the stacked modalities (a BLAS ``syrk`` on row chunks, no copy
    of X), then a small dense eigenproblem.

    Parameters
    ----------
    n_components : int, default=2
        Dimension of the shared space. At most the width of the narrowest
        modality (and, with ``reg=0``, its rank).

    modalities : dict or None, default=None
        Which columns of X belong to which modality. ``None`` reads names of
        the form ``"<modality>__<feature>"`` from X's feature names, as a
        ``ColumnTransformer`` with pandas output writes them. A dict maps a
        name to columns in any form ``ColumnTransformer`` accepts (int
        indices, a slice, names, a boolean mask, a callable). Every column
        must belong to exactly one modality, and at least two are needed.

    reg : float >= 0, "auto" or dict, default=0.0
        Ridge :math:`\lambda_m` added to each modality's covariance. A dict
        gives one value (a float or ``"auto"``) per modality name. ``"auto"``
        replaces the modality's covariance by its Ledoit-Wolf estimate
        :math:`(1-\alpha) C_{mm} + \alpha \mu I` (:math:`\alpha` the analytic
        shrinkage intensity, :math:`\mu` the mean variance), as
        ``sklearn.covariance.LedoitWolf`` computes it, and its cross blocks
        :math:`C_{ml}` by :math:`\sqrt{(1-\alpha_m)(1-\alpha_l)}\, C_{ml}`, so
        the shrunk joint covariance stays positive semi-definite and the
        correlations in [0, 1] (see the user guide). It needs fourth-moment
        sums, about doubling the fit time. The values used are in ``reg_``
        (:math:`\alpha\mu`) and ``shrinkage_`` (:math:`\alpha`).

    scale : bool, default=False
        Standardise each feature (unit variance over the rows that carry its
        modality) before the ridge is applied. Constant features keep scale 1.

    output : {"mean", "concat"} or str, default="mean"
        What ``transform`` returns: ``"mean"`` the average of the projections
        of the modalities present in each row (n_components columns),
        ``"concat"`` every modality's projection side by side (NaN where a
        modality is missing), or one modality's name for its projection alone
        (NaN where it is missing). ``"mean"`` and ``"concat"`` always mean
        the options, even where a modality has that name (its projection
        alone is then ``skcrossmodal.retrieval.embed``'s).

    solver : {"auto", "eigh", "svd", "gradient"}, default="auto"
        ``"eigh"``: scipy's generalised symmetric eigensolver on
        :math:`(C_\lambda, D)`; needs every :math:`D_{mm}` positive definite.
        ``"svd"``: whiten each modality (dropping directions of zero
        variance), then an SVD of the whitened cross-covariance (two
        modalities) or an eigendecomposition of the whitened block matrix
        (more); stable for singular blocks. ``"auto"`` is ``"svd"``.
        These three are exact and form the ``D x D`` covariance
        (``D = n_features``). ``"gradient"``: mini-batch Adam on the
        Eckhart-Young objective (Chapman et al., ICLR 2024), which has the
        same optimum and never forms a ``D x D`` matrix, so memory is
        ``O(D k + batch_size D)``: for very wide data such as sparse text.
        It is approximate and random (see ``random_state``), takes numpy,
        scipy sparse or (dense) array API X in memory, needs a numeric
        ``reg`` and has no ``partial_fit``. See Notes.

        .. deprecated:: 0.1
           ``"gradient"`` is deprecated (a ``FutureWarning``): use
           :class:`~skcrossmodal.GradientSharedProjection`, the same solver
           with only the parameters that apply to it. The parameters below
           marked ``solver="gradient"`` only go with it.

    {gradient_parameters}

    Attributes
    ----------
    modalities_ : dict of str -> ndarray of int
        Column indices of each modality in X.
    weights_ : dict of str -> ndarray of shape (n_features_m, n_components)
        Projection of each modality; the scaling of ``scale=True`` is folded
        in, so ``(X_m - means_[m]) @ weights_[m]`` is the projection.
    means_ : dict of str -> ndarray of shape (n_features_m,)
        Mean of each modality over the rows that carry it.
    canonical_correlations_ : ndarray of shape (n_components,)
        Descending. For two modalities, the (ridge) canonical correlations;
        for ``M`` modalities, :math:`(r-1)/(M-1)` with :math:`r` the
        generalised eigenvalue: the average pairwise correlation when each
        modality's projection has unit variance. In [0, 1]: a value past 1,
        possible only when missing modalities make the pairwise-complete
        covariance indefinite, is clipped at 1 with a warning.
    reg_ : dict of str -> float
        The ridge added to each modality's covariance block: ``reg``, or
        :math:`\alpha\mu` for ``"auto"``.
    shrinkage_ : dict of str -> float
        The Ledoit-Wolf intensity :math:`\alpha` for ``"auto"``, else 0: the
        block used is ``(1 - shrinkage_) * C_mm + reg_ * I``, and each cross
        block is scaled by ``sqrt((1 - shrinkage_[m]) * (1 - shrinkage_[l]))``.
    scale_ : dict of str -> ndarray or None
        Per-feature scale when ``scale=True``.
    n_samples_seen_ : int
        Rows used (every row carries at least one modality: a row with none
        is an error). With ``solver="gradient"`` and ``early_stopping``, the
        training rows only.
    n_iter_ : int
        Passes over the data: the epochs run with ``solver="gradient"``,
        1 for the exact solvers (one pass, however many ``partial_fit``
        batches).
    loss_curve_ : list of float
        ``solver="gradient"`` only: the mean training loss of each epoch.
    validation_scores_ : list of float or None
        ``solver="gradient"`` only: the validation correlation sum of each
        epoch (``None`` without ``early_stopping``).
    loadings_ : dict of str -> ndarray of shape (n_features_m, n_components)
        Structure correlations of each modality (closed-form solvers): the
        correlation of each feature with each component of its modality's
        projection, over the rows that carry the modality. 0 for a constant
        feature.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string feature names.

    See Also
    --------
    sklearn.cross_decomposition.CCA : Two-view CCA by NIPALS iterations.

    Notes
    -----
    **Missing modalities.** A modality whose columns are all NaN in a row is
    missing there. Each modality's mean and covariance use the rows that carry
    it; each cross-covariance uses the rows that carry both modalities
    (centred with each modality's own mean). ``transform`` works for every row
    with at least one modality.

    **Normalisation.** Covariances are divided by ``n`` (not ``n - 1``), so
    ``reg`` is on the scale of the features' variances.

    **More rows than memory.** ``partial_fit`` keeps float64 sums shifted by
    the first batch's means, so memory is ``O(n_features**2 + batch)`` and
    the result equals ``fit`` on all the batches. ``fit`` and
    ``partial_fit`` also accept Dask arrays (the ``dask`` extra): the same
    sums are computed per row chunk and merged, on Dask's default scheduler
    or on the ``distributed.Client`` in use, and the result equals the
    in-memory fit. Give ``modalities`` as int indices, slices or boolean
    masks then (a Dask array has no column names).

    **Very wide data.** ``solver="gradient"`` minimises the Eckhart-Young
    loss :math:`-2\,\mathrm{tr}(W^\top C_\lambda W) +
    \mathrm{tr}((W^\top D W)^2)`, whose minimum spans the top generalised
    eigenvectors, with Adam on mini-batches; the quadratic term is estimated
    without bias from the two halves of each batch. It optimises
    ``min(2k, k + 10)`` columns (oversampling, as subspace iteration does,
    so close correlations do not slow it down) in preconditioned
    coordinates: a modality of at most 2048 features is whitened exactly
    from its own covariance, a wider one by its features' standard
    deviations (Jacobi). Sparse X is never centred or densified (the
    projections are), but it is split by modality once, a copy of about
    X's size. After each epoch one pass over the rows gives the exact
    covariance of the projections; the problem restricted to their span is
    solved as the closed form would, which gives the monitored correlation
    sum and, at the end, weights and correlations with the closed form's
    normalisation and signs.

    **Array API input (torch, CuPy, ... on a GPU).** Under
    ``sklearn.set_config(array_api_dispatch=True)`` (with the environment
    variable ``SCIPY_ARRAY_API=1`` set before scipy is imported, as
    scikit-learn requires), ``fit``, ``partial_fit``, ``transform`` and
    ``score`` compute in X's namespace and on its device, and the fitted
    arrays live there (in float64 where the device has it, else float32).
    The exact solvers use a Cholesky reduction of the generalised
    eigenproblem (whatever ``solver`` says), so every ``C_mm + reg * I``
    must be positive definite (judged relative to the block's scale);
    ``partial_fit`` keeps its sums on the device, and every batch must come
    from the same namespace and device. Missing modalities are summed
    pairwise complete on the device, as for numpy. Not supported for array
    API input (a clear error): ``reg="auto"``. The agreement with the numpy
    path is measured on the benchmarks page.

    **Interpreting components.** ``loadings_`` holds the structure
    correlations: for each feature of a modality, its correlation with each
    component of that modality's projection, computed from the fitted
    covariance (no second pass). Large absolute loadings name the features a
    component is made of, whatever the features' units.

    References
    ----------
    .. [1] H. Hotelling, "Relations between two sets of variates",
       Biometrika 28 (1936).
    .. [2] H. D. Vinod, "Canonical ridge and econometrics of joint
       production", Journal of Econometrics 4 (1976).
    .. [3] J. R. Kettenring, "Canonical analysis of several sets of
       variables", Biometrika 58 (1971).
    .. [4] O. Ledoit and M. Wolf, "A well-conditioned estimator for
       large-dimensional covariance matrices", Journal of Multivariate
       Analysis 88 (2004).
    .. [5] J. Chapman, L. Wells and A. L. Aguila, "Unconstrained stochastic
       CCA: unifying multiview and self-supervised learning", ICLR 2024.

    Examples
    --------
    >>> import numpy as np
    >>> from skcrossmodal import SharedProjection
    >>> rng = np.random.default_rng(0)
    >>> latent = rng.normal(size=(500, 2))
    >>> text = latent @ rng.normal(size=(2, 6)) + 0.5 * rng.normal(size=(500, 6))
    >>> image = latent @ rng.normal(size=(2, 4)) + 0.5 * rng.normal(size=(500, 4))
    >>> X = np.hstack([text, image])
    >>> proj = SharedProjection(n_components=2,
    ...                         modalities={"text": slice(0, 6), "image": slice(6, 10)})
    >>> Z = proj.fit_transform(X)
    >>> Z.shape
    (500, 2)
    >>> bool(proj.canonical_correlations_[0] > 0.9)
    True
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "modalities": [dict, None],
        "reg": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"}), dict],
        "scale": ["boolean"],
        "output": [str],
        "solver": [StrOptions({"auto", "eigh", "svd", "gradient"})],
        **gradient_parameters.PARAMETER_CONSTRAINTS,
    }

    def __init__(
        self,
        n_components=2,
        *,
        modalities=None,
        reg=0.0,
        scale=False,
        output="mean",
        solver="auto",
        max_iter=200,
        tol=1e-4,
        batch_size="auto",
        learning_rate=0.03,
        random_state=None,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        verbose=0,
    ):
        self.n_components = n_components
        self.modalities = modalities
        self.reg = reg
        self.scale = scale
        self.output = output
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Fit the shared projection (closed form, or ``solver="gradient"``).

        ``fit`` keeps only what ``transform`` and ``score`` need (means,
        weights, correlations), not the ``D x D`` sums: a later
        ``partial_fit`` starts a new stream (see :meth:`partial_fit`).

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame, dask array} of shape \
                (n_samples, n_features)
            The modalities side by side; a modality block of NaN in a row
            marks it missing there.
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights: every statistic is a weighted sum, so
            an integer weight equals repeating the row and a weight of 0
            drops it (closed-form solvers; not with a Dask X).

        Returns
        -------
        self : SharedProjection
        """
        with restore_on_error(self):
            self.__dict__.pop("_accumulator", None)
            if self.solver == "gradient":
                return fit_deprecated_gradient(self, X, sample_weight)
            accumulator = self._accumulate(X, None, sample_weight)
            # fit keeps no accumulator: its Gram may become the covariance.
            return self._solve(accumulator, consume=True)

    @available_if(lambda self: self._check_partial_fit_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, sample_weight=None, *, solve=True):
        """Add a batch of rows and refit; equals ``fit`` on all batches so far.

        The sufficient statistics (sums shifted by the first batch's means,
        in float64 where the namespace has it) are kept between calls, so
        memory is ``O(n_features**2 + batch)``, never ``O(n)``; a batch that
        is refused (infinity, partial NaN, a row without any modality) leaves
        them and the fitted model exactly as they were. ``partial_fit``
        after ``fit`` starts a new stream from this batch, with a warning:
        ``fit`` does not keep the sums (they are ``D x D``, far larger than
        the model). Not available with ``solver="gradient"``.

        Under ``sklearn.set_config(array_api_dispatch=True)`` the batches
        may be torch / CuPy / ... arrays: the sums are then kept in their
        namespace and on their device, and every batch must come from that
        namespace and device.

        Each call solves the ``D x D`` eigenproblem again, which costs as
        much as summing about ``D`` more rows: over many
        small batches of wide data, pass ``solve=False`` for all but the last
        batch, and the stream costs what ``fit`` on its rows costs.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame, dask array} of shape \
                (n_samples, n_features)
            One batch of rows.
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights: every statistic is a weighted sum, so
            an integer weight equals repeating the row and a weight of 0
            drops it (closed-form solvers; not with a Dask X).
        solve : bool, default=True
            Refit from the statistics after adding the batch. With
            ``False`` only the statistics grow; the fitted attributes (if
            any) stay those of the last call that solved, until one does.

        Returns
        -------
        self : SharedProjection
        """
        accumulator = getattr(self, "_accumulator", None)
        if accumulator is None and hasattr(self, "canonical_correlations_"):
            warnings.warn(
                "partial_fit after fit starts a new stream from this batch: "
                "fit keeps only the model, not the D x D sums it came from. "
                "To stream, call partial_fit for every batch, the first "
                "included.",
                UserWarning,
                stacklevel=2,
            )
        with restore_on_error(self):
            accumulator = self._accumulate(X, accumulator, sample_weight)
        # The batch is in the statistics from here on, even if the solve
        # below fails (more rows may make it succeed).
        self._accumulator = accumulator
        if not solve:
            return self
        with restore_on_error(self):
            try:
                return self._solve(accumulator)
            except NotPositiveDefiniteError as exc:
                raise NotPositiveDefiniteError(
                    f"{exc} The batch's rows were added to the statistics: "
                    "partial_fit with more rows (e.g. more rows than features "
                    "in every modality) may succeed."
                ) from exc

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # torch / CuPy / any array API input under array_api_dispatch, for a
        # numeric reg: reg="auto" (Ledoit-Wolf) is numpy-only.
        tags.array_api_support = not any_auto(self.reg)
        return tags

    # -- internals ---------------------------------------------------------

    def _check_partial_fit_solver(self):
        if self.solver == "gradient":
            raise AttributeError(
                "partial_fit is not available with solver='gradient' (its "
                "epochs revisit every row). Use fit, or an exact solver "
                "('auto', 'svd' or 'eigh'), whose partial_fit streams the "
                "O(n_features**2) statistics exactly."
            )
        return True

    def _accumulate(self, X, accumulator, sample_weight=None):
        """Validate X and add its rows to ``accumulator`` (a new one if None).

        Returns the accumulator; on any error nothing is added to it.
        """
        first = accumulator is None
        if is_dask_collection(X) and sample_weight is not None:
            raise ValueError(
                "sample_weight is not supported with a Dask array X; weight "
                "in-memory batches (fit or partial_fit on numpy / sparse X)."
            )
        if not first:
            # Before validation: a batch from another namespace is named as it is.
            accumulator.check_compatible(X, method="partial_fit")
        if is_dask_collection(X):
            validate_dask_data(self, X, reset=first)
        else:
            X = validate_modal_data(self, X, reset=first)
        if first:
            self._check_params_against_modalities()
            accumulator = self._new_accumulator(X)
        if is_dask_collection(X):
            return accumulate_dask(X, accumulator)
        if sample_weight is not None and get_array_namespace(X) is None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
            if not sample_weight.any():
                raise ValueError(
                    "sample_weight is zero on every row: nothing to fit. Give "
                    "at least two rows of each modality a positive weight."
                )
        return accumulator.update(X, sample_weight=sample_weight)

    def _new_accumulator(self, X):
        if get_array_namespace(X) is not None:
            if any_auto(self.reg):
                raise ValueError(
                    "Array API input (torch, CuPy, ...) needs a numeric reg; "
                    f"got reg={self.reg!r}. reg='auto' (Ledoit-Wolf) needs "
                    "fourth moments and is numpy-only: use a float or a dict "
                    "of floats (e.g. the reg_ of a numpy fit on a subsample), "
                    "or pass numpy input."
                )
        else:
            # Device memory is the caller's to size; host memory is checked.
            check_memory(self.n_features_in_)
        return CovarianceAccumulator(
            self.modalities_, self.n_features_in_, fourth_moments=any_auto(self.reg)
        )

    def _solve(self, accumulator, *, consume=False):
        """The closed form from ``accumulator``'s statistics (one pass)."""
        self._mark_closed_form()
        return self._fit_closed_form(accumulator, self.reg, consume=consume)

    def _mark_closed_form(self):
        """A closed form is one pass, with no gradient-solver attributes."""
        for name in ("loss_curve_", "validation_scores_"):
            self.__dict__.pop(name, None)
        self.n_iter_ = 1
