"""Sufficient statistics of the block covariance, accumulated batch by batch.

Every closed-form solver in skcrossmodal needs the same few numbers: the
per-modality means and the covariance of the stacked modalities. They are sums
over rows, so one accumulator serves ``fit`` (batches of one array),
``partial_fit`` (batches as they come), Dask (one accumulator per chunk,
merged) and the gradient solver's moment passes, for numpy, scipy sparse and
any array API namespace (torch, CuPy, array_api_strict: the sums then stay in
that namespace, on X's device, in :func:`~._namespace.accumulation_dtype`).
:mod:`._covariance` turns the sums into means and covariance.

What a row informs
------------------
A row contributes to the mean and the covariance block of each modality it
carries, and to the cross-covariance block of each *pair* of modalities it
carries (pairwise-complete statistics), with its ``sample_weight`` (1 by
default): every sum is weighted, and the "number of rows" behind a block is
the weight of the rows that carry both modalities, so an integer weight is
the row repeated and a zero weight the row dropped. Without missing
modalities and weights this is the ordinary (biased, ``1/n``) covariance.

One arithmetic for every path
-----------------------------
Sums of raw squares lose digits when a feature's mean is large against its
spread. The accumulator subtracts a *shift* (the first batch's mean) before
it forms products, so what it sums is close to centred, whatever the input:

* dense numpy: the shift is skipped (zero, the Gram computed on a view of
  X) when the first batch shows every mean within ten standard deviations of
  zero, where at most two digits could be lost, and X is float64, C-ordered
  and in modality order; otherwise each chunk is copied anyway and the shift
  is subtracted in the copy;
* scipy sparse: products are formed on the sparse rows as they are and the
  shift is applied to the batch's sums afterwards, exact algebra that loses
  no more than the dense rule allows *as long as no column's mean is large
  against its spread*; when one is (a column ``1e8 + signal``, flagged from
  the first batch), each row chunk of the sparse batch is made dense and
  takes the dense path (bounded memory: one chunk);
* array API: always shifted (the first chunk's mean), on the device.

Atomic updates
--------------
A batch is summed into a fresh set of sums that is added to the totals only
once the whole batch has passed (infinity, partial NaN, a row with no
modality, overflow of the sums): a rejected ``update`` leaves every array as
it was. A small batch of wide data (whose ``D x D`` temporary would outweigh
it) is instead validated whole first, then added in place.

Speed (numpy)
-------------
The Gram is formed with BLAS ``syrk`` (half the flops of a general product)
on row chunks, so the only memory besides X is one chunk and the ``D x D``
sums. Rows are first assumed complete and finite: each chunk's Gram is added,
then its column sums are taken by ``gemv`` while it is still in cache, and a
NaN or infinity shows in them. Only then, if one did, is the batch summed
again by the general (pairwise-complete) path, so complete finite data pays
no extra pass for the NaN check.
"""

from __future__ import annotations

import copy
import numbers
import warnings

import numpy as np
from scipy import sparse
from scipy.linalg.blas import dgemv, dsyrk

from ._batch_sums import (
    sparse_nan_moments,
    sum_sparse,
    sum_sparse_densified,
    xp_batch,
    xp_diagonal,
)
from ._covariance import BlockCovariance, block_covariance, check_pair_counts
from ._dask import is_dask_collection
from ._modalities import check_finite_blocks
from ._namespace import (
    accumulation_dtype,
    array_device,
    array_namespace,
    get_array_namespace,
    namespace_name,
    to_namespace,
    to_numpy,
)

__all__ = [
    "BlockCovariance",
    "CovarianceAccumulator",
    "check_pair_counts",
    "chunk_rows",
]

# Largest |mean| / std seen in the first batch for which the Gram is formed
# without a shift (dense) or on the sparse rows as they are (sparse).
_UNSHIFTED_MAX_RATIO = 10.0
# Rows per numpy chunk: about 16 MB of float64 keeps syrk efficient while the
# chunk stays small next to X.
_CHUNK_BYTES = 16 * 2**20
# Bytes per array API chunk: larger, a GPU wants big matrix products.
_XP_CHUNK_BYTES = 64 * 2**20


