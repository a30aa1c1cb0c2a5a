"""Cross-modal transfer: learn with labels on one modality, predict another.

The third family of cross-modal learning (see the user guide's page on
the three families). A :class:`~skcrossmodal.SharedProjection` is
pre-trained without labels on the rows that carry at least two modalities;
a downstream estimator is then fitted on the shared-space embeddings of the
labelled rows, whatever modality they carry; and it predicts for rows of any
modality, because every modality lands in the same space.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    RegressorMixin,
    _fit_context,
    clone,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import _safe_indexing, get_tags
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_consistent_length,
    check_is_fitted,
    validate_data,
)

from ._base import FLOAT_DTYPES, VersionedPickleMixin, check_finite_blocks
from ._dtypes import check_numeric_features
from ._modalities import resolve_modalities
from ._transfer_checks import check_numpy_input, classification_labels
from .projection import SharedProjection

__all__ = ["CrossModalTransferClassifier", "CrossModalTransferRegressor"]


def _estimator_has(attribute):
    """available_if check: the (fitted, else unfitted) estimator has it."""

    def check(self):
        if hasattr(self, "estimator_"):
            return hasattr(self.estimator_, attribute)
        if self.estimator is None:
            return hasattr(self._default_estimator(), attribute)
        return hasattr(self.estimator, attribute)

    return check


def _take_rows(X_raw, X_checked, rows):
    """Rows of X for a sub-estimator: a DataFrame keeps its column names."""
    if hasattr(X_raw, "columns"):
        return _safe_indexing(X_raw, rows)
    return X_checked[rows]


class _BaseCrossModalTransfer(VersionedPickleMixin, MetaEstimatorMixin, BaseEstimator):
    """Shared fit logic of the transfer classifier and regressor."""

    _parameter_constraints: dict = {
        "projection": [HasMethods(["fit", "transform"]), None],
        "estimator": [HasMethods(["fit", "predict"]), None],
    }

    def __init__(self, projection=None, estimator=None):
        self.projection = projection
        self.estimator = estimator

    # -- what the subclasses define ------------------------------------------------

    def _default_estimator(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _labelled_rows(self, y, n_samples):  # pragma: no cover - overridden
        """Return (validated y, boolean mask of labelled rows)."""
        raise NotImplementedError

    def _check_targets(self, y):
        """Check the labelled targets (classification targets, ...)."""

    # -- fitting ------------------------------------------------------------------

    def _projection_template(self):
        projection = SharedProjection() if self.projection is None else self.projection
        params = projection.get_params(deep=False)
        if "modalities" not in params or "output" not in params:
            raise TypeError(
                f"{type(self).__name__}: `projection` must be a SharedProjection "
                "(an estimator with `modalities` and `output` parameters), got "
                f"{type(projection).__name__}. To transform the modalities first "
                "(e.g. a ColumnTransformer with Nystroem branches), put those "
                "steps before this estimator in a Pipeline."
            )
        if params["output"] != "mean":
            raise ValueError(
                f"{type(self).__name__} embeds every row as the mean of the "
                "projections of the modalities it carries, so `projection` must "
                f"have output='mean', got output={params['output']!r}. Use "
                "projection.set_params(output='mean')."
            )
        return projection

    def _fit(self, X, y):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target "
                "y is None."
            )
        check_numpy_input(self, X=X, y=y)
        check_numeric_features(X)
        projection = self._projection_template()
        X_checked = validate_data(
            self,
            X,
            accept_sparse=("csr", "csc"),
            dtype=list(FLOAT_DTYPES),
            ensure_all_finite=False,
            ensure_min_samples=2,
        )
        n_samples = X_checked.shape[0]
        check_consistent_length(X_checked, y)
        y, labelled = self._labelled_rows(y, n_samples)

        modalities = resolve_modalities(
            projection.get_params(deep=False)["modalities"],
            X_checked,
            X,
            getattr(self, "feature_names_in_", None),
        )
        present = check_finite_blocks(X_checked, modalities)
        paired = np.flatnonzero(present.sum(axis=1) >= 2)
        if paired.size < 2:
            raise ValueError(
                f"{type(self).__name__} pre-trains its projection on the rows "
                "that carry at least two modalities, and X has "
                f"{paired.size} such row(s); it needs at least 2. Add paired "
                "rows (they need no label: mark them unlabelled)."
            )
        labelled = np.flatnonzero(labelled)
        if labelled.size == 0:
            raise ValueError(
                f"{type(self).__name__} found no labelled row in y (every target "
                f"is {self._unlabelled_name}). Label at least one row of some "
                "modality."
            )

        self._check_targets(y[labelled])
        self.projection_ = clone(projection).fit(_take_rows(X, X_checked, paired))
        embedded = self.projection_.transform(_take_rows(X, X_checked, labelled))
        estimator = (
            self._default_estimator() if self.estimator is None else self.estimator
        )
        self.estimator_ = clone(estimator).fit(embedded, y[labelled])
        self.n_paired_samples_ = int(paired.size)
        self.n_labelled_samples_ = int(labelled.size)
        return self

    # -- prediction ----------------------------------------------------------------

    def _embed(self, X):
        """Shared-space embedding of any row (mean of its modalities)."""
        check_is_fitted(self)
        check_numpy_input(self, X=X)
        check_numeric_features(X)
        # Checked here first, so that errors name this estimator; the
        # projection then reads X as given (a DataFrame keeps its names).
        validate_data(
            self,
            X,
            reset=False,
            accept_sparse=("csr", "csc"),
            dtype=list(FLOAT_DTYPES),
            ensure_all_finite=False,
        )
        return self.projection_.transform(X)

    def predict(self, X):
        """Predict for rows carrying any modality.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Rows carrying at least one modality (the others all NaN).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        embedded = self._embed(X)
        return self.estimator_.predict(embedded)

    def _score_rows(self, X, y, sample_weight):
        """Labelled rows of (X, y, sample_weight) for ``score``."""
        check_numpy_input(self, X=X, y=y, sample_weight=sample_weight)
        y, labelled = self._labelled_rows(y, None)
        check_consistent_length(X, y)
        if not labelled.any():
            raise ValueError(
                f"score: every target in y is {self._unlabelled_name} "
                "(unlabelled); there is nothing to score."
            )
        if sample_weight is not None:
            # A ValueError naming sample_weight for a wrong length or shape.
            sample_weight = _check_sample_weight(sample_weight, y)[labelled]
        if labelled.all():
            return X, y, sample_weight
        rows = np.flatnonzero(labelled)
        return _safe_indexing(X, rows), y[rows], sample_weight

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # NaN only as whole missing modality blocks (see SharedProjection).
        tags.input_tags.allow_nan = False
        projection = SharedProjection() if self.projection is None else self.projection
        tags.input_tags.sparse = get_tags(projection).input_tags.sparse
        return tags


