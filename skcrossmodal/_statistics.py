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
spread. The accumulator subtracts a *shift* (the mean of the first rows
where each modality is present: the first batch's first rows, or, for a
modality missing from them, its own first rows further down or in a later
batch, while its sums are still zero) before it forms products, so what it
sums is close to centred, whatever the input:

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
BLAS ``syrk`` on row chunks, complete finite rows assumed first: see
:mod:`._numpy_sums`, the mixin that sums numpy and sparse batches.
"""

from __future__ import annotations

import copy
import numbers

import numpy as np
from scipy import sparse

from ._batch_sums import raise_overflow, xp_batch, xp_diagonal
from ._covariance import BlockCovariance, block_covariance, check_pair_counts
from ._dask import is_dask_collection
from ._namespace import (
    accumulation_dtype,
    array_device,
    array_namespace,
    get_array_namespace,
    namespace_name,
    to_namespace,
    to_numpy,
)
from ._numpy_sums import NumpyBatchSums, chunk_rows

__all__ = [
    "BlockCovariance",
    "CovarianceAccumulator",
    "check_pair_counts",
    "chunk_rows",
]

# Bytes per array API chunk: larger than numpy's, a GPU wants big matrix
# products.
_XP_CHUNK_BYTES = 64 * 2**20


class CovarianceAccumulator(NumpyBatchSums):
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
        self._check_not_consumed()
        other._check_not_consumed()
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
            raise_overflow()
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
        # The batch's shift: ours, but for modalities we have no rows of
        # (whose sums are zero under any shift) where an array API batch
        # chose theirs (xp_batch); merge() has checked that they are equal.
        self.shift, self.large_offset = batch.shift, batch.large_offset
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
        self._check_not_consumed()
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
        previous = self.shift, self.large_offset
        # Infinity, NaN and overflow are found and raised as clear errors
        # below; numpy's own warnings on the way would only add noise.
        with np.errstate(over="ignore", invalid="ignore"):
            try:
                if xp is None:
                    self._shift_modalities_first_seen(X)
                    batch = self._numpy_batch(X, weights)
                else:
                    batch = xp_batch(self, X, weights, xp, _XP_CHUNK_BYTES)
                if batch is not None:
                    self._absorb(batch)
            except BaseException:
                self.shift, self.large_offset = previous  # atomic
                raise
        return self

    def _shift_modalities_first_seen(self, X):
        """Choose the shift of the modalities that no earlier batch had
        (numpy and sparse batches).

        The shift is chosen from the first batch; a modality missing from
        all of its rows got 0 there, and a level far from zero (1e8 + a
        spread of 1) would lose every digit of its spread in the sums. Its
        sums are exactly zero so far whatever its shift (its rows were all
        missing), so its shift can still be chosen from this batch
        (``unseen_columns``).
        """
        columns = self.unseen_columns()
        if columns is None:
            return
        shift, large = self._choose_shift(X)
        self.shift = np.where(columns, shift, self.shift)
        self.large_offset = np.where(columns, large, self.large_offset)

    def unseen_columns(self):
        """The columns (a mask in modality order) whose shift a batch may
        still choose, or None for none: those of the modalities with no row
        yet in an accumulator that has rows (their sums are exactly zero
        under any shift). An empty accumulator (first batch, or made by
        ``empty_like``) has none: its shift is chosen whole, or shared with
        the siblings it will be merged with."""
        if self.shift is None or self.n_rows == 0:
            return None
        unseen = np.diagonal(self.pair_rows) == 0
        return unseen[self.block_of_column] if unseen.any() else None

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

    # -- results ------------------------------------------------------------

    def finalize(self, *, consume=False):
        """Return the means and pairwise-complete covariance.

        Parameters
        ----------
        consume : bool, default=False
            False: non-destructive, more rows may be added afterwards. True
            (a one-shot ``fit``): for numpy sums without fourth moments, the
            covariance is built in the Gram's own buffer instead of a second
            ``D x D`` array (less memory, and no fresh pages to fault in), and
            the accumulator cannot be used afterwards.

        Returns
        -------
        BlockCovariance
            In the accumulator's namespace and on its device.
        """
        self._check_not_consumed()
        if self.gram is None:
            check_pair_counts(self.pair_rows, self.names)
        stats = block_covariance(self, consume=consume)
        self._consumed = (
            consume and isinstance(self.gram, np.ndarray) and not self.fourth_moments
        )
        return stats

    def _check_not_consumed(self):
        if getattr(self, "_consumed", False):
            raise RuntimeError(
                "This accumulator's Gram was turned into a covariance by "
                "finalize(consume=True); it holds no sums any more."
            )
