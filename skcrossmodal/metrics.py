"""Ranking metrics for cross-modal retrieval, and scorers for model selection.

Queries of one modality rank the items of a *gallery* (usually another
modality) by a score, higher meaning more similar. A gallery item is
*relevant* to a query when their labels are equal (label-based relevance, as
in cross-modal retrieval papers); passing the row number as the label (or
``y_query=y_gallery=None``) gives paired relevance: query ``i`` has exactly
one relevant item, gallery item ``i``, its pair.

Definitions
-----------
Rank
    The 1-based position of a gallery item in the query's ranking: sorted by
    score, descending. **Ties** (equal scores) are broken by gallery index,
    the lower index first, exactly as a stable sort would order them. The
    rule is deterministic and favours neither relevant nor irrelevant items.
``recall_at_k``
    The fraction of queries with at least one relevant item among the top
    ``k``: the "Recall@K" (R@K) of image-text retrieval and of metric
    learning. With one relevant item per query (paired relevance) it is the
    ordinary recall at ``k``.
``mean_average_precision``
    The mean over queries of the average precision over the whole gallery
    (mAP@all): for a query with ``R`` relevant items at ranks
    ``p_1 < ... < p_R``, ``AP = (1/R) * sum_j j / p_j``.
``median_rank``
    The median over queries of the rank of the first relevant item (MedR).
    Lower is better; 1 is perfect.

Queries with no relevant item in the gallery have none of these defined;
they are left out of every metric (and an error is raised when no query is
left).

Scorers
-------
:func:`make_retrieval_scorer` turns these metrics into scorers that
``GridSearchCV(scoring=...)`` and ``cross_val_score`` accept, for a
:class:`~skcrossmodal.SharedProjection` (or a pipeline ending in one): on each
held-out fold, the fold's rows of one modality query the fold's rows of
another.
"""

from __future__ import annotations

import itertools
from numbers import Integral

import numpy as np
from sklearn import get_config
from sklearn.utils.validation import check_array, column_or_1d

__all__ = [
    "make_retrieval_scorer",
    "mean_average_precision",
    "median_rank",
    "recall_at_k",
]

_SCORES = ("mean_average_precision", "recall_at_k", "median_rank")
# Bytes of temporaries per (query, gallery) pair when ranks are computed with
# average precision: the scores, their negation, the argsort, the relevance
# in both orders, the running count of hits and the precisions.
_BYTES_PER_PAIR_AP = 48
# ... and without average precision (masks and comparisons only).
_BYTES_PER_PAIR_FIRST = 16


# -- the computation, one batch of queries at a time --------------------------------


def _rank_statistics(scores, relevant, *, average_precision):
    """Per-query ranking statistics of one batch.

    Parameters
    ----------
    scores : ndarray of shape (n_batch, n_gallery)
        Higher is more similar; finite.
    relevant : ndarray of bool, shape (n_batch, n_gallery)
    average_precision : bool
        Also compute the average precision (needs a sort of every row).

    Returns
    -------
    n_relevant : ndarray of int, shape (n_batch,)
    first_rank : ndarray of int, shape (n_batch,)
        1-based rank of the best-ranked relevant item; 0 where there is none.
    ap : ndarray of float, shape (n_batch,) or None
        Average precision; 0 where there is no relevant item.
    """
    n_gallery = scores.shape[1]
    n_relevant = relevant.sum(axis=1)
    has_relevant = n_relevant > 0

    # First relevant item, without sorting: the relevant item of best score
    # (lowest index among equals) is preceded by every item scoring higher
    # and by every item scoring the same with a lower index.
    best = np.where(relevant, scores, -np.inf).max(axis=1, initial=-np.inf)
    at_best = scores == best[:, None]
    first_index = np.argmax(relevant & at_best, axis=1)
    ahead = np.count_nonzero(scores > best[:, None], axis=1)
    ahead += np.count_nonzero(
        at_best & (np.arange(n_gallery) < first_index[:, None]), axis=1
    )
    first_rank = np.where(has_relevant, ahead + 1, 0)

    ap = None
    if average_precision:
        order = _stable_ascending_order(-scores)
        hits = np.take_along_axis(relevant, order, axis=1)
        del order
        # Precision at the rank of each relevant item: hits so far / rank.
        precision = np.cumsum(hits, axis=1, dtype=np.float64)
        precision /= np.arange(1, n_gallery + 1, dtype=np.float64)
        precision_sum = np.where(hits, precision, 0.0).sum(axis=1)
        ap = np.where(has_relevant, precision_sum / np.maximum(n_relevant, 1), 0.0)
    return n_relevant, first_rank, ap


