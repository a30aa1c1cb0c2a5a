"""How one batch becomes sums, for the inputs that are not dense numpy.

Private helpers of :class:`~._statistics.CovarianceAccumulator` (which keeps
the dense numpy path, with its BLAS fast path, itself): each function fills a
*fresh* accumulator ``acc`` with one batch, raising on a bad row before the
caller merges anything (see ``_statistics`` for the arithmetic and why the
shift matters).

* scipy sparse: products of the sparse rows as they are, the shift applied to
  the batch's sums afterwards (:func:`sum_sparse`), or dense shifted row
  chunks when a column's mean is large against its spread
  (:func:`sum_sparse_densified`);
* array API (:func:`xp_batch`): the sums in X's namespace and device, an
  optimistic pass for complete rows (one device sync per batch), else the
  pairwise-complete pass with presence masks.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import sparse

from ._modalities import check_finite_blocks
from ._namespace import array_device, numpy_float, smallest_square, to_numpy


def sum_sparse(acc, X, weights, step):
    """Products of the sparse rows as they are; the shift is applied to
    the batch's sums at the end (this accumulator is fresh)."""
    for start in range(0, X.shape[0], step):
        w = None if weights is None else weights[start : start + step]
        chunk = X[start : start + step]
        Z = chunk[:, acc.columns].astype(np.float64)
        present = check_finite_blocks(Z, acc._stacked, first_row=start)
        Z.sum_duplicates()
        Z.data[np.isnan(Z.data)] = 0.0
        Z.eliminate_zeros()
        acc._add(Z, present, w)
    s = acc.shift
    if np.any(s):
        # Sum over rows of (z_i - s_i)(z_j - s_j) where both blocks are
        # present, from the raw sums: G - A - A^T + N s s^T with
        # A[i, j] = S[i, l(j)] s_j, and S[i, l] - s_i N[l(i), l].
        owner = acc.block_of_column
        counts = acc.pair_counts
        given = acc.sum_given[:, owner] * s[None, :]
        acc.gram += counts[np.ix_(owner, owner)] * np.outer(s, s)
        acc.gram -= given
        acc.gram -= given.T
        acc.sum_given -= s[:, None] * counts[owner, :]


def sum_sparse_densified(acc, X, weights, step):
    """A column's mean is large against its spread: dense row chunks,
    shifted, as dense input would be summed."""
    for start in range(0, X.shape[0], step):
        w = None if weights is None else weights[start : start + step]
        chunk = X[start : start + step][:, acc.columns].toarray()
        Z = chunk - acc.shift
        present = check_finite_blocks(Z, acc._stacked, first_row=start)
        if not present.all():
            np.nan_to_num(Z, copy=False, nan=0.0)
        acc._add(np.ascontiguousarray(Z), present, w)


def raise_overflow(dtype=np.float64):
    """The error for sums of X's squares past ``dtype``'s range (any
    namespace's dtype): the pass's sums or the covariance built from them."""
    raise ValueError(
        "The sums over X overflowed: some of X's values (or their spread) are "
        f"too large for their squares to fit in {numpy_float(dtype).name} (about "
        "1e154 and above for float64). Rescale those features (e.g. "
        "StandardScaler in their modality's branch) and fit again; the "
        "statistics are unchanged by a rescaling."
    )


def raise_underflow(dtype=np.float64, columns=None):
    """The error for features whose spread the float's squares cannot hold
    (``dtype`` of any namespace)."""
    smallest = smallest_square(dtype)
    which = (
        ""
        if columns is None
        # Columns of the rows summed: X's, or one modality's block (the
        # gradient solver sums each modality apart).
        else f" (columns {np.asarray(columns)[:5].tolist()} of the rows summed)"
    )
    raise ValueError(
        f"Some features of X{which} vary by so little (variance below "
        f"{smallest:.0e}, values differing by less than {smallest**0.5:.0e}) "
        f"that their squares fall outside {numpy_float(dtype).name}'s normal "
        "range and lose digits or vanish: the answer would be inaccurate. "
        "Rescale those features (e.g. StandardScaler in their modality's "
        "branch, or multiply the modality by a constant) and fit again."
    )


