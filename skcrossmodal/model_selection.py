"""Cross-validation for cross-modal transfer: train on one modality, test on another.

A transfer estimator (:class:`~skcrossmodal.transfer.CrossModalTransferClassifier`)
learns its labels on the rows of a *source* modality and is meant to predict
rows that carry only a *target* modality. Plain ``KFold`` scores it on held-out
rows of whatever modality they carry, mostly the labelled source rows, which
measures the wrong thing. :class:`TransferSplit` tests on the target rows only
and never trains on their labels, so ``GridSearchCV(..., cv=TransferSplit(...))``
tunes for the transfer.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.model_selection import KFold
from sklearn.model_selection._split import BaseCrossValidator
from sklearn.utils import _safe_indexing
from sklearn.utils._indexing import _get_column_indices
from sklearn.utils.validation import _num_samples

from ._missing_rows import missing_rows

__all__ = ["TransferSplit"]


class TransferSplit(BaseCrossValidator):
    """K-fold splits that test a transfer on the rows of the target modality.

    The rows of X fall in two groups:

    - **test candidates**: rows that carry the ``target`` modality, not the
      ``source`` one, and have a label (``y`` is not ``unlabelled``, not
      NaN);
    - **training pool**: every other row (paired rows, labelled source rows,
      unlabelled rows).

    Both groups are cut into ``n_splits`` folds (``KFold``). Split ``k``
    trains on the pool without its fold ``k`` and tests on fold ``k`` of the
    test candidates. So a target row is never trained on (its label would
    turn the transfer into ordinary supervised learning on the target
    modality), and each score is the accuracy (or R²) of predicting the
    target modality alone from labels learned on the source modality.

    Which rows carry a modality is read from the raw X that ``split``
    receives (the X given to ``GridSearchCV``): a row lacks the modality when
    all its values in those columns are missing (``None``, NaN, ``pd.NA``,
    or a blank string with ``empty_is_missing=True``), as
    :class:`~skcrossmodal.compose.ModalityBranch` reads it.

    Parameters
    ----------
    source : str, int, list, slice, array-like of bool or callable
        The columns of the source modality (the labelled one), in any form
        ``ColumnTransformer`` accepts: a column name (e.g. ``"text"``),
        names, int indices, a slice, a boolean mask or a callable such as
        ``make_column_selector``.
    target : str, int, list, slice, array-like of bool or callable
        The columns of the target modality (the one to predict), same forms.
    n_splits : int, default=5
        Number of folds, at least 2.
    shuffle : bool, default=False
        Shuffle each group before cutting it into folds.
    random_state : int, RandomState instance or None, default=None
        With ``shuffle=True``: the order of the rows.
    unlabelled : int, float or str, default=-1
        The label that marks an unlabelled row (scikit-learn's
        semi-supervised convention; NaN marks one too, as for
        :class:`~skcrossmodal.transfer.CrossModalTransferRegressor`: use
        ``unlabelled=np.nan`` when -1 is a real target). Unlabelled target
        rows are not tested. Without ``y``, every target row is.
    empty_is_missing : bool, default=False
        A blank string marks the modality missing in that row.

    See Also
    --------
    skcrossmodal.transfer.CrossModalTransferClassifier : The estimator to tune.
    skcrossmodal.compose.make_modality_transformer : Featurises raw
        modalities with missing rows, in the same pipeline.

    Examples
    --------
    >>> import numpy as np
    >>> from skcrossmodal.model_selection import TransferSplit
    >>> X = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, np.nan], [4.0, np.nan],
    ...               [np.nan, 5.0], [np.nan, 6.0]])
    >>> y = np.array([-1, -1, 0, 1, 0, 1])   # paired, source (0), target (1)
    >>> cv = TransferSplit(source=[0], target=[1], n_splits=2)
    >>> for train, test in cv.split(X, y):
    ...     print(train, test)
    [2 3] [4]
    [0 1] [5]
    """

    def __init__(
        self,
        source,
        target,
        *,
        n_splits=5,
        shuffle=False,
        random_state=None,
        unlabelled=-1,
        empty_is_missing=False,
    ):
        self.source = source
        self.target = target
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state
        self.unlabelled = unlabelled
        self.empty_is_missing = empty_is_missing

    def get_n_splits(self, X=None, y=None, groups=None):
        """Number of splits.

        Parameters
        ----------
        X, y, groups : object
            Ignored, present for API consistency.

        Returns
        -------
        n_splits : int
        """
        return self.n_splits

    def _carries(self, X, columns, role):
        if callable(columns):
            columns = columns(X)
        if isinstance(columns, (numbers.Integral, str)):
            columns = [columns]
        try:
            indices = _get_column_indices(X, columns)
        except (ValueError, IndexError, TypeError, KeyError) as exc:
            raise ValueError(
                f"TransferSplit: `{role}` does not select columns of X: {exc}. "
                "Give column names (X a DataFrame), int indices, a slice, a "
                "boolean mask or a callable returning one of those."
            ) from exc
        if not indices:
            raise ValueError(f"TransferSplit: `{role}` selects no column of X.")
        block = _safe_indexing(X, indices, axis=1)
        return ~missing_rows(block, empty_is_missing=self.empty_is_missing)

    def _groups(self, X, y):
        if not (isinstance(self.n_splits, numbers.Integral) and self.n_splits >= 2):
            raise ValueError(
                f"TransferSplit: n_splits must be an int >= 2, got {self.n_splits!r}."
            )
        if not hasattr(X, "shape") or len(X.shape) != 2:
            X = np.asarray(X, dtype=object)
        n_samples = _num_samples(X)
        source = self._carries(X, self.source, "source")
        target = self._carries(X, self.target, "target")
        candidates = target & ~source
        if y is not None:
            y = np.asarray(y, dtype=object)
            if y.shape[0] != n_samples:
                raise ValueError(
                    f"TransferSplit: X and y have inconsistent numbers of "
                    f"samples: {n_samples} and {y.shape[0]}."
                )
            if y.ndim == 1:
                candidates &= ~_unlabelled_mask(y, self.unlabelled)
            else:
                candidates &= ~_unlabelled_mask(y, self.unlabelled).all(axis=1)
        test = np.flatnonzero(candidates)
        pool = np.flatnonzero(~candidates)
        for name, rows in (("test (target-only, labelled)", test), ("training", pool)):
            if rows.size < self.n_splits:
                raise ValueError(
                    f"TransferSplit: {rows.size} {name} row(s) for n_splits="
                    f"{self.n_splits}; each fold needs at least one. The test "
                    "rows carry the target modality, not the source one, and "
                    "a label; lower n_splits or add such rows."
                )
        return pool, test

    def split(self, X, y=None, groups=None):
        """Generate (train, test) indices.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            The raw input, in which ``source`` and ``target`` select columns.
        y : array-like of shape (n_samples,) or None, default=None
            Labels; unlabelled target rows are not tested.
        groups : object
            Ignored.

        Yields
        ------
        train : ndarray
            Training rows: the pool without this fold.
        test : ndarray
            Test rows: this fold of the labelled target-only rows.
        """
        pool, test = self._groups(X, y)
        folds = KFold(
            self.n_splits, shuffle=self.shuffle, random_state=self.random_state
        )
        for (pool_train, _), (_, test_fold) in zip(
            folds.split(pool), folds.split(test)
        ):
            yield pool[pool_train], test[test_fold]

    def _iter_test_indices(self, X=None, y=None, groups=None):  # pragma: no cover
        # BaseCrossValidator's abstract method; split is overridden.
        for _, test in self.split(X, y, groups):
            yield test


def _unlabelled_mask(y, unlabelled):
    """Elementwise: NaN/None, or equal to the ``unlabelled`` marker."""
    missing = missing_rows(y.reshape(-1, 1)) if y.ndim == 1 else None
    if missing is None:
        missing = np.column_stack([missing_rows(col.reshape(-1, 1)) for col in y.T])
    with np.errstate(invalid="ignore"):
        marker = np.array([_equals(value, unlabelled) for value in y.reshape(-1)])
    return missing | marker.reshape(y.shape)


def _equals(value, marker):
    if isinstance(value, str) != isinstance(marker, str):
        return False
    try:
        return bool(value == marker)
    except (TypeError, ValueError):
        return False