def _stable_ascending_order(keys):
    """argsort of every row by ascending key, ties by ascending index.

    numpy's quicksort is several times faster than its stable sort; it is
    used, and the rows where it could have reordered equal keys (the rows
    holding a repeated key) are sorted again with the stable sort.
    """
    order = np.argsort(keys, axis=1, kind="quicksort")
    ordered = np.take_along_axis(keys, order, axis=1)
    repeated = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
    if repeated.size:
        order[repeated] = np.argsort(keys[repeated], axis=1, kind="stable")
    return order


class _RankTally:
    """Accumulate per-query statistics over batches of queries."""

    def __init__(self):
        self.first_ranks = []
        self.ap_sum = 0.0
        self.has_ap = True

    def add(self, n_relevant, first_rank, ap):
        keep = n_relevant > 0
        self.first_ranks.append(first_rank[keep])
        if ap is None:
            self.has_ap = False
        else:
            self.ap_sum += float(ap[keep].sum())

    def result(self, ks):
        first = np.concatenate(self.first_ranks) if self.first_ranks else np.empty(0)
        if first.size == 0:
            raise ValueError(
                "No query has a relevant item in the gallery (no gallery label "
                "equals a query label), so the retrieval metrics are undefined. "
                "Check y_query and y_gallery."
            )
        out = {}
        if self.has_ap:
            out["mean_average_precision"] = self.ap_sum / first.size
        for k in ks:
            out[f"recall@{k}"] = float(np.mean(first <= k))
        out["median_rank"] = float(np.median(first))
        out["n_queries"] = int(first.size)
        return out


def _relevance_batch(y_query, y_gallery, rows):
    """Relevance of the query rows ``rows`` against the whole gallery."""
    return np.asarray(y_query[rows][:, None] == y_gallery[None, :], dtype=bool)


