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

import copy
from numbers import Integral

import numpy as np
from sklearn import get_config
from sklearn.externals.array_api_compat import array_namespace
from sklearn.externals.array_api_compat import device as array_device
from sklearn.pipeline import Pipeline
from sklearn.utils._array_api import check_same_namespace
from sklearn.utils.validation import check_array, check_is_fitted

from ._array_api import accumulation_dtype, get_array_namespace
from ._base import validate_modal_data
from ._fusion_utils import xp_presence_mask, xp_take_columns
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
        missing. The projection is not modified. An array of X's namespace
        and device for array API input (see the module's Array API section).
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
    if _dispatching(X):
        return _embed_xp(final, X, modality)
    # A shallow copy shares the fitted arrays; only its `output` differs.
    view = copy.copy(final)
    view.set_params(output=modality)
    return np.asarray(view.transform(X))


def _dispatching(array):
    """Whether ``array`` takes the array API path: dispatch on, not numpy."""
    return get_config()["array_api_dispatch"] and get_array_namespace(array) is not None


def _embed_xp(final, X, modality):
    """``embed`` of an array API X, in its namespace and on its device.

    The projection's ``transform`` computes every modality's projection; only
    ``modality``'s is needed, so only its block must be present in a row
    (the others may be missing, as in the numpy path).
    """
    X = validate_modal_data(final, X, reset=False)
    check_same_namespace(
        X, final, attribute="canonical_correlations_", method="transform"
    )
    xp = array_namespace(X)
    present = xp_presence_mask(X, final.modalities_)
    position = list(final.modalities_).index(modality)
    weights = xp.astype(final.weights_[modality], X.dtype)
    offset = xp.astype(final.means_[modality], X.dtype) @ weights
    block = xp_take_columns(xp, X, final.modalities_[modality])
    Z = block @ weights - offset
    nan = xp.full(Z.shape, xp.nan, dtype=Z.dtype, device=array_device(Z))
    return xp.where(present[:, position : position + 1], Z, nan)


def _embed_complete(projection, X, modality, role):
    Z = embed(projection, X, modality)
    if _dispatching(Z):
        xp = array_namespace(Z)
        missing = xp.any(xp.isnan(Z), axis=1)
        if bool(xp.any(missing)):
            as_int = xp.astype(missing, xp.int64)
            first, count = int(xp.argmax(as_int)), int(xp.sum(as_int))
            _raise_missing_rows(first, count, modality, role)
        return Z
    missing = np.flatnonzero(np.isnan(Z).any(axis=1))
    if missing.size:
        _raise_missing_rows(missing[0], missing.size, modality, role)
    return Z


def _raise_missing_rows(first, count, modality, role):
    raise ValueError(
        f"Row {first} of {role} does not carry modality {modality!r} "
        f"(its columns are all NaN; {count} such row(s) in all). "
        f"Every {role} row must carry it: select the rows that do first."
    )


# -- distances -----------------------------------------------------------------------


def _check_metric(metric):
    if metric not in _METRICS:
        raise ValueError(f"`metric` must be 'cosine' or 'euclidean', got {metric!r}.")


def _embeddings_namespace(Z_query, Z_gallery):
    """The array API namespace and device of the embeddings, or (None, None).

    None unless ``array_api_dispatch`` is on and one of them is an array API
    array other than numpy. Everything then follows that array: a numpy
    array or list on the other side is moved to its device; an array of
    another namespace or device is an error.
    """
    if not get_config()["array_api_dispatch"]:
        return None, None
    found = [Z for Z in (Z_query, Z_gallery) if get_array_namespace(Z) is not None]
    if not found:
        return None, None
    xp, device = array_namespace(found[0]), array_device(found[0])
    for Z in found[1:]:
        if array_namespace(Z) is not xp or array_device(Z) != device:
            raise ValueError(
                "Z_query and Z_gallery must be in the same array namespace and "
                f"on the same device; got {array_namespace(found[0]).__name__} "
                f"on {array_device(found[0])} and {array_namespace(Z).__name__} "
                f"on {array_device(Z)}. Move one of them first."
            )
    return xp, device


def _check_embeddings_xp(Z_query, Z_gallery, xp, device):
    """:func:`_check_embeddings` for array API inputs, in their namespace."""
    checked = []
    for Z, name in ((Z_query, "Z_query"), (Z_gallery, "Z_gallery")):
        if get_array_namespace(Z) is None:
            # A numpy array or list: moved to the other side's device.
            Z = xp.asarray(np.asarray(Z), device=device)
        checked.append(check_array(Z, dtype=[xp.float64, xp.float32], input_name=name))
    Z_query, Z_gallery = checked
    if Z_query.shape[1] != Z_gallery.shape[1]:
        raise ValueError(
            f"Z_query has {Z_query.shape[1]} columns but Z_gallery has "
            f"{Z_gallery.shape[1]}: both must live in the same space."
        )
    dtype = xp.result_type(Z_query.dtype, Z_gallery.dtype)
    return xp.astype(Z_query, dtype, copy=False), xp.astype(
        Z_gallery, dtype, copy=False
    )


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


class _XpKeys:
    """:class:`_Keys` for array API embeddings, in their namespace and device.

    The same keys from the same products: the negated cosine similarity, or
    ``|g|^2 - 2 q.g`` as one product with ``|g|^2`` as an extra column.
    """

    def __init__(self, xp, Z_query, Z_gallery, metric):
        self.xp, self.metric = xp, metric
        if metric == "cosine":
            self.query = -_xp_unit_rows(xp, Z_query)
            gallery = _xp_unit_rows(xp, Z_gallery)
        else:
            self.query_sq = xp.sum(Z_query * Z_query, axis=1)
            ones = xp.ones(
                (Z_query.shape[0], 1), dtype=Z_query.dtype, device=array_device(Z_query)
            )
            self.query = xp.concat([-2.0 * Z_query, ones], axis=1)
            gallery_sq = xp.sum(Z_gallery * Z_gallery, axis=1)
            gallery = xp.concat([Z_gallery, gallery_sq[:, None]], axis=1)
        self.gallery = gallery

    def __call__(self, start, stop, g_start, g_stop):
        """Keys of query rows ``start:stop`` against gallery ``g_start:g_stop``."""
        return self.query[start:stop, :] @ self.gallery[g_start:g_stop, :].T

    def distances(self, keys, start, stop):
        """Distances from the keys of query rows ``start:stop``."""
        xp = self.xp
        if self.metric == "cosine":
            return xp.clip(1.0 + keys, min=0.0, max=2.0)
        return xp.sqrt(xp.clip(keys + self.query_sq[start:stop, None], min=0.0))


def _xp_unit_rows(xp, Z):
    norms = xp.sqrt(xp.sum(Z * Z, axis=1, keepdims=True))
    return Z / xp.where(norms > 0, norms, xp.ones_like(norms))


def _xp_take_along_rows(xp, values, order):
    """``take_along_axis(values, order, axis=1)``, also before the 2024.12 API."""
    if hasattr(xp, "take_along_axis"):
        return xp.take_along_axis(values, order, axis=1)
    n_rows, n_columns = values.shape
    offsets = xp.arange(n_rows, dtype=order.dtype, device=array_device(order))
    flat = xp.reshape(order + offsets[:, None] * n_columns, (-1,))
    return xp.reshape(xp.take(xp.reshape(values, (-1,)), flat), order.shape)


def _xp_top_k(xp, keys_of, n_query, n_gallery, k, batch_size, chunk):
    """The k smallest keys of every query and their gallery indices.

    For each batch of queries the gallery is scored chunk by chunk; the k
    kept so far (sorted by key, then index) are put before the chunk (in
    index order), and a stable sort by key keeps the first k. Every kept
    index is below the chunk's, so equal keys stay in index order: the tie
    rule of the numpy path.
    """
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
            if best_keys is not None:
                keys = xp.concat([best_keys, keys], axis=1)
                indices = xp.concat([best_indices, indices], axis=1)
            order = xp.argsort(keys, axis=1, stable=True)[:, :k]
            best_keys = _xp_take_along_rows(xp, keys, order)
            best_indices = _xp_take_along_rows(xp, indices, order)
        all_keys.append(best_keys)
        all_indices.append(best_indices)
    return xp.concat(all_keys, axis=0), xp.concat(all_indices, axis=0)


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
    _check_metric(metric)
    xp, device = _embeddings_namespace(Z_query, Z_gallery)
    if xp is None:
        Z_query, Z_gallery = _check_embeddings(Z_query, Z_gallery)
    else:
        Z_query, Z_gallery = _check_embeddings_xp(Z_query, Z_gallery, xp, device)
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
    if xp is not None:
        if batch_size is None:
            # Keys, gallery indices and sort order per entry, twice over.
            batch_size = _rows_in_working_memory(48 * (chunk + k), n_query)
        keys_of = _XpKeys(xp, Z_query, Z_gallery, metric)
        all_keys, all_indices = _xp_top_k(
            xp, keys_of, n_query, n_gallery, k, batch_size, chunk
        )
        if return_distance:
            return keys_of.distances(all_keys, 0, n_query), all_indices
        return all_indices
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
    xp, device = _embeddings_namespace(Z_query, Z_gallery)
    if xp is not None:
        Z_query, Z_gallery = _check_embeddings_xp(Z_query, Z_gallery, xp, device)
    else:
        Z_query, Z_gallery = _check_embeddings(Z_query, Z_gallery)
    n_query, n_gallery = Z_query.shape[0], Z_gallery.shape[0]
    if batch_size is None:
        per_pair = _BYTES_PER_PAIR_AP if average_precision else _BYTES_PER_PAIR_FIRST
        batch_size = _rows_in_working_memory((per_pair + 8) * n_gallery, n_query)
    if xp is not None:
        return _xp_evaluate(
            xp,
            Z_query,
            Z_gallery,
            y_query,
            y_gallery,
            metric=metric,
            k=k,
            average_precision=average_precision,
            batch_size=batch_size,
        )
    y_query, y_gallery = _check_labels(y_query, y_gallery, n_query, n_gallery)
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


def _xp_labels(xp, device, y_query, y_gallery, n_query, n_gallery):
    """Labels as arrays of xp on ``device`` whose ``==`` is the relevance.

    Labels of xp (on the embeddings' device) are compared as they are.
    Host labels (numpy, lists: possibly strings) are validated as the numpy
    path does, then replaced by integer codes equal exactly where the labels
    compare equal, and moved to the device.
    """
    on_device = [get_array_namespace(y) is not None for y in (y_query, y_gallery)]
    if not any(on_device):
        y_query, y_gallery = _check_labels(y_query, y_gallery, n_query, n_gallery)
        codes_query, codes_gallery = _label_codes(y_query, y_gallery)
        return (
            xp.asarray(codes_query, device=device),
            xp.asarray(codes_gallery, device=device),
        )
    if not all(on_device) or any(
        array_namespace(y) is not xp or array_device(y) != device
        for y in (y_query, y_gallery)
    ):
        raise ValueError(
            "y_query and y_gallery must both be host labels (numpy arrays, "
            "lists) or both arrays of the embeddings' namespace "
            f"({xp.__name__}) on their device ({device})."
        )
    labels = []
    for y, n_rows in ((y_query, n_query), (y_gallery, n_gallery)):
        if y.ndim == 2 and y.shape[1] == 1:
            y = xp.reshape(y, (-1,))
        if y.ndim != 1 or y.shape[0] != n_rows:
            raise ValueError(
                f"Z_query and Z_gallery have {n_query} and {n_gallery} rows, "
                f"but y_query and y_gallery have shapes {tuple(y_query.shape)} "
                f"and {tuple(y_gallery.shape)}: one label per row is needed."
            )
        labels.append(y)
    return labels[0], labels[1]


def _label_codes(y_query, y_gallery):
    """Integer codes of two label arrays, equal where the labels are ``==``."""
    try:
        _, codes = np.unique(
            np.concatenate([y_query, y_gallery]), return_inverse=True, equal_nan=False
        )
        return codes[: y_query.shape[0]], codes[y_query.shape[0] :]
    except (TypeError, ValueError):  # labels that numpy cannot sort together
        lookup = {}
        gallery = [
            lookup.setdefault(value, len(lookup)) for value in y_gallery.tolist()
        ]
        query = [lookup.get(value, -1) for value in y_query.tolist()]
        return np.asarray(query, dtype=np.int64), np.asarray(gallery, dtype=np.int64)


def _xp_rank_statistics(xp, scores, relevant, *, average_precision):
    """``metrics._rank_statistics`` in the scores' namespace and device."""
    device = array_device(scores)
    n_gallery = scores.shape[1]
    n_relevant = xp.sum(xp.astype(relevant, xp.int64), axis=1)
    has_relevant = n_relevant > 0
    floor = xp.full(scores.shape, -xp.inf, dtype=scores.dtype, device=device)
    best = xp.max(xp.where(relevant, scores, floor), axis=1)
    at_best = scores == best[:, None]
    first_index = xp.argmax(xp.astype(relevant & at_best, xp.int32), axis=1)
    columns = xp.arange(n_gallery, device=device)
    ahead = xp.sum(xp.astype(scores > best[:, None], xp.int64), axis=1)
    ahead = ahead + xp.sum(
        xp.astype(at_best & (columns[None, :] < first_index[:, None]), xp.int64),
        axis=1,
    )
    first_rank = xp.where(has_relevant, ahead + 1, xp.zeros_like(ahead))

    ap = None
    if average_precision:
        dtype = accumulation_dtype(xp, device)
        order = xp.argsort(-scores, axis=1, stable=True)
        hits = _xp_take_along_rows(xp, relevant, order)
        del order
        precision = xp.cumulative_sum(xp.astype(hits, dtype), axis=1)
        precision = precision / xp.arange(1, n_gallery + 1, dtype=dtype, device=device)
        precision_sum = xp.sum(
            xp.where(hits, precision, xp.zeros_like(precision)), axis=1
        )
        divisor = xp.astype(xp.clip(n_relevant, min=1), dtype)
        ap = xp.where(
            has_relevant, precision_sum / divisor, xp.zeros_like(precision_sum)
        )
    return n_relevant, first_rank, ap


def _xp_evaluate(
    xp,
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
    """``_evaluate_embeddings`` for array API embeddings, on their device.

    Everything per query pair stays on the device; what comes back to the
    host are the few numbers returned (one sum, counts and the median).
    """
    device = array_device(Z_query)
    n_query, n_gallery = Z_query.shape[0], Z_gallery.shape[0]
    labels_query, labels_gallery = _xp_labels(
        xp, device, y_query, y_gallery, n_query, n_gallery
    )
    keys_of = _XpKeys(xp, Z_query, Z_gallery, metric)
    first_ranks, ap_sum = [], 0.0
    for start in range(0, n_query, batch_size):
        stop = min(start + batch_size, n_query)
        scores = -keys_of(start, stop, 0, n_gallery)
        relevant = labels_query[start:stop, None] == labels_gallery[None, :]
        n_relevant, first_rank, ap = _xp_rank_statistics(
            xp, scores, relevant, average_precision=average_precision
        )
        keep = n_relevant > 0
        first_ranks.append(first_rank[keep])
        if ap is not None:
            ap_sum += float(xp.sum(xp.where(keep, ap, xp.zeros_like(ap))))
    first = xp.sort(xp.concat(first_ranks))
    n_kept = int(first.shape[0])
    if n_kept == 0:
        raise ValueError(
            "No query has a relevant item in the gallery (no gallery label "
            "equals a query label), so the retrieval metrics are undefined. "
            "Check y_query and y_gallery."
        )
    out = {}
    if average_precision:
        out["mean_average_precision"] = ap_sum / n_kept
    for cutoff in k:
        found = int(xp.sum(xp.astype(first <= cutoff, xp.int64)))
        out[f"recall@{cutoff}"] = found / n_kept
    middle = n_kept // 2
    if n_kept % 2:
        out["median_rank"] = float(first[middle])
    else:
        out["median_rank"] = (float(first[middle - 1]) + float(first[middle])) / 2
    out["n_queries"] = n_kept
    return out


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
