"""LateFusionRegressor: per-modality regressors, weighted mean or stacking."""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin, _fit_context
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.utils._param_validation import StrOptions

from ._late import _BaseLateFusion


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
    _method_hint = "Use a regressor."

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
        self._fit_late(X, y, sample_weight)
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
            return np.asarray(self._final_output(values, "predict")).reshape(-1)
        return values[:, 0]

    # -- hooks for the base class -----------------------------------------

    @staticmethod
    def _default_estimator():
        return Ridge()

    @staticmethod
    def _default_final_estimator():
        return RidgeCV()

    @staticmethod
    def _prepare_y(y):
        return np.asarray(y, dtype=np.float64), None

    @staticmethod
    def _missing_fill(classes, y_m, w_m):
        return np.array([np.average(y_m, weights=w_m)])

    @staticmethod
    def _encode(classes, prediction, seen):
        return np.asarray(prediction, dtype=np.float64).reshape(-1, 1)

    @staticmethod
    def _output_shape_tail(classes):
        return (1,)

    @staticmethod
    def _trim_meta(classes, values):
        return values
