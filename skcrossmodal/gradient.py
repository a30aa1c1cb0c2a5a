"""GradientSharedProjection: the shared projection by mini-batch gradient descent."""

from __future__ import annotations

from numbers import Integral, Real

from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Hidden, Interval, StrOptions

from ._base import VersionedPickleMixin, restore_on_error, validate_modal_data
from ._dask import is_dask_collection
from ._docstrings import fill_doc
from ._gradient import _parameters as gradient_parameters
from ._gradient import fit_gradient_space
from ._space_estimator import SharedSpaceMixin


@fill_doc(gradient_parameters=gradient_parameters.parameters_doc())
class GradientSharedProjection(
    VersionedPickleMixin, SharedSpaceMixin, TransformerMixin, BaseEstimator
):
    r"""Shared projection by mini-batch gradient descent, for very wide data.

    The same shared space as :class:`~skcrossmodal.SharedProjection` (ridge /
    multi-set CCA: the top generalised eigenvectors of
    :math:`C_\lambda w = r D w`), found without ever forming the
    :math:`D \times D` covariance (``D = n_features``): Adam on mini-batches
    minimises the unconstrained Eckhart-Young loss

    .. math::

        L(W) = -2\,\mathrm{tr}(W^\top C_\lambda W)
               + \mathrm{tr}\big((W^\top D W)^2\big),

    whose minima span the top :math:`k` generalised eigenvectors (Chapman et
    al., 2024). Memory is ``O(D k + batch_size D)``: for data such as
    bag-of-words text with :math:`10^5` features, where the closed form's
    covariance would not fit. It is approximate and random (set
    ``random_state``); below a few thousand features ``SharedProjection`` is
    faster and exact.

    Read more in the :ref:`User Guide <scaling>`.

    Parameters
    ----------
    n_components : int, default=2
        Dimension of the shared space. At most the width of the narrowest
        modality.

    modalities : dict or None, default=None
        Which columns of X belong to which modality, as in
        ``SharedProjection``: ``None`` reads ``"<modality>__<feature>"``
        feature names; a dict maps a name to columns in any form
        ``ColumnTransformer`` accepts. At least two modalities.

    reg : float >= 0 or dict, default=0.0
        Ridge :math:`\lambda_m` added to each modality's covariance; a dict
        gives one value per modality name. ``"auto"`` (Ledoit-Wolf) needs
        every entry of the covariance and is refused: use the ``reg_`` that
        ``SharedProjection(reg="auto")`` chooses on a subsample.

    scale : bool, default=False
        Standardise each feature (unit variance over the rows that carry its
        modality) before the ridge is applied. Constant features keep scale 1.

    output : {"mean", "concat"} or str, default="mean"
        What ``transform`` returns: the average of the projections of the
        modalities present in each row, every modality's projection side by
        side (NaN where missing), or one modality's projection.

    {gradient_parameters}

    Attributes
    ----------
    modalities_ : dict of str -> ndarray of int
        Column indices of each modality in X.
    weights_ : dict of str -> ndarray of shape (n_features_m, n_components)
        Projection of each modality, the scaling of ``scale=True`` folded in:
        ``(X_m - means_[m]) @ weights_[m]`` is the projection. Normalised
        and signed as ``SharedProjection``'s.
    means_ : dict of str -> ndarray of shape (n_features_m,)
        Mean of each modality over the rows that carry it.
    canonical_correlations_ : ndarray of shape (n_components,)
        Descending; those of the closed form restricted to the span found
        (see ``SharedProjection``).
    reg_ : dict of str -> float
        The ridge added to each modality's covariance block.
    scale_ : dict of str -> ndarray or None
        Per-feature scale when ``scale=True``.
    n_samples_seen_ : int
        Rows used to fit (with ``early_stopping``, the training rows only).
    n_iter_ : int
        Epochs run.
    loss_curve_ : list of float
        The mean mini-batch loss of each epoch.
    validation_scores_ : list of float or None
        The validation correlation sum of each epoch (``None`` without
        ``early_stopping``).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string feature names.

    See Also
    --------
    SharedProjection : The exact closed form, with ``partial_fit``, Dask
        input and ``reg="auto"``.

    Notes
    -----
    **The objective.** The quadratic term is estimated without bias from
    the two halves of each batch; with missing modalities (NaN blocks) each
    pair of modalities is reweighted by the share of rows carrying both, so
    the estimates stay unbiased for the pairwise-complete covariance the
    closed form uses. ``min(2k, k + 10)`` columns are optimised
    (oversampling, as subspace iteration does, so close correlations do not
    slow it down) in preconditioned coordinates: a modality of at most 2048
    features is whitened exactly from its own covariance, a wider one by its
    features' standard deviations (Jacobi). After each epoch one pass over
    the rows gives the exact covariance of the projections; the problem
    restricted to their span is solved as the closed form would, which
    gives the monitored correlation sum and, at the end, weights and
    correlations with the closed form's normalisation and signs.

    **Sparse input** is never centred or densified (the projections are),
    but it is split by modality once, a copy of about X's size.

    **Array API input** (torch, CuPy, ... under
    ``sklearn.set_config(array_api_dispatch=True)``): dense X is fitted in
    its namespace and on its device (batches, gradients and Adam steps;
    only ``q x q`` and ``d_m x d_m`` matrices go to the host) and, with the
    same ``random_state``, takes the same steps as numpy input. Missing
    modalities are not supported there. The fitted arrays live on X's
    device, in float64 where the device has it.

    There is no ``partial_fit``: every epoch revisits every row. For rows
    that do not fit in memory, use ``SharedProjection.partial_fit`` (exact,
    ``O(D^2)`` memory).

    References
    ----------
    .. [1] J. Chapman, L. Wells, A. L. Aguila, "Efficient Algorithms for the
       CCA Family: Unconstrained Objectives with Unbiased Gradients",
       ICLR 2024.
    .. [2] D. P. Kingma, J. Ba, "Adam: A Method for Stochastic
       Optimization", ICLR 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from skcrossmodal import GradientSharedProjection
    >>> rng = np.random.default_rng(0)
    >>> latent = rng.normal(size=(2000, 2))
    >>> text = latent @ rng.normal(size=(2, 40)) + rng.normal(size=(2000, 40))
    >>> image = latent @ rng.normal(size=(2, 30)) + rng.normal(size=(2000, 30))
    >>> X = np.hstack([text, image])
    >>> proj = GradientSharedProjection(
    ...     n_components=2, modalities={"text": slice(0, 40), "image": slice(40, 70)},
    ...     reg=0.1, random_state=0)
    >>> Z = proj.fit_transform(X)
    >>> Z.shape
    (2000, 2)
    >>> bool(proj.canonical_correlations_[0] > 0.9)
    True
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "modalities": [dict, None],
        # "auto" passes validation only to be refused by fit with a message
        # that says why and what to do instead.
        "reg": [
            Interval(Real, 0, None, closed="left"),
            dict,
            Hidden(StrOptions({"auto"})),
        ],
        "scale": ["boolean"],
        "output": [str],
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
        """Fit the shared projection by mini-batch Adam.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape \
                (n_samples, n_features)
            The modalities side by side, in memory; a modality block of NaN
            in a row marks it missing there.
        y : None
            Ignored.

        Returns
        -------
        self : GradientSharedProjection
        """
        if is_dask_collection(X):
            raise ValueError(
                f"{type(self).__name__} needs X in memory (a numpy array, a "
                "scipy sparse matrix or an array API array): every epoch "
                "revisits every row. For a Dask array use SharedProjection, "
                "whose statistics are computed chunk by chunk where the "
                "chunks live."
            )
        # A refused X (infinity, a row with no modality...) leaves a previous
        # fit exactly as it was: validation sets n_features_in_, modalities_.
        with restore_on_error(self):
            X = validate_modal_data(self, X, reset=True)
            self._check_params_against_modalities()
            return self._fit_validated(X)

    def _fit_validated(self, X):
        space, info = fit_gradient_space(
            X,
            self.modalities_,
            self.reg,
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
        self.reg_ = info["reg"]
        self.n_iter_ = info["n_iter"]
        self.loss_curve_ = info["loss_curve"]
        self.validation_scores_ = info["validation_scores"]
        return self._set_fitted(
            space.correlations,
            space.weights,
            space.means,
            info["scale"],
            info["n_samples_seen"],
            None,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Dense torch / CuPy / any array API input under array_api_dispatch.
        tags.array_api_support = True
        return tags
