"""Cross-modal retrieval in a fitted shared space, in bounded memory.

A fitted :class:`~skcrossmodal.SharedProjection` maps every modality into one
space. Retrieval embeds the query rows with one modality's projection and the
gallery rows with another's, then ranks the gallery for each query by cosine
similarity or euclidean distance:

- :func:`embed`: one modality's shared-space embedding of each row;
- :func:`rank` / :func:`rank_embeddings`: the top ``k`` gallery rows of each
  query, like ``NearestNeighbors.kneighbors``;
- :func:`evaluate_retrieval` / :func:`evaluate_embeddings`: mAP, recall@k
  and median rank (defined in :mod:`skcrossmodal.metrics`).

Memory
------
Nothing here builds the full query x gallery matrix. :func:`rank` takes
``batch_size`` queries at a time and walks the gallery in chunks, keeping a
running top ``k`` per query, so its temporaries are
``O(batch_size * (gallery_chunk + k))``. The metrics need every gallery
score of a query (average precision depends on the whole ranking), so
:func:`evaluate_embeddings` holds ``O(batch_size * n_gallery)``. By default
``batch_size`` is chosen from scikit-learn's ``working_memory`` setting
(``sklearn.set_config(working_memory=...)``, in MiB).

Ties
----
Gallery rows are ordered by ascending distance; rows at equal distance are
ordered by their index in the gallery, the lower first (what a stable sort
gives). "Equal" is decided on the value the ranking is computed from: the
cosine similarity for ``metric="cosine"``; for ``metric="euclidean"``,
``|g|^2 - 2 q.g``, the squared distance less the query's constant ``|q|^2``
(the same ranking, one pass less). The metrics use the same rule.

Nonlinear shared spaces by composition
--------------------------------------
A kernel approximation in each modality's branch of a ``ColumnTransformer``
(:class:`~sklearn.kernel_approximation.Nystroem` or
:class:`~sklearn.kernel_approximation.RBFSampler`), followed by
``SharedProjection``, is an approximate kernel CCA: ridge CCA on the
approximate feature maps. Ridge matters there (``reg`` or ``reg="auto"``):
with as many features as landmarks, unregularised CCA finds perfect,
meaningless correlations. Every function here accepts such a pipeline in
place of the projection: the steps before the last transform ``X``, the last
step must be a fitted ``SharedProjection``. A row's raw features must then be
complete (the kernel maps do not accept NaN).

Examples
--------
Two modalities that share a latent value ``t`` only through ``t**2``: linear
CCA sees nothing, the Nystroem composition does.

>>> import numpy as np
>>> from sklearn.kernel_approximation import Nystroem
>>> from sklearn.pipeline import make_pipeline
>>> from skcrossmodal import SharedProjection
>>> from skcrossmodal.compose import make_modality_transformer
>>> from skcrossmodal.retrieval import evaluate_retrieval, rank
>>> rng = np.random.default_rng(0)
>>> t = rng.uniform(-2, 2, size=600)
>>> X = np.column_stack([t, rng.normal(size=600), t**2, rng.normal(size=600)])
>>> X[:, 1] *= 0.1
>>> X[:, 3] *= 0.1
>>> kernel_cca = make_pipeline(
...     make_modality_transformer(
...         ("a", Nystroem(gamma=0.5, n_components=100, random_state=0), [0, 1]),
...         ("b", Nystroem(gamma=0.5, n_components=100, random_state=0), [2, 3]),
...     ),
...     SharedProjection(n_components=1, reg=1e-3),
... ).fit(X[:400])
>>> linear = SharedProjection(
...     n_components=1, modalities={"a": [0, 1], "b": [2, 3]}).fit(X[:400])
>>> scores = {
...     name: evaluate_retrieval(model, X[400:], query_modality="a",
...                              gallery_modality="b", metric="euclidean",
...                              k=[10])["recall@10"]
...     for name, model in [("kernel", kernel_cca), ("linear", linear)]
... }
>>> bool(scores["kernel"] > 2 * scores["linear"])
True
>>> distances, indices = rank(kernel_cca, X[400:], query_modality="a",
...                           gallery_modality="b", k=3)
>>> indices.shape
(200, 3)
"""

from __future__ import annotations

import copy
from numbers import Integral

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_array, check_is_fitted

from .metrics import (
    _BYTES_PER_PAIR_AP,
    _BYTES_PER_PAIR_FIRST,
    _check_k,
    _check_labels,
    _rank_statistics,
    _RankTally,
    _rows_in_working_memory,
    _stable_ascending_order,
)

