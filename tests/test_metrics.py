"""Retrieval metrics against a brute-force ranking of all pairs, ties included.

The scorers run the same code on numpy, array_api_strict (on its
non-default device, which refuses conversion to numpy as a GPU would) and
torch on the CPU: a projection fitted in that namespace, scored on held-out
rows of it.
"""

import numpy as np
import pytest
from sklearn import config_context
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from xp_testing import dispatch_for, to_xp

from skcrossmodal import SharedProjection
from skcrossmodal.compose import make_modality_transformer
from skcrossmodal.metrics import (
    make_retrieval_scorer,
    mean_average_precision,
    median_rank,
    recall_at_k,
)

NAMESPACES = ["numpy", "array_api_strict", "torch"]


@pytest.fixture(autouse=True)
def scipy_array_api_flag(monkeypatch):
    """scikit-learn dispatches only with SCIPY_ARRAY_API=1."""
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


# -- the brute force ------------------------------------------------------------------


def brute_force_ranks(scores, relevant):
    """1-based ranks of the relevant items of one query, by sorting all pairs.

    The order is the documented one: descending score, and equal scores by
    ascending gallery index. Written with Python's sort on explicit keys.
    """
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    return [position + 1 for position, j in enumerate(order) if relevant[j]]


def brute_force_metrics(y_query, y_gallery, scores, ks):
    aps, firsts = [], []
    for i in range(len(y_query)):
        relevant = [y_gallery[j] == y_query[i] for j in range(len(y_gallery))]
        ranks = brute_force_ranks(list(scores[i]), relevant)
        if not ranks:
            continue  # no relevant item: the query is left out
        aps.append(np.mean([(n + 1) / rank for n, rank in enumerate(ranks)]))
        firsts.append(ranks[0])
    return {
        "map": float(np.mean(aps)),
        "median": float(np.median(firsts)),
        **{k: float(np.mean(np.array(firsts) <= k)) for k in ks},
    }


def tied_scores(rng, n_query, n_gallery, levels):
    """Scores drawn from a few values, so ties are everywhere."""
    return rng.integers(0, levels, size=(n_query, n_gallery)).astype(float)


# -- metrics vs brute force ---------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("levels", [2, 4, 1000])
def test_label_metrics_equal_brute_force(seed, levels):
    rng = np.random.default_rng(seed)
    n_query, n_gallery = rng.integers(1, 25), rng.integers(1, 40)
    y_query = rng.integers(0, 5, size=n_query)
    y_gallery = rng.integers(0, 4, size=n_gallery)  # label 4: no relevant item
    y_query[0] = y_gallery[0]  # at least one query with a relevant item
    scores = tied_scores(rng, n_query, n_gallery, levels)
    expected = brute_force_metrics(y_query, y_gallery, scores, ks=(1, 3, 10))

    assert mean_average_precision(y_query, y_gallery, scores) == pytest.approx(
        expected["map"], abs=1e-12
    )
    assert median_rank(y_query, y_gallery, scores) == expected["median"]
    for k in (1, 3, 10):
        assert recall_at_k(y_query, y_gallery, scores, k=k) == expected[k]


@pytest.mark.parametrize("seed", range(4))
def test_paired_metrics_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 30
    scores = tied_scores(rng, n, n, levels=3)
    expected = brute_force_metrics(np.arange(n), np.arange(n), scores, ks=(1, 5))
    assert mean_average_precision(None, None, scores) == pytest.approx(
        expected["map"], abs=1e-12
    )
    assert median_rank(None, None, scores) == expected["median"]
    assert recall_at_k(None, None, scores, k=5) == expected[5]
    # With one relevant item, AP is the reciprocal rank.
    ranks = [brute_force_ranks(list(scores[i]), np.arange(n) == i)[0] for i in range(n)]
    assert mean_average_precision(None, None, scores) == pytest.approx(
        np.mean(1.0 / np.array(ranks))
    )


def test_tie_rule_is_gallery_index_order():
    scores = np.zeros((1, 5))
    # All tied: the ranking is the gallery order, so item 3 is 4th.
    assert median_rank([1], [0, 0, 0, 1, 0], scores) == 4.0
    assert recall_at_k([1], [0, 0, 0, 1, 0], scores, k=3) == 0.0
    assert recall_at_k([1], [0, 0, 0, 1, 0], scores, k=4) == 1.0
    # Relevant at ranks 2 and 4 (items 1 and 3): AP = (1/2 + 2/4) / 2.
    assert mean_average_precision([1], [0, 1, 0, 1, 0], scores) == 0.5
    # A higher score still goes first, whatever its index.
    scores[0, 4] = 1.0
    assert median_rank([1], [0, 0, 0, 1, 0], scores) == 5.0


