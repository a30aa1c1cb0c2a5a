"""Featurise raw modalities into one X whose column names name the modalities.

:func:`make_modality_transformer` builds a :class:`ModalityColumnTransformer`
(a ``ColumnTransformer`` with one branch per modality) whose output columns
are ``"<modality>__<feature>"``. Each branch is wrapped in a
:class:`ModalityBranch`, which fits the branch on the rows that carry the
modality and writes an all-NaN block for the rows that do not: so a raw
DataFrame whose text is ``None`` in some rows and whose pixels are NaN in
others flows through stock scikit-learn featurisers into any skcrossmodal
estimator.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn import get_config
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.compose import ColumnTransformer
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import check_is_fitted

from ._missing_rows import missing_rows

__all__ = ["ModalityBranch", "ModalityColumnTransformer", "make_modality_transformer"]


class ModalityBranch(TransformerMixin, BaseEstimator):
    """Fit a transformer on the rows that carry a modality; NaN for the others.

    Stock featurisers (``TfidfVectorizer``, ``PCA``, ``TruncatedSVD``,
    ``Nystroem``, ...) reject ``None`` and NaN. Wrapped in a
    ``ModalityBranch``, such a transformer is fitted on, and applied to, only
    the rows that carry the modality; the rows that do not get an all-NaN
    block of output, which is how every skcrossmodal estimator reads a
    missing modality. It fits in any ``ColumnTransformer`` branch;
    :func:`make_modality_transformer` wraps its branches in it.

    A row lacks the modality when **every** value it has in the branch's
    input is missing: ``None``, NaN, ``pd.NA`` or ``NaT`` (and an empty or
    blank string when ``empty_is_missing=True``). Rows where only some values
    are missing are passed to the transformer as they are (put a
    ``SimpleImputer`` in it if it needs one).

    Parameters
    ----------
    transformer : estimator with fit and transform
        The branch's featuriser (cloned before fitting). Its input is the
        branch's raw columns: a 1-D column of text, 2-D numbers, ...
    empty_is_missing : bool, default=False
        Also treat a string that is empty or only whitespace as missing
        (e.g. a text column where ``""`` means "no text").

    Attributes
    ----------
    transformer_ : estimator
        The fitted transformer, fitted on the rows that carry the modality.
    n_present_ : int
        Rows that carried the modality during fit.
    n_features_out_ : int
        Width of the output block.
    n_features_in_ : int
        Number of features seen during fit (when the transformer records it).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit (when the transformer records them).

    See Also
    --------
    make_modality_transformer : One ColumnTransformer whose branches are
        ModalityBranch and whose output names the modalities.

    Examples
    --------
    >>> from sklearn.feature_extraction.text import TfidfVectorizer
    >>> from skcrossmodal.compose import ModalityBranch
    >>> branch = ModalityBranch(TfidfVectorizer())
    >>> out = branch.fit_transform(["red apple", None, "green apple"])
    >>> out.toarray().round(2)
    array([[0.58, 0.  , 0.81],
           [ nan,  nan,  nan],
           [0.58, 0.81, 0.  ]])
    >>> list(branch.get_feature_names_out())
    ['apple', 'green', 'red']
    """

    _parameter_constraints: dict = {
        "transformer": [HasMethods(["fit", "transform"])],
        "empty_is_missing": ["boolean"],
    }

    def __init__(self, transformer, *, empty_is_missing=False):
        self.transformer = transformer
        self.empty_is_missing = empty_is_missing

    def _present(self, X):
        return ~missing_rows(X, empty_is_missing=self.empty_is_missing)

    def fit(self, X, y=None, **fit_params):
        """Fit the transformer on the rows of X that carry the modality.

        Parameters
        ----------
        X : array-like, Series, DataFrame or sparse matrix of shape (n_samples,) \
                or (n_samples, n_features)
            The branch's raw input.
        y : array-like of shape (n_samples,) or None, default=None
            Passed to the transformer, restricted to the same rows.
        **fit_params : dict
            Passed to the transformer's ``fit``.

        Returns
        -------
        self : ModalityBranch
        """
        self.fit_transform(X, y, **fit_params)
        return self

    @_fit_context(
        # The wrapped transformer validates its own parameters.
        prefer_skip_nested_validation=False
    )
    def fit_transform(self, X, y=None, **fit_params):
        """Fit on the rows that carry the modality, and transform every row.

        Parameters
        ----------
        X : array-like, Series, DataFrame or sparse matrix of shape (n_samples,) \
                or (n_samples, n_features)
            The branch's raw input.
        y : array-like of shape (n_samples,) or None, default=None
            Passed to the transformer, restricted to the same rows.
        **fit_params : dict
            Passed to the transformer's ``fit_transform``.

        Returns
        -------
        X_out : ndarray or sparse matrix of shape (n_samples, n_features_out)
            The transformer's output; all NaN in the rows without the modality.
        """
        present = self._present(X)
        rows = np.flatnonzero(present)
        if rows.size == 0:
            raise ValueError(
                f"ModalityBranch({type(self.transformer).__name__}): no row of X "
                "carries this modality (every value is missing), so there is "
                "nothing to fit the transformer on."
            )
        self.transformer_ = clone(self.transformer)
        X_rows = X if rows.size == present.size else _safe_indexing(X, rows)
        y_rows = None
        if y is not None:
            y_rows = y if rows.size == present.size else _safe_indexing(y, rows)
        out = self.transformer_.fit_transform(X_rows, y_rows, **fit_params)
        self.n_present_ = int(rows.size)
        self.n_features_out_ = int(out.shape[1])
        self._sparse_output = sparse.issparse(out)
        # A dtype name, not a numpy.dtype: skops loads a str without trust.
        self._output_dtype = out.dtype.name if out.dtype.kind == "f" else "float64"
        return _scatter_rows(out, present)

    def transform(self, X):
        """Transform the rows that carry the modality; NaN for the others.

        Parameters
        ----------
        X : array-like, Series, DataFrame or sparse matrix of shape (n_samples,) \
                or (n_samples, n_features)
            The branch's raw input.

        Returns
        -------
        X_out : ndarray or sparse matrix of shape (n_samples, n_features_out)
        """
        check_is_fitted(self)
        present = self._present(X)
        rows = np.flatnonzero(present)
        if rows.size == 0:
            # Same kind of output as at fit: ColumnTransformer stacks sparse
            # and dense blocks by what fit returned.
            empty = (sparse.csr_matrix if self._sparse_output else np.empty)(
                (0, self.n_features_out_), dtype=self._output_dtype
            )
            return _scatter_rows(empty, present)
        X_rows = X if rows.size == present.size else _safe_indexing(X, rows)
        return _scatter_rows(self.transformer_.transform(X_rows), present)

    def get_feature_names_out(self, input_features=None):
        """The transformer's output feature names.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Passed to the transformer's ``get_feature_names_out``.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        return self.transformer_.get_feature_names_out(input_features)

    @property
    def n_features_in_(self):
        """Number of features seen during fit (the transformer's)."""
        return self.transformer_.n_features_in_

    @property
    def feature_names_in_(self):
        """Names of features seen during fit (the transformer's)."""
        return self.transformer_.feature_names_in_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Missing rows are the point of this wrapper; other NaN goes to the
        # transformer, which says what it accepts.
        inner = self.transformer.__sklearn_tags__().input_tags
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = inner.sparse
        tags.input_tags.string = inner.string
        tags.input_tags.two_d_array = inner.two_d_array
        tags.input_tags.one_d_array = inner.one_d_array
        return tags


