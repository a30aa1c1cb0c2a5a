"""SharedProjection: one shared space for several modalities (ridge/multi-set CCA)."""

from __future__ import annotations

import itertools
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._array_api import check_same_namespace
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._array_api import (
    ArrayAPIAccumulator,
    NotPositiveDefiniteError,
    get_array_namespace,
    score_xp,
    solve_accumulated,
    transform_xp,
)
from ._base import VersionedPickleMixin, check_finite_blocks, validate_modal_data
from ._dask import accumulate_dask, is_dask_collection, validate_dask_data
from ._gradient import fit_gradient
from ._modalities import take_columns
from ._solvers import add_ridge, solve, solver_threads
from ._statistics import CovarianceAccumulator


class SharedProjection(VersionedPickleMixin, TransformerMixin, BaseEstimator):
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
        (NaN where it is missing).

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

    max_iter : int, default=200
        ``solver="gradient"`` only: the most epochs (passes over the
        training rows).

    tol : float >= 0, default=1e-4
        ``solver="gradient"`` only. After every epoch the sum of the
        correlations reachable in the span found, and the loss, are computed
        exactly on the training rows (with ``early_stopping``: on the
        validation rows). When the correlation sum has not risen by more
        than ``tol`` and the loss has not fallen by more than ``tol`` times
        its size for 2 epochs in a row, the learning rate is divided by 5;
        for ``n_iter_no_change`` epochs in a row, training stops. The
        weights of the epoch with the best correlation sum are kept.

    batch_size : int or "auto", default="auto"
        ``solver="gradient"`` only: rows per mini-batch (each split in two
        halves for the unbiased quadratic term). ``"auto"`` is
        ``n_samples // 10`` clipped to [32, 4096] (about 10 steps per epoch).

    learning_rate : float > 0, default=0.03
        ``solver="gradient"`` only: Adam's initial step size (see ``tol``).
        The weights are optimised in preconditioned coordinates where every
        entry is of order one (see Notes), so the default suits data of any
        scale and width.

    random_state : int, RandomState instance or None, default=None
        ``solver="gradient"`` only: the initial weights, the order of the
        rows in each epoch and the validation split. An int gives
        reproducible fits.

    early_stopping : bool, default=False
        ``solver="gradient"`` only: hold out ``validation_fraction`` of the
        rows and judge progress (see ``tol``) by their correlation sum
        instead of the training rows'. The held-out rows are not used to
        fit.

    validation_fraction : float in (0, 1), default=0.1
        ``solver="gradient"`` with ``early_stopping=True`` only.

    n_iter_no_change : int, default=5
        ``solver="gradient"`` only: epochs without improvement before
        training stops.

    verbose : int, default=0
        ``solver="gradient"`` only: print after every epoch the mean
        mini-batch loss, the correlation sum on the training rows (with
        ``early_stopping``: on the validation rows), the learning rate and
        the time so far.

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
    ``sklearn.set_config(array_api_dispatch=True)``, ``fit``,
    ``partial_fit``, ``transform`` and ``score`` compute in X's namespace and
    on its device, and the fitted arrays live there (in float64 where the
    device has it, else float32). The exact solvers use a Cholesky reduction
    of the generalised eigenproblem (whatever ``solver`` says), so every
    ``C_mm + reg * I`` must be positive definite; ``partial_fit`` keeps its
    sums on the device, and every batch must come from the same namespace
    and device. ``solver="gradient"`` runs its batches, gradients and Adam
    steps on the device (only small ``q x q`` and ``d_m x d_m`` matrices go
    to the host) and, with the same ``random_state``, takes the same steps
    as on numpy. Not supported for array API input: missing modalities (NaN
    blocks) and ``reg="auto"``. Measured against the numpy path with float64
    sums (float64 or float32 X): correlations within 2e-15 and weights within
    1e-13 (relative to their largest entry), for every solver. With float32
    sums (a device without float64): the exact solvers' correlations within
    1e-6 and weights within 1e-5; ``solver="gradient"`` within 1e-4 on the
    correlations (its weights only to the solver's own accuracy). See
    ``skcrossmodal._array_api``.

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
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "batch_size": [
            Interval(Integral, 2, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
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
    def fit(self, X, y=None):
        """Fit the shared projection (closed form, or ``solver="gradient"``).

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame, dask array} of shape \
                (n_samples, n_features)
            The modalities side by side; a modality block of NaN in a row
            marks it missing there.
        y : None
            Ignored.

        Returns
        -------
        self : SharedProjection
        """
        # A fit starts afresh: a partial_fit after a fit that failed half way
        # must not continue the statistics of an earlier fit.
        if hasattr(self, "_accumulator"):
            del self._accumulator
        if is_dask_collection(X):
            if self.solver == "gradient":
                raise ValueError(
                    "solver='gradient' needs X in memory (a numpy array or a "
                    "scipy sparse matrix). For a Dask array use an exact "
                    "solver ('auto', 'svd' or 'eigh'): its statistics are "
                    "computed chunk by chunk where the chunks live."
                )
            validate_dask_data(self, X, reset=True)
            self._check_params_against_modalities()
            self._accumulator = accumulate_dask(X, self._new_accumulator())
            return self._solve()
        X = validate_modal_data(self, X, reset=True)
        self._check_params_against_modalities()
        if self.solver == "gradient":
            # numpy, scipy sparse or (dense) array API input alike.
            return self._fit_gradient(X)
        if get_array_namespace(X) is not None:
            return self._fit_array_api(X)
        self._accumulator = self._new_accumulator().update(X)
        return self._solve()

    @available_if(lambda self: self._check_partial_fit_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Add a batch of rows and refit; equals ``fit`` on all batches so far.

        The sufficient statistics (float64 sums shifted by the first batch's
        means) are kept between calls, so memory is
        ``O(n_features**2 + batch)``, never ``O(n)``. Not available with
        ``solver="gradient"``.

        Under ``sklearn.set_config(array_api_dispatch=True)`` the batches
        may be torch / CuPy / ... arrays: the sums are then kept in their
        namespace and on their device (see Notes), and every batch must come
        from that namespace and device.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame, dask array} of shape \
                (n_samples, n_features)
            One batch of rows.
        y : None
            Ignored.

        Returns
        -------
        self : SharedProjection
        """
        first_call = not hasattr(self, "_accumulator")
        if is_dask_collection(X):
            if not first_call and isinstance(self._accumulator, ArrayAPIAccumulator):
                self._accumulator.check_compatible(X, method="partial_fit")
            validate_dask_data(self, X, reset=first_call)
            if first_call:
                self._check_params_against_modalities()
                self._accumulator = self._new_accumulator()
            self._accumulator = accumulate_dask(X, self._accumulator)
            return self._solve()
        X = validate_modal_data(self, X, reset=first_call)
        xp = get_array_namespace(X)
        if first_call:
            self._check_params_against_modalities()
            if xp is None:
                accumulator = self._new_accumulator()
            else:
                self._check_array_api_reg()
                accumulator = ArrayAPIAccumulator(self.modalities_)
            # Kept only once the first batch is in: a bad first batch leaves
            # the estimator unfitted, and the next call starts afresh.
            self._accumulator = accumulator.update(X)
        else:
            self._check_same_stream(X, xp)
            self._accumulator.update(X)
        if xp is None:
            return self._solve()
        try:
            return self._solve_array_api()
        except NotPositiveDefiniteError as exc:
            raise NotPositiveDefiniteError(
                f"{exc} The batch's rows were added to the statistics: "
                "partial_fit with more rows (e.g. more rows than features in "
                "every modality) may succeed."
            ) from exc

    def transform(self, X):
        """Project X into the shared space.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Rows with at least one modality present.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components) or \
                (n_samples, n_modalities * n_components)
            See ``output``. Same float dtype as X.
        """
        check_is_fitted(self)
        X = validate_modal_data(self, X, reset=False)
        check_same_namespace(
            X, self, attribute="canonical_correlations_", method="transform"
        )
        if get_array_namespace(X) is not None:
            return transform_xp(
                X, self.modalities_, self.means_, self.weights_, self.output
            )
        projections, present = self._project(X)
        if self.output == "concat":
            return np.hstack(projections)
        if self.output in self.modalities_:
            return projections[list(self.modalities_).index(self.output)]
        total = sum(np.where(p[:, None], z, 0) for z, p in zip(projections, present.T))
        return (total / present.sum(axis=1, keepdims=True)).astype(X.dtype, copy=False)

    def score(self, X, y=None):
        """Mean held-out canonical correlation.

        The Pearson correlation between the projections of each pair of
        modalities, on the rows that carry both, averaged over pairs and
        components. Higher is better, so ``GridSearchCV`` can tune ``reg``
        and ``n_components`` without labels.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Held-out rows.
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        X = validate_modal_data(self, X, reset=False)
        check_same_namespace(
            X, self, attribute="canonical_correlations_", method="score"
        )
        if get_array_namespace(X) is not None:
            return score_xp(X, self.modalities_, self.means_, self.weights_)
        projections, present = self._project(X)
        correlations = []
        for m, l in itertools.combinations(range(len(projections)), 2):
            rows = present[:, m] & present[:, l]
            for j in range(self.n_components):
                correlations.append(
                    _pearson(projections[m][rows, j], projections[l][rows, j])
                )
        return float(np.mean(correlations))

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns.

        ``"sharedprojection0"``, ... ; with ``output="concat"``,
        ``"<modality>__sharedprojection0"``, ... so that a further
        skcrossmodal step with ``modalities=None`` finds the modalities again.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Only checked against the fitted feature names.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        from sklearn.utils.validation import _check_feature_names_in

        _check_feature_names_in(self, input_features, generate_names=False)
        prefix = type(self).__name__.lower()
        names = [f"{prefix}{j}" for j in range(self.n_components)]
        if self.output == "concat":
            names = [f"{m}__{name}" for m in self.modalities_ for name in names]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # NaN is only meaningful as a whole missing modality block, not
        # anywhere, so the estimator does not claim scikit-learn's allow_nan.
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        # torch / CuPy / any array API input under array_api_dispatch: fit,
        # partial_fit, transform and score with every solver (the exact ones
        # by a Cholesky reduction, "gradient" by Adam in the namespace), for
        # complete data and a numeric reg. reg="auto" (Ledoit-Wolf) is
        # numpy-only.
        reg = self.reg.values() if isinstance(self.reg, dict) else [self.reg]
        tags.array_api_support = not any(isinstance(value, str) for value in reg)
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

    def _fit_gradient(self, X):
        reg = self._reg_values()
        if any(value == "auto" for value in reg):
            raise ValueError(
                "reg='auto' needs every entry of the covariance (Ledoit-Wolf), "
                "which solver='gradient' never forms. Give a number (e.g. the "
                "reg_ an exact solver chose on a subsample), or use an exact "
                "solver."
            )
        result = fit_gradient(
            X,
            self.modalities_,
            [float(value) for value in reg],
            n_components=self.n_components,
            scale=self.scale,
            max_iter=self.max_iter,
            tol=self.tol,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            random_state=self.random_state,
            early_stopping=self.early_stopping,
            validation_fraction=self.validation_fraction,
            n_iter_no_change=self.n_iter_no_change,
            verbose=self.verbose,
        )
        names = list(self.modalities_)
        self.reg_ = {name: float(value) for name, value in zip(names, reg)}
        self.shrinkage_ = dict.fromkeys(names, 0.0)
        self.n_iter_ = result.n_iter
        self.loss_curve_ = result.loss_curve
        self.validation_scores_ = result.validation_scores
        return self._set_solution(
            names,
            result.blocks,
            result.correlations,
            result.weights,
            result.mean,
            result.std,
            result.n_samples,
        )

    def _check_params_against_modalities(self):
        names = list(self.modalities_)
        narrowest = min(names, key=lambda name: len(self.modalities_[name]))
        if self.n_components > len(self.modalities_[narrowest]):
            raise ValueError(
                f"n_components={self.n_components} is larger than modality "
                f"{narrowest!r}, which has {len(self.modalities_[narrowest])} "
                "feature(s). Choose n_components <= the narrowest modality's width."
            )
        if self.output not in ("mean", "concat") and self.output not in names:
            raise ValueError(
                f"output={self.output!r} is not 'mean', 'concat' or a modality "
                f"name; modalities are {names}."
            )
        if isinstance(self.reg, dict):
            unknown = set(self.reg) - set(names)
            absent = set(names) - set(self.reg)
            if unknown or absent:
                raise ValueError(
                    f"reg as a dict needs exactly one entry per modality {names}; "
                    f"unknown: {sorted(unknown)}, missing: {sorted(absent)}."
                )
            for name, value in self.reg.items():
                if not (value == "auto" or (isinstance(value, Real) and value >= 0)):
                    raise ValueError(
                        f"reg[{name!r}] must be a float >= 0 or 'auto', got {value!r}."
                    )

    def _reg_values(self):
        if isinstance(self.reg, dict):
            return [self.reg[name] for name in self.modalities_]
        return [self.reg] * len(self.modalities_)

    def _new_accumulator(self):
        return CovarianceAccumulator(
            self.modalities_,
            self.n_features_in_,
            fourth_moments=any(value == "auto" for value in self._reg_values()),
        )

    def _solve(self):
        with solver_threads(len(self._accumulator.columns)):
            return self._solve_statistics()

    def _solve_statistics(self):
        # A fresh covariance each time (partial_fit keeps only the sums), so
        # it is scaled, regularised and equilibrated in place: the only
        # D x D arrays of a fit are the accumulated Gram and this one.
        stats = self._accumulator.finalize()
        names = stats.names
        covariance = stats.covariance
        if self.scale:
            std = np.sqrt(np.diag(covariance))
            std = np.where(std > np.finfo(float).eps * max(std.max(), 1.0), std, 1.0)
        else:
            std = np.ones(covariance.shape[0])

        self.reg_, self.shrinkage_ = {}, {}
        for position, (name, value) in enumerate(zip(names, self._reg_values())):
            shrinkage = 0.0
            if value == "auto":
                shrinkage, target = stats.ledoit_wolf_shrinkage(
                    position, std[stats.blocks[position]]
                )
                value = shrinkage * target
            self.reg_[name], self.shrinkage_[name] = float(value), float(shrinkage)

        if self.scale:  # after Ledoit-Wolf, which reads the unscaled blocks
            covariance /= std[:, None]
            covariance /= std[None, :]
        regularised = add_ridge(
            covariance,
            stats.blocks,
            list(self.reg_.values()),
            keep=[1.0 - shrinkage for shrinkage in self.shrinkage_.values()],
            overwrite=True,
        )
        correlations, weights = solve(
            regularised,
            stats.blocks,
            self.n_components,
            names,
            solver="eigh" if self.solver == "eigh" else "svd",
            overwrite=True,
        )
        weights = weights / std[:, None]
        self._mark_closed_form()
        return self._set_solution(
            names,
            stats.blocks,
            correlations,
            weights,
            stats.mean,
            std,
            self._accumulator.n_samples_seen,
        )

    def _mark_closed_form(self):
        """A closed form is one pass, with no gradient-solver attributes."""
        for name in ("loss_curve_", "validation_scores_"):
            if hasattr(self, name):
                delattr(self, name)
        self.n_iter_ = 1

    def _check_array_api_reg(self):
        if any(value == "auto" for value in self._reg_values()):
            raise ValueError(
                "Array API input (torch, CuPy, ...) needs a numeric reg; got "
                f"reg={self.reg!r}. reg='auto' (Ledoit-Wolf) needs fourth "
                "moments and is numpy-only: use a float or a dict of floats "
                "(e.g. the reg_ of a numpy fit on a subsample), or pass numpy "
                "input."
            )

    def _check_same_stream(self, X, xp):
        """partial_fit: this batch is in the namespace and device of the sums."""
        if isinstance(self._accumulator, ArrayAPIAccumulator):
            self._accumulator.check_compatible(X, method="partial_fit")
        elif xp is not None:
            raise ValueError(
                f"partial_fit got an array API batch ({type(X).__module__}."
                f"{type(X).__name__}), but the earlier batches were numpy "
                "arrays (or sparse / Dask), whose statistics are numpy arrays. "
                "Every batch of partial_fit must come from the same array "
                "namespace and device. Convert the batch, or call fit to start "
                "again."
            )

    def _fit_array_api(self, X):
        """Closed-form fit in X's own namespace and device (torch, CuPy, ...).

        Covered: complete data (no missing modality), ``reg`` as floats,
        ``scale``; the solver is the Cholesky reduction of the generalised
        eigenproblem whatever ``solver`` says, so every regularised block must
        be positive definite. The fitted arrays live on X's device. The sums
        are those ``partial_fit`` keeps (``ArrayAPIAccumulator``), so
        ``partial_fit`` after ``fit`` adds rows to them, as for numpy.
        """
        self._check_array_api_reg()
        self._accumulator = ArrayAPIAccumulator(self.modalities_).update(X)
        return self._solve_array_api()

    def _solve_array_api(self):
        reg = self._reg_values()
        fitted = solve_accumulated(
            self._accumulator,
            [float(value) for value in reg],
            n_components=self.n_components,
            scale=self.scale,
        )
        self._mark_closed_form()
        self.reg_ = {name: float(value) for name, value in zip(self.modalities_, reg)}
        self.shrinkage_ = {name: 0.0 for name in self.modalities_}
        return self._set_fitted(
            fitted.correlations,
            fitted.weights,
            fitted.means,
            fitted.scale or {name: None for name in self.modalities_},
            fitted.n_samples,
        )

    def _set_solution(self, names, blocks, correlations, weights, mean, std, n_seen):
        """Set the fitted attributes from stacked weights, means and scales."""
        return self._set_fitted(
            correlations,
            {name: weights[block, :] for name, block in zip(names, blocks)},
            {name: mean[block] for name, block in zip(names, blocks)},
            {
                name: (std[block] if self.scale else None)
                for name, block in zip(names, blocks)
            },
            n_seen,
        )

    def _set_fitted(self, correlations, weights, means, scale, n_seen):
        """Set the fitted attributes from per-modality dicts."""
        self.canonical_correlations_ = correlations
        self.weights_ = weights
        self.means_ = means
        self.scale_ = scale
        self.n_samples_seen_ = n_seen
        self._n_features_out = (
            self.n_components * len(weights)
            if self.output == "concat"
            else self.n_components
        )
        return self

    def _project(self, X):
        """Per-modality projections (NaN rows where missing) and presence."""
        present = check_finite_blocks(X, self.modalities_)
        projections = []
        for position, (name, indices) in enumerate(self.modalities_.items()):
            weights = self.weights_[name].astype(X.dtype, copy=False)
            offset = self.means_[name].astype(X.dtype, copy=False) @ weights
            block = take_columns(X, indices)
            projection = np.asarray(block @ weights) - offset
            projection[~present[:, position]] = np.nan
            projections.append(projection)
        return projections, present


def _pearson(a, b):
    a = a - a.mean()
    b = b - b.mean()
    denominator = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denominator) if denominator > 0 else 0.0
