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

Scale
-----
Rankings do not depend on the embeddings' units: euclidean keys are
computed on the embeddings divided by a common power of two (exact), cosine
keys on each row divided by its largest entry, so values near 1e-161 or
1e+200 rank as they would near 1. For cosine, a row whose largest entry is
at most ``n_components * eps`` times the largest entry of its side is a
zero vector (rounding noise): its cosine with everything is 0. Where the
answer does not fit the dtype (euclidean distances beyond its largest
value; rows so much smaller than the largest that their squared distances
underflow, on both sides) a ``ValueError`` says so.

Array API
---------
Under ``sklearn.set_config(array_api_dispatch=True)``, embeddings (and, for
:func:`embed`, :func:`rank` and :func:`evaluate_retrieval`, the rows ``X``
given to a projection fitted on arrays of the same namespace) may be arrays
of any namespace that follows the array API standard: torch on the CPU or a
GPU, CuPy, ``array_api_strict``. Keys, top ``k`` and metrics are then
computed in that namespace and on its device, by the same products and with
the same tie rule (a stable sort of the kept top ``k`` followed by the next
gallery chunk); distances and indices are arrays of that namespace. A numpy
array on one side follows the other side onto its device. Labels may be
host arrays (numpy, lists, strings included: they are encoded as integers
on the host and moved to the device) or arrays of the embeddings' namespace
on their device. The metrics come back as Python floats.

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

from numbers import Integral

import numpy as np

from ._embedding import (
    check_batch_size,
    check_embeddings,
    check_metric,
    embed,
    embed_sides,
    embeddings_namespace,
    row_names,
)
from ._memory import check_allocation
from ._ranking import (
    BYTES_PER_PAIR_AP,
    BYTES_PER_PAIR_FIRST,
    Keys,
    check_k,
    evaluate,
    is_numpy,
    rows_in_working_memory,
    top_k,
)
from ._relevance import label_codes

__all__ = [
    "embed",
    "evaluate_embeddings",
    "evaluate_retrieval",
    "rank",
    "rank_embeddings",
]

# Gallery rows scored at a time by rank(): the running top-k is merged with
# each chunk, so memory does not grow with the gallery. With at most
# _QUERY_BATCH queries at a time, a chunk's keys (16 MB) stay near the
# caches; larger blocks measured slower, not faster.
_GALLERY_CHUNK = 2048
_QUERY_BATCH = 1024


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

    Notes
    -----
    Array API inputs (under ``array_api_dispatch``) are ranked in their own
    namespace and on their device, with the same results; the outputs are
    arrays of that namespace. See the module's Array API section.

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
    return _rank_embeddings(
        Z_query,
        Z_gallery,
        metric=metric,
        k=k,
        batch_size=batch_size,
        return_distance=return_distance,
    )


def _rank_embeddings(
    Z_query, Z_gallery, *, metric, k, batch_size, return_distance, sides=None
):
    """:func:`rank_embeddings`; ``sides`` names the rows in messages (Keys)."""
    check_metric(metric)
    xp, device = embeddings_namespace(Z_query, Z_gallery)
    Z_query, Z_gallery = check_embeddings(xp, device, Z_query, Z_gallery)
    n_query, n_gallery = Z_query.shape[0], Z_gallery.shape[0]
    k = check_k(n_gallery if k is None else k)
    if k > n_gallery:
        raise ValueError(
            f"k={k} is larger than the gallery, which has {n_gallery} row(s)."
        )
    batch_size = check_batch_size(batch_size)
    chunk = min(max(_GALLERY_CHUNK, 2 * k), n_gallery)
    if batch_size is None and is_numpy(xp):
        # Keys, partition scratch and mask per chunk entry, then the merge.
        batch_size = min(
            rows_in_working_memory(17 * chunk + 48 * k, n_query), _QUERY_BATCH
        )
    elif batch_size is None:
        # Keys, gallery indices and sort order per entry, twice over.
        batch_size = rows_in_working_memory(48 * (chunk + k), n_query)
    # A batch holds keys, indices and scratch for (chunk + k) entries per
    # query: 81 bytes each measured (tracemalloc, 5000 queries, numpy).
    check_allocation(
        80.0 * min(batch_size, n_query) * (chunk + k),
        f"Ranking with batch_size={batch_size} ({min(batch_size, n_query)} "
        f"queries at a time against gallery chunks of {chunk}, k={k})",
        "Lower batch_size, or leave it None (chosen from scikit-learn's "
        "working_memory).",
    )
    keys_of = Keys(xp, Z_query, Z_gallery, metric, sides)
    keys, indices = top_k(xp, keys_of, n_query, n_gallery, k, batch_size, chunk)
    if return_distance:
        return keys_of.distances(keys, 0, n_query), indices
    return indices


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
    Z_query, Z_gallery = embed_sides(
        projection, X_query, X_gallery, query_modality, gallery_modality
    )
    return _rank_embeddings(
        Z_query,
        Z_gallery,
        metric=metric,
        k=k,
        batch_size=batch_size,
        return_distance=return_distance,
        sides=row_names(X_gallery),
    )


# -- evaluation -----------------------------------------------------------------------


def _check_ks(k):
    if isinstance(k, Integral) and not isinstance(k, bool):
        return [check_k(k)]
    return [check_k(value) for value in k]


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
    sides=None,
):
    """Metrics of every query's full ranking, ``batch_size`` queries at a time.

    Everything per query pair stays in the embeddings' namespace and on their
    device; only the returned numbers come back to the host. ``sides`` names
    the rows in messages (see ``_ranking.Keys``).
    """
    check_metric(metric)
    xp, device = embeddings_namespace(Z_query, Z_gallery)
    Z_query, Z_gallery = check_embeddings(xp, device, Z_query, Z_gallery)
    n_query, n_gallery = Z_query.shape[0], Z_gallery.shape[0]
    labels = label_codes(
        xp,
        device,
        y_query,
        y_gallery,
        n_query,
        n_gallery,
        {"y_query": "rows in Z_query", "y_gallery": "rows in Z_gallery"},
    )
    if batch_size is None:
        per_pair = BYTES_PER_PAIR_AP if average_precision else BYTES_PER_PAIR_FIRST
        batch_size = rows_in_working_memory((per_pair + 8) * n_gallery, n_query)
    keys_of = Keys(xp, Z_query, Z_gallery, metric, sides)
    buffer = None
    if is_numpy(xp):
        buffer = np.empty(min(batch_size, n_query) * n_gallery, dtype=keys_of.dtype)
    return evaluate(
        xp,
        lambda start, stop: keys_of.scores(start, stop, buffer),
        labels,
        n_query,
        ks=k,
        average_precision=average_precision,
        batch_size=batch_size,
    )


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

    Notes
    -----
    Array API embeddings (under ``array_api_dispatch``) are scored in their
    own namespace and on their device; only the returned numbers come back
    to the host. See the module's Array API section.
    """
    return _evaluate_embeddings(
        Z_query,
        Z_gallery,
        y_query,
        y_gallery,
        metric=metric,
        k=_check_ks(k),
        average_precision=True,
        batch_size=check_batch_size(batch_size),
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
    Z_query, Z_gallery = embed_sides(
        projection, X_query, X_gallery, query_modality, gallery_modality
    )
    return _evaluate_embeddings(
        Z_query,
        Z_gallery,
        y_query,
        y_gallery,
        metric=metric,
        k=_check_ks(k),
        average_precision=True,
        batch_size=check_batch_size(batch_size),
        sides=row_names(X_gallery),
    )