def _rows_in_working_memory(row_bytes, n_rows):
    """Rows whose temporaries fit scikit-learn's ``working_memory`` (MiB).

    At least 1 and at most ``n_rows`` (and 1 when there are no rows).
    """
    budget = get_config()["working_memory"] * 2**20
    return int(min(max(budget // max(row_bytes, 1), 1), max(n_rows, 1)))


# -- validation --------------------------------------------------------------------


def _check_labels(y_query, y_gallery, n_query, n_gallery):
    if (y_query is None) != (y_gallery is None):
        raise ValueError(
            "Pass both y_query and y_gallery (label relevance), or neither "
            "(paired relevance: query i matches gallery item i only)."
        )
    if y_query is None:
        if n_query != n_gallery:
            raise ValueError(
                "Paired relevance (y_query=y_gallery=None) needs as many queries "
                f"as gallery items; got {n_query} and {n_gallery}. Pass labels "
                "to use label relevance."
            )
        labels = np.arange(n_query)
        return labels, labels
    y_query = column_or_1d(np.asarray(y_query), warn=False)
    y_gallery = column_or_1d(np.asarray(y_gallery), warn=False)
    if y_query.shape[0] != n_query or y_gallery.shape[0] != n_gallery:
        raise ValueError(
            f"y_score has shape ({n_query}, {n_gallery}) but y_query has "
            f"{y_query.shape[0]} labels and y_gallery {y_gallery.shape[0]}: "
            "y_score[i, j] must score gallery item j for query i."
        )
    return y_query, y_gallery


def _check_k(k, name="k"):
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise ValueError(f"`{name}` must be an int >= 1, got {k!r}.")
    return int(k)


def _evaluate_score_matrix(y_query, y_gallery, y_score, *, average_precision, ks):
    y_score = check_array(y_score, dtype=[np.float64, np.float32], input_name="y_score")
    n_query, n_gallery = y_score.shape
    y_query, y_gallery = _check_labels(y_query, y_gallery, n_query, n_gallery)
    per_pair = _BYTES_PER_PAIR_AP if average_precision else _BYTES_PER_PAIR_FIRST
    batch = _rows_in_working_memory(per_pair * n_gallery, n_query)
    tally = _RankTally()
    for start in range(0, n_query, batch):
        rows = np.arange(start, min(start + batch, n_query))
        tally.add(
            *_rank_statistics(
                y_score[rows],
                _relevance_batch(y_query, y_gallery, rows),
                average_precision=average_precision,
            )
        )
    return tally.result(ks)


# -- public metrics ----------------------------------------------------------------


def recall_at_k(y_query, y_gallery, y_score, *, k=1):
    """Fraction of queries with a relevant item among their top ``k``.

    Read more in the module docstring (:mod:`skcrossmodal.metrics`), which
    defines the ranks, the tie rule and the relevance.

    Parameters
    ----------
    y_query : array-like of shape (n_queries,) or None
        Labels of the queries. A gallery item is relevant to a query when
        their labels are equal.
    y_gallery : array-like of shape (n_gallery,) or None
        Labels of the gallery items. ``y_query=y_gallery=None`` means paired
        relevance: query ``i`` matches gallery item ``i`` only (y_score must
        then be square).
    y_score : array-like of shape (n_queries, n_gallery)
        Similarity of each gallery item to each query, higher is better (for
        distances, pass ``-distances``). Equal scores rank by gallery index.
    k : int, default=1
        Cut-off.

    Returns
    -------
    recall : float
        In [0, 1]; queries without any relevant item are left out.

    See Also
    --------
    mean_average_precision, median_rank, make_retrieval_scorer

    Examples
    --------
    >>> import numpy as np
    >>> from skcrossmodal.metrics import recall_at_k
    >>> y_score = np.array([[0.9, 0.1, 0.5],
    ...                     [0.2, 0.3, 0.8]])
    >>> recall_at_k([0, 1], [0, 0, 1], y_score, k=1)
    1.0
    >>> recall_at_k([1, 0], [0, 0, 1], y_score, k=1)
    0.0
    >>> recall_at_k([1, 0], [0, 0, 1], y_score, k=2)
    1.0
    """
    k = _check_k(k)
    result = _evaluate_score_matrix(
        y_query, y_gallery, y_score, average_precision=False, ks=[k]
    )
    return result[f"recall@{k}"]


def mean_average_precision(y_query, y_gallery, y_score):
    """Mean over queries of the average precision of their ranking (mAP@all).

    For a query with ``R`` relevant gallery items at ranks
    ``p_1 < ... < p_R`` (1-based, sorted by descending score, ties by gallery
    index), ``AP = (1/R) * sum_j j / p_j``.

    Parameters
    ----------
    y_query : array-like of shape (n_queries,) or None
        Labels of the queries; relevance is label equality.
    y_gallery : array-like of shape (n_gallery,) or None
        Labels of the gallery items; ``None`` for both: paired relevance.
    y_score : array-like of shape (n_queries, n_gallery)
        Similarity, higher is better.

    Returns
    -------
    map : float
        In (0, 1]; queries without any relevant item are left out.

    See Also
    --------
    recall_at_k, median_rank, make_retrieval_scorer

    Examples
    --------
    >>> import numpy as np
    >>> from skcrossmodal.metrics import mean_average_precision
    >>> y_score = np.array([[0.9, 0.1, 0.5]])
    >>> # relevant items at ranks 1 and 3: AP = (1/1 + 2/3) / 2
    >>> round(mean_average_precision([0], [0, 0, 1], y_score), 4)
    0.8333
    """
    return _evaluate_score_matrix(
        y_query, y_gallery, y_score, average_precision=True, ks=[]
    )["mean_average_precision"]


def median_rank(y_query, y_gallery, y_score):
    """Median over queries of the rank of the first relevant item (MedR).

    Parameters
    ----------
    y_query : array-like of shape (n_queries,) or None
        Labels of the queries; relevance is label equality.
    y_gallery : array-like of shape (n_gallery,) or None
        Labels of the gallery items; ``None`` for both: paired relevance.
    y_score : array-like of shape (n_queries, n_gallery)
        Similarity, higher is better; equal scores rank by gallery index.

    Returns
    -------
    median_rank : float
        At least 1 (perfect); lower is better. Queries without any relevant
        item are left out.

    See Also
    --------
    recall_at_k, mean_average_precision, make_retrieval_scorer

    Examples
    --------
    >>> import numpy as np
    >>> from skcrossmodal.metrics import median_rank
    >>> y_score = np.array([[0.9, 0.1, 0.5],
    ...                     [0.2, 0.3, 0.8],
    ...                     [0.5, 0.5, 0.5]])
    >>> # paired: item 0 ranks 1st, item 1 ranks 2nd, item 2 ranks 3rd (tie)
    >>> median_rank(None, None, y_score)
    2.0
    """
    return _evaluate_score_matrix(
        y_query, y_gallery, y_score, average_precision=False, ks=[]
    )["median_rank"]


# -- scorers -----------------------------------------------------------------------


class _RetrievalScorer:
    """Scorer ``(estimator, X, y=None) -> float`` for cross-modal retrieval.

    Made by :func:`make_retrieval_scorer`; see there.
    """

    def __init__(
        self, score, k, query_modality, gallery_modality, metric, relevance, batch_size
    ):
        self.score = score
        self.k = k
        self.query_modality = query_modality
        self.gallery_modality = gallery_modality
        self.metric = metric
        self.relevance = relevance
        self.batch_size = batch_size

    def __repr__(self):
        args = [repr(self.score)]
        if self.score == "recall_at_k":
            args.append(f"k={self.k}")
        for name in ("query_modality", "gallery_modality"):
            if getattr(self, name) is not None:
                args.append(f"{name}={getattr(self, name)!r}")
        if self.metric != "cosine":
            args.append(f"metric={self.metric!r}")
        if self.relevance != "auto":
            args.append(f"relevance={self.relevance!r}")
        return f"make_retrieval_scorer({', '.join(args)})"

    def _pairs(self, names):
        queries = names if self.query_modality is None else [self.query_modality]
        galleries = names if self.gallery_modality is None else [self.gallery_modality]
        for name in itertools.chain(queries, galleries):
            if name not in names:
                raise ValueError(
                    f"make_retrieval_scorer: modality {name!r} is not one of the "
                    f"fitted projection's modalities {names}."
                )
        pairs = [(q, g) for q in queries for g in galleries if q != g]
        if not pairs:
            raise ValueError(
                "make_retrieval_scorer: query_modality and gallery_modality "
                "name the same modality; retrieval is across modalities."
            )
        return pairs

    def __call__(self, estimator, X, y=None, **kwargs):
        from .retrieval import _evaluate_embeddings, _final_projection, embed

        if self.relevance == "label" and y is None:
            raise ValueError(
                "make_retrieval_scorer(relevance='label') needs y: pass labels "
                "to fit (e.g. GridSearchCV(...).fit(X, y)) or use "
                "relevance='pair'."
            )
        use_labels = y is not None and self.relevance != "pair"
        names = list(_final_projection(estimator).modalities_)
        values = []
        for query, gallery in self._pairs(names):
            Z_query = embed(estimator, X, query)
            Z_gallery = embed(estimator, X, gallery)
            query_rows = np.flatnonzero(~np.isnan(Z_query).any(axis=1))
            gallery_rows = np.flatnonzero(~np.isnan(Z_gallery).any(axis=1))
            labels = (
                column_or_1d(np.asarray(y), warn=False)
                if use_labels
                else np.arange(Z_query.shape[0])
            )
            result = _evaluate_embeddings(
                Z_query[query_rows],
                Z_gallery[gallery_rows],
                labels[query_rows],
                labels[gallery_rows],
                metric=self.metric,
                k=[self.k] if self.score == "recall_at_k" else [],
                average_precision=self.score == "mean_average_precision",
                batch_size=self.batch_size,
            )
            if self.score == "recall_at_k":
                values.append(result[f"recall@{self.k}"])
            elif self.score == "median_rank":
                values.append(-result["median_rank"])
            else:
                values.append(result["mean_average_precision"])
        return float(np.mean(values))


def make_retrieval_scorer(
    score="mean_average_precision",
    *,
    k=1,
    query_modality=None,
    gallery_modality=None,
    metric="cosine",
    relevance="auto",
    batch_size=None,
):
    """A scorer of cross-modal retrieval for ``GridSearchCV`` and friends.

    The scorer is called as ``scorer(estimator, X, y=None)``, which is how
    ``GridSearchCV``, ``cross_val_score`` and ``cross_validate`` call a
    ``scoring`` callable. ``estimator`` is a fitted
    :class:`~skcrossmodal.SharedProjection` or a pipeline ending in one (e.g.
    the Nystroem composition). On ``X`` (the held-out fold), the rows that
    carry ``query_modality`` query the rows that carry ``gallery_modality``,
    both embedded in the shared space, ranked by ``metric``; rows missing the
    modality are left out of that side.

    Parameters
    ----------
    score : {"mean_average_precision", "recall_at_k", "median_rank"}, \
            default="mean_average_precision"
        The metric (see :mod:`skcrossmodal.metrics`). ``"median_rank"`` is
        lower-is-better, so the scorer returns its negative (scikit-learn's
        ``neg_`` convention: greater is always better for a scorer).
    k : int, default=1
        Cut-off of ``recall_at_k``; ignored by the other scores.
    query_modality, gallery_modality : str or None, default=None
        Modality names of the fitted projection. ``None`` means every
        modality; the score is then averaged over all ordered pairs of
        distinct modalities (with two modalities and both ``None``: the
        mean of text->image and image->text).
    metric : {"cosine", "euclidean"}, default="cosine"
        How the shared-space embeddings are compared.
    relevance : {"auto", "label", "pair"}, default="auto"
        ``"label"``: a gallery row is relevant when its ``y`` equals the
        query's ``y`` (then ``y`` is required). ``"pair"``: only the query's
        own row is relevant (the paired item; the query row must carry both
        modalities to have one). ``"auto"``: ``"label"`` when ``y`` is
        passed, else ``"pair"``.
    batch_size : int or None, default=None
        Queries ranked at a time; ``None`` chooses it from scikit-learn's
        ``working_memory`` setting.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y=None) -> float``, greater is better.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV
    >>> from skcrossmodal import SharedProjection
    >>> from skcrossmodal.metrics import make_retrieval_scorer
    >>> rng = np.random.default_rng(0)
    >>> latent = rng.normal(size=(300, 3))
    >>> X = np.hstack([latent @ rng.normal(size=(3, 8)),
    ...                latent @ rng.normal(size=(3, 6))])
    >>> X += 0.5 * rng.normal(size=X.shape)
    >>> proj = SharedProjection(modalities={"a": slice(0, 8), "b": slice(8, 14)})
    >>> search = GridSearchCV(
    ...     proj, {"n_components": [1, 3]}, cv=3,
    ...     scoring=make_retrieval_scorer("recall_at_k", k=5),
    ... ).fit(X)
    >>> search.best_params_
    {'n_components': 3}
    """
    if score not in _SCORES:
        raise ValueError(f"`score` must be one of {list(_SCORES)}, got {score!r}.")
    k = _check_k(k)
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"`metric` must be 'cosine' or 'euclidean', got {metric!r}.")
    if relevance not in ("auto", "label", "pair"):
        raise ValueError(
            f"`relevance` must be 'auto', 'label' or 'pair', got {relevance!r}."
        )
    if batch_size is not None:
        batch_size = _check_k(batch_size, "batch_size")
    for name, value in (
        ("query_modality", query_modality),
        ("gallery_modality", gallery_modality),
    ):
        if value is not None and not isinstance(value, str):
            raise ValueError(
                f"`{name}` must be a modality name or None, got {value!r}."
            )
    return _RetrievalScorer(
        score, k, query_modality, gallery_modality, metric, relevance, batch_size
    )