def _all_missing(n_rows, width, dtype=np.float64):
    return np.full((n_rows, width), np.nan, dtype=dtype)


def _scatter_rows(out, present):
    """Place the transformer's rows where ``present``; NaN rows elsewhere."""
    if present.all():
        return out
    n_rows = present.size
    if sparse.issparse(out):
        out = out.tocsr()
        dtype = out.dtype if out.dtype.kind == "f" else np.float64
        missing = np.flatnonzero(~present)
        width = out.shape[1]
        # The missing rows store every column explicitly as NaN: an all-NaN
        # block is what marks a missing modality, also in sparse X.
        filler = sparse.csr_matrix(
            (
                np.full(missing.size * width, np.nan, dtype=dtype),
                np.tile(np.arange(width), missing.size),
                np.arange(missing.size + 1) * width,
            ),
            shape=(missing.size, width),
        )
        stacked = sparse.vstack([out.astype(dtype), filler], format="csr")
        order = np.empty(n_rows, dtype=np.intp)
        order[np.flatnonzero(present)] = np.arange(present.sum())
        order[missing] = present.sum() + np.arange(missing.size)
        return stacked[order]
    values = np.asarray(out)
    dtype = values.dtype if values.dtype.kind == "f" else np.float64
    full = _all_missing(n_rows, values.shape[1], dtype)
    full[present] = values
    return full


