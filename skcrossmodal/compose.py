"""Build the ColumnTransformer that names the modalities."""

from __future__ import annotations

from sklearn.base import TransformerMixin
from sklearn.compose import ColumnTransformer


def make_modality_transformer(*branches, **kwargs):
    """A ColumnTransformer whose DataFrame output names each modality.

    Each branch ``(name, transformer, columns)`` becomes one modality: its
    output columns are named ``"<name>__<feature>"``, which every
    skcrossmodal estimator reads with ``modalities=None``.

    Unlike ``ColumnTransformer(...).set_output(transform="pandas")``, this sets
    the DataFrame output on the ColumnTransformer only, not on its branches,
    so branches that cannot produce a DataFrame (``TfidfVectorizer``, any
    sparse output) still work: their arrays are stacked and named with
    ``get_feature_names_out``.

    Parameters
    ----------
    *branches : tuples (name, transformer, columns)
        As ``ColumnTransformer``'s ``transformers``; the name is the modality.
    **kwargs
        Passed on to ``ColumnTransformer`` (``remainder``, ``n_jobs``, ...).
        ``verbose_feature_names_out`` must stay True (the default): the
        prefix is the modality name.

    Returns
    -------
    ColumnTransformer
        With DataFrame output on ``transform`` and ``fit_transform``.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn.decomposition import TruncatedSVD
    >>> from sklearn.feature_extraction.text import TfidfVectorizer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skcrossmodal.compose import make_modality_transformer
    >>> frame = pd.DataFrame({"text": ["red apple", "green pear", "red cherry"],
    ...                       "weight": [150.0, 180.0, 8.0]})
    >>> branches = make_modality_transformer(
    ...     ("text", make_pipeline(TfidfVectorizer(), TruncatedSVD(2)), "text"),
    ...     ("scale", StandardScaler(), ["weight"]))
    >>> list(branches.fit_transform(frame).columns)
    ['text__truncatedsvd0', 'text__truncatedsvd1', 'scale__weight']
    """
    if kwargs.get("verbose_feature_names_out", True) is not True:
        raise ValueError(
            "make_modality_transformer needs verbose_feature_names_out=True: "
            "the '<modality>__' prefix is how the modalities are found."
        )
    transformer = ColumnTransformer(list(branches), **kwargs)
    # The mixin's set_output configures this estimator alone; the
    # ColumnTransformer override would also configure every branch and
    # fail on the ones without set_output.
    TransformerMixin.set_output(transformer, transform="pandas")
    return transformer