def chunk_rows(n_columns, itemsize=8, chunk_bytes=None):
    chunk_bytes = _CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    return int(max(256, chunk_bytes // (itemsize * max(n_columns, 1))))


def _raise_overflow():
    raise ValueError(
        "The sums over X overflowed: its values (or their squares) are too "
        "large for the accumulation dtype. Rescale X (e.g. with "
        "StandardScaler) first; the statistics are unchanged."
    )


class CovarianceAccumulator:
    """Shifted, weighted sums for pairwise-complete block covariances.

    Parameters
    ----------
    modalities : dict of str -> ndarray of int
        Resolved modalities (``modalities_``).
    n_features : int
        Width of X.
    fourth_moments : bool, default=False
        Also accumulate the within-modality fourth-moment sums that the
        Ledoit-Wolf shrinkage intensity needs.

    Attributes
    ----------
    shift : array of shape (n_columns,) or None
        Subtracted from every row before its products are summed.
    gram, sum_given, pair_counts : arrays or None
        The weighted sums (see :mod:`._covariance`), in the namespace and on
        the device of the first batch (numpy for numpy, sparse and Dask);
        None before it. The numpy Gram holds its upper triangle only.
    pair_rows : ndarray of int64 of shape (n_modalities, n_modalities)
        Rows of positive weight carrying both modalities.
    n_rows : int
        Rows of positive weight added.
    """

    # Set by subclasses that refuse missing modalities in array API input.
    _missing_message = None

    def __init__(self, modalities, n_features, *, fourth_moments=False):
        self.modalities = modalities
        self.names = list(modalities)
        self.columns = np.concatenate(
            [np.asarray(indices, dtype=np.intp) for indices in modalities.values()]
        )
        widths = [len(indices) for indices in modalities.values()]
        self.block_of_column = np.repeat(np.arange(len(widths)), widths)
        stops = np.cumsum(widths)
        self.blocks = [
            slice(int(stop - w), int(stop)) for w, stop in zip(widths, stops)
        ]
        self.n_features = int(n_features)
        self.fourth_moments = fourth_moments
        self._stacked = {
            name: np.arange(b.start, b.stop) for name, b in zip(self.names, self.blocks)
        }
        self._in_order = np.array_equal(self.columns, np.arange(self.n_features))
        self.shift = None
        # Columns whose first-batch mean is large against their spread:
        # sparse batches are made dense before they reach them.
        self.large_offset = None
        self.gram = self.sum_given = self.pair_counts = None
        self.square_gram = self.square_cross = None
        self.pair_rows = np.zeros((len(widths), len(widths)), dtype=np.int64)
        self.n_rows = 0

    # -- state --------------------------------------------------------------

    @property
    def n_samples_seen(self):
        return self.n_rows

    @property
    def namespace(self):
        """The array API namespace of the sums; None for numpy or before any."""
        if self.gram is None or isinstance(self.gram, np.ndarray):
            return None
        return array_namespace(self.gram)

    @property
    def device(self):
        """The device of the sums; None for numpy or before any."""
        return None if self.namespace is None else array_device(self.gram)

    def empty_like(self):
        """A new, empty accumulator with the same modalities and shift.

        Accumulators made this way from one that has seen rows can be filled
        separately (e.g. one per cross-validation fold) and merged.
        """
        if self.shift is None:
            raise ValueError("empty_like needs an accumulator that has seen rows.")
        if self.namespace is None:
            return self._fresh(self.shift, self.large_offset)
        return self._fresh(
            self.shift,
            self.large_offset,
            self.namespace,
            self.gram.dtype,
            self.device,
        )

    def _fresh(self, shift, large_offset, xp=None, dtype=None, dev=None):
        """An empty accumulator of the same modalities with this shift."""
        other = copy.copy(self)
        other.shift, other.large_offset = shift, large_offset
        other.pair_rows = np.zeros_like(self.pair_rows)
        other.n_rows = 0
        n_columns, n_blocks = len(self.columns), len(self.names)
        widths = [b.stop - b.start for b in self.blocks]
        if xp is None:
            # Fortran order so that syrk updates the upper triangle in place.
            other.gram = np.zeros((n_columns, n_columns), order="F")
            other.sum_given = np.zeros((n_columns, n_blocks))
            other.pair_counts = np.zeros((n_blocks, n_blocks))
            if self.fourth_moments:
                other.square_gram = [np.zeros((w, w), order="F") for w in widths]
                other.square_cross = [np.zeros((w, w)) for w in widths]
        else:

            def zeros(*shape):
                return xp.zeros(shape, dtype=dtype, device=dev)

            other.gram = zeros(n_columns, n_columns)
            other.sum_given = zeros(n_columns, n_blocks)
            other.pair_counts = zeros(n_blocks, n_blocks)
            if self.fourth_moments:
                other.square_gram = [zeros(w, w) for w in widths]
                other.square_cross = [zeros(w, w) for w in widths]
        return other

    def _diagonals(self):
        """The diagonals that bound every sum (Cauchy-Schwarz): the Gram's and
        the fourth-moment Grams'; finite diagonals mean finite sums."""
        if isinstance(self.gram, np.ndarray):
            parts = [np.diagonal(self.gram)]
            parts += [np.diagonal(g) for g in self.square_gram or []]
            return np.concatenate(parts)
        xp = array_namespace(self.gram)
        parts = [xp_diagonal(xp, self.gram)]
        parts += [xp_diagonal(xp, g) for g in self.square_gram or []]
        return xp.concat(parts)

    def merge(self, other):
        """Add another accumulator's sums (same modalities and shift).

        Atomic: on overflow (or a different shift or namespace) it raises and
        leaves this accumulator unchanged.
        """
        if other.gram is None:
            return self
        if self.gram is not None:
            if (other.namespace is None) != (self.namespace is None) or (
                self.namespace is not None and self.device != other.device
            ):
                raise ValueError(
                    "Accumulators in different namespaces or devices cannot be merged."
                )
            if not np.array_equal(to_numpy(self.shift), to_numpy(other.shift)):
                raise ValueError("Accumulators with different shifts cannot be merged.")
        self._absorb(other)
        return self

    def _absorb(self, batch):
        """Add a batch's sums, or raise on overflow having changed nothing."""
        diagonals = batch._diagonals()
        if self.gram is not None:
            diagonals = diagonals + self._diagonals()
        if isinstance(diagonals, np.ndarray):
            finite = np.isfinite(diagonals).all()
        else:
            xp = array_namespace(diagonals)
            finite = bool(xp.all(xp.isfinite(diagonals)))
        if not finite:
            _raise_overflow()
        if self.gram is None:
            self.shift, self.large_offset = batch.shift, batch.large_offset
            self.gram, self.sum_given = batch.gram, batch.sum_given
            self.pair_counts = batch.pair_counts
            self.square_gram, self.square_cross = batch.square_gram, batch.square_cross
        elif isinstance(self.gram, np.ndarray):
            self.gram += batch.gram
            self.sum_given += batch.sum_given
            self.pair_counts += batch.pair_counts
            for mine, theirs in zip(self.square_gram or [], batch.square_gram or []):
                mine += theirs
            for mine, theirs in zip(self.square_cross or [], batch.square_cross or []):
                mine += theirs
        else:  # array API arrays may be immutable (array_api_strict)
            self.gram = self.gram + batch.gram
            self.sum_given = self.sum_given + batch.sum_given
            self.pair_counts = self.pair_counts + batch.pair_counts
            if self.fourth_moments:
                self.square_gram = [
                    a + b for a, b in zip(self.square_gram, batch.square_gram)
                ]
                self.square_cross = [
                    a + b for a, b in zip(self.square_cross, batch.square_cross)
                ]
        self.pair_rows = self.pair_rows + batch.pair_rows
        self.n_rows += batch.n_rows

    def check_compatible(self, X, method="partial_fit"):
        """Raise unless X can join the sums: an array of their namespace and
        device (array API sums), or numpy / sparse / Dask (numpy sums)."""
        if self.gram is None:
            return
        xp = self.namespace
        try:
            # A Dask array's chunks are numpy or sparse: numpy sums.
            x_xp = None if is_dask_collection(X) else get_array_namespace(X)
        except Exception:  # noqa: BLE001 (anything unknown is not array API)
            x_xp = None
        if xp is None:
            if x_xp is not None:
                raise ValueError(
                    f"{method} got an array API batch ({type(X).__module__}."
                    f"{type(X).__name__}), but the earlier batches were numpy "
                    "arrays (or sparse / Dask), whose statistics are numpy "
                    f"arrays. Every batch of {method} must come from the same "
                    "array namespace and device. Convert the batch, or call "
                    "fit to start again."
                )
            return
        if x_xp is xp and array_device(X) == self.device:
            return
        raise ValueError(
            f"{method} got X of type {type(X).__module__}.{type(X).__name__}"
            + (f" on device {array_device(X)}" if x_xp is not None else "")
            + f", but the earlier batches were {namespace_name(xp)} "
            f"arrays on device {self.device}, where the statistics are "
            f"kept. Every batch of {method} must come from the same array "
            "namespace and device (and, for array API input, with "
            "sklearn's array_api_dispatch enabled). Move the batch there, "
            "or call fit to start again."
        )

    # -- update -------------------------------------------------------------

    def update(self, X, sample_weight=None):
        """Add the rows of X, each with its weight; atomic.

        Parameters
        ----------
        X : ndarray, sparse matrix or array API array of shape \
                (n_samples, n_features)
            Validated values; a modality block of NaN marks the modality
            missing in that row.
        sample_weight : array-like of shape (n_samples,), float or None
            Non-negative finite weights (None: all 1). A zero-weight row adds
            nothing (it is still checked).

        Returns
        -------
        self
        """
        self.check_compatible(X, method="update")
        xp = get_array_namespace(X)
        if sparse.issparse(X):
            X = X.tocsr()
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"X has shape {tuple(X.shape)}; the modalities need "
                f"{self.n_features} columns."
            )
        weights = self._check_weights(sample_weight, X, xp)
        if X.shape[0] == 0:
            return self
        # Infinity, NaN and overflow are found and raised as clear errors
        # below; numpy's own warnings on the way would only add noise.
        with np.errstate(over="ignore", invalid="ignore"):
            if xp is None:
                batch = self._numpy_batch(X, weights)
            else:
                batch = xp_batch(self, X, weights, xp, _XP_CHUNK_BYTES)
        if batch is not None:
            self._absorb(batch)
        return self

    def _check_weights(self, sample_weight, X, xp):
        """Weights as a numpy (numpy / sparse X) or xp vector, None if all 1."""
        if sample_weight is None:
            return None
        n = X.shape[0]
        if isinstance(sample_weight, numbers.Real):
            w = np.full(n, float(sample_weight))
        else:
            w = np.asarray(to_numpy(sample_weight), dtype=np.float64)
        if w.shape != (n,):
            raise ValueError(
                f"sample_weight has shape {w.shape}; expected ({n},), one "
                "non-negative weight per row of X."
            )
        bad = ~(np.isfinite(w) & (w >= 0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"sample_weight must be finite and non-negative; row {row} "
                f"has {w[row]!r} ({int(bad.sum())} such row(s))."
            )
        if np.all(w == 1.0):
            return None
        if xp is None:
            return w
        dev = array_device(X)
        return to_namespace(xp, w, self._accumulation_dtype(xp, dev), dev)

    def _accumulation_dtype(self, xp, dev):
        """The sums' dtype: theirs once started, else the device's best."""
        if self.gram is not None:
            return self.gram.dtype
        return accumulation_dtype(xp, dev)

    # -- numpy and scipy sparse -------------------------------------------

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
        and the columns whose mean is large against their spread."""
        n_columns = len(self.columns)
        head = X[: chunk_rows(n_columns)]
        head = head[:, self.columns] if not self._in_order else head
        if sparse.issparse(head):
            mean, std = sparse_nan_moments(head)
        else:
            # Plain moments first: nanmean/nanstd copy the head, and complete
            # data (the common case) has no NaN to skip.
            with np.errstate(invalid="ignore", over="ignore"):  # inf: later
                mean, std = head.mean(axis=0), head.std(axis=0)
        finite = np.isfinite(mean).all() and np.isfinite(std).all()
        if not (finite or sparse.issparse(head)):
            with warnings.catch_warnings():
                # All-NaN columns (a modality missing in every head row).
                warnings.simplefilter("ignore", RuntimeWarning)
                with np.errstate(invalid="ignore", over="ignore"):
                    mean = np.nanmean(head, axis=0)
                    std = np.nanstd(head, axis=0)
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
        step = chunk_rows(len(self.columns))
        for start in range(0, X.shape[0], step):
            chunk = self._shifted_float64(X[start : start + step])
            w = None if weights is None else weights[start : start + step]
            if not self._add_complete_rows(chunk, w):
                self._zero()
                break
        else:
            return
        for start in range(0, X.shape[0], step):
            w = None if weights is None else weights[start : start + step]
            self._add(*self._prepared(X[start : start + step], start), w)

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
            _raise_overflow()
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

    # -- results ------------------------------------------------------------

    def finalize(self):
        """Return the means and pairwise-complete covariance (non-destructive:
        more rows may be added afterwards).

        Returns
        -------
        BlockCovariance
            In the accumulator's namespace and on its device.
        """
        if self.gram is None:
            check_pair_counts(self.pair_rows, self.names)
        return block_covariance(self)


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