class ModalityColumnTransformer(ColumnTransformer, auto_wrap_output_keys=None):
    """A ColumnTransformer whose DataFrame output names each modality.

    Build it with :func:`make_modality_transformer`. It is a
    ``ColumnTransformer`` (same parameters, same fitted attributes) with
    three differences:

    - ``set_output`` configures this estimator only, not its branches, so
      branches without ``set_output`` (``TfidfVectorizer``) still work;
    - with ``set_output(transform="pandas")``, a sparse result (e.g. a
      TF-IDF branch) becomes a DataFrame of sparse columns instead of an
      error; skcrossmodal estimators read it as a scipy sparse matrix with
      feature names, so ``modalities=None`` works;
    - fitted on a DataFrame, ``transform`` accepts a DataFrame that lacks
      the columns of whole branches (say, only the pixel columns) when those
      branches are :class:`ModalityBranch`: the missing branches are then
      all-NaN blocks, i.e. missing modalities.

    See :class:`sklearn.compose.ColumnTransformer` for the parameters.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skcrossmodal.compose import make_modality_transformer
    >>> frame = pd.DataFrame({"a": [1.0, 2.0, None], "b": [0.0, None, 1.0]})
    >>> features = make_modality_transformer(
    ...     ("left", StandardScaler(), ["a"]), ("right", StandardScaler(), ["b"]))
    >>> features.fit_transform(frame)
       left__a  right__b
    0     -1.0      -1.0
    1      1.0       NaN
    2      NaN       1.0
    >>> features.transform(frame[["b"]])  # "left" missing in every row
       left__a  right__b
    0      NaN      -1.0
    1      NaN       NaN
    2      NaN       1.0
    """

    def set_output(self, *, transform=None):
        """Set the output container of this estimator (not of its branches).

        Parameters
        ----------
        transform : {"default", "pandas", "polars"} or None, default=None
            ``"pandas"``: a DataFrame (of sparse columns when the result is
            sparse); ``"polars"``: a polars DataFrame (dense results only);
            ``"default"``: what ``ColumnTransformer`` returns; ``None``:
            unchanged.

        Returns
        -------
        self : ModalityColumnTransformer
        """
        if transform is None:
            return self
        if transform not in ("default", "pandas", "polars"):
            raise ValueError(
                "set_output: transform must be 'default', 'pandas', 'polars' or "
                f"None, got {transform!r}."
            )
        if not hasattr(self, "_sklearn_output_config"):
            self._sklearn_output_config = {}
        self._sklearn_output_config["transform"] = transform
        return self

    def _call_with_default_output(self, method, *args, **kwargs):
        # ColumnTransformer's own methods wrap their output (and raise on a
        # sparse result under pandas); they run with the default output and
        # the container is made afterwards by _wrap.
        saved = getattr(self, "_sklearn_output_config", None)
        self._sklearn_output_config = {**(saved or {}), "transform": "default"}
        try:
            return method(*args, **kwargs)
        finally:
            if saved is None:
                del self._sklearn_output_config
            else:
                self._sklearn_output_config = saved

    def _container(self):
        config = getattr(self, "_sklearn_output_config", {})
        return config.get("transform", get_config()["transform_output"])

    def _wrap(self, Xt, X):
        container = self._container()
        if container == "default":
            return Xt
        columns = list(self.get_feature_names_out())
        if container == "polars":
            if sparse.issparse(Xt):
                raise ValueError(
                    "set_output(transform='polars'): the result is a scipy "
                    "sparse matrix (from a sparse branch such as "
                    "TfidfVectorizer), which polars cannot hold. Use "
                    "transform='pandas' (sparse columns) or make the branch "
                    "dense (e.g. end it with TruncatedSVD)."
                )
            import polars as pl

            return pl.DataFrame(np.asarray(Xt), schema=columns, orient="row")
        import pandas as pd

        index = X.index if hasattr(X, "index") and len(X.index) == Xt.shape[0] else None
        if sparse.issparse(Xt):
            frame = pd.DataFrame.sparse.from_spmatrix(Xt, columns=columns)
            if index is not None:
                frame.index = index
            return frame
        return pd.DataFrame(np.asarray(Xt), columns=columns, index=index)

    def fit_transform(self, X, y=None, **params):
        """Fit every branch, transform X and stack the results.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or None, default=None
        **params : dict
            As for ``ColumnTransformer.fit_transform``.

        Returns
        -------
        X_t : DataFrame, ndarray or sparse matrix of shape (n_samples, n_out)
        """
        Xt = self._call_with_default_output(super().fit_transform, X, y, **params)
        return self._wrap(Xt, X)

    def transform(self, X, **params):
        """Transform X by each branch and stack the results.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Fitted on a DataFrame, X may lack all the columns of some
            :class:`ModalityBranch` branches (those modalities are then
            missing in every row).
        **params : dict
            As for ``ColumnTransformer.transform``.

        Returns
        -------
        X_t : DataFrame, ndarray or sparse matrix of shape (n_samples, n_out)
        """
        check_is_fitted(self)
        X_full = self._add_missing_branches(X)
        Xt = self._call_with_default_output(super().transform, X_full, **params)
        return self._wrap(Xt, X)

    def _add_missing_branches(self, X):
        """X with NaN columns for the branches whose columns it lacks entirely."""
        if not (hasattr(self, "feature_names_in_") and hasattr(X, "iloc")):
            return X  # not pandas: ColumnTransformer checks the columns
        present = set(X.columns)
        added = []
        for name, transformer, _ in self.transformers_:
            if isinstance(transformer, str) and transformer == "drop":
                continue
            columns = list(
                self.feature_names_in_[self._transformer_to_input_indices[name]]
            )
            absent = [column for column in columns if column not in present]
            if not absent:
                continue
            if len(absent) < len(columns) or not isinstance(
                transformer, ModalityBranch
            ):
                raise ValueError(
                    f"X lacks column(s) {absent[:5]} of branch {name!r}. A "
                    "branch's columns may be left out only all together, and "
                    "only when the branch is a ModalityBranch (as "
                    "make_modality_transformer builds by default): the "
                    "modality is then missing in every row."
                )
            added.extend(absent)
        if not added:
            return X
        # A copy with the absent columns as NaN: the input is not modified.
        import pandas as pd

        filler = pd.DataFrame(np.nan, index=X.index, columns=added)
        return pd.concat([X, filler], axis=1)


