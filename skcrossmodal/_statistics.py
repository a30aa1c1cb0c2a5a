"""Sufficient statistics of the block covariance, accumulated batch by batch.

Every closed-form solver in skcrossmodal needs the same few numbers: the
per-modality means and the covariance of the stacked modalities. They are sums
over rows, so one accumulator serves ``fit`` (batches of one array),
``partial_fit`` (batches as they come) and Dask (one accumulator per chunk,
merged).

What a row informs
------------------
A row contributes to the mean and the covariance block of each modality it
carries, and to the cross-covariance block of each *pair* of modalities it
carries (pairwise-complete statistics). Block ``(m, l)`` is centred with the
means of ``m`` and ``l`` over all rows that carry them, and divided by the
number of rows that carry both. Without missing modalities this is the
ordinary (biased, ``1/n``) sample covariance.

Accuracy and speed
------------------
Sums of raw squares lose digits when a feature's mean is large against its
spread. The accumulator therefore subtracts a *shift* (the first batch's mean)
before it forms products, so what it sums is close to centred. Doing that
needs a copy of each batch, which costs about a third of the Gram itself; the
copy is skipped (shift zero, the Gram computed on a view of X) when the first
batch shows every mean within ten standard deviations of zero, where at most
two digits of the ~16 could be lost, and X is float64, C-ordered and its
columns already in modality order. Otherwise each chunk is copied anyway
(to float64, in modality order), and the shift is subtracted in that copy.

The Gram is formed with BLAS ``syrk`` (half the flops of a general product)
on row chunks, accumulated in place, so the only memory besides X is one
chunk and the ``D x D`` result. For dense X the rows are first assumed
complete and finite: each chunk's Gram is added, then its column sums are
taken while it is still in cache, and a NaN or infinity shows in them. Only
then, if one did, is the batch summed again by the general path (the
optimistic sums are discarded), so complete finite data pays no extra pass
for the NaN check.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import sparse
from scipy.linalg.blas import dgemv, dsyrk

from ._modalities import check_finite_blocks

# Largest |mean| / std seen in the first batch for which the Gram is formed
# without a shift.
_UNSHIFTED_MAX_RATIO = 10.0
# Rows per chunk: about 16 MB of float64 per chunk keeps syrk efficient
# while the chunk stays small next to X.
_CHUNK_BYTES = 16 * 2**20
# Bytes per band of rows of the D x D covariance in finalize (a few
# temporaries of this size live at once).
_BAND_BYTES = 4 * 2**20


def chunk_rows(n_columns):
    return int(max(256, _CHUNK_BYTES // (8 * max(n_columns, 1))))


class CovarianceAccumulator:
    """Accumulate shifted sums for pairwise-complete block covariances.

    Parameters
    ----------
    modalities : dict of str -> ndarray of int
        Resolved modalities (``modalities_``).
    n_features : int
        Width of X.
    fourth_moments : bool, default=False
        Also accumulate the within-modality fourth-moment sums that the
        Ledoit-Wolf shrinkage intensity needs.
    """

    def __init__(self, modalities, n_features, *, fourth_moments=False):
        self.modalities = modalities
        self.names = list(modalities)
        self.columns = np.concatenate(list(modalities.values()))
        widths = [len(indices) for indices in modalities.values()]
        self.block_of_column = np.repeat(np.arange(len(widths)), widths)
        stops = np.cumsum(widths)
        self.blocks = [slice(stop - w, stop) for w, stop in zip(widths, stops)]
        self.n_features = n_features
        self.fourth_moments = fourth_moments
        self._stacked = {
            name: np.arange(b.start, b.stop) for name, b in zip(self.names, self.blocks)
        }
        self._in_order = np.array_equal(self.columns, np.arange(n_features))
        self.shift = None
        n_columns, n_blocks = len(self.columns), len(widths)
        # Upper triangle only (syrk); Fortran order so syrk updates in place.
        self.gram = np.zeros((n_columns, n_columns), order="F")
        # sum_given[i, l]: sum of shifted column i over the rows carrying l.
        self.sum_given = np.zeros((n_columns, n_blocks))
        # pair_counts[m, l]: rows carrying both m and l.
        self.pair_counts = np.zeros((n_blocks, n_blocks))
        # Rows added (each carries at least one modality).
        self.n_rows = 0
        if fourth_moments:
            self.square_gram = [np.zeros((w, w), order="F") for w in widths]
            self.square_cross = [np.zeros((w, w)) for w in widths]

    @property
    def n_samples_seen(self):
        return self.n_rows

    def update(self, X):
        """Add the rows of a validated X (ndarray or CSR/CSC matrix)."""
        if sparse.issparse(X):
            X = X.tocsr()
        if self.shift is None:
            self.shift = self._choose_shift(X)
        step = chunk_rows(len(self.columns))
        first_general = 0
        if not sparse.issparse(X):
            # Optimistic: complete, finite rows. Sums go to a fresh
            # accumulator, merged only if every chunk was finite, unless its
            # D x D arrays would outweigh the batch (a small partial_fit
            # batch of wide data): then each chunk is checked before its Gram
            # is added, in place, at the cost of a colder cache.
            in_place = self.gram.nbytes > X.nbytes
            target = self if in_place else self.empty_copy()
            for first_general in range(0, X.shape[0], step):
                chunk = self._shifted_float64(X[first_general : first_general + step])
                if not target._add_complete_rows(chunk, check_first=in_place):
                    break
            else:
                return self if in_place else self.merge(target)
            first_general = first_general if in_place else 0
        for start in range(first_general, X.shape[0], step):
            chunk = X[start : start + step]
            self._add(*self._shifted_with_missing_zeroed(chunk, start))
        return self

    def empty_copy(self):
        """A new, empty accumulator with the same modalities and shift.

        Accumulators made this way from one template can be filled separately
        (e.g. one per Dask chunk) and merged.
        """
        other = CovarianceAccumulator(
            self.modalities, self.n_features, fourth_moments=self.fourth_moments
        )
        other.shift = None if self.shift is None else self.shift.copy()
        return other

    def choose_shift(self, X):
        """Fix the shift from a first batch of rows (a validated X)."""
        if sparse.issparse(X):
            X = X.tocsr()
        if self.shift is None:
            self.shift = self._choose_shift(X)
        return self

    def merge(self, other):
        """Add another accumulator's sums (same modalities and shift)."""
        if other.shift is None:
            return self
        if self.shift is None:
            self.shift = other.shift
        if not np.array_equal(self.shift, other.shift):
            raise ValueError("Accumulators with different shifts cannot be merged.")
        self.gram += other.gram
        self.sum_given += other.sum_given
        self.pair_counts += other.pair_counts
        self.n_rows += other.n_rows
        if self.fourth_moments:
            for mine, theirs in zip(self.square_gram, other.square_gram):
                mine += theirs
            for mine, theirs in zip(self.square_cross, other.square_cross):
                mine += theirs
        return self

    # -- per chunk -------------------------------------------------------

    def _choose_shift(self, X):
        n_columns = len(self.columns)
        if sparse.issparse(X):
            # Shifting would densify: sparse data is summed as it is.
            return np.zeros(n_columns)
        head = X[: chunk_rows(n_columns)]
        if not self._in_order:
            head = head[:, self.columns]
        # Plain moments first: nanmean/nanstd copy the head, and complete
        # data (the common case) has no NaN to skip.
        mean, std = head.mean(axis=0), head.std(axis=0)
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            with warnings.catch_warnings():
                # All-NaN columns (a modality missing in every head row) are
                # fine.
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(head, axis=0)
                std = np.nanstd(head, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        unshifted_ok = np.all(np.abs(mean) <= _UNSHIFTED_MAX_RATIO * np.nan_to_num(std))
        if unshifted_ok and self._zero_copy_possible(X):
            return np.zeros(n_columns)
        # Chunks are copied anyway (float32, out-of-order columns, another
        # memory layout, or a shift needed): subtracting the shift is free.
        return mean

    def _zero_copy_possible(self, X):
        return X.dtype == np.float64 and X.flags.c_contiguous and self._in_order

    def _shifted_float64(self, chunk):
        """The chunk's columns in modality order, minus the shift, as a C-ordered
        float64 array: a view of X when nothing needs changing, else a copy
        (X itself is never modified)."""
        if not self._in_order:
            chunk = chunk[:, self.columns]
        if np.any(self.shift):
            return np.subtract(chunk, self.shift, dtype=np.float64, order="C")
        return np.asarray(chunk, dtype=np.float64, order="C")

    def _add_complete_rows(self, chunk, *, check_first):
        """Add a chunk assumed complete and finite; False if it was not.

        A NaN or infinity anywhere in the chunk makes its column sums
        non-finite. With ``check_first`` they are checked before the Gram is
        touched (nothing is added on failure); otherwise the Gram goes first
        and the sums follow while the chunk is still in cache (about 8% of a
        fit at 200 000 x 800), and on failure this accumulator is garbage.
        Both come from scipy's BLAS (``syrk``, ``gemv``), so no second thread
        pool competes for the cores between calls.
        """
        n_rows = chunk.shape[0]
        if check_first:
            column_sums = _finite_column_sums(chunk)
            if column_sums is None:
                return False
        _syrk_update(self.gram, chunk)
        if not check_first:
            column_sums = _finite_column_sums(chunk)
            if column_sums is None:
                return False
        self.sum_given += column_sums[:, None]
        self.pair_counts += n_rows
        self.n_rows += n_rows
        if self.fourth_moments:
            self._add_fourth_moments(chunk)
        return True

    def _shifted_with_missing_zeroed(self, chunk, first_row):
        if sparse.issparse(chunk):
            Z = chunk[:, self.columns].astype(np.float64)
        else:
            Z = np.asarray(chunk[:, self.columns], dtype=np.float64, order="C")
            Z -= self.shift
        present = check_finite_blocks(Z, self._stacked, first_row=first_row)
        if sparse.issparse(Z):
            Z.data[np.isnan(Z.data)] = 0.0
            Z.eliminate_zeros()
        elif not present.all():
            np.nan_to_num(Z, copy=False, nan=0.0)
        present = present.astype(np.float64)
        return Z, present, np.asarray(Z.T @ present)

    def _add(self, Z, present, sums):
        self.sum_given += sums
        self.pair_counts += present.T @ present
        self.n_rows += Z.shape[0]
        if sparse.issparse(Z):
            self.gram += (Z.T @ Z).toarray()
        else:
            _syrk_update(self.gram, Z)
        if self.fourth_moments:
            self._add_fourth_moments(Z)

    def _add_fourth_moments(self, Z):
        for block, square_gram, square_cross in zip(
            self.blocks, self.square_gram, self.square_cross
        ):
            Z_block = Z[:, block]
            if sparse.issparse(Z_block):
                squares = Z_block.multiply(Z_block).tocsr()
                square_gram += (squares.T @ squares).toarray()
                square_cross += np.asarray((squares.T @ Z_block).todense())
            else:
                squares = Z_block * Z_block
                _syrk_update(square_gram, squares)
                square_cross += squares.T @ Z_block

    # -- results ----------------------------------------------------------

    def finalize(self):
        """Return the means and pairwise-complete covariance.

        Returns
        -------
        BlockCovariance
        """
        counts = self.pair_counts
        check_pair_counts(counts, self.names)
        owner = self.block_of_column
        own_counts = np.diag(counts)[owner]
        delta = self.sum_given[np.arange(len(owner)), owner] / own_counts
        covariance = _pairwise_complete_covariance(
            self.gram, self.sum_given, counts, owner, delta
        )
        return BlockCovariance(
            names=self.names,
            blocks=self.blocks,
            columns=self.columns,
            mean=self.shift + delta,
            covariance=covariance,
            counts=counts.copy(),
            accumulator=self,
            delta=delta,
        )


def _pairwise_complete_covariance(gram_upper, sum_given, counts, owner, delta):
    """``(G - A - A^T + N * delta delta^T) / N``, built a band of rows at a time.

    ``G`` is the shifted Gram (upper triangle filled), ``A[i, j] =
    sum_given[i, l(j)] * delta_j`` the mean correction and ``N[i, j] =
    counts[l(i), l(j)]`` the rows behind entry ``(i, j)``, with ``l`` the
    modality owning a column. Each band computes its entries on and above
    the diagonal and mirrors them below, so the result is exactly symmetric
    and the only memory besides it is one band (about 4 MB) at a time:
    ``D x D`` temporaries would cost ``8 D^2`` bytes each, 800 MB at
    ``D = 10 000``.
    """
    n_columns = len(owner)
    covariance = np.empty((n_columns, n_columns))
    band = max(16, _BAND_BYTES // (8 * n_columns))
    for start in range(0, n_columns, band):
        stop = min(start + band, n_columns)
        rows, right = slice(start, stop), slice(start, None)
        gram = np.array(gram_upper[rows, right])
        square = gram[:, : stop - start]  # the diagonal square: upper only
        square[...] = _symmetrized(square)
        n_pair = counts[np.ix_(owner[rows], owner[right])]
        given = sum_given[rows][:, owner[right]] * delta[right]
        given_t = (sum_given[right][:, owner[rows]] * delta[rows]).T
        values = gram - given - given_t + n_pair * np.outer(delta[rows], delta[right])
        values /= n_pair
        square = values[:, : stop - start]
        square[...] = (square + square.T) / 2
        covariance[rows, right] = values
        covariance[stop:, rows] = values[:, stop - start :].T
    return covariance


class BlockCovariance:
    """Means and pairwise-complete covariance of the stacked modalities."""

    def __init__(
        self,
        *,
        names,
        blocks,
        columns,
        mean,
        covariance,
        counts,
        accumulator,
        delta,
    ):
        self.names = names
        self.blocks = blocks
        self.columns = columns
        self.mean = mean
        self.covariance = covariance
        self.counts = counts
        self._accumulator = accumulator
        self._delta = delta

    def ledoit_wolf_shrinkage(self, position, scale):
        """Ledoit-Wolf shrinkage intensity of one modality's covariance.

        Parameters
        ----------
        position : int
            The modality's position.
        scale : ndarray of shape (n_features_m,)
            Divide each feature by this before shrinking (standardisation).

        Returns
        -------
        shrinkage : float in [0, 1]
            The same number as ``sklearn.covariance.ledoit_wolf_shrinkage`` on
            the modality's rows and scaled columns.
        target : float
            The mean variance, towards which the shrinkage pulls.
        """
        acc = self._accumulator
        if not acc.fourth_moments:
            raise RuntimeError("Fourth moments were not accumulated.")
        block = self.blocks[position]
        n = self.counts[position, position]
        n_features = block.stop - block.start
        weights = 1.0 / scale**2
        covariance = self.covariance[block, block] / np.outer(scale, scale)
        trace = np.trace(covariance)
        mu = trace / n_features
        if n_features == 1:
            return 0.0, mu
        # Sum over rows of ||(x_i - mean) / scale||^4, expanded around the
        # shifted sums (u: weighted squares, v: weighted cross term, c: const).
        delta = self._delta[block]
        gram = _symmetrized(acc.gram[block, block])
        sums = acc.sum_given[block, position]
        weighted_delta = weights * delta
        c = float(weighted_delta @ delta)
        sum_u2 = weights @ _symmetrized(acc.square_gram[position]) @ weights
        sum_uv = weights @ acc.square_cross[position] @ weighted_delta
        sum_u = weights @ np.diag(gram)
        sum_v2 = weighted_delta @ gram @ weighted_delta
        sum_v = weighted_delta @ sums
        fourth = (
            sum_u2 - 4 * sum_uv + 2 * c * sum_u + 4 * sum_v2 - 4 * c * sum_v + n * c**2
        )
        squared_norm = np.sum(covariance**2)
        beta = (fourth / n - squared_norm) / (n_features * n)
        delta_lw = (squared_norm - 2 * mu * trace + n_features * mu**2) / n_features
        beta = min(beta, delta_lw)
        shrinkage = 0.0 if beta <= 0 else beta / delta_lw
        return float(shrinkage), float(mu)


def check_pair_counts(counts, names):
    """Raise if a modality has < 2 rows or a pair of modalities never meets.

    Parameters
    ----------
    counts : ndarray of shape (n_modalities, n_modalities)
        Rows carrying both modalities ``m`` and ``l``.
    names : list of str
        Modality names, in the same order.
    """
    for position, name in enumerate(names):
        if counts[position, position] < 2:
            raise ValueError(
                f"Modality {name!r} is present in "
                f"{int(counts[position, position])} row(s); at least 2 are "
                "needed to estimate its covariance."
            )
    never_together = np.argwhere(counts == 0)
    if never_together.size:
        m, l = never_together[0]
        raise ValueError(
            f"Modalities {names[m]!r} and {names[l]!r} are never "
            "present in the same row, so nothing links them. Provide rows "
            "that carry both (paired data)."
        )


def _finite_column_sums(chunk):
    """Column sums of a C-ordered float64 chunk by BLAS ``gemv`` (scipy's, as
    ``syrk``), or None when a NaN or infinity makes one non-finite."""
    column_sums = dgemv(1.0, chunk.T, np.ones(chunk.shape[0]))
    return column_sums if np.isfinite(column_sums).all() else None


def _syrk_update(gram, Z):
    """gram (upper triangle) += Z.T @ Z in place, with no copy of Z."""
    # A C-ordered (n, d) array is the Fortran-ordered (d, n) array Z.T, so
    # syrk with trans=0 computes Z.T @ Z straight from Z's buffer.
    dsyrk(1.0, Z.T, beta=1.0, c=gram, trans=0, lower=0, overwrite_c=1)


def _symmetrized(upper):
    return np.triu(upper) + np.triu(upper, 1).T
