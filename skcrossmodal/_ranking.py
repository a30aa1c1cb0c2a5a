"""Ranking gallery rows for query rows: keys, top ``k``, rank statistics.

The one implementation behind :mod:`skcrossmodal.retrieval` and
:mod:`skcrossmodal.metrics`, written once for every array namespace: numpy
arrays go through ``array_api_compat.numpy`` like torch or CuPy arrays do.
Numpy-only branches remain where they measured faster
(``benchmarks/ranking_speed.py``): the running top ``k`` (a partition
filter before any sort; the array API has no partition), the row sort of
the average precision (quicksort, re-sorted stably only on rows with ties),
and products written into a reused buffer. Which items are relevant (labels
or pairs) is :mod:`._relevance`'s.

Tie rule, everywhere: lower keys (higher scores) first; equal keys in
gallery index order, what a stable sort gives.

Scale. Rankings do not depend on the embeddings' units, so neither do the
keys: euclidean keys are computed on the embeddings divided by a common
power of two (exact), cosine keys on each row divided by its largest
entry. Values near 1e-161 or 1e+200 rank as they would near 1; what
float64 (or float32) cannot hold is refused with an error saying so.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np
from sklearn import get_config
from sklearn.externals import array_api_compat

from ._namespace import (
    accumulation_dtype,
    array_device,
    smallest_square,
)

# Bytes of temporaries per (query, gallery) pair when ranks are computed with
# average precision: the scores, their negation, the argsort, the relevance
# in both orders, the running count of hits and the precisions.
BYTES_PER_PAIR_AP = 48
# ... and without average precision (masks and comparisons only).
BYTES_PER_PAIR_FIRST = 16


def is_numpy(xp):
    return array_api_compat.is_numpy_namespace(xp)


def dtype_name(xp, dtype):
    """``float64`` or ``float32``, whatever the namespace calls it."""
    return "float64" if dtype == xp.float64 else "float32"


def check_k(k, name="k"):
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise ValueError(f"`{name}` must be an int >= 1, got {k!r}.")
    return int(k)


def rows_in_working_memory(row_bytes, n_rows):
    """Rows whose temporaries fit scikit-learn's ``working_memory`` (MiB).

    At least 1 and at most ``n_rows`` (and 1 when there are no rows).
    """
    budget = get_config()["working_memory"] * 2**20
    return int(min(max(budget // max(row_bytes, 1), 1), max(n_rows, 1)))


def first_true(xp, mask):
    """Index of the first True of a 1-D mask and the count, or (None, 0)."""
    as_int = xp.astype(mask, xp.int64)
    count = int(xp.sum(as_int))
    return (int(xp.argmax(as_int)) if count else None), count


# -- keys ----------------------------------------------------------------------------


def _row_peaks(xp, Z):
    """Largest absolute entry of each row, shape (n, 1)."""
    if Z.shape[0] == 0:
        return xp.zeros((0, 1), dtype=Z.dtype, device=array_device(Z))
    return xp.max(xp.abs(Z), axis=1, keepdims=True)


def unit_rows(xp, Z):
    """Rows scaled to unit norm; zero rows (relative to ``Z``'s scale) as 0.

    Each row is divided by its largest entry before its norm is taken, so
    neither the squares of 1e+200 (overflow) nor those of 1e-161 (underflow)
    are ever formed. A row is zero, and has cosine 0 with everything, when
    its largest entry is at most ``n_components * eps`` times the largest
    entry of ``Z``: below that it is rounding noise of the other rows'
    magnitude, whose direction means nothing.
    """
    peaks = _row_peaks(xp, Z)
    largest = float(xp.max(peaks)) if Z.shape[0] else 0.0
    eps = float(xp.finfo(Z.dtype).eps)
    zero = peaks <= Z.shape[1] * eps * largest
    ones = xp.ones_like(peaks)
    scaled = Z / xp.where(zero, ones, peaks)
    norms = xp.sqrt(xp.sum(scaled * scaled, axis=1, keepdims=True))
    unit = scaled / xp.where(zero, ones, norms)
    return xp.where(zero, xp.zeros_like(unit), unit)


def _common_scale(xp, Z_query, Z_gallery):
    """A power of two near the largest absolute entry of both (1.0 if none)."""
    largest = max(
        (float(xp.max(xp.abs(Z))) for Z in (Z_query, Z_gallery) if Z.shape[0]),
        default=0.0,
    )
    if largest == 0.0:
        return 1.0
    # largest / scale in [1, 2): squares and products stay far from overflow,
    # and the division by a power of two is exact.
    return math.ldexp(1.0, math.frexp(largest)[1] - 1)


def _check_no_underflow(xp, Z_query, Z_gallery, sides):
    """Refuse rows too small, next to the largest, for squares in this dtype.

    After the common scaling the largest entry is about 1. A non-zero row
    whose largest entry is below ``sqrt(smallest_normal / eps)`` has squared
    distances to its neighbours below float's normal range: they lose their
    digits (or vanish), and rows that small on both sides would be ranked
    among themselves by rounding. Rows that small on one side only are
    fine: their distances to the other side's rows are those rows' norms.
    ``sides``: see :class:`Keys`.
    """
    floor = math.sqrt(smallest_square(Z_query.dtype))
    found = []
    for Z in (Z_query, Z_gallery):
        peaks = _row_peaks(xp, Z)[:, 0]
        row, count = first_true(xp, (peaks > 0) & (peaks < floor))
        found.append((row, count))
    if found[0][1] and found[1][1]:
        (q_row, q_count), (g_row, g_count) = found
        (q_name, q_rows), (g_name, g_rows) = sides
        q_row = q_row if q_rows is None else int(q_rows[q_row])
        g_row = g_row if g_rows is None else int(g_rows[g_row])
        raise ValueError(
            f"The {q_name} and {g_name} embeddings span more magnitudes than "
            f"{dtype_name(xp, Z_query.dtype)} can rank by euclidean "
            f"distance: row {q_row} of {q_name} ({q_count} such row(s)) and row "
            f"{g_row} of {g_name} ({g_count}) are over {1 / floor:.0e} times "
            "smaller than the largest value, so their squared distances "
            "underflow. Rank the small rows separately (they are then rescaled), "
            "or use metric='cosine'."
        )


class Keys:
    """Ranking keys (lower is better) of query rows against gallery rows.

    Cosine: the negated cosine similarity. Euclidean: ``|g|^2 - 2 q.g``, the
    squared distance less the query's own ``|q|^2``, which does not change a
    query's ranking; both are one matrix product, the euclidean one with
    ``|g|^2`` as an extra column. Keys are in the embeddings' namespace,
    device and dtype.

    ``sides`` names the query and the gallery for messages, each as
    ``(name, rows)``: ``rows`` (host ints or None) maps a row of the
    embeddings to the caller's row.
    """

    def __init__(self, xp, Z_query, Z_gallery, metric, sides=None):
        if sides is None:
            sides = (("Z_query", None), ("Z_gallery", None))
        self.xp, self.metric, self.dtype = xp, metric, Z_query.dtype
        self.numpy = is_numpy(xp)
        self.scale = 1.0
        if metric == "cosine":
            query = -unit_rows(xp, Z_query)
            gallery = unit_rows(xp, Z_gallery)
        else:
            self.scale = _common_scale(xp, Z_query, Z_gallery)
            if self.scale != 1.0:
                Z_query, Z_gallery = Z_query / self.scale, Z_gallery / self.scale
            _check_no_underflow(xp, Z_query, Z_gallery, sides)
            self.query_sq = xp.sum(Z_query * Z_query, axis=1)
            ones = xp.ones(
                (Z_query.shape[0], 1), dtype=self.dtype, device=array_device(Z_query)
            )
            query = xp.concat([-2.0 * Z_query, ones], axis=1)
            gallery_sq = xp.sum(Z_gallery * Z_gallery, axis=1)
            gallery = xp.concat([Z_gallery, gallery_sq[:, None]], axis=1)
        self.query = query
        if self.numpy:
            # (n_components, n_gallery), C-ordered: a chunk of columns is a
            # plain strided operand for BLAS.
            self.gallery_t = np.ascontiguousarray(gallery.T)
        else:
            self.gallery_t = xp.permute_dims(gallery, (1, 0))

    def __call__(self, start, stop, g_start, g_stop, buffer=None):
        """Keys of query rows ``start:stop`` against gallery ``g_start:g_stop``.

        numpy writes into ``buffer`` (a flat array reused between calls:
        fresh large arrays cost page faults that can exceed the product).
        """
        query = self.query[start:stop, :]
        gallery = self.gallery_t[:, g_start:g_stop]
        if self.numpy and buffer is not None:
            shape = (query.shape[0], gallery.shape[1])
            keys = buffer[: shape[0] * shape[1]].reshape(shape)
            return np.matmul(query, gallery, out=keys)
        return query @ gallery

    def scores(self, start, stop, buffer=None):
        """Similarities (negated keys) against the whole gallery."""
        keys = self(start, stop, 0, self.gallery_t.shape[1], buffer)
        if self.numpy:
            return np.negative(keys, out=keys)
        return -keys

    def distances(self, keys, start, stop):
        """Distances from the keys of query rows ``start:stop``."""
        xp = self.xp
        if self.metric == "cosine":
            return xp.clip(1.0 + keys, min=0.0, max=2.0)
        squared = xp.clip(keys + self.query_sq[start:stop, None], min=0.0)
        distances = xp.sqrt(squared)
        if self.scale == 1.0:
            return distances
        largest = float(xp.max(distances)) if distances.shape[0] else 0.0
        limit = float(xp.finfo(self.dtype).max)
        if largest > limit / self.scale:
            raise ValueError(
                "The euclidean distances exceed the largest "
                f"{dtype_name(xp, self.dtype)} ({limit:.3g}): the ranking is "
                "computed, but the distances cannot be returned. Pass "
                "return_distance=False, or rescale the embeddings."
            )
        return distances * self.scale


# -- top k ---------------------------------------------------------------------------


def take_along_rows(xp, values, order):
    """``take_along_axis(values, order, axis=1)``, also before the 2024.12 API."""
    if hasattr(xp, "take_along_axis"):
        return xp.take_along_axis(values, order, axis=1)
    n_rows, n_columns = values.shape
    offsets = xp.arange(n_rows, dtype=order.dtype, device=array_device(order))
    flat = xp.reshape(order + offsets[:, None] * n_columns, (-1,))
    return xp.reshape(xp.take(xp.reshape(values, (-1,)), flat), order.shape)


def stable_ascending_order(xp, keys):
    """argsort of every row by ascending key, ties by ascending index.

    numpy's quicksort is several times faster than its stable sort; it is
    used, and the rows where it could have reordered equal keys (the rows
    holding a repeated key) are sorted again with the stable sort.
    """
    if not is_numpy(xp):
        return xp.argsort(keys, axis=1, stable=True)
    order = np.argsort(keys, axis=1, kind="quicksort")
    ordered = np.take_along_axis(keys, order, axis=1)
    repeated = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
    if repeated.size:
        order[repeated] = np.argsort(keys[repeated], axis=1, kind="stable")
    return order


def top_k(xp, keys_of, n_query, n_gallery, k, batch_size, chunk):
    """The ``k`` smallest keys of every query and their gallery indices.

    For each batch of queries the gallery is scored chunk by chunk and
    merged into a running top ``k``, so memory is
    ``O(batch_size * (chunk + k))`` whatever the gallery size.
    """
    if is_numpy(xp):
        return _numpy_top_k(keys_of, n_query, n_gallery, k, batch_size, chunk)
    device = array_device(keys_of.query)
    all_keys, all_indices = [], []
    for start in range(0, n_query, batch_size):
        stop = min(start + batch_size, n_query)
        best_keys = best_indices = None
        for g_start in range(0, n_gallery, chunk):
            g_stop = min(g_start + chunk, n_gallery)
            keys = keys_of(start, stop, g_start, g_stop)
            indices = xp.broadcast_to(
                xp.arange(g_start, g_stop, device=device)[None, :], keys.shape
            )
            # The kept k (sorted by key, then index) go before the chunk (in
            # index order); every kept index is below the chunk's, so a
            # stable sort by key keeps equal keys in index order.
            if best_keys is not None:
                keys = xp.concat([best_keys, keys], axis=1)
                indices = xp.concat([best_indices, indices], axis=1)
            order = xp.argsort(keys, axis=1, stable=True)[:, :k]
            best_keys = take_along_rows(xp, keys, order)
            best_indices = take_along_rows(xp, indices, order)
        all_keys.append(best_keys)
        all_indices.append(best_indices)
    return xp.concat(all_keys, axis=0), xp.concat(all_indices, axis=0)


def _numpy_top_k(keys_of, n_query, n_gallery, k, batch_size, chunk):
    """:func:`top_k` for numpy: filter each chunk before sorting anything."""
    all_keys = np.empty((n_query, k), dtype=keys_of.dtype)
    all_indices = np.empty((n_query, k), dtype=np.intp)
    buffer = np.empty(min(batch_size, n_query) * chunk, dtype=keys_of.dtype)
    for start in range(0, n_query, batch_size):
        stop = min(start + batch_size, n_query)
        if chunk == n_gallery and n_gallery <= 2 * k:
            # Most of the gallery is returned: sort it whole.
            keys = keys_of(start, stop, 0, n_gallery, buffer)
            order = stable_ascending_order(np, keys)[:, :k]
            all_keys[start:stop] = np.take_along_axis(keys, order, axis=1)
            all_indices[start:stop] = order
            continue
        top = _RunningTopK(stop - start, k, keys_of.dtype, chunk)
        for g_start in range(0, n_gallery, chunk):
            g_stop = min(g_start + chunk, n_gallery)
            top.add(keys_of(start, stop, g_start, g_stop, buffer), g_start)
        all_keys[start:stop] = top.keys
        all_indices[start:stop] = top.indices
    return all_keys, all_indices


class _RunningTopK:
    """The k smallest keys seen so far for each query of a batch (numpy).

    Gallery chunks come in index order. Kept sorted by (key, index), so the
    documented tie rule holds: equal keys rank by gallery index.

    Each chunk is filtered before anything is sorted: an entry can only
    enter when its key is below the current k-th best (an equal key has a
    higher index than every entry kept, so it loses the tie), and, when
    many entries pass that test, when its key is at most the chunk's own
    k-th smallest (found with an in-place partition). The survivors, few
    per query, are merged with the entries kept by a stable sort on the key.
    """

    def __init__(self, n_rows, k, dtype, chunk):
        self.n_rows, self.k = n_rows, k
        self.keys = np.empty((n_rows, 0), dtype=dtype)
        self.indices = np.empty((n_rows, 0), dtype=np.intp)
        self._scratch = np.empty(n_rows * chunk, dtype=dtype)
        self._mask = np.empty(n_rows * chunk, dtype=bool)

    def _kth_smallest(self, keys):
        scratch = self._scratch[: keys.size].reshape(keys.shape)
        np.copyto(scratch, keys)
        scratch.partition(self.k - 1, axis=1)
        return scratch[:, self.k - 1].copy()

    def add(self, keys, offset):
        n_rows, n_columns = keys.shape
        mask = self._mask[: keys.size].reshape(keys.shape)
        full = self.keys.shape[1] == self.k
        if full:
            np.less(keys, self.keys[:, -1:], out=mask)
            crowded = np.count_nonzero(mask) > 4 * self.k * n_rows
        else:
            mask[...] = True
            crowded = True
        if crowded and n_columns > self.k:
            mask &= keys <= self._kth_smallest(keys)[:, None]
        flat = np.flatnonzero(mask)
        if flat.size == 0:
            return
        rows, columns = np.divmod(flat, n_columns)
        counts = np.bincount(rows, minlength=n_rows)
        # Position of each survivor among its row's survivors (index order).
        position = np.arange(flat.size) - np.repeat(np.cumsum(counts) - counts, counts)
        kept = self.keys.shape[1]
        merged_keys = np.full((n_rows, kept + counts.max()), np.inf, keys.dtype)
        merged_indices = np.zeros(merged_keys.shape, dtype=np.intp)
        merged_keys[:, :kept] = self.keys
        merged_indices[:, :kept] = self.indices
        merged_keys[rows, kept + position] = keys.ravel()[flat]
        merged_indices[rows, kept + position] = columns + offset
        # Kept entries have lower indices than the chunk's and both parts are
        # in (key, index) order: a stable sort by key keeps that order.
        order = np.argsort(merged_keys, axis=1, kind="stable")[:, : self.k]
        self.keys = np.take_along_axis(merged_keys, order, axis=1)
        self.indices = np.take_along_axis(merged_indices, order, axis=1)


# -- rank statistics -----------------------------------------------------------------


def _count(xp, mask):
    """True entries of each row of a 2-D mask."""
    if is_numpy(xp):
        return np.count_nonzero(mask, axis=1)
    return xp.sum(xp.astype(mask, xp.int64), axis=1)


def _argmax_rows(xp, mask):
    """Column of the first True of each row of a 2-D mask (0 if none)."""
    if is_numpy(xp):
        return np.argmax(mask, axis=1)
    return xp.argmax(xp.astype(mask, xp.int8), axis=1)


def rank_statistics(xp, scores, relevant, *, average_precision):
    """Per-query ranking statistics of one batch.

    Parameters
    ----------
    scores : array of shape (n_batch, n_gallery)
        Higher is more similar; finite.
    relevant : array of bool, shape (n_batch, n_gallery)
    average_precision : bool
        Also compute the average precision (needs a sort of every row).

    Returns
    -------
    n_relevant : array of int, shape (n_batch,)
    first_rank : array of int, shape (n_batch,)
        1-based rank of the best-ranked relevant item; 0 where there is none.
    ap : array of float, shape (n_batch,) or None
        Average precision; 0 where there is no relevant item.
    """
    device = array_device(scores)
    n_gallery = scores.shape[1]
    n_relevant = _count(xp, relevant)
    has_relevant = n_relevant > 0
    # First relevant item, without sorting: the relevant item of best score
    # (lowest index among equals) is preceded by every item scoring higher
    # and by every item scoring the same with a lower index.
    floor = xp.asarray(-xp.inf, dtype=scores.dtype, device=device)
    best = xp.max(xp.where(relevant, scores, floor), axis=1)
    at_best = scores == best[:, None]
    first_index = _argmax_rows(xp, relevant & at_best)
    columns = xp.arange(n_gallery, device=device)
    ahead = _count(xp, scores > best[:, None]) + _count(
        xp, at_best & (columns[None, :] < first_index[:, None])
    )
    first_rank = xp.where(has_relevant, ahead + 1, xp.zeros_like(ahead))

    ap = None
    if average_precision:
        dtype = accumulation_dtype(xp, device)
        order = stable_ascending_order(xp, -scores)
        hits = take_along_rows(xp, relevant, order)
        del order
        # Precision at the rank of each relevant item: hits so far / rank.
        # (numpy sums the booleans as they are; the standard wants numbers.)
        counted = hits if is_numpy(xp) else xp.astype(hits, dtype)
        precision = xp.cumulative_sum(counted, axis=1, dtype=dtype)
        precision /= xp.arange(1, n_gallery + 1, dtype=dtype, device=device)
        zero = xp.asarray(0.0, dtype=dtype, device=device)
        precision_sum = xp.sum(xp.where(hits, precision, zero), axis=1)
        divisor = xp.astype(xp.clip(n_relevant, min=1), dtype)
        ap = xp.where(has_relevant, precision_sum / divisor, zero)
    return n_relevant, first_rank, ap


class RankTally:
    """Per-query statistics gathered over batches of queries, on their device."""

    def __init__(self, xp):
        self.xp = xp
        self.first_ranks = []
        self.ap_sum = 0.0
        self.has_ap = True

    def add(self, n_relevant, first_rank, ap):
        xp = self.xp
        keep = n_relevant > 0
        self.first_ranks.append(first_rank[keep])
        if ap is None:
            self.has_ap = False
        else:
            self.ap_sum += float(xp.sum(xp.where(keep, ap, xp.zeros_like(ap))))

    def result(self, ks):
        xp = self.xp
        n_kept = sum(int(first.shape[0]) for first in self.first_ranks)
        if n_kept == 0:
            raise ValueError(
                "No query has a relevant item in the gallery (no gallery label "
                "equals a query label), so the retrieval metrics are undefined. "
                "Check y_query and y_gallery."
            )
        first = xp.sort(xp.concat(self.first_ranks))
        out = {}
        if self.has_ap:
            out["mean_average_precision"] = self.ap_sum / n_kept
        for cutoff in ks:
            found = int(xp.sum(xp.astype(first <= cutoff, xp.int64)))
            out[f"recall@{cutoff}"] = found / n_kept
        middle = n_kept // 2
        if n_kept % 2:
            out["median_rank"] = float(first[middle])
        else:
            out["median_rank"] = (float(first[middle - 1]) + float(first[middle])) / 2
        out["n_queries"] = n_kept
        return out


def evaluate(xp, scores_of, labels, n_query, *, ks, average_precision, batch_size):
    """Metrics of ``scores_of(start, stop)`` batches against label codes.

    ``labels`` are :func:`label_codes`' pair; a gallery item is relevant to
    a query when their codes are equal.
    """
    labels_query, labels_gallery = labels
    tally = RankTally(xp)
    for start in range(0, n_query, batch_size):
        stop = min(start + batch_size, n_query)
        relevant = labels_query[start:stop, None] == labels_gallery[None, :]
        tally.add(
            *rank_statistics(
                xp,
                scores_of(start, stop),
                relevant,
                average_precision=average_precision,
            )
        )
    return tally.result(ks)
