"""LateFusionClassifier: per-modality classifiers, soft vote or stacking."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets

from ._late import _align_classes, _BaseLateFusion


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
    _method_hint = (
        "Use a probabilistic classifier (the default LogisticRegression, "
        "SVC(probability=True), ...) or wrap it in CalibratedClassifierCV."
    )

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
        proba = self._final_output(values, "predict_proba")
        return _align_classes(self.classes_, self.final_estimator_.classes_, proba)

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

    def _prepare_y(self, y):
        check_classification_targets(y)
        return y, np.unique(y)

    @staticmethod
    def _missing_fill(classes, y_m, w_m):
        counts = np.array(
            [
                (w_m[y_m == label].sum() if w_m is not None else np.sum(y_m == label))
                for label in classes
            ],
            dtype=np.float64,
        )
        return counts / counts.sum()

    @staticmethod
    def _encode(classes, proba, seen):
        return _align_classes(classes, seen, proba)

    @staticmethod
    def _output_shape_tail(classes):
        return (len(classes),)

    @staticmethod
    def _trim_meta(classes, values):
        return values[:, 1:] if len(classes) == 2 else values