def check_spread_representable(xp, head, columns, dtype=None, std=None):
    """Raise on a feature whose first rows differ, but by amounts whose
    squares ``dtype`` (the accumulation dtype; default the head's) cannot
    hold (``head``: numpy, scipy sparse or ``xp`` rows, columns in modality
    order, as ``columns`` names them).

    Below about 1e-162 (float64) the squares are exactly 0: the variance
    would come out 0 and the feature be taken for a constant (the solve then
    calls its modality rank-deficient, or drops it), which the solve's
    variance check (``_closed_form._check_representable``, for spreads down
    to that point) cannot tell from a real constant. The range of the values
    can: 0 for a constant column, positive here. Only the first rows are
    seen (those that choose the shift). ``std``, the head's computed
    standard deviations (numpy) where the caller has them: only features
    whose deviation came out below the threshold can have vanishing
    squares, so the range is taken of those alone (none in ordinary data).
    """
    dtype = head.dtype if dtype is None else dtype
    threshold = smallest_square(dtype) ** 0.5
    if std is not None:
        suspects = np.flatnonzero(np.nan_to_num(std, nan=np.inf) < threshold)
        if not suspects.size:
            return
        columns = columns[suspects]
        if sparse.issparse(head) or isinstance(head, np.ndarray):
            head = head[:, suspects]
        else:
            head = xp.take(
                head, xp.asarray(suspects, device=array_device(head)), axis=1
            )
    if sparse.issparse(head) or isinstance(head, np.ndarray):
        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            if sparse.issparse(head):
                head = head.copy()
                head.data = np.where(np.isfinite(head.data), head.data, 0.0)
                low = head.min(axis=0).toarray().ravel()
                high = head.max(axis=0).toarray().ravel()
            else:
                low, high = np.nanmin(head, axis=0), np.nanmax(head, axis=0)
            spread = np.asarray(high - low, dtype=np.float64)
    else:
        finite = xp.isfinite(head)
        infinity = xp.asarray(xp.inf, dtype=head.dtype, device=array_device(head))
        high = xp.max(xp.where(finite, head, -infinity), axis=0)
        low = xp.min(xp.where(finite, head, infinity), axis=0)
        spread = np.asarray(to_numpy(high - low), dtype=np.float64)
    lost = (spread > 0) & (spread < threshold)
    if lost.any():
        raise_underflow(dtype, columns[np.flatnonzero(lost)])