def make_modality_transformer(
    *branches, handle_missing=True, empty_is_missing=False, **kwargs
):
    """A ColumnTransformer whose DataFrame output names each modality.

    Each branch ``(name, transformer, columns)`` becomes one modality: its
    output columns are named ``"<name>__<feature>"``, which every
    skcrossmodal estimator reads with ``modalities=None``.

    Every branch is wrapped in a :class:`ModalityBranch` (unless
    ``handle_missing=False``): it is fitted on the rows that carry its
    modality, and rows without it (their raw value is ``None``/NaN, or an
    empty string with ``empty_is_missing=True``) get an all-NaN block. So a
    raw DataFrame with missing text in some rows and missing pixels in
    others goes through stock featurisers into ``SharedProjection`` or a
    transfer estimator in one ``Pipeline``, which then predicts rows that
    carry any subset of the modalities.

    To transform (or predict) one modality alone, pass a DataFrame with that
    modality's columns only: the branches whose columns are all absent are
    missing modalities in every row (see :class:`ModalityColumnTransformer`).

    Unlike ``ColumnTransformer(...).set_output(transform="pandas")``, the
    DataFrame output is set on the ColumnTransformer only, not on its
    branches, so branches that cannot produce a DataFrame
    (``TfidfVectorizer``, any sparse output) still work; a sparse result is a
    DataFrame of sparse columns, which skcrossmodal estimators read as a
    sparse matrix.

    Parameters
    ----------
    *branches : tuples (name, transformer, columns)
        As ``ColumnTransformer``'s ``transformers``; the name is the modality.
        Tune a wrapped branch's parameters as
        ``<name>__transformer__<parameter>``.
    handle_missing : bool, default=True
        Wrap each branch (other than ``"drop"``/``"passthrough"`` and
        existing ``ModalityBranch``) in ``ModalityBranch``.
    empty_is_missing : bool, default=False
        Passed to each ``ModalityBranch``: a blank string marks the
        modality missing too.
    **kwargs
        Passed on to ``ColumnTransformer`` (``remainder``, ``n_jobs``, ...).
        ``verbose_feature_names_out`` must stay True (the default): the
        prefix is the modality name.

    Returns
    -------
    ModalityColumnTransformer
        A ColumnTransformer with DataFrame output on ``transform`` and
        ``fit_transform``.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn.decomposition import TruncatedSVD
    >>> from sklearn.feature_extraction.text import TfidfVectorizer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skcrossmodal.compose import make_modality_transformer
    >>> frame = pd.DataFrame({"text": ["red apple", "green pear", None, "red cherry"],
    ...                       "weight": [150.0, None, 120.0, 8.0]})
    >>> branches = make_modality_transformer(
    ...     ("text", make_pipeline(TfidfVectorizer(), TruncatedSVD(2)), "text"),
    ...     ("scale", StandardScaler(), ["weight"]))
    >>> out = branches.fit_transform(frame)
    >>> list(out.columns)
    ['text__truncatedsvd0', 'text__truncatedsvd1', 'scale__weight']
    >>> out.isna().to_numpy().astype(int)   # row 1 lacks weight, row 2 text
    array([[0, 0, 0],
           [0, 0, 1],
           [1, 1, 0],
           [0, 0, 0]])
    """
    if kwargs.get("verbose_feature_names_out", True) is not True:
        raise ValueError(
            "make_modality_transformer needs verbose_feature_names_out=True: "
            "the '<modality>__' prefix is how the modalities are found."
        )
    if handle_missing:
        branches = [
            (name, _wrap_branch(transformer, empty_is_missing), columns)
            for name, transformer, columns in branches
        ]
    transformer = ModalityColumnTransformer(list(branches), **kwargs)
    return transformer.set_output(transform="pandas")


def _wrap_branch(transformer, empty_is_missing):
    if isinstance(transformer, (str, ModalityBranch)):
        return transformer
    return ModalityBranch(transformer, empty_is_missing=empty_is_missing)