class CrossModalTransferClassifier(ClassifierMixin, _BaseCrossModalTransfer):
    """Classify rows of one modality with labels learned on another.

    Cross-modal transfer as one estimator:

    1. **pre-training**: ``projection`` (a
       :class:`~skcrossmodal.SharedProjection`) is fitted, without labels, on
       every row of X that carries at least two modalities;
    2. **learning**: ``estimator`` is fitted on the shared-space embeddings
       of the labelled rows, whatever modality they carry;
    3. **transfer**: ``predict``, ``predict_proba`` and ``score`` embed any
       row in the same space, so a classifier whose labels all came with
       text rows predicts rows that carry only an image.

    The embedding of a row is ``projection_.transform(row)`` with
    ``output="mean"``: the average of the projections of the modalities the
    row carries (a missing modality is an all-NaN block of columns). Call
    ``projection_.transform`` to see the embeddings the classifier sees.

    Labels follow scikit-learn's semi-supervised convention: ``y == -1``
    marks an unlabelled row (for string labels, a list or an object array
    holding the int ``-1`` for the unlabelled rows; ``None``, NaN and
    ``pd.NA`` are errors).

    Parameters
    ----------
    projection : SharedProjection or None, default=None
        The shared space, cloned before fitting (``None``:
        ``SharedProjection()``, which reads the modalities from DataFrame
        feature names). Its ``modalities`` say which columns of X form each
        modality. It must have ``output="mean"`` (any other output raises a
        ValueError: the estimator needs one embedding per row, whatever
        modalities it carries). Tune it with ``projection__reg``,
        ``projection__n_components`` (pass a ``SharedProjection``
        explicitly to tune it: ``None`` has no parameters).
    estimator : classifier or None, default=None
        Fitted on the embeddings of the labelled rows, cloned first
        (``None``: ``LogisticRegression()``). Tune with ``estimator__C``.

    Attributes
    ----------
    projection_ : SharedProjection
        The fitted shared space.
    estimator_ : classifier
        The fitted classifier, on the shared space.
    classes_ : ndarray of shape (n_classes,)
        The labels seen in y, without the unlabelled marker ``-1``.
    n_paired_samples_ : int
        Rows the projection was fitted on (two modalities or more).
    n_labelled_samples_ : int
        Rows the classifier was fitted on.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string feature names.

    See Also
    --------
    CrossModalTransferRegressor : The regressor twin (NaN marks unlabelled).
    sklearn.semi_supervised.SelfTrainingClassifier : The same y convention.

    Notes
    -----
    Rows that carry a single modality do not inform the projection (they
    would only inform one modality's covariance, not the correspondence
    between modalities), but they may carry labels. Rows carrying no modality
    at all are an error.

    ``score`` is the accuracy on the labelled rows of ``(X, y)``; rows with
    ``y == -1`` are ignored, so ``cross_val_score`` works on semi-supervised
    ``y``. An explicit ``scoring="accuracy"`` would count them as errors.

    Examples
    --------
    Two halves of each digit image are two modalities. Labels come only with
    left halves; the classifier predicts from right halves alone.

    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from skcrossmodal import SharedProjection
    >>> from skcrossmodal.transfer import CrossModalTransferClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> left = (np.arange(64) % 8) < 4
    >>> paired, labelled, test = X[:600], X[600:1200].copy(), X[1200:].copy()
    >>> labelled[:, ~left] = np.nan   # left halves only, with labels
    >>> test[:, left] = np.nan        # right halves only, to predict
    >>> clf = CrossModalTransferClassifier(
    ...     SharedProjection(n_components=10, reg=1.0,
    ...                      modalities={"left": left, "right": ~left}))
    >>> clf.fit(np.vstack([paired, labelled]),
    ...         np.concatenate([np.full(600, -1), y[600:1200]]))
    CrossModalTransferClassifier(...)
    >>> clf.classes_
    array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    >>> bool(clf.score(test, y[1200:]) > 0.5)  # chance is 0.1
    True
    """

    _unlabelled_name = "-1"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # As for sklearn's PLS/CCA: the shared space keeps what the modalities
        # share, not necessarily what predicts y, so the generic score
        # thresholds of the estimator checks do not apply.
        tags.classifier_tags.poor_score = True
        return tags

    def _default_estimator(self):
        return LogisticRegression()

    def _labelled_rows(self, y, n_samples):
        return classification_labels(self, y, n_samples)

    @_fit_context(
        # The projection and estimator validate their own parameters.
        prefer_skip_nested_validation=False
    )
    def fit(self, X, y):
        """Pre-train the projection on paired rows, then fit the classifier.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Every row carries at least one modality; rows carrying two or
            more pre-train the projection.
        y : array-like of shape (n_samples,)
            Labels; ``-1`` marks an unlabelled row.

        Returns
        -------
        self : CrossModalTransferClassifier
        """
        self._fit(X, y)
        self.classes_ = self.estimator_.classes_
        return self

    def _check_targets(self, y):
        check_classification_targets(y)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities for rows carrying any modality.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        embedded = self._embed(X)
        return self.estimator_.predict_proba(embedded)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log of the class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        embedded = self._embed(X)
        return self.estimator_.predict_log_proba(embedded)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """The classifier's decision function on the shared-space embeddings.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        embedded = self._embed(X)
        return self.estimator_.decision_function(embedded)

    def score(self, X, y, sample_weight=None):
        """Accuracy on the labelled rows (``y != -1``) of X.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            True labels; ``-1`` rows are ignored.
        sample_weight : array-like of shape (n_samples,) or None, default=None

        Returns
        -------
        score : float
        """
        X, y, sample_weight = self._score_rows(X, y, sample_weight)
        return float(accuracy_score(y, self.predict(X), sample_weight=sample_weight))


class CrossModalTransferRegressor(RegressorMixin, _BaseCrossModalTransfer):
    """Regress rows of one modality with targets learned on another.

    The regressor twin of :class:`CrossModalTransferClassifier`: the
    ``projection`` is pre-trained without targets on the rows carrying at
    least two modalities, ``estimator`` is fitted on the shared-space
    embeddings of the rows that have a target, and ``predict`` works on rows
    of any modality. A NaN target marks an unlabelled row (with several
    outputs, a row whose targets are all NaN; partly-NaN rows are an error).

    Parameters
    ----------
    projection : SharedProjection or None, default=None
        As in :class:`CrossModalTransferClassifier` (``output="mean"``
        required; ``None``: ``SharedProjection()``).
    estimator : regressor or None, default=None
        Fitted on the embeddings of the labelled rows (``None``:
        ``Ridge()``).

    Attributes
    ----------
    projection_ : SharedProjection
        The fitted shared space.
    estimator_ : regressor
        The fitted regressor, on the shared space.
    n_paired_samples_ : int
        Rows the projection was fitted on (two modalities or more).
    n_labelled_samples_ : int
        Rows the regressor was fitted on.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string feature names.

    See Also
    --------
    CrossModalTransferClassifier : The classifier twin (-1 marks unlabelled).

    Notes
    -----
    ``score`` is the R² on the rows whose target is not NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from skcrossmodal import SharedProjection
    >>> from skcrossmodal.transfer import CrossModalTransferRegressor
    >>> rng = np.random.default_rng(0)
    >>> latent = rng.normal(size=(900, 2))
    >>> X = np.hstack([latent @ rng.normal(size=(2, 6)),
    ...                latent @ rng.normal(size=(2, 5))])
    >>> X += 0.3 * rng.normal(size=X.shape)
    >>> y = latent @ [1.0, -2.0]
    >>> X[300:600, 6:] = np.nan      # labelled rows: modality "a" only
    >>> X[600:, :6] = np.nan         # rows to predict: modality "b" only
    >>> y_train = np.where(np.arange(600) < 300, np.nan, y[:600])
    >>> reg = CrossModalTransferRegressor(
    ...     SharedProjection(modalities={"a": slice(0, 6), "b": slice(6, 11)}))
    >>> bool(reg.fit(X[:600], y_train).score(X[600:], y[600:]) > 0.9)
    True
    """

    _unlabelled_name = "NaN"

    def _default_estimator(self):
        return Ridge()

    def _labelled_rows(self, y, n_samples):
        try:
            y = check_array(
                y,
                ensure_2d=False,
                dtype="numeric",
                ensure_all_finite="allow-nan",
                input_name="y",
                estimator=self,
            )
        except (TypeError, ValueError) as exc:
            if "convert" not in str(exc):
                raise
            raise ValueError(
                f"y of {type(self).__name__} must hold numbers (regression "
                f"targets; NaN marks an unlabelled row), but {exc}. For class "
                "labels use CrossModalTransferClassifier."
            ) from exc
        if n_samples is not None and y.shape[0] != n_samples:
            raise ValueError(
                f"X and y have inconsistent numbers of samples: {n_samples} "
                f"and {y.shape[0]}."
            )
        if y.ndim == 1:
            return y, ~np.isnan(y)
        missing = np.isnan(y)
        partial = missing.any(axis=1) & ~missing.all(axis=1)
        if partial.any():
            row = int(np.flatnonzero(partial)[0])
            raise ValueError(
                f"Row {row} of y has NaN in only some of its outputs. A row is "
                "unlabelled when all its targets are NaN; impute or drop the "
                "partial ones."
            )
        return y, ~missing.all(axis=1)

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Pre-train the projection on paired rows, then fit the regressor.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Every row carries at least one modality; rows carrying two or
            more pre-train the projection.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets; NaN marks an unlabelled row.

        Returns
        -------
        self : CrossModalTransferRegressor
        """
        return self._fit(X, y)

    def score(self, X, y, sample_weight=None):
        """R² on the rows of X whose target is not NaN.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,) or None, default=None

        Returns
        -------
        score : float
        """
        X, y, sample_weight = self._score_rows(X, y, sample_weight)
        return float(r2_score(y, self.predict(X), sample_weight=sample_weight))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True  # see the classifier
        estimator = Ridge() if self.estimator is None else self.estimator
        tags.target_tags.multi_output = get_tags(estimator).target_tags.multi_output
        return tags
