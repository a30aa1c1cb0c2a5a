"""Per-fold sufficient statistics for SharedProjectionCV.

The statistics are sums over rows, so cross-validation needs one pass: the
rows of every fold are summed into that fold's accumulator (all with one
shift, so that they can be merged), and a fold's training statistics are
the merge of the other folds'. This module does that for in-memory X, for a
Dask array (chunk by chunk, ``_dask.accumulate_dask_rows``) and for a stream
of ``partial_fit`` batches, where the folds are assigned by a rule that does
not need the total number of rows (:class:`FoldStream`).
"""

from __future__ import annotations

import copy
from numbers import Integral

import numpy as np

from ._batch_sums import raise_overflow
from ._dask import accumulate_dask_rows, is_dask_collection


def split_targets(splits, n_rows):
    """The row sets to accumulate for ``splits``, and whether they partition.

    When the test folds partition the rows (``KFold``, ``GroupKFold``, ...),
    the targets are the test folds; otherwise they are ``test_0, train_0,
    test_1, train_1, ...`` (every split summed on its own).
    """
    seen = np.zeros(n_rows, dtype=int)
    for _, test in splits:
        seen[test] += 1
    partition = bool(np.all(seen == 1)) and all(
        len(train) + len(test) == n_rows for train, test in splits
    )
    targets = []
    for train, test in splits:
        targets.append(np.sort(np.asarray(test, dtype=np.int64)))
        if not partition:
            targets.append(np.sort(np.asarray(train, dtype=np.int64)))
    return targets, partition


def folds_from_targets(accumulators, partition):
    """[(train accumulator or None, held-out accumulator)] per split (None:
    the training statistics are the merge of the other folds')."""
    if partition:
        return [(None, held_out) for held_out in accumulators]
    return [
        (accumulators[i + 1], accumulators[i]) for i in range(0, len(accumulators), 2)
    ]


def accumulate_targets(X, targets, base):
    """One accumulator per target (row indices of X), from ``base``.

    ``base`` gives the modalities and the shift; without one, the shift is
    chosen from the first non-empty target's rows, so that every
    accumulator has the same and they can be merged. A Dask X is summed
    chunk by chunk where it lives. ``base`` is left unchanged.
    """
    if is_dask_collection(X):
        return accumulate_dask_rows(X, base, targets)
    if base.shift is None:
        first = next((idx for idx in targets if len(idx)), None)
        if first is None:  # no rows: nothing to sum (the solve will say so)
            return [copy.copy(base) for _ in targets]
        base = copy.copy(base)  # still empty: only its shift is set here
        base.shift, base.large_offset = base._choose_shift(X[first])
    return [base.empty_like().update(X[idx]) for idx in targets]


def merge_all_or_none(sums, batch):
    """Merge ``batch[f]`` into ``sums[f]`` for every f, or raise having
    merged none (an overflow in one fold leaves every fold unchanged)."""
    for mine, theirs in zip(sums, batch):
        if mine.gram is None or theirs.gram is None:
            continue
        # The bound merge itself checks (Cauchy-Schwarz: finite diagonals,
        # finite sums), checked for every fold before any is changed.
        with np.errstate(over="ignore", invalid="ignore"):
            diagonals = mine._diagonals() + theirs._diagonals()
        if not np.isfinite(diagonals).all():
            raise_overflow()
    for mine, theirs in zip(sums, batch):
        mine.merge(theirs)


class FoldStream:
    """Where the rows of a ``partial_fit`` stream go: fold per row, kept
    between batches.

    A stream's total number of rows is unknown, so ``KFold``'s contiguous
    blocks cannot be formed. The rule, with ``n_splits`` folds:

    - without ``groups``, row ``i`` of the stream (counted from 0 across
      every batch since the first ``partial_fit``) goes to fold
      ``i % n_splits``;
    - with ``groups``, the ``j``-th distinct group label of the stream (in
      order of first appearance, counted across batches) goes to fold
      ``j % n_splits``, and every row of a group goes to its fold.

    Both are deterministic: the same batches give the same folds, and
    ``fit`` with ``cv=PredefinedSplit(test_fold)`` (``test_fold`` the folds
    this rule gives all rows) is the same cross-validation.

    Attributes are replaced, never mutated (``restore_on_error``): ``assign``
    returns the next state instead of updating this one.
    """

    def __init__(self, n_splits, sums, *, n_rows=0, group_folds=None):
        self.n_splits = n_splits
        self.sums = sums
        self.n_rows = n_rows
        self.group_folds = group_folds

    def assign(self, n_batch, groups, first):
        """(fold of each row of the batch, n_rows after, group_folds after)."""
        if groups is None:
            if self.group_folds is not None and not first:
                raise ValueError(
                    "groups is None, but the earlier batches of this "
                    "partial_fit stream came with groups: give groups for "
                    "every batch (or call fit to start again)."
                )
            folds = (self.n_rows + np.arange(n_batch)) % self.n_splits
            return folds, self.n_rows + n_batch, None
        if self.group_folds is None and not first:
            raise ValueError(
                "groups was given, but the earlier batches of this "
                "partial_fit stream came without: give groups for every "
                "batch or for none (or call fit to start again)."
            )
        labels = np.asarray(groups)
        if labels.ndim != 1 or len(labels) != n_batch:
            raise ValueError(
                f"groups has shape {labels.shape}; expected ({n_batch},), one "
                "group label per row of X."
            )
        known = dict(self.group_folds or {})
        unique, first_seen, inverse = np.unique(
            labels, return_index=True, return_inverse=True
        )
        fold_of_unique = np.empty(len(unique), dtype=np.int64)
        for u in np.argsort(first_seen, kind="stable"):
            key = unique[u].item() if isinstance(unique[u], np.generic) else unique[u]
            if key not in known:
                known[key] = len(known) % self.n_splits
            fold_of_unique[u] = known[key]
        return fold_of_unique[inverse.ravel()], self.n_rows + n_batch, known

    def add(self, X, groups, base):
        """The stream after adding batch X: a new FoldStream sharing the
        merged accumulators, or an error with the sums unchanged."""
        first = self.sums is None
        folds, n_rows, group_folds = self.assign(X.shape[0], groups, first)
        targets = [np.flatnonzero(folds == f) for f in range(self.n_splits)]
        batch = accumulate_targets(X, targets, base)
        if first:
            sums = batch
        else:
            merge_all_or_none(self.sums, batch)
            sums = self.sums
        return FoldStream(self.n_splits, sums, n_rows=n_rows, group_folds=group_folds)


def stream_splits(cv):
    """The number of folds of a stream's ``cv`` (an int), or a clear error."""
    if cv is None:
        return 5
    if isinstance(cv, Integral) and not isinstance(cv, bool):
        if cv < 2:
            raise ValueError(f"cv must be at least 2 for partial_fit, got {cv}.")
        return int(cv)
    raise ValueError(
        f"partial_fit needs cv as an int (the number of folds), got cv={cv!r}: "
        "splitters such as KFold or GroupKFold form their folds from the total "
        "number of rows, which a stream does not know. With cv an int, row i "
        "of the stream goes to fold i % cv; pass groups to partial_fit to keep "
        "groups together (the j-th distinct group goes to fold j % cv). Or "
        "call fit on all the rows, which takes any splitter."
    )
