"""How a numpy or scipy sparse batch becomes sums: the BLAS fast path.

A mixin of :class:`~._statistics.CovarianceAccumulator` (which owns the
state, the merging and the array API path; see ``_statistics`` for the
arithmetic and why the shift matters). Sparse batches are handed to
:mod:`._batch_sums`.

Speed. The Gram is formed with BLAS ``syrk`` (half the flops of a general
product): in one call over the whole batch when X can be read as it is
(float64, C-ordered, no shift), else on copied row chunks of about 16 MB,
so the only memory besides X is one chunk and the ``D x D`` sums. Rows are
first assumed complete and finite: the Gram is added, then the column sums
are taken by ``gemv`` (of each chunk while it is still in cache), and a NaN
or infinity shows in them. Only then, if one did, is the batch summed again
by the general (pairwise-complete) path, so complete finite data pays no
extra pass for the NaN check.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import sparse
from scipy.linalg.blas import dgemv, dsyrk

from ._batch_sums import (
    check_spread_representable,
    raise_overflow,
    sparse_nan_moments,
    sum_sparse,
    sum_sparse_densified,
)
from ._modalities import check_finite_blocks

# Largest |mean| / std seen in the first batch for which the Gram is formed
# without a shift (dense) or on the sparse rows as they are (sparse).
_UNSHIFTED_MAX_RATIO = 10.0
# Rows per numpy chunk: about 16 MB of float64 keeps syrk efficient while the
# chunk stays small next to X.
_CHUNK_BYTES = 16 * 2**20
# Rows whose moments choose the shift (and are checked for spreads whose
# squares underflow): the shift need only be near the mean (within a few
# standard deviations keeps every digit), which these rows give as well as
# a whole chunk would; their moments took 4 ms, 15 % of a 20 000 x 200 fit,
# on a 16 MB chunk.
_HEAD_ROWS = 2048


def chunk_rows(n_columns, itemsize=8, chunk_bytes=None):
    chunk_bytes = _CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    return int(max(256, chunk_bytes // (itemsize * max(n_columns, 1))))


class NumpyBatchSums:
    """The numpy / scipy sparse ``update`` of the accumulator (a mixin)."""

    def _numpy_batch(self, X, weights):
        if self.shift is None:
            shift, large = self._choose_shift(X)
        else:
            shift, large = self.shift, self.large_offset
        n_columns = len(self.columns)
        if not sparse.issparse(X):
            if self.gram is not None and self.gram.nbytes > 8 * X.shape[0] * n_columns:
                # The D x D temporary would outweigh the batch.
                self._add_in_place(X, weights)
                return None
            batch = self._fresh(shift, large)
            batch._sum_dense(X, weights)
            return batch
        batch = self._fresh(shift, large)
        if large.any() or (self.fourth_moments and np.any(shift)):
            sum_sparse_densified(batch, X, weights, chunk_rows(n_columns))
        else:
            sum_sparse(batch, X, weights, chunk_rows(n_columns))
        return batch

    def _choose_shift(self, X):
        """The shift (first rows' mean, or zero where no digit is at stake)
        and the columns whose mean is large against their spread.

        The first ``_HEAD_ROWS`` rows give each column's moments; a modality
        missing from all of them (its columns NaN there) gets its moments
        from its own first rows further down (``_first_present_rows``):
        with a shift of 0, a level far from zero (1e8 + N(0, 1)) would lose
        every digit of its spread in the sums, silently.
        """
        n_columns = len(self.columns)
        head = X[:_HEAD_ROWS]
        head = head[:, self.columns] if not self._in_order else head
        mean, std = _moments(head)
        # Sums are float64 whatever X's float (chunks are converted).
        check_spread_representable(np, head, self.columns, np.float64, std=std)
        unseen = ~np.isfinite(mean)
        if unseen.any() and X.shape[0] > _HEAD_ROWS:
            later = self._first_present_rows(X, unseen)
            if later is not None:
                mean[unseen], std[unseen] = _moments(later)
                check_spread_representable(
                    np, later, self.columns[unseen], np.float64, std=std[unseen]
                )
        mean = np.where(np.isfinite(mean), mean, 0.0).astype(np.float64)
        large = np.abs(mean) > _UNSHIFTED_MAX_RATIO * np.nan_to_num(std)
        if sparse.issparse(X):
            # Unshifted sparse sums are exact; shift only where needed.
            return (mean if large.any() else np.zeros(n_columns)), large
        if not large.any() and self._zero_copy_possible(X):
            return np.zeros(n_columns), large
        # Chunks are copied anyway (float32, out-of-order columns, another
        # memory layout, or a shift needed): subtracting the shift is free.
        return mean, large

    def modalities_given(self, X):
        """Which modalities have a value in some row of X (a boolean per
        modality; a missing modality's block is all NaN)."""
        first = X[:, [int(self.columns[b.start]) for b in self.blocks]]
        first = first.toarray() if sparse.issparse(first) else np.asarray(first)
        return ~np.isnan(first).all(axis=0)

    def _first_present_rows(self, X, unseen):
        """The ``unseen`` columns (a mask in modality order) of the rows after
        the head in which they have values: up to ``_HEAD_ROWS`` values of
        each, as a dense float block, or None when no later row has any.

        Only these columns are read, in bounded chunks; a modality missing
        everywhere costs one scan of its columns (the fit then fails on its
        paired-row count anyway).
        """
        columns = self.columns[unseen]
        step = chunk_rows(len(columns))
        parts = []
        counts = np.zeros(len(columns), dtype=np.int64)
        for start in range(_HEAD_ROWS, X.shape[0], step):
            block = X[start : start + step][:, columns]
            block = block.toarray() if sparse.issparse(block) else np.asarray(block)
            given = ~np.isnan(block)
            rows = given.any(axis=1)
            if rows.any():
                parts.append(block[rows])
                counts += given[rows].sum(axis=0)
                if counts.min() >= _HEAD_ROWS:
                    break
        return np.vstack(parts) if parts else None

    def _zero_copy_possible(self, X):
        return X.dtype == np.float64 and X.flags.c_contiguous and self._in_order

    def _shifted_float64(self, chunk):
        """The chunk's columns in modality order, minus the shift, C-ordered
        float64: a view of X when nothing needs changing, else a copy (X
        itself is never modified)."""
        if not self._in_order:
            chunk = chunk[:, self.columns]
        if np.any(self.shift):
            return np.subtract(chunk, self.shift, dtype=np.float64, order="C")
        return np.asarray(chunk, dtype=np.float64, order="C")

    def _zero(self):
        for array in [self.gram, self.sum_given, self.pair_counts]:
            array.fill(0.0)
        for array in (self.square_gram or []) + (self.square_cross or []):
            array.fill(0.0)
        self.pair_rows.fill(0)
        self.n_rows = 0

    def _sum_dense(self, X, weights):
        """Optimistic pass (complete rows), else the general one; into this
        fresh accumulator, which raises on a bad batch."""
        step = self._optimistic_step(X, weights)
        for start in range(0, X.shape[0], step):
            chunk = self._shifted_float64(X[start : start + step])
            w = None if weights is None else weights[start : start + step]
            if not self._add_complete_rows(chunk, w):
                self._zero()
                break
        else:
            return
        # The general path copies every chunk: bounded chunks again.
        step = chunk_rows(len(self.columns))
        for start in range(0, X.shape[0], step):
            w = None if weights is None else weights[start : start + step]
            self._add(*self._prepared(X[start : start + step], start), w)

    def _optimistic_step(self, X, weights):
        """Rows per chunk of the optimistic pass.

        The whole batch at once when its chunks would be views of X anyway
        (float64, C-ordered, columns in order, no shift) and nothing else
        is built per chunk (weights, fourth moments): one ``syrk`` over all
        rows keeps both threads of a 2-core machine busy without a
        synchronisation per chunk, and measured at the floor's speed
        (``X.T @ X``) where 16 MB chunks cost 3-25 % more (benchmarks page).
        Otherwise chunks of about 16 MB bound the copies.
        """
        whole = (
            weights is None
            and not self.fourth_moments
            and not np.any(self.shift)
            and self._zero_copy_possible(X)
        )
        return max(X.shape[0], 1) if whole else chunk_rows(len(self.columns))

    def _add_in_place(self, X, weights):
        """A small batch: validate it whole (and that its sums cannot
        overflow the totals), then add it to the totals in place."""
        step = chunk_rows(len(self.columns))
        parts = []
        second = np.diagonal(self.gram).copy()
        fourth = [np.diagonal(g).copy() for g in self.square_gram or []]
        for start in range(0, X.shape[0], step):
            w = None if weights is None else weights[start : start + step]
            Z = self._shifted_float64(X[start : start + step])
            present = None
            if _finite_column_sums(Z, w) is None:
                Z, present = self._prepared(X[start : start + step], start)
            parts.append((Z, present, w))
            squares = Z * Z
            weighted = squares if w is None else squares * w[:, None]
            second += weighted.sum(axis=0)
            for position, block in enumerate(self.blocks[: len(fourth)]):
                fourth[position] += (weighted[:, block] * squares[:, block]).sum(0)
        if not all(np.isfinite(d).all() for d in [second, *fourth]):
            raise_overflow()
        for Z, present, w in parts:
            if present is None:
                self._add_complete_rows(Z, w)
            else:
                self._add(Z, present, w)

    def _add_complete_rows(self, chunk, w):
        """Add a chunk assumed complete and finite; False if it was not.

        The Gram goes first and the column sums follow while the chunk is
        still in cache (about 8% of a fit at 200 000 x 800); a NaN or
        infinity anywhere makes them non-finite, and this accumulator is
        then garbage (the caller zeroes it). Both come from scipy's BLAS
        (``syrk``, ``gemv``), so no second thread pool competes for the
        cores between calls.
        """
        _syrk_update(self.gram, chunk if w is None else chunk * np.sqrt(w)[:, None])
        column_sums = _finite_column_sums(chunk, w)
        if column_sums is None:
            return False
        self.sum_given += column_sums[:, None]
        self.pair_counts += chunk.shape[0] if w is None else w.sum()
        n_rows = chunk.shape[0] if w is None else int(np.count_nonzero(w))
        self.pair_rows += n_rows
        self.n_rows += n_rows
        if self.fourth_moments:
            self._add_fourth_moments(chunk, w)
        return True

    def _prepared(self, chunk, first_row):
        """Shifted float64 chunk in modality order with missing blocks zeroed,
        and its (n, M) presence mask; raises on a bad row."""
        Z = np.asarray(chunk[:, self.columns], dtype=np.float64, order="C")
        Z -= self.shift
        present = check_finite_blocks(Z, self._stacked, first_row=first_row)
        if not present.all():
            np.nan_to_num(Z, copy=False, nan=0.0)
        return Z, present

    def _add(self, Z, present, w):
        """Add prepared rows (dense or sparse, missing blocks zeroed)."""
        present_f = present.astype(np.float64)
        weighted = present_f if w is None else present_f * w[:, None]
        self.sum_given += np.asarray(Z.T @ weighted)
        self.pair_counts += present_f.T @ weighted
        counted = present if w is None else present & (w > 0)[:, None]
        counted = counted.astype(np.int64)
        self.pair_rows += counted.T @ counted
        self.n_rows += Z.shape[0] if w is None else int(np.count_nonzero(w))
        if sparse.issparse(Z):
            Zw = Z if w is None else sparse.diags(w) @ Z
            self.gram += (Z.T @ Zw).toarray()
        else:
            _syrk_update(self.gram, Z if w is None else Z * np.sqrt(w)[:, None])
        if self.fourth_moments:
            self._add_fourth_moments(Z, w)

    def _add_fourth_moments(self, Z, w):
        for block, square_gram, square_cross in zip(
            self.blocks, self.square_gram, self.square_cross
        ):
            Z_block = Z[:, block]
            if sparse.issparse(Z_block):
                squares = Z_block.multiply(Z_block).tocsr()
                weighted = squares if w is None else sparse.diags(w) @ squares
                square_gram += (squares.T @ weighted).toarray()
                square_cross += np.asarray((weighted.T @ Z_block).todense())
            else:
                squares = Z_block * Z_block
                weighted = squares if w is None else squares * w[:, None]
                root = squares if w is None else squares * np.sqrt(w)[:, None]
                _syrk_update(square_gram, root)
                square_cross += weighted.T @ Z_block


def _moments(head):
    """Column means and standard deviations of ``head`` (dense or sparse)
    over its non-NaN entries; NaN for a column with none."""
    if sparse.issparse(head):
        return sparse_nan_moments(head)
    # Plain moments first: nanmean/nanstd copy the head, and complete data
    # (the common case) has no NaN to skip.
    with np.errstate(invalid="ignore", over="ignore"):  # inf: found later
        mean, std = head.mean(axis=0), head.std(axis=0)
    if np.isfinite(mean).all() and np.isfinite(std).all():
        return mean, std
    with warnings.catch_warnings():
        # All-NaN columns (a modality missing in every row of the head).
        warnings.simplefilter("ignore", RuntimeWarning)
        with np.errstate(invalid="ignore", over="ignore"):
            return np.nanmean(head, axis=0), np.nanstd(head, axis=0)


def _finite_column_sums(chunk, w=None):
    """Weighted column sums of a C-ordered float64 chunk by BLAS ``gemv``
    (scipy's, as ``syrk``), or None when a NaN or infinity makes one
    non-finite."""
    w = np.ones(chunk.shape[0]) if w is None else w
    column_sums = dgemv(1.0, chunk.T, w)
    return column_sums if np.isfinite(column_sums).all() else None


def _syrk_update(gram, Z):
    """gram (upper triangle) += Z.T @ Z in place, with no copy of Z."""
    # A C-ordered (n, d) array is the Fortran-ordered (d, n) array Z.T, so
    # syrk with trans=0 computes Z.T @ Z straight from Z's buffer.
    dsyrk(1.0, Z.T, beta=1.0, c=gram, trans=0, lower=0, overwrite_c=1)