__all__ = [
    "embed",
    "evaluate_embeddings",
    "evaluate_retrieval",
    "rank",
    "rank_embeddings",
]

_METRICS = ("cosine", "euclidean")
# Gallery rows scored at a time by rank(): the running top-k is merged with
# each chunk, so memory does not grow with the gallery. With at most
# _QUERY_BATCH queries at a time, a chunk's keys (16 MB) stay near the
# caches; larger blocks measured slower, not faster.
_GALLERY_CHUNK = 2048
_QUERY_BATCH = 1024


# -- embedding ---------------------------------------------------------------------


def _final_projection(estimator):
    """The fitted SharedProjection-like object at the end of ``estimator``."""
    if hasattr(estimator, "projection_") and not hasattr(estimator, "weights_"):
        estimator = estimator.projection_
    if isinstance(estimator, Pipeline):
        estimator = estimator[-1]
    check_is_fitted(estimator)
    if not hasattr(estimator, "modalities_") or "output" not in estimator.get_params(
        deep=False
    ):
        raise TypeError(
            "Retrieval needs a fitted SharedProjection, or a Pipeline whose last "
            f"step is one; got {type(estimator).__name__}."
        )
    return estimator


def embed(projection, X, modality):
    """Each row's embedding by one modality, in the fitted shared space.

    Parameters
    ----------
    projection : SharedProjection or Pipeline
        Fitted. A Pipeline's steps before the last transform ``X``; its last
        step must be a ``SharedProjection``. A fitted
        :class:`~skcrossmodal.transfer.CrossModalTransferClassifier` (or
        regressor) is accepted too: its ``projection_`` is used.
    X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
        Rows as the projection takes them (every modality's columns, a
        missing modality as an all-NaN block).
    modality : str
        A modality of the projection.

    Returns
    -------
    Z : ndarray of shape (n_samples, n_components)
        ``(X_m - means_[m]) @ weights_[m]``; NaN rows where the modality is
        missing. The projection is not modified.
    """
    final = _final_projection(projection)
    if hasattr(projection, "projection_") and not hasattr(projection, "weights_"):
        projection = projection.projection_
    if isinstance(projection, Pipeline) and len(projection) > 1:
        X = projection[:-1].transform(X)
    names = list(final.modalities_)
    if modality not in names:
        raise ValueError(
            f"Modality {modality!r} is not one of the projection's modalities {names}."
        )
    # A shallow copy shares the fitted arrays; only its `output` differs.
    view = copy.copy(final)
    view.set_params(output=modality)
    return np.asarray(view.transform(X))


def _embed_complete(projection, X, modality, role):
    Z = embed(projection, X, modality)
    missing = np.flatnonzero(np.isnan(Z).any(axis=1))
    if missing.size:
        raise ValueError(
            f"Row {missing[0]} of {role} does not carry modality {modality!r} "
            f"(its columns are all NaN; {missing.size} such row(s) in all). "
            f"Every {role} row must carry it: select the rows that do first."
        )
    return Z


# -- distances -----------------------------------------------------------------------


def _check_metric(metric):
    if metric not in _METRICS:
        raise ValueError(f"`metric` must be 'cosine' or 'euclidean', got {metric!r}.")


def _check_embeddings(Z_query, Z_gallery):
    Z_query = check_array(Z_query, dtype=[np.float64, np.float32], input_name="Z_query")
    Z_gallery = check_array(
        Z_gallery, dtype=[np.float64, np.float32], input_name="Z_gallery"
    )
    if Z_query.shape[1] != Z_gallery.shape[1]:
        raise ValueError(
            f"Z_query has {Z_query.shape[1]} columns but Z_gallery has "
            f"{Z_gallery.shape[1]}: both must live in the same space."
        )
    dtype = np.result_type(Z_query, Z_gallery)
    return Z_query.astype(dtype, copy=False), Z_gallery.astype(dtype, copy=False)