def test_batches_do_not_change_the_result():
    rng = np.random.default_rng(0)
    scores = tied_scores(rng, 50, 70, levels=5)
    y_query, y_gallery = rng.integers(0, 4, 50), rng.integers(0, 4, 70)
    expected = (
        mean_average_precision(y_query, y_gallery, scores),
        median_rank(y_query, y_gallery, scores),
        recall_at_k(y_query, y_gallery, scores, k=2),
    )
    # About 1 KiB of working memory: one query per batch.
    with config_context(working_memory=0.001):
        got = (
            mean_average_precision(y_query, y_gallery, scores),
            median_rank(y_query, y_gallery, scores),
            recall_at_k(y_query, y_gallery, scores, k=2),
        )
    assert got == pytest.approx(expected, abs=1e-12)


def test_string_labels_and_float32_scores():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(10, 12)).astype(np.float32)
    names = np.array(["cat", "dog", "emu"])
    y_query, y_gallery = names[rng.integers(0, 3, 10)], names[rng.integers(0, 3, 12)]
    expected = brute_force_metrics(y_query, y_gallery, scores, ks=(2,))
    assert mean_average_precision(y_query, y_gallery, scores) == pytest.approx(
        expected["map"], rel=1e-6
    )
    assert recall_at_k(list(y_query), list(y_gallery), scores, k=2) == expected[2]


def test_metric_errors():
    scores = np.zeros((2, 3))
    with pytest.raises(ValueError, match="y_query has 3 labels"):
        recall_at_k([0, 1, 2], [0, 1, 2], scores)
    with pytest.raises(ValueError, match="as many queries as gallery items"):
        median_rank(None, None, scores)
    with pytest.raises(ValueError, match="or neither"):
        median_rank([0, 1], None, scores)
    with pytest.raises(ValueError, match="No query has a relevant item"):
        mean_average_precision([5, 6], [0, 1, 2], scores)
    with pytest.raises(ValueError, match="NaN"):
        mean_average_precision([0, 1], [0, 1, 2], np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="`k` must be an int >= 1"):
        recall_at_k([0, 1], [0, 1, 2], scores, k=0)


# -- scorers -------------------------------------------------------------------------


