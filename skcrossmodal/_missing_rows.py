"""Which rows of raw input (text, pixels, any columns) carry a modality.

Raw input is what a user passes before any featurisation: a text column with
``None`` for the rows without text, pixel columns that are all NaN for the
rows without an image. :class:`~skcrossmodal.compose.ModalityBranch` and
:class:`~skcrossmodal.model_selection.TransferSplit` share this one
definition: a row lacks the modality when every value it has in those
columns is missing (``None``, NaN, ``pd.NA``, ``NaT``, or an empty string
when asked).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def _is_missing_scalar(value, empty_is_missing):
    if value is None:
        return True
    if isinstance(value, str):
        return empty_is_missing and not value.strip()
    # NaN, pd.NA and NaT are the missing values that are not equal to
    # themselves (pd.NA's comparison returns NA, whose truth raises a
    # TypeError); a cell holding an array (ValueError) is a present value.
    try:
        return bool(value != value)
    except TypeError:
        return True
    except ValueError:
        return False


def missing_values_mask(values, *, empty_is_missing=False):
    """Elementwise missing mask of a 1-D or 2-D numpy array."""
    if values.dtype.kind in "fc":
        return np.isnan(values)
    if values.dtype.kind == "O":
        check = np.frompyfunc(lambda v: _is_missing_scalar(v, empty_is_missing), 1, 1)
        return check(values).astype(bool)
    if values.dtype.kind == "U" and empty_is_missing:
        return np.char.str_len(np.char.strip(values)) == 0
    if values.dtype.kind == "M":  # datetime64
        return np.isnat(values)
    return np.zeros(values.shape, dtype=bool)


def _to_numpy(X):
    if hasattr(X, "to_numpy"):  # pandas or polars
        return X.to_numpy()
    if isinstance(X, (list, tuple)):
        return np.asarray(X, dtype=object)
    return np.asarray(X)


def missing_rows(X, *, empty_is_missing=False):
    """Boolean (n_samples,) mask: True where the row carries none of X's values.

    X is 1-D (one value per row, e.g. a text column) or 2-D (a row is
    missing when all its values are missing); a numpy array, a list, a pandas
    or polars Series/DataFrame or a scipy sparse matrix (whose implicit zeros
    are present values).
    """
    if sparse.issparse(X):
        is_nan = X.tocsr(copy=True)
        is_nan.data = np.isnan(is_nan.data).astype(np.int64)
        return np.asarray(is_nan.sum(axis=1)).reshape(-1) == X.shape[1]
    values = _to_numpy(X)
    if values.ndim == 1:
        return missing_values_mask(values, empty_is_missing=empty_is_missing)
    if values.ndim != 2:
        raise ValueError(
            f"Expected 1-D or 2-D input (one row per sample), got {values.ndim}-D."
        )
    if values.shape[1] == 0:
        return np.zeros(values.shape[0], dtype=bool)
    mask = missing_values_mask(values, empty_is_missing=empty_is_missing)
    return mask.all(axis=1)
