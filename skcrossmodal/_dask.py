"""Dask arrays in ``fit`` and ``partial_fit``: statistics per chunk, merged.

The closed form only needs sums over rows (``_statistics``), so a Dask array
is handled without ever gathering it: every row chunk fills its own
``CovarianceAccumulator`` where the chunk lives, and the accumulators are
merged in a tree. All of them use the same shift, fixed first from the first
row chunk (where it lives; only the shift comes back to the client), so the
merged sums are exactly those of one in-memory pass. ``dask.compute`` runs
the graph on the default scheduler, or on the ``distributed.Client`` in use:
a ``LocalCluster`` here, a real cluster elsewhere, unchanged.

Dask is optional: nothing here imports it unless the input is a Dask
collection, and a Dask collection cannot exist without Dask imported, so
``is_dask_collection`` only looks at ``sys.modules``.

A Dask DataFrame is not accepted (its partitions' column names would be the
only way to find the modalities; convert with ``.to_dask_array(lengths=True)``
and give ``modalities`` as indices).
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import sparse

from ._modalities import resolve_modalities
from .exceptions import NonNumericFeatureError

# How many accumulators one task of the tree reduction merges.
_FAN_IN = 8


def is_dask_collection(X):
    """True for a Dask array or DataFrame/Series (without importing Dask)."""
    array = sys.modules.get("dask.array")
    if array is not None and isinstance(X, array.Array):
        return True
    frame = sys.modules.get("dask.dataframe")
    return frame is not None and isinstance(X, (frame.DataFrame, frame.Series))


def check_dask_array(X, *, estimator_name, modalities=None, n_features_in=None):
    """Check a Dask array's shape and dtype lazily, without computing it.

    What ``validate_data`` checks for in-memory X: a 2-D numeric array of
    known width, of ``n_features_in`` columns on later calls. Sets nothing.

    Parameters
    ----------
    X : dask collection
    estimator_name : str
        For the messages.
    modalities : None or dict, default=None
        The user's ``modalities`` parameter, resolved against X's width when
        given (first call; a Dask array has no column names).
    n_features_in : int or None, default=None
        The width seen on earlier calls, checked when given.

    Returns
    -------
    n_features : int
    modalities_ : dict of str -> ndarray of int or None
        The resolved modalities when ``modalities`` was given.
    """
    import dask.array as da

    name = estimator_name
    if not isinstance(X, da.Array):
        raise TypeError(
            f"{name} takes Dask arrays, not a Dask {type(X).__name__}: "
            "convert it with `X.to_dask_array(lengths=True)` and give "
            "`modalities` as int indices, slices or boolean masks (a Dask "
            "array has no column names)."
        )
    if X.ndim != 2:
        raise ValueError(
            f"Expected a 2D Dask array, got {X.ndim}D with shape {X.shape}. "
            "Reshape it to (n_samples, n_features)."
        )
    n_features = X.shape[1]
    if not np.isfinite(n_features):
        raise ValueError(
            "The Dask array's number of columns is unknown; call "
            "`X.compute_chunk_sizes()` first."
        )
    n_features = int(n_features)
    if X.dtype.kind not in "biuf":
        raise NonNumericFeatureError(
            f"Dask array of dtype {X.dtype} is not numeric; {name} needs "
            "float (or int/bool) values."
        )
    if n_features_in is not None and n_features != n_features_in:
        raise ValueError(
            f"X has {n_features} features, but {name} is expecting "
            f"{n_features_in} features as input."
        )
    resolved = None
    if modalities is not None or n_features_in is None:
        # Column selections are resolved against an empty stand-in of the
        # same width: int indices, slices and masks need nothing else.
        stand_in = np.empty((0, n_features))
        resolved = resolve_modalities(modalities, stand_in, X, None)
    return n_features, resolved


def validate_dask_data(estimator, X, *, reset):
    """Compatibility wrapper: :func:`check_dask_array`, then set
    ``n_features_in_`` and ``modalities_`` on the estimator when ``reset``
    (as ``validate_data`` does). Estimators should call
    :func:`check_dask_array` and set their attributes themselves."""
    n_features, resolved = check_dask_array(
        X,
        estimator_name=type(estimator).__name__,
        modalities=estimator.modalities if reset else None,
        n_features_in=None if reset else estimator.n_features_in_,
    )
    if reset:
        if hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
        estimator.n_features_in_ = n_features
        estimator.modalities_ = resolved
    return X


def accumulate_dask(X, accumulator):
    """Merge the statistics of a Dask array's rows into ``accumulator``.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Checked with :func:`check_dask_array`.
    accumulator : CovarianceAccumulator
        Empty (``fit``, first ``partial_fit``) or holding earlier batches; its
        shift is fixed from X's first row chunk if it has none yet.

    Returns
    -------
    accumulator : CovarianceAccumulator
        The same object, updated.
    """
    import dask

    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})  # whole rows in every chunk
    row_chunks = X.to_delayed().ravel()
    found = _shift_of(row_chunks, accumulator)
    if found is None:  # no rows at all: finalize will say so
        return accumulator
    spec = dask.delayed(_Spec(accumulator, *found), pure=True)
    parts = [dask.delayed(_accumulate_chunk)(chunk, spec) for chunk in row_chunks]
    (total,) = dask.compute(_tree(parts, _merge))
    return accumulator.merge(total)


def accumulate_dask_rows(X, accumulator, targets):
    """One accumulator per set of rows of a Dask array, from one pass.

    Every chunk splits its rows among the targets it holds rows of (e.g. the
    cross-validation folds), fills one accumulator per target where it
    lives, and the per-chunk lists are merged target by target in a tree:
    X is never gathered, only the ``D x D`` sums come back.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Checked with :func:`check_dask_array`; its row chunk sizes must be
        known.
    accumulator : CovarianceAccumulator
        Gives the modalities and the shift (chosen from X's first non-empty
        row chunk when it has none); left unchanged.
    targets : list of ndarray of int
        Sorted row indices of X, one array per accumulator wanted; a row may
        be in several targets or in none.

    Returns
    -------
    list of CovarianceAccumulator
        New accumulators, one per target, all with one shift.
    """
    import dask

    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    sizes = X.chunks[0]
    if not all(np.isfinite(size) for size in sizes):
        raise ValueError(
            "The Dask array's row chunk sizes are unknown; call "
            "`X.compute_chunk_sizes()` first (the rows must be numbered to "
            "be split into folds)."
        )
    row_chunks = X.to_delayed().ravel()
    found = _shift_of(row_chunks, accumulator)
    spec = _Spec(accumulator, *(found or (accumulator.shift, None)))
    if found is None:
        return [spec.new() for _ in targets]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    delayed_spec = dask.delayed(spec, pure=True)
    parts = []
    for chunk, begin, end in zip(row_chunks, starts[:-1], starts[1:]):
        # Each chunk receives only the (chunk-local) indices of its own rows.
        local = [
            idx[np.searchsorted(idx, begin) : np.searchsorted(idx, end)] - begin
            for idx in targets
        ]
        parts.append(dask.delayed(_accumulate_chunk_rows)(chunk, delayed_spec, local))
    (totals,) = dask.compute(_tree(parts, _merge_lists))
    return totals


def _shift_of(row_chunks, accumulator):
    """(shift, large_offset): the accumulator's, or chosen from the first
    non-empty chunk; None when every chunk is empty."""
    import dask

    if accumulator.shift is not None:
        return accumulator.shift, accumulator.large_offset
    # Chosen where the first non-empty chunk lives; only the shift (one
    # number per feature) comes back. Kept only if the whole array's sums
    # succeed: a rejected X leaves the accumulator as it was.
    # A modality missing from every row of that chunk takes its shift from
    # the first later chunk that has it (a shift of 0 under a level of 1e8
    # would lose every digit of its spread); complete data reads one chunk.
    spec = dask.delayed(_Spec(accumulator), pure=True)
    shift = large = seen = None
    for chunk in row_chunks:
        (found,) = dask.compute(dask.delayed(_first_shift)(chunk, spec))
        if found is None:
            continue
        if shift is None:
            shift, large, seen = found
        else:
            new = found[2] & ~seen
            columns = new[accumulator.block_of_column]
            shift = np.where(columns, found[0], shift)
            large = np.where(columns, found[1], large)
            seen = seen | new
        if seen.all():
            break
    return None if shift is None else (shift, large)


def _tree(parts, merge):
    """Merge delayed parts ``_FAN_IN`` at a time until one is left."""
    import dask

    while len(parts) > 1:
        parts = [
            dask.delayed(merge)(*parts[begin : begin + _FAN_IN])
            for begin in range(0, len(parts), _FAN_IN)
        ]
    return parts[0]


class _Spec:
    """What a chunk needs to build its accumulator (no D x D arrays)."""

    def __init__(self, accumulator, shift=None, large_offset=None):
        self.modalities = accumulator.modalities
        self.n_features = accumulator.n_features
        self.fourth_moments = accumulator.fourth_moments
        self.shift = shift
        self.large_offset = large_offset

    def new(self):
        from ._statistics import CovarianceAccumulator

        accumulator = CovarianceAccumulator(
            self.modalities, self.n_features, fourth_moments=self.fourth_moments
        )
        accumulator.shift, accumulator.large_offset = self.shift, self.large_offset
        return accumulator


def _as_float(block):
    if sparse.issparse(block):
        block = block.tocsr()
        return block if block.dtype.kind == "f" else block.astype(np.float64)
    block = np.asarray(block)
    if block.dtype not in (np.float32, np.float64):
        block = block.astype(np.float64)
    return block


def _first_shift(block, spec):
    """(shift, large_offset, modalities with a row here) of a chunk, or None
    for an empty one."""
    block = _as_float(block)
    if block.shape[0] == 0:
        return None
    accumulator = spec.new()
    return (*accumulator._choose_shift(block), accumulator.modalities_given(block))


def _accumulate_chunk(block, spec):
    return spec.new().update(_as_float(block))


def _accumulate_chunk_rows(block, spec, local):
    block = _as_float(block)
    return [spec.new().update(block[idx]) if len(idx) else spec.new() for idx in local]


def _merge_lists(*lists):
    return [_merge(*column) for column in zip(*lists)]


def _merge(*accumulators):
    total = accumulators[0]
    for other in accumulators[1:]:
        total.merge(other)
    return total