def make_paired(n=300, seed=0, noise=0.4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    centres = rng.normal(size=(4, 3)) * 2
    latent = centres[labels] + rng.normal(size=(n, 3))
    X = np.hstack(
        [latent @ rng.normal(size=(3, 6)), latent @ rng.normal(size=(3, 5))]
    ) + noise * rng.normal(size=(n, 11))
    return X, labels, {"text": slice(0, 6), "image": slice(6, 11)}


def cosine(A, B):
    A = A / np.linalg.norm(A, axis=1, keepdims=True)
    B = B / np.linalg.norm(B, axis=1, keepdims=True)
    return A @ B.T


def projection_of(model, X, name, columns):
    return (X[:, columns] - model.means_[name]) @ model.weights_[name]


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_scorer_equals_brute_force_on_the_fold(namespace):
    X, y, modalities = make_paired()
    model = SharedProjection(n_components=3, modalities=modalities).fit(X[:200])
    X_test, y_test = X[200:], y[200:]
    text = projection_of(model, X_test, "text", modalities["text"])
    image = projection_of(model, X_test, "image", modalities["image"])
    t2i, i2t = cosine(text, image), cosine(image, text)

    by_label = [brute_force_metrics(y_test, y_test, s, ks=(5,)) for s in (t2i, i2t)]
    n = len(y_test)
    by_pair = [brute_force_metrics(np.arange(n), np.arange(n), t2i, ks=(5,))]

    scorer = make_retrieval_scorer(query_modality="text", gallery_modality="image")
    both = make_retrieval_scorer("recall_at_k", k=5)
    medr = make_retrieval_scorer("median_rank", relevance="pair")
    with dispatch_for(namespace):
        if namespace != "numpy":
            model = clone(model).fit(to_xp(namespace, X[:200]))
        X_xp = to_xp(namespace, X_test)
        results = [
            scorer(model, X_xp, y_test),
            scorer(model, X_xp),
            both(model, X_xp, y_test),
            medr(model, X_xp, y_test),
        ]
    assert results[0] == pytest.approx(by_label[0]["map"])
    assert results[1] == pytest.approx(by_pair[0]["map"])
    assert results[2] == pytest.approx((by_label[0][5] + by_label[1][5]) / 2)
    assert results[3] == pytest.approx(
        -(
            by_pair[0]["median"]
            + brute_force_metrics(np.arange(n), np.arange(n), i2t, ks=())["median"]
        )
        / 2
    )


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_scorer_leaves_out_rows_missing_a_modality(namespace):
    X, y, modalities = make_paired()
    model = SharedProjection(n_components=3, modalities=modalities).fit(X[:200])
    X_test = X[200:].copy()
    X_test[:30, 6:] = np.nan  # rows 0-29: text only
    X_test[30:50, :6] = np.nan  # rows 30-49: image only
    text_rows, image_rows = np.r_[0:30, 50:100], np.r_[30:100]
    text = projection_of(model, X_test[text_rows], "text", modalities["text"])
    image = projection_of(model, X_test[image_rows], "image", modalities["image"])
    # Paired relevance: a text row's match is its own row, if it has an image.
    expected = brute_force_metrics(text_rows, image_rows, cosine(text, image), (3,))
    scorer = make_retrieval_scorer(
        "recall_at_k", k=3, query_modality="text", gallery_modality="image"
    )
    with dispatch_for(namespace):
        if namespace != "numpy":
            model = clone(model).fit(to_xp(namespace, X[:200]))
        assert scorer(model, to_xp(namespace, X_test)) == pytest.approx(expected[3])


def test_scorers_in_grid_search_and_cross_val_score():
    X, y, modalities = make_paired(n=400)
    scoring = {
        "map": make_retrieval_scorer(),
        "r1": make_retrieval_scorer("recall_at_k", k=1, relevance="pair"),
        "medr": make_retrieval_scorer(
            "median_rank", query_modality="image", gallery_modality="text"
        ),
    }
    search = GridSearchCV(
        SharedProjection(modalities=modalities),
        {"n_components": [1, 3]},
        scoring=scoring,
        refit="map",
        cv=KFold(3),
    ).fit(X, y)
    assert search.best_params_ == {"n_components": 3}
    results = search.cv_results_
    assert np.all(results["mean_test_medr"] <= -1)
    assert np.all((results["mean_test_r1"] >= 0) & (results["mean_test_r1"] <= 1))
    # One fold by hand: the scorer sees only the held-out rows.
    train, test = next(KFold(3).split(X))
    model = SharedProjection(n_components=3, modalities=modalities).fit(X[train])
    text = projection_of(model, X[test], "text", modalities["text"])
    image = projection_of(model, X[test], "image", modalities["image"])
    expected = np.mean(
        [
            brute_force_metrics(y[test], y[test], s, ks=())["map"]
            for s in (cosine(text, image), cosine(image, text))
        ]
    )
    assert results["split0_test_map"][1] == pytest.approx(expected)

    scores = cross_val_score(
        SharedProjection(n_components=3, modalities=modalities),
        X,
        y,
        scoring=make_retrieval_scorer("recall_at_k", k=10),
        cv=3,
    )
    assert scores.min() > 0.9  # 4 well separated classes


def test_scorer_on_a_pipeline_with_dataframes():
    import pandas as pd

    X, y, modalities = make_paired()
    frame = pd.DataFrame(X, columns=[f"c{j}" for j in range(11)])
    model = make_pipeline(
        make_modality_transformer(
            ("text", StandardScaler(), [f"c{j}" for j in range(6)]),
            ("image", StandardScaler(), [f"c{j}" for j in range(6, 11)]),
        ),
        SharedProjection(n_components=2),
    )
    search = GridSearchCV(
        model,
        {"sharedprojection__reg": [0.0, 100.0]},
        scoring=make_retrieval_scorer(metric="euclidean"),
        cv=3,
    ).fit(frame, y)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_scorer_errors_and_repr():
    X, y, modalities = make_paired()
    model = SharedProjection(modalities=modalities).fit(X)
    with pytest.raises(ValueError, match="needs y"):
        make_retrieval_scorer(relevance="label")(model, X)
    with pytest.raises(ValueError, match="'audio' is not one of"):
        make_retrieval_scorer(query_modality="audio")(model, X, y)
    with pytest.raises(ValueError, match="name the same modality"):
        make_retrieval_scorer(query_modality="text", gallery_modality="text")(
            model, X, y
        )
    with pytest.raises(ValueError, match="`score` must be one of"):
        make_retrieval_scorer("ndcg")
    with pytest.raises(ValueError, match="`metric` must be"):
        make_retrieval_scorer(metric="manhattan")
    assert repr(make_retrieval_scorer("recall_at_k", k=5)) == (
        "make_retrieval_scorer('recall_at_k', k=5)"
    )


def test_scorer_checks_the_length_of_y_and_sample_weight():
    X, y, modalities = make_paired()
    model = SharedProjection(modalities=modalities).fit(X)
    scorer = make_retrieval_scorer()
    with pytest.raises(ValueError, match="y has 299 entries, but X has 300 rows"):
        scorer(model, X, y[:-1])
    with pytest.raises(ValueError, match="y has 301 entries, but X has 300 rows"):
        scorer(model, X, np.append(y, 0))
    with pytest.raises(ValueError, match="sample_weight has 2 entries"):
        scorer(model, X, y, sample_weight=np.ones(2))
    # The right length is no silent unweighted answer either.
    with pytest.raises(ValueError, match="does not weight queries"):
        scorer(model, X, y, sample_weight=np.ones(300))


@pytest.mark.parametrize("names", [("mean", "concat"), ("query", "gallery")])
def test_scorer_with_modality_names_that_are_option_values(names):
    X, y, _ = make_paired()
    first, second = names
    modalities = {first: slice(0, 6), second: slice(6, 11)}
    model = SharedProjection(n_components=3, modalities=modalities).fit(X[:200])
    X_test, y_test = X[200:], y[200:]
    scores = cosine(
        projection_of(model, X_test, first, modalities[first]),
        projection_of(model, X_test, second, modalities[second]),
    )
    scorer = make_retrieval_scorer(query_modality=first, gallery_modality=second)
    expected = brute_force_metrics(y_test, y_test, scores, ks=())["map"]
    assert scorer(model, X_test, y_test) == pytest.approx(expected)