class _Keys:
    """Ranking keys (lower is better) of query rows against gallery rows.

    Cosine: the negated cosine similarity (zero vectors have cosine 0 with
    everything). Euclidean: ``|g|^2 - 2 q.g``, the squared distance less the
    query's own ``|q|^2``, which does not change a query's ranking; both are
    one matrix product, the euclidean one with ``|g|^2`` as an extra column.
    """

    def __init__(self, Z_query, Z_gallery, metric):
        self.metric = metric
        self.dtype = Z_query.dtype
        if metric == "cosine":
            self.query = -_unit_rows(Z_query)
            gallery = _unit_rows(Z_gallery)
        else:
            self.query_sq = np.einsum("ij,ij->i", Z_query, Z_query)
            ones = np.ones((Z_query.shape[0], 1), dtype=self.dtype)
            self.query = np.hstack([-2.0 * Z_query, ones])
            gallery_sq = np.einsum("ij,ij->i", Z_gallery, Z_gallery)
            gallery = np.hstack([Z_gallery, gallery_sq[:, None]])
        # (n_components, n_gallery), C-ordered: a chunk of columns is a
        # plain strided operand for BLAS.
        self.gallery_t = np.ascontiguousarray(gallery.T, dtype=self.dtype)

    def __call__(self, rows, start, stop, buffer=None):
        """Keys of query ``rows`` against gallery rows ``start:stop``.

        Written into ``buffer`` (a flat array reused between calls: fresh
        large arrays cost page faults that can exceed the product itself).
        """
        query = self.query[rows]
        shape = (query.shape[0], stop - start)
        if buffer is None:
            keys = np.empty(shape, dtype=self.dtype)
        else:
            keys = buffer[: shape[0] * shape[1]].reshape(shape)
        return np.matmul(query, self.gallery_t[:, start:stop], out=keys)

    def distances(self, keys, rows):
        """Distances from the keys of query ``rows``."""
        if self.metric == "cosine":
            return np.clip(1.0 + keys, 0.0, 2.0)
        return np.sqrt(np.maximum(keys + self.query_sq[rows, None], 0.0))


def _unit_rows(Z):
    norms = np.linalg.norm(Z, axis=1, keepdims=True)
    return Z / np.where(norms > 0, norms, 1.0)


