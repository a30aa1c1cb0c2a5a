"""Input checks of the transfer estimators: numpy-only input, the -1 label marker."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn import get_config
from sklearn.utils.validation import column_or_1d

from ._missing_rows import missing_values_mask


def check_numpy_input(estimator, **arrays):
    """Refuse array API arrays (torch, CuPy, ...) under array_api_dispatch.

    Without dispatch, scikit-learn converts them to numpy like any array;
    with it, they would reach numpy-only code and fail with a raw TypeError.
    """
    if not get_config()["array_api_dispatch"]:
        return
    for name, array in arrays.items():
        if (
            array is None
            or isinstance(array, np.ndarray)
            or sparse.issparse(array)
            or not hasattr(array, "__array_namespace__")
        ):
            continue
        raise TypeError(
            f"{type(estimator).__name__} is numpy-only, but {name} is a "
            f"{type(array).__module__}.{type(array).__name__} under "
            "sklearn.set_config(array_api_dispatch=True). Pass numpy arrays "
            "(for torch: X.cpu().numpy()), or turn dispatch off, in which case "
            "CPU arrays are converted to numpy. SharedProjection alone supports "
            "the array API."
        )


def classification_labels(estimator, y, n_samples):
    """Return (y, boolean mask of labelled rows) for the transfer classifier.

    ``-1`` (an int, also inside object arrays and lists of strings) marks an
    unlabelled row; missing values are errors.
    """
    if isinstance(y, (list, tuple)):
        # np.asarray(["cat", -1]) would turn the marker into the string
        # "-1"; an object array keeps it an int.
        y = np.array(y, dtype=object)
    y = column_or_1d(y, warn=True)
    if n_samples is not None and y.shape[0] != n_samples:
        raise ValueError(
            f"X and y have inconsistent numbers of samples: {n_samples} "
            f"and {y.shape[0]}."
        )
    if y.dtype.kind in "OUSf" and missing_values_mask(y).any():
        row = int(np.flatnonzero(missing_values_mask(y))[0])
        raise ValueError(
            f"y has a missing value ({y[row]!r}) in row {row}. "
            f"{type(estimator).__name__} marks an unlabelled row with the int -1 "
            "(for string labels, in an object array: "
            'np.array(["cat", -1], dtype=object)); replace None/NaN/pd.NA '
            "by -1."
        )
    if y.dtype.kind in "US" and (np.char.strip(y.astype(str)) == "-1").any():
        raise ValueError(
            'y is an array of strings holding "-1": the unlabelled marker '
            "is the int -1, which a string array cannot hold (np.asarray "
            'turned it into "-1"). Pass an object array, e.g. '
            'np.array(["cat", -1], dtype=object), or a list.'
        )
    if y.dtype.kind in "iuf":
        labelled = y != -1
    else:
        labelled = np.array([not _is_int_minus_one(v) for v in y], dtype=bool)
    y = _labels_without_marker(y, labelled)
    return y, np.asarray(labelled, dtype=bool)


def _is_int_minus_one(value):
    """The unlabelled marker in an object array: -1 as a number, not "-1"."""
    return (
        not isinstance(value, (str, bytes, bool, np.bool_))
        and isinstance(value, (int, float, np.integer, np.floating))
        and value == -1
    )


def _labels_without_marker(y, labelled):
    """y with a plain dtype once the -1 marker is set aside.

    An object array mixing string labels and the int -1 keeps its strings;
    an object array of numbers becomes numeric (scikit-learn reads an object
    array of ints as an "unknown" target type).
    """
    if y.dtype.kind != "O":
        return y
    values = y[labelled]
    kinds = {isinstance(v, str) for v in values}
    if kinds == {True, False}:
        raise ValueError(
            "y mixes string and non-string labels (besides the -1 marker of "
            "unlabelled rows), e.g. "
            f"{[v for v in values[:50] if isinstance(v, str)][:1]} and "
            f"{[v for v in values[:50] if not isinstance(v, str)][:1]}. Use one "
            "type for the labels."
        )
    if kinds == {False} and values.size:
        numeric = np.asarray(values.tolist())
        out = np.full(y.shape, -1, dtype=numeric.dtype)
        out[labelled] = numeric
        return out
    return y


def refuse_missing_labels(estimator, y):
    """A ValueError naming the row when class labels hold None, NaN or pd.NA.

    scikit-learn's own checks fail on pd.NA with "boolean value of NA is
    ambiguous", which names neither y nor the row. An estimator without an
    unlabelled marker needs a label for every row.
    """
    values = np.asarray(y, dtype=object)
    if values.ndim == 0:
        return
    rows = values.reshape(values.shape[0], -1)
    missing = np.column_stack(
        [missing_values_mask(rows[:, j]) for j in range(rows.shape[1])]
    ).any(axis=1)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise ValueError(
            f"y has a missing value ({values[row]!r}) in row {row}. "
            f"{type(estimator).__name__} needs a label for every row: drop "
            "the rows without one (or impute their labels)."
        )
