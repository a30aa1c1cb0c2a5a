"""Resolve the ``modalities`` parameter and find missing modalities.

Every skcrossmodal estimator takes ONE 2-D ``X`` whose columns hold the
modalities side by side. This module turns the user's ``modalities`` parameter
into integer column indices (``modalities_``) and tells, row by row, which
modalities are present. It is the single place where that logic lives.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import sparse
from sklearn.externals.array_api_compat import array_namespace
from sklearn.externals.array_api_compat import device as array_device
from sklearn.utils._indexing import _get_column_indices

# ColumnTransformer writes "<branch>__<feature>" when verbose_feature_names_out
# is True; the branch name is our modality name.
SEPARATOR = "__"

_HOW_TO_NAME = (
    "Either pass `modalities` as a dict {name: columns} (columns as "
    "ColumnTransformer accepts them: int indices, a slice, column names, a "
    "boolean mask or a callable such as make_column_selector), or give X "
    "feature names of the form '<modality>__<feature>', which a "
    "ColumnTransformer writes when its output is a DataFrame: build it with "
    "skcrossmodal.make_modality_transformer (works with any branch), or call "
    "`.set_output(transform='pandas')` on it."
)


def resolve_modalities(modalities, X, X_raw, feature_names_in, *, min_modalities=2):
    """Return ``{name: sorted int column indices}`` for X.

    Parameters
    ----------
    modalities : None or dict
        The user's parameter.
    X : ndarray or sparse matrix
        The validated input.
    X_raw : array-like, sparse matrix or DataFrame
        The input as the user passed it: callables are called on it, and
        column names are looked up in it when it is a DataFrame.
    feature_names_in : ndarray of str or None
        Feature names found by ``validate_data``.
    min_modalities : int, default=2
        How many modalities the estimator needs.

    Returns
    -------
    dict of str -> ndarray of int
        Insertion order is the modality order used everywhere else.
    """
    n_features = X.shape[1]
    if modalities is None:
        resolved = _modalities_from_feature_names(feature_names_in)
    elif isinstance(modalities, dict):
        resolved = {
            _check_name(name): _columns_to_indices(name, columns, X, X_raw, n_features)
            for name, columns in modalities.items()
        }
    else:
        raise ValueError(
            "`modalities` must be None or a dict {name: columns}, got "
            f"{type(modalities).__name__}. " + _HOW_TO_NAME
        )

    _check_partition(resolved, n_features, feature_names_in)
    if len(resolved) < min_modalities:
        raise ValueError(
            f"`modalities` must define at least {min_modalities} modalities, "
            f"found {len(resolved)}: {list(resolved)}. " + _HOW_TO_NAME
        )
    return resolved


def _check_name(name):
    if not isinstance(name, str) or not name:
        raise ValueError(f"`modalities` keys must be non-empty strings, got {name!r}.")
    return name


def _modalities_from_feature_names(feature_names_in):
    if feature_names_in is None:
        raise ValueError(
            "`modalities=None` reads the modalities from X's feature names, but "
            "X has none (it is not a DataFrame). " + _HOW_TO_NAME
        )
    resolved = {}
    unnamed = []
    for index, feature in enumerate(feature_names_in):
        name, sep, rest = str(feature).partition(SEPARATOR)
        if not sep or not name or not rest:
            unnamed.append(str(feature))
            continue
        resolved.setdefault(name, []).append(index)
    if unnamed:
        raise ValueError(
            "`modalities=None` needs every feature name to look like "
            f"'<modality>__<feature>', but {len(unnamed)} do not, e.g. "
            f"{unnamed[:5]}. " + _HOW_TO_NAME
        )
    return {name: np.asarray(cols, dtype=np.intp) for name, cols in resolved.items()}


def _columns_to_indices(name, columns, X, X_raw, n_features):
    if callable(columns):
        columns = columns(X_raw)
    if hasattr(X_raw, "columns"):
        X = X_raw
    if isinstance(columns, (numbers.Integral, str)):
        columns = [columns]
    try:
        indices = _get_column_indices(X, columns)
    except (ValueError, IndexError, TypeError, KeyError) as exc:
        raise ValueError(
            f"`modalities[{name!r}]` does not select columns of X: {exc}. "
            "Use int indices, a slice, a boolean mask of length "
            f"{n_features}, column names (X must then be a DataFrame) or a "
            "callable returning one of those."
        ) from exc
    indices = np.asarray(indices, dtype=np.intp).reshape(-1) % max(n_features, 1)
    if indices.size == 0:
        raise ValueError(
            f"`modalities[{name!r}]` selects no column of X, which has "
            f"{n_features} feature(s). Give every modality at least one column."
        )
    if np.unique(indices).size != indices.size:
        raise ValueError(
            f"`modalities[{name!r}]` selects the same column more than once; "
            "list each column once."
        )
    return np.sort(indices)


def _check_partition(resolved, n_features, feature_names_in):
    owner = np.full(n_features, -1)
    names = list(resolved)
    for position, (name, indices) in enumerate(resolved.items()):
        taken = owner[indices] >= 0
        if taken.any():
            other = names[owner[indices][taken][0]]
            raise ValueError(
                f"`modalities` overlap: modalities {other!r} and {name!r} both "
                f"select column {_describe(indices[taken][0], feature_names_in)}. "
                "Each column must belong to exactly one modality."
            )
        owner[indices] = position
    orphans = np.flatnonzero(owner < 0)
    if orphans.size:
        shown = ", ".join(_describe(i, feature_names_in) for i in orphans[:5])
        raise ValueError(
            f"`modalities` leaves {orphans.size} column(s) of X in no modality, "
            f"e.g. {shown}. Assign them to a modality, or drop them before this "
            "step (for example with a ColumnTransformer): nothing is dropped "
            "silently."
        )


def _describe(index, feature_names_in):
    if feature_names_in is not None:
        return repr(str(feature_names_in[index]))
    return str(int(index))


# The messages of the checks below, raised by every path that checks.


def raise_no_modality(row, count):
    raise ValueError(
        f"Row {row} of X has no modality present (all its columns are NaN; "
        f"{count} such row(s)). Every row needs at least one modality; drop "
        "those rows first."
    )


def raise_partial_nan(name, row, n_nan, width):
    raise ValueError(
        f"X has NaN in only part of modality {name!r} in row {row} "
        f"({n_nan} of {width} columns). "
        "A modality is missing in a row only when all its columns are NaN; "
        "impute the partial NaN (e.g. with SimpleImputer in that "
        "modality's ColumnTransformer branch) or set the whole block to NaN."
    )


def raise_infinite():
    raise ValueError(
        "X contains infinity. Only NaN has a meaning here (a whole "
        "modality block of NaN marks that modality missing in the row); "
        "replace infinite values before fitting."
    )


def _namespace(X):
    """X's array namespace for dense arrays (array_api_compat's numpy wrapper
    for numpy), None for scipy sparse matrices."""
    if sparse.issparse(X):
        return None
    return array_namespace(X)


def _first_true(xp, mask):
    """Position of the first True of a 1-D boolean array, and how many are True."""
    as_int = xp.astype(mask, xp.int64)
    return int(xp.argmax(as_int)), int(xp.sum(as_int))


def presence_mask(X, modalities):
    """Return the boolean (n_samples, n_modalities) mask of present modalities.

    A modality is missing in a row when all its columns are NaN there, and
    present when none is. Anything in between is an error: a partly-NaN block
    has no meaning we could guess. X is a numpy array, a scipy sparse matrix
    or an array of any array API namespace (the mask is then of that
    namespace and device; only a bool or an index goes to the host).
    """
    names = list(modalities)
    widths = [len(indices) for indices in modalities.values()]
    xp = _namespace(X)
    if xp is None:  # scipy sparse: only the stored values can be NaN
        is_nan = X.copy()
        is_nan.sum_duplicates()  # a NaN summed into a duplicate counts once
        is_nan.data = np.isnan(is_nan.data)
        is_nan.eliminate_zeros()
        nan_counts = np.column_stack(
            [
                np.asarray(take_columns(is_nan, indices).sum(axis=1)).reshape(-1)
                for indices in modalities.values()
            ]
        )
        present = nan_counts == 0
        partial = ~(present | (nan_counts == np.asarray(widths)))
        if partial.any():
            row, position = np.argwhere(partial)[0]
            raise_partial_nan(
                names[position], row, int(nan_counts[row, position]), widths[position]
            )
        return present
    is_nan = xp.isnan(X)
    present, missing = [], []
    for indices in modalities.values():
        block = take_columns(is_nan, indices)
        present.append(~xp.any(block, axis=1))
        missing.append(xp.all(block, axis=1))
    present = xp.stack(present, axis=1)
    partial = ~(present | xp.stack(missing, axis=1))
    if bool(xp.any(partial)):
        flat, _ = _first_true(xp, xp.reshape(partial, (-1,)))
        row, position = divmod(flat, len(names))
        indices = modalities[names[position]]
        row_nan = take_columns(is_nan[row : row + 1, :], indices)
        _, count = _first_true(xp, xp.reshape(row_nan, (-1,)))
        raise_partial_nan(names[position], row, count, widths[position])
    return present


def check_no_infinite(X):
    """Raise a ValueError naming the problem if X holds +/-inf."""
    xp = _namespace(X)
    if xp is None:
        if np.isinf(X.data).any():
            raise_infinite()
    elif bool(xp.any(xp.isinf(X))):
        raise_infinite()


def check_rows_present(present, *, first_row=0):
    """Raise when a row of the (n, M) presence mask carries no modality.

    ``first_row`` is the row of X where ``present`` starts, for the message.
    """
    xp = array_namespace(present)
    empty = ~xp.any(present, axis=1)
    if bool(xp.any(empty)):
        row, count = _first_true(xp, empty)
        raise_no_modality(first_row + row, count)


def check_finite_blocks(X, modalities, *, first_row=0):
    """Reject infinity, partial NaN and rows with no modality; return the
    (n, M) presence mask (in X's namespace). ``first_row`` is X's first row in
    the caller's data (X a chunk of it), for the messages."""
    check_no_infinite(X)
    present = presence_mask(X, modalities)
    check_rows_present(present, first_row=first_row)
    return present


def take_columns(X, indices):
    """Return X[:, indices] (numpy, sparse or any array API namespace), as a
    view when the indices are a contiguous run."""
    indices = np.asarray(indices)
    if indices.size and indices[-1] - indices[0] + 1 == indices.size:
        return X[:, int(indices[0]) : int(indices[-1]) + 1]
    if isinstance(X, np.ndarray) or sparse.issparse(X):
        return X[:, indices]
    xp = array_namespace(X)
    return xp.take(X, xp.asarray(indices, device=array_device(X)), axis=1)
