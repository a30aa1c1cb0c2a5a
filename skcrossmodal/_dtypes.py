"""Refuse X whose columns are not numbers, the same way for every container.

scikit-learn converts X to float with ``np.asarray(X, dtype=float)``, and what
that does depends on the container: a pandas datetime column raises numpy's
promotion error, while the same column in a polars DataFrame, or a numpy
``datetime64`` array, becomes nanoseconds (or days) since 1970 without a
word. A projection of such numbers is a silently wrong answer. This module
decides by dtype, before any conversion, for numpy arrays, pandas and polars
DataFrames alike:

* numbers (int, float, bool, decimal; pandas' nullable ones) pass;
* dates, times, durations, periods, intervals, categories, text, nested
  and binary columns raise :class:`~skcrossmodal.exceptions.NonNumericFeatureError`
  naming the column and how to encode it;
* ``object`` columns are left to the conversion, but a value that is not a
  number is reported with its column's name.
"""

from __future__ import annotations

import sys

import numpy as np

from .exceptions import NonNumericFeatureError

# numpy dtype kinds that hold numbers ("b" bool, "i"/"u" ints, "f" floats;
# complex "c" is refused by scikit-learn's own check with its message).
_NUMERIC_KINDS = "biufc"

_ADVICE = {
    "date": (
        "convert it to a number that means something to the model first "
        "(e.g. days since a reference date, or its year/month/day as "
        "separate columns)"
    ),
    "category": (
        "encode it first (e.g. OneHotEncoder in its modality's "
        "ColumnTransformer branch)"
    ),
    "text": (
        "featurise it first (e.g. TfidfVectorizer in its modality's "
        "ColumnTransformer branch), or cast it to float if it holds numbers"
    ),
    "other": "convert it to numeric columns first",
}


def _raise(input_name, column, dtype, family):
    where = f"column {column!r} of {input_name}" if column is not None else input_name
    raise NonNumericFeatureError(
        f"{where} has dtype {dtype}, which is not numeric: skcrossmodal "
        f"estimators need numbers. To use it, {_ADVICE[family]}."
    )


def _numpy_family(dtype):
    kind = np.dtype(dtype).kind
    if kind in _NUMERIC_KINDS or kind == "O":
        return None
    if kind in "mM":
        return "date"
    if kind in "US":
        return "text"
    return "other"


def _pandas_family(dtype):
    import pandas as pd

    types = pd.api.types
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if isinstance(dtype, pd.SparseDtype):
        return _pandas_family(dtype.subtype)
    if types.is_bool_dtype(dtype) or (
        types.is_numeric_dtype(dtype) and not types.is_timedelta64_dtype(dtype)
    ):
        return None
    if types.is_object_dtype(dtype):
        return None
    if types.is_string_dtype(dtype):
        return "text"
    if (
        types.is_datetime64_any_dtype(dtype)
        or types.is_timedelta64_dtype(dtype)
        or isinstance(dtype, pd.PeriodDtype | pd.IntervalDtype)
    ):
        return "date"
    return "other"


def _polars_family(dtype):
    import polars as pl

    if dtype.is_numeric() or dtype == pl.Boolean or dtype == pl.Null:
        return None
    if dtype == pl.Object:
        return None
    if dtype.is_temporal():
        return "date"
    if isinstance(dtype, pl.Categorical | pl.Enum) or dtype in (
        pl.Categorical,
        pl.Enum,
    ):
        return "category"
    if dtype == pl.String:
        return "text"
    return "other"


def _check_object_column(values, input_name, column):
    """Convert one object column to float, naming it when a value is not a number."""
    try:
        np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        where = f"column {column!r} of {input_name}"
        raise NonNumericFeatureError(
            f"{where} holds a value that is not a number ({exc}). skcrossmodal "
            f"estimators need numbers: {_ADVICE['text']}."
        ) from exc


def _is_pandas_frame(X):
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(X, pd.DataFrame)


def _is_polars_frame(X):
    pl = sys.modules.get("polars")
    return pl is not None and isinstance(X, pl.DataFrame)


def check_numeric_features(X, input_name="X"):
    """Raise :class:`NonNumericFeatureError` unless every column of X is numeric.

    Looks at dtypes only (no copy of X), except for ``object`` columns of a
    DataFrame, which are converted one at a time to find a value that is not
    a number. Anything that is neither a DataFrame nor an array with a dtype
    (lists, sparse matrices, array API arrays) is left to ``validate_data``.
    """
    if _is_pandas_frame(X):
        for column, dtype in X.dtypes.items():
            family = _pandas_family(dtype)
            if family is not None:
                _raise(input_name, column, dtype, family)
            if getattr(dtype, "kind", None) == "O":
                _check_object_column(X[column].to_numpy(), input_name, column)
        return
    if _is_polars_frame(X):
        import polars as pl

        for column, dtype in X.schema.items():
            family = _polars_family(dtype)
            if family is not None:
                _raise(input_name, column, dtype, family)
            if dtype == pl.Object:
                _check_object_column(X[column].to_numpy(), input_name, column)
        return
    dtype = getattr(X, "dtype", None)
    if isinstance(dtype, np.dtype):  # numpy arrays, scipy sparse matrices
        family = _numpy_family(dtype)
        if family is not None:
            _raise(input_name, None, dtype, family)