class _RunningTopK:
    """The k smallest keys seen so far for each query of a batch.

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


def _check_batch_size(batch_size):
    if batch_size is None:
        return None
    return _check_k(batch_size, "batch_size")


# -- ranking ---------------------------------------------------------------------------


def rank_embeddings(
    Z_query,
    Z_gallery,
    *,
    metric="cosine",
    k=10,
    batch_size=None,
    return_distance=True,
):
    """Top ``k`` gallery rows for each query row, in bounded memory.

    Parameters
    ----------
    Z_query : array-like of shape (n_queries, n_components)
        Query embeddings.
    Z_gallery : array-like of shape (n_gallery, n_components)
        Gallery embeddings, in the same space.
    metric : {"cosine", "euclidean"}, default="cosine"
        Cosine distance ``1 - cos`` or euclidean distance.
    k : int or None, default=10
        How many gallery rows to return per query; ``None`` ranks the whole
        gallery (an ``(n_queries, n_gallery)`` result).
    batch_size : int or None, default=None
        Queries processed at a time; ``None`` chooses it from scikit-learn's
        ``working_memory`` (at most 1024). Memory is
        ``O(batch_size * (2048 + k))``, whatever the gallery size.
    return_distance : bool, default=True
        Also return the distances.

    Returns
    -------
    distances : ndarray of shape (n_queries, k)
        Ascending along each row. Only if ``return_distance``.
    indices : ndarray of int of shape (n_queries, k)
        Gallery row indices, best first; equal distances in index order.

    Examples
    --------
    >>> from skcrossmodal.retrieval import rank_embeddings
    >>> distances, indices = rank_embeddings(
    ...     [[1.0, 0.0], [0.0, 2.0]], [[0.0, 1.0], [3.0, 0.1], [1.0, 0.0]],
    ...     k=2)
    >>> indices
    array([[2, 1],
           [0, 1]])
    """
    _check_metric(metric)
    Z_query, Z_gallery = _check_embeddings(Z_query, Z_gallery)
    n_query, n_gallery = Z_query.shape[0], Z_gallery.shape[0]
    if k is None:
        k = n_gallery
    k = _check_k(k)
    if k > n_gallery:
        raise ValueError(
            f"k={k} is larger than the gallery, which has {n_gallery} row(s)."
        )
    batch_size = _check_batch_size(batch_size)
    chunk = max(_GALLERY_CHUNK, 2 * k)
    if chunk >= n_gallery:
        chunk = n_gallery
    if batch_size is None:
        # Keys, partition scratch and mask per chunk entry, then the merge.
        batch_size = min(
            _rows_in_working_memory(17 * chunk + 48 * k, n_query), _QUERY_BATCH
        )
    keys_of = _Keys(Z_query, Z_gallery, metric)
    all_keys = np.empty((n_query, k), dtype=keys_of.dtype)
    all_indices = np.empty((n_query, k), dtype=np.intp)
    buffer = np.empty(min(batch_size, n_query) * chunk, dtype=keys_of.dtype)
    for start in range(0, n_query, batch_size):
        rows = slice(start, min(start + batch_size, n_query))
        n_rows = rows.stop - rows.start
        if chunk == n_gallery and n_gallery <= 2 * k:
            # Most of the gallery is returned: sort it whole.
            keys = keys_of(rows, 0, n_gallery, buffer)
            order = _stable_ascending_order(keys)[:, :k]
            all_keys[rows] = np.take_along_axis(keys, order, axis=1)
            all_indices[rows] = order
            continue
        top = _RunningTopK(n_rows, k, keys_of.dtype, chunk)
        for g_start in range(0, n_gallery, chunk):
            g_stop = min(g_start + chunk, n_gallery)
            top.add(keys_of(rows, g_start, g_stop, buffer), g_start)
        all_keys[rows] = top.keys
        all_indices[rows] = top.indices
    if return_distance:
        return keys_of.distances(all_keys, slice(None)), all_indices
    return all_indices


def rank(
    projection,
    X_query,
    X_gallery=None,
    *,
    query_modality,
    gallery_modality,
    metric="cosine",
    k=10,
    batch_size=None,
    return_distance=True,
):
    """Rank gallery rows of one modality for query rows of another.

    Both sides are embedded in the fitted shared space (:func:`embed`), then
    ranked by :func:`rank_embeddings`.

    Parameters
    ----------
    projection : SharedProjection or Pipeline
        Fitted; a Pipeline must end in a ``SharedProjection``.
    X_query : {array-like, sparse matrix, DataFrame} of shape (n_queries, n_features)
        Query rows; each must carry ``query_modality``.
    X_gallery : {array-like, sparse matrix, DataFrame} or None, default=None
        Gallery rows; each must carry ``gallery_modality``. ``None``: the
        rows of ``X_query`` (paired data: each row's other modality).
    query_modality, gallery_modality : str
        Modality names of the projection.
    metric : {"cosine", "euclidean"}, default="cosine"
        Distance in the shared space.
    k : int or None, default=10
        Gallery rows returned per query; ``None`` for the full ranking.
    batch_size : int or None, default=None
        Queries at a time (see :func:`rank_embeddings`).
    return_distance : bool, default=True
        Also return the distances.

    Returns
    -------
    distances : ndarray of shape (n_queries, k)
        Only if ``return_distance``; ascending along each row.
    indices : ndarray of int of shape (n_queries, k)
        Row indices into ``X_gallery``, best first.

    Examples
    --------
    >>> import numpy as np
    >>> from skcrossmodal import SharedProjection
    >>> from skcrossmodal.retrieval import rank
    >>> rng = np.random.default_rng(0)
    >>> latent = rng.normal(size=(200, 2))
    >>> X = np.hstack([latent @ rng.normal(size=(2, 5)),
    ...                latent @ rng.normal(size=(2, 4))])
    >>> X += 0.1 * rng.normal(size=X.shape)
    >>> proj = SharedProjection(
    ...     modalities={"text": slice(0, 5), "image": slice(5, 9)}).fit(X)
    >>> indices = rank(proj, X, query_modality="text", gallery_modality="image",
    ...                k=5, return_distance=False)
    >>> indices.shape
    (200, 5)
    >>> # how often a text finds its own image among its top 5
    >>> float(np.mean((indices == np.arange(200)[:, None]).any(axis=1)))
    0.625
    """
    Z_query = _embed_complete(projection, X_query, query_modality, "X_query")
    Z_gallery = _embed_complete(
        projection,
        X_query if X_gallery is None else X_gallery,
        gallery_modality,
        "X_query" if X_gallery is None else "X_gallery",
    )
    return rank_embeddings(
        Z_query,
        Z_gallery,
        metric=metric,
        k=k,
        batch_size=batch_size,
        return_distance=return_distance,
    )


# -- evaluation -----------------------------------------------------------------------


def _check_ks(k):
    if isinstance(k, Integral) and not isinstance(k, bool):
        return [_check_k(k)]
    return [_check_k(value) for value in k]


def _evaluate_embeddings(
    Z_query,
    Z_gallery,
    y_query,
    y_gallery,
    *,
    metric,
    k,
    average_precision,
    batch_size,
):
    _check_metric(metric)
    Z_query, Z_gallery = _check_embeddings(Z_query, Z_gallery)
    n_query, n_gallery = Z_query.shape[0], Z_gallery.shape[0]
    y_query, y_gallery = _check_labels(y_query, y_gallery, n_query, n_gallery)
    if batch_size is None:
        per_pair = _BYTES_PER_PAIR_AP if average_precision else _BYTES_PER_PAIR_FIRST
        batch_size = _rows_in_working_memory((per_pair + 8) * n_gallery, n_query)
    keys_of = _Keys(Z_query, Z_gallery, metric)
    buffer = np.empty(min(batch_size, n_query) * n_gallery, dtype=keys_of.dtype)
    tally = _RankTally()
    for start in range(0, n_query, batch_size):
        rows = np.arange(start, min(start + batch_size, n_query))
        scores = keys_of(rows, 0, n_gallery, buffer)
        np.negative(scores, out=scores)
        relevant = y_query[rows][:, None] == y_gallery[None, :]
        tally.add(
            *_rank_statistics(
                scores,
                np.asarray(relevant, dtype=bool),
                average_precision=average_precision,
            )
        )
    return tally.result(k)


def evaluate_embeddings(
    Z_query,
    Z_gallery,
    y_query=None,
    y_gallery=None,
    *,
    metric="cosine",
    k=(1, 10),
    batch_size=None,
):
    """mAP, recall@k and median rank of retrieval between embeddings.

    The metrics are those of :mod:`skcrossmodal.metrics`, computed batch by
    batch of queries, so the query x gallery matrix is never held whole.

    Parameters
    ----------
    Z_query : array-like of shape (n_queries, n_components)
    Z_gallery : array-like of shape (n_gallery, n_components)
    y_query, y_gallery : array-like or None, default=None
        Labels; a gallery row is relevant to a query when their labels are
        equal. ``None`` for both: paired relevance, query ``i`` matches
        gallery row ``i`` only.
    metric : {"cosine", "euclidean"}, default="cosine"
    k : int or sequence of int, default=(1, 10)
        Cut-offs of ``recall@k``.
    batch_size : int or None, default=None
        Queries at a time; memory is ``O(batch_size * n_gallery)``. ``None``
        chooses it from scikit-learn's ``working_memory``.

    Returns
    -------
    results : dict
        ``"mean_average_precision"``, ``"recall@<k>"`` for each ``k``,
        ``"median_rank"`` and ``"n_queries"`` (queries with at least one
        relevant item, the ones the metrics average over).
    """
    return _evaluate_embeddings(
        Z_query,
        Z_gallery,
        y_query,
        y_gallery,
        metric=metric,
        k=_check_ks(k),
        average_precision=True,
        batch_size=_check_batch_size(batch_size),
    )


def evaluate_retrieval(
    projection,
    X_query,
    X_gallery=None,
    *,
    query_modality,
    gallery_modality,
    y_query=None,
    y_gallery=None,
    metric="cosine",
    k=(1, 10),
    batch_size=None,
):
    """mAP, recall@k and median rank of cross-modal retrieval.

    Parameters
    ----------
    projection : SharedProjection or Pipeline
        Fitted; a Pipeline must end in a ``SharedProjection``.
    X_query : {array-like, sparse matrix, DataFrame} of shape (n_queries, n_features)
        Query rows; each must carry ``query_modality``.
    X_gallery : {array-like, sparse matrix, DataFrame} or None, default=None
        Gallery rows; each must carry ``gallery_modality``. ``None``: the
        rows of ``X_query``, and ``y_gallery`` is ``y_query``.
    query_modality, gallery_modality : str
        Modality names of the projection.
    y_query, y_gallery : array-like or None, default=None
        Labels for label relevance; ``None``: paired relevance (row ``i`` of
        the queries matches row ``i`` of the gallery).
    metric : {"cosine", "euclidean"}, default="cosine"
    k : int or sequence of int, default=(1, 10)
        Cut-offs of ``recall@k``.
    batch_size : int or None, default=None
        Queries at a time (see :func:`evaluate_embeddings`).

    Returns
    -------
    results : dict
        See :func:`evaluate_embeddings`.
    """
    if X_gallery is None:
        if y_gallery is not None:
            raise ValueError(
                "With X_gallery=None the gallery is X_query's rows and its "
                "labels are y_query; do not pass y_gallery."
            )
        y_gallery = y_query
    Z_query = _embed_complete(projection, X_query, query_modality, "X_query")
    Z_gallery = _embed_complete(
        projection,
        X_query if X_gallery is None else X_gallery,
        gallery_modality,
        "X_query" if X_gallery is None else "X_gallery",
    )
    return evaluate_embeddings(
        Z_query,
        Z_gallery,
        y_query,
        y_gallery,
        metric=metric,
        k=k,
        batch_size=batch_size,
    )
