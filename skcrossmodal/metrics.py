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

import numpy as np
from sklearn.externals.array_api_compat import numpy as compat_numpy
from sklearn.utils.validation import _num_samples, check_array

from ._embedding import embed, final_projection
from ._namespace import array_namespace, get_array_namespace, to_numpy
from ._ranking import (
    BYTES_PER_PAIR_AP,
    BYTES_PER_PAIR_FIRST,
    check_k,
    evaluate,
    rows_in_working_memory,
)
from ._relevance import label_codes
from .retrieval import _evaluate_embeddings

__all__ = [
    "make_retrieval_scorer",
    "mean_average_precision",
    "median_rank",
    "recall_at_k",
]

_SCORES = ("mean_average_precision", "recall_at_k", "median_rank")


def _evaluate_score_matrix(y_query, y_gallery, y_score, *, average_precision, ks):
    """The metrics of a full score matrix, a batch of queries at a time."""
    y_score = check_array(y_score, dtype=[np.float64, np.float32], input_name="y_score")
    n_query, n_gallery = y_score.shape
    labels = label_codes(
        compat_numpy,
        "cpu",
        y_query,
        y_gallery,
        n_query,
        n_gallery,
        {"y_query": "rows in y_score", "y_gallery": "columns in y_score"},
    )
    per_pair = BYTES_PER_PAIR_AP if average_precision else BYTES_PER_PAIR_FIRST
    return evaluate(
        compat_numpy,
        lambda start, stop: y_score[start:stop],
        labels,
        n_query,
        ks=ks,
        average_precision=average_precision,
        batch_size=rows_in_working_memory(per_pair * n_gallery, n_query),
    )


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
    k = check_k(k)
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

    def __call__(self, estimator, X, y=None, sample_weight=None, **kwargs):
        if self.relevance == "label" and y is None:
            raise ValueError(
                "make_retrieval_scorer(relevance='label') needs y: pass labels "
                "to fit (e.g. GridSearchCV(...).fit(X, y)) or use "
                "relevance='pair'."
            )
        names = list(final_projection(estimator).modalities_)
        pairs = self._pairs(names)
        n_rows = _num_samples(X)
        labels = np.arange(n_rows)
        if y is not None:
            y = to_numpy(y) if get_array_namespace(y) is not None else np.asarray(y)
            _check_length(y, "y", n_rows)
            if self.relevance != "pair":
                labels = y.reshape(-1) if y.ndim == 2 else y
        if sample_weight is not None:
            _check_length(np.asarray(sample_weight), "sample_weight", n_rows)
            raise ValueError(
                "make_retrieval_scorer does not weight queries: a weighted "
                "mAP, recall@k or median rank is not defined here. Score "
                "without sample_weight (with metadata routing, do not request "
                "it for this scorer)."
            )
        values = []
        for query, gallery in pairs:
            Z_query = embed(estimator, X, query)
            Z_gallery = embed(estimator, X, gallery)
            xp = array_namespace(Z_query)
            # Rows missing a modality are left out of that side; the labels
            # (on the host) follow the rows kept.
            query_rows = ~xp.any(xp.isnan(Z_query), axis=1)
            gallery_rows = ~xp.any(xp.isnan(Z_gallery), axis=1)
            query_host = np.flatnonzero(to_numpy(query_rows))
            gallery_host = np.flatnonzero(to_numpy(gallery_rows))
            result = _evaluate_embeddings(
                Z_query[query_rows],
                Z_gallery[gallery_rows],
                labels[query_host],
                labels[gallery_host],
                metric=self.metric,
                k=[self.k] if self.score == "recall_at_k" else [],
                average_precision=self.score == "mean_average_precision",
                batch_size=self.batch_size,
                sides=((f"X ({query})", query_host), (f"X ({gallery})", gallery_host)),
            )
            if self.score == "recall_at_k":
                values.append(result[f"recall@{self.k}"])
            elif self.score == "median_rank":
                values.append(-result["median_rank"])
            else:
                values.append(result["mean_average_precision"])
        return float(np.mean(values))


def _check_length(values, name, n_rows):
    """One entry per row of X (a column vector counts), or a ValueError."""
    if values.ndim == 2 and values.shape[1] == 1:
        values = values.reshape(-1)
    if values.ndim != 1 or values.shape[0] != n_rows:
        got = (
            f"{values.shape[0]} entries"
            if values.ndim == 1
            else f"shape {values.shape}"
        )
        raise ValueError(
            f"{name} has {got}, but X has {n_rows} rows: pass one {name} "
            "value per row of X."
        )


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
    k = check_k(k)
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"`metric` must be 'cosine' or 'euclidean', got {metric!r}.")
    if relevance not in ("auto", "label", "pair"):
        raise ValueError(
            f"`relevance` must be 'auto', 'label' or 'pair', got {relevance!r}."
        )
    if batch_size is not None:
        batch_size = check_k(batch_size, "batch_size")
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