def xp_batch(acc, X, weights, xp, chunk_bytes):
    dev = array_device(X)
    if not xp.isdtype(X.dtype, "real floating"):
        raise TypeError(
            f"X must have a real floating dtype (float32 or float64), got {X.dtype}."
        )
    dtype = acc._accumulation_dtype(xp, dev)
    itemsize = 8 if dtype == xp.float64 else 4
    step = int(max(256, chunk_bytes // (itemsize * max(len(acc.columns), 1))))
    column_index = None if acc._in_order else xp.asarray(acc.columns, device=dev)

    def chunks():
        for start in range(0, X.shape[0], step):
            stop = min(start + step, X.shape[0])
            chunk = X[start:stop, :]
            if column_index is not None:
                chunk = xp.take(chunk, column_index, axis=1)
            w = None if weights is None else weights[start:stop]
            yield start, xp.astype(chunk, dtype), w

    shift = acc.shift
    unseen = acc.unseen_columns()
    if shift is None:
        shift = _xp_first_means(xp, chunks(), acc.columns)
    elif unseen is not None:
        # A modality no earlier batch had: its shift is chosen here (as for
        # numpy batches, CovarianceAccumulator._shift_modalities_first_seen);
        # the accumulator takes this batch's shift when it absorbs it.
        candidate = _xp_first_means(xp, chunks(), acc.columns)
        shift = xp.where(xp.asarray(unseen, device=dev), candidate, shift)
    batch = acc._fresh(shift, None, xp, dtype, dev)
    sums = None
    for _, chunk, w in chunks():
        Z = chunk - shift
        Zw = Z if w is None else Z * w[:, None]
        batch.gram = batch.gram + Zw.T @ Z
        column_sums = xp.sum(Zw, axis=0)
        sums = column_sums if sums is None else sums + column_sums
        if acc.fourth_moments:
            _xp_fourth_moments(batch, xp, Z, w)
    # NaN or infinity anywhere makes the column sums non-finite: one
    # check, one device sync per batch.
    if bool(xp.all(xp.isfinite(sums))):
        n_blocks = len(acc.names)
        batch.sum_given = batch.sum_given + sums[:, None]
        total = X.shape[0] if weights is None else xp.sum(weights)
        batch.pair_counts = batch.pair_counts + total
        n_rows = X.shape[0] if weights is None else _xp_count(xp, weights > 0)
        batch.pair_rows += np.full((n_blocks, n_blocks), n_rows, dtype=np.int64)
        batch.n_rows = n_rows
        return batch
    batch = acc._fresh(shift, None, xp, dtype, dev)
    for start, chunk, w in chunks():
        present = check_finite_blocks(chunk, acc._stacked, first_row=start)
        Z = xp.where(xp.isnan(chunk), xp.zeros_like(chunk), chunk - shift)
        present_f = xp.astype(present, dtype)
        weighted = present_f if w is None else present_f * w[:, None]
        Zw = Z if w is None else Z * w[:, None]
        batch.gram = batch.gram + Zw.T @ Z
        batch.sum_given = batch.sum_given + Z.T @ weighted
        batch.pair_counts = batch.pair_counts + present_f.T @ weighted
        counted = present if w is None else present & (w > 0)[:, None]
        counted = np.asarray(to_numpy(counted), dtype=np.int64)
        batch.pair_rows += counted.T @ counted
        batch.n_rows += Z.shape[0] if w is None else _xp_count(xp, w > 0)
        if acc.fourth_moments:
            _xp_fourth_moments(batch, xp, Z, w)
    return batch


def _xp_fourth_moments(acc, xp, Z, w):
    for position, block in enumerate(acc.blocks):
        Z_block = Z[:, block]
        squares = Z_block * Z_block
        weighted = squares if w is None else squares * w[:, None]
        acc.square_gram[position] = acc.square_gram[position] + weighted.T @ squares
        acc.square_cross[position] = acc.square_cross[position] + weighted.T @ Z_block


def _xp_first_means(xp, chunks, columns):
    """The shift of an array API batch: column means over the non-NaN rows
    of its first chunk (which also gets the spread check); a column with no
    value there (its modality missing from every row of the chunk) takes
    its mean from the first later chunk that has values of it, as the
    numpy path does (a shift of 0 under a level of 1e8 would lose every
    digit of the spread); 0 where no chunk has any, or not finite."""
    totals = counts = None
    for position, (_, chunk, _) in enumerate(chunks):
        if position == 0:
            check_spread_representable(xp, chunk, columns)
        is_nan = xp.isnan(chunk)
        chunk_counts = xp.sum(xp.astype(~is_nan, chunk.dtype), axis=0)
        chunk_totals = xp.sum(xp.where(is_nan, xp.zeros_like(chunk), chunk), axis=0)
        if totals is None:
            totals, counts = chunk_totals, chunk_counts
        else:
            unseen = counts == 0
            totals = xp.where(unseen, chunk_totals, totals)
            counts = xp.where(unseen, chunk_counts, counts)
        if bool(xp.all(counts > 0)):
            break
    mean = totals / xp.where(counts > 0, counts, xp.ones_like(counts))
    return xp.where(xp.isfinite(mean), mean, xp.zeros_like(mean))


def sparse_nan_moments(head):
    """Column means and standard deviations of a sparse head over its non-NaN
    entries, without making it dense (wide tf-idf would not fit). The
    variance from raw moments is only used to judge |mean| against spread:
    where it cancels, the ratio is large either way."""
    head = head.tocsc(copy=True).astype(np.float64)
    head.sum_duplicates()
    columns = np.repeat(np.arange(head.shape[1]), np.diff(head.indptr))
    nan = np.isnan(head.data)
    valid = head.shape[0] - np.bincount(columns[nan], minlength=head.shape[1])
    head.data[nan] = 0.0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        mean = np.asarray(head.sum(axis=0)).ravel() / valid
        square = np.asarray(head.multiply(head).sum(axis=0)).ravel() / valid
        std = np.sqrt(np.maximum(square - mean * mean, 0.0))
    return mean, std


def _xp_count(xp, mask):
    return int(xp.sum(xp.astype(mask, xp.int64)))


def xp_diagonal(xp, matrix):
    if hasattr(xp, "linalg") and hasattr(xp.linalg, "diagonal"):
        return xp.linalg.diagonal(matrix)
    eye = xp.eye(matrix.shape[0], dtype=matrix.dtype, device=array_device(matrix))
    return xp.sum(matrix * eye, axis=1)
