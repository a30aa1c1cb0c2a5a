"""Batched cross-modal ranking against brute force, and the Nystroem composition.

The ranking tests run the same code on every namespace (numpy,
array_api_strict on its non-default device, which refuses any conversion to
numpy as a GPU array would, and torch on the CPU) and compare with a brute
force computed independently with numpy/scipy on the host.
"""

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist
from sklearn import config_context
from sklearn.base import clone
from sklearn.kernel_approximation import Nystroem, RBFSampler
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from xp_testing import (
    ARRAY_API_NAMESPACES,
    dispatch_for,
    namespace_of,
    to_numpy,
    to_xp,
)

from skcrossmodal import SharedProjection, retrieval
from skcrossmodal.compose import make_modality_transformer
from skcrossmodal.metrics import mean_average_precision, median_rank, recall_at_k
from skcrossmodal.retrieval import (
    embed,
    evaluate_embeddings,
    evaluate_retrieval,
    rank,
    rank_embeddings,
)

# SCIPY_ARRAY_API=1 for scikit-learn's dispatch check (conftest.py); nothing
# here calls scipy on array API arrays (array_api_strict's device1 would
# refuse).
pytestmark = pytest.mark.usefixtures("scipy_array_api_flag")


def rank_in(namespace, Z_query, Z_gallery, **params):
    """rank_embeddings in ``namespace``; results checked to stay there."""
    Zq, Zg = to_xp(namespace, Z_query), to_xp(namespace, Z_gallery)
    with dispatch_for(namespace):
        result = rank_embeddings(Zq, Zg, **params)
    distances, indices = (
        result if params.get("return_distance", True) else (None, result)
    )
    assert namespace_of(indices) == namespace
    if distances is not None:
        assert namespace_of(distances) == namespace
        assert distances.dtype == Zq.dtype
        assert distances.device == Zq.device
        distances = to_numpy(distances)
    np.testing.assert_array_equal(to_numpy(Zq), Z_query)  # not modified
    return distances, to_numpy(indices)


def brute_force_rank(Z_query, Z_gallery, metric, k):
    """Every pair's distance (scipy), each row sorted by (distance, index)."""
    distances = cdist(Z_query, Z_gallery, metric=metric)
    order = np.array(
        [sorted(range(len(row)), key=lambda j: (row[j], j)) for row in distances]
    )[:, :k]
    return np.take_along_axis(distances, order, axis=1), order


@pytest.fixture
def small_chunks(monkeypatch):
    """Gallery chunks of 7 rows, so the running top-k merges many chunks."""
    monkeypatch.setattr(retrieval, "_GALLERY_CHUNK", 7)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 3, 10, 60])
@pytest.mark.parametrize("batch_size", [None, 1, 4])
def test_rank_embeddings_equals_brute_force(
    namespace, metric, k, batch_size, small_chunks
):
    rng = np.random.default_rng(k)
    Z_query, Z_gallery = rng.normal(size=(23, 4)), rng.normal(size=(60, 4))
    distances, indices = rank_in(
        namespace, Z_query, Z_gallery, metric=metric, k=k, batch_size=batch_size
    )
    expected_distances, expected_indices = brute_force_rank(
        Z_query, Z_gallery, metric, k
    )
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, atol=1e-12)


def exact_vectors(rng, n, d):
    """Vectors whose cosines and squared distances are exact in floating point.

    Entries are in {-1, 0, 1} with exactly 1 or 4 non-zeros (norm 1 or 2), so
    normalising divides by a power of two.
    """
    Z = np.zeros((n, d))
    for row in Z:
        support = rng.choice(d, size=rng.choice([1, 4]), replace=False)
        row[support] = rng.choice([-1.0, 1.0], size=support.size)
    return Z


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 2, 5, 40])
def test_ties_rank_by_gallery_index(namespace, metric, k, small_chunks):
    rng = np.random.default_rng(0)
    Z_query = exact_vectors(rng, 15, 5)
    # Few distinct rows, repeated: many exact ties, across chunk boundaries.
    Z_gallery = exact_vectors(rng, 6, 5)[rng.integers(0, 6, size=40)]
    _, indices = rank_in(
        namespace, Z_query, Z_gallery, metric=metric, k=k, batch_size=4
    )
    _, expected = brute_force_rank(Z_query, Z_gallery, metric, k)
    np.testing.assert_array_equal(indices, expected)


@pytest.mark.parametrize("k", [1, 4])
def test_gallery_in_worst_first_order(namespace, k, small_chunks):
    """Every chunk beats the kept top-k: the many-survivors path and merges."""
    rng = np.random.default_rng(3)
    Z_query = rng.normal(size=(5, 3))
    Z_gallery = rng.normal(size=(200, 3))
    # Sorted from far to near the first query, so later chunks keep winning.
    Z_gallery = Z_gallery[np.argsort(-np.linalg.norm(Z_gallery - Z_query[0], axis=1))]
    distances, indices = rank_in(namespace, Z_query, Z_gallery, metric="euclidean", k=k)
    expected_distances, expected = brute_force_rank(Z_query, Z_gallery, "euclidean", k)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(distances, expected_distances, atol=1e-12)


def test_full_ranking_and_indices_only(namespace):
    rng = np.random.default_rng(1)
    Z_query, Z_gallery = rng.normal(size=(9, 3)), rng.normal(size=(13, 3))
    _, indices = rank_in(namespace, Z_query, Z_gallery, k=None, return_distance=False)
    np.testing.assert_array_equal(
        indices, brute_force_rank(Z_query, Z_gallery, "cosine", 13)[1]
    )


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_float32_embeddings(namespace, metric):
    rng = np.random.default_rng(2)
    Z_query, Z_gallery = rng.normal(size=(20, 5)), rng.normal(size=(50, 5))
    distances, indices = rank_in(
        namespace,
        Z_query.astype(np.float32),
        Z_gallery.astype(np.float32),
        metric=metric,
        k=3,
    )
    assert distances.dtype == np.float32
    expected_distances, expected = brute_force_rank(Z_query, Z_gallery, metric, 3)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(distances, expected_distances, atol=1e-5)


def test_zero_vectors_have_cosine_zero(namespace):
    distances, indices = rank_in(
        namespace, np.array([[1.0, 0.0]]), np.array([[0.0, 0.0], [-1.0, 0.0]]), k=2
    )
    np.testing.assert_array_equal(indices, [[0, 1]])
    np.testing.assert_allclose(distances, [[1.0, 2.0]])


def test_rank_embeddings_errors(namespace):
    ones = to_xp(namespace, np.ones((3, 2)))
    with dispatch_for(namespace):
        with pytest.raises(ValueError, match="larger than the gallery"):
            rank_embeddings(ones[:2, :], ones, k=4)
        with pytest.raises(ValueError, match="same space"):
            rank_embeddings(ones, to_xp(namespace, np.ones((3, 3))))
        with pytest.raises(ValueError, match="'cosine' or 'euclidean'"):
            rank_embeddings(ones, ones, metric="cityblock")
        with pytest.raises(ValueError, match="NaN"):
            rank_embeddings(to_xp(namespace, np.full((2, 2), np.nan)), ones)
        if namespace == "numpy":
            return
        other = "torch" if namespace == "array_api_strict" else "array_api_strict"
        with pytest.raises(ValueError, match="same array namespace"):
            rank_embeddings(ones, to_xp(other, np.ones((3, 2))))
        # A numpy gallery follows the query onto its device.
        distances, _ = rank_embeddings(ones, np.ones((3, 2)), k=1)
        assert namespace_of(distances) == namespace


# -- scale: the ranking does not depend on the units ---------------------------------


def exact_cosine_order(Z_query, Z_gallery, k):
    """Exact cosine ranking of integer vectors, by integer arithmetic.

    Descending cosine is ascending ``-sign(q.g) (q.g)^2 / |g|^2`` (the query's
    norm is common to its row), compared as fractions; zero vectors have
    cosine 0. Returns the exact key of every gallery row, per query, and the
    (key, index) order.
    """
    from fractions import Fraction

    keys = []
    for q in Z_query.astype(np.int64).tolist():
        row = []
        for g in Z_gallery.astype(np.int64).tolist():
            dot, norm = sum(a * b for a, b in zip(q, g)), sum(b * b for b in g)
            row.append(Fraction(0) if norm == 0 else Fraction(-dot * abs(dot), norm))
        keys.append(row)
    order = [sorted(range(len(row)), key=lambda j: (row[j], j))[:k] for row in keys]
    return keys, np.array(order)


integer_rows = st.integers(1, 4).flatmap(
    lambda d: st.tuples(
        st.lists(
            st.lists(st.integers(-3, 3), min_size=d, max_size=d), min_size=1, max_size=6
        ),
        st.lists(
            st.lists(st.integers(-3, 3), min_size=d, max_size=d),
            min_size=1,
            max_size=12,
        ),
    )
)


@settings(max_examples=60, deadline=None)
@given(data=integer_rows, exponent=st.integers(-1000, 1000), k=st.integers(1, 12))
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_ranking_is_scale_free_against_brute_force(metric, data, exponent, k):
    """Small integer vectors (exact arithmetic, many ties, zero rows) times
    2**exponent, from 1e-301 to 1e+301: the exact ranking of the integers.

    Euclidean: ``np.argsort`` (stable) of the dense integer squared-distance
    matrix, so ties rank by gallery index, and the distances scaled back.
    Cosine: the exact cosine order (fractions); a tie between non-parallel
    vectors may be rounded either way, so each position's exact key is what
    is compared, and the indices where the exact keys are all distinct.
    """
    Z_query, Z_gallery = (np.array(side, dtype=float) for side in data)
    k = min(k, Z_gallery.shape[0])
    scale = math.ldexp(1.0, exponent)
    distances, indices = rank_embeddings(
        Z_query * scale, Z_gallery * scale, metric=metric, k=k
    )
    if metric == "euclidean":
        difference = Z_query[:, None, :].astype(np.int64) - Z_gallery[None, :, :]
        squared = (difference.astype(np.int64) ** 2).sum(axis=2)
        expected = np.argsort(squared, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(indices, expected)
        expected_distances = np.sqrt(np.take_along_axis(squared, expected, 1)) * scale
        np.testing.assert_allclose(distances, expected_distances, rtol=1e-15)
        return
    keys, expected = exact_cosine_order(Z_query, Z_gallery, k)
    for row, (got, want) in enumerate(zip(indices, expected)):
        assert [keys[row][j] for j in got] == [keys[row][j] for j in want]
        if len(set(keys[row])) == len(keys[row]):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("scale", [1e-161, 1e-300, 1e200, 1e300])
def test_extreme_magnitudes_rank_as_unit_ones(namespace, metric, scale):
    """Squares of 1e-161 underflow and of 1e+200 overflow in float64."""
    rng = np.random.default_rng(7)
    Z_query, Z_gallery = rng.normal(size=(12, 4)), rng.normal(size=(40, 4))
    expected_distances, expected = brute_force_rank(Z_query, Z_gallery, metric, 5)
    distances, indices = rank_in(
        namespace, Z_query * scale, Z_gallery * scale, metric=metric, k=5
    )
    np.testing.assert_array_equal(indices, expected)
    if metric == "euclidean":
        expected_distances = expected_distances * scale
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-12, atol=0)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_float32_extreme_magnitudes(namespace, metric, scale):
    """float32 squares overflow above ~1.8e19 and underflow below ~1e-19."""
    rng = np.random.default_rng(9)
    Z_query, Z_gallery = rng.normal(size=(12, 4)), rng.normal(size=(40, 4))
    expected_distances, expected = brute_force_rank(Z_query, Z_gallery, metric, 5)
    distances, indices = rank_in(
        namespace,
        (Z_query * scale).astype(np.float32),
        (Z_gallery * scale).astype(np.float32),
        metric=metric,
        k=5,
    )
    np.testing.assert_array_equal(indices, expected)
    if metric == "euclidean":
        expected_distances = expected_distances * scale
    # float32 rounding, relative to the largest distance (1 - cos is formed
    # from values near 1: its error is absolute).
    tolerance = 1e-5 * expected_distances.max()
    np.testing.assert_allclose(distances, expected_distances, rtol=0, atol=tolerance)


def test_cosine_zero_is_judged_against_the_datas_scale(namespace):
    rng = np.random.default_rng(8)
    Z_gallery = rng.normal(size=(10, 3))
    # Rounding noise next to rows of norm ~1: a zero vector, cosine 0 with
    # every gallery row, so all are at distance 1, in index order.
    Z_query = np.vstack([rng.normal(size=(2, 3)), 1e-18 * rng.normal(size=(1, 3))])
    distances, indices = rank_in(namespace, Z_query, Z_gallery, k=4)
    np.testing.assert_array_equal(indices[2], [0, 1, 2, 3])
    np.testing.assert_array_equal(distances[2], [1.0, 1.0, 1.0, 1.0])
    # The same small rows alone are the data's scale: real directions.
    tiny = 1e-18 * rng.normal(size=(3, 3))
    _, indices = rank_in(namespace, tiny, Z_gallery, k=4)
    np.testing.assert_array_equal(
        indices, brute_force_rank(tiny, Z_gallery, "cosine", 4)[1]
    )


def test_what_float64_cannot_hold_is_refused(namespace):
    # Tiny rows on both sides next to a row of 1: their squared distances
    # underflow, float64 cannot rank them among themselves.
    Z_query = np.array([[1e-300, 0.0], [1.0, 0.0]])
    Z_gallery = np.array([[3e-300, 0.0], [2e-300, 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="row 0 of Z_query .* row 0 of Z_gallery"):
        rank_in(namespace, Z_query, Z_gallery, metric="euclidean", k=2)
    # Tiny rows on one side only are ranked: 1 - 3e-300 < 1 - 2e-300.
    _, indices = rank_in(namespace, Z_query[1:], Z_gallery, metric="euclidean", k=3)
    np.testing.assert_array_equal(indices, [[0, 1, 2]])
    # Cosine: next to a row of 1 the tiny rows are zero vectors (cosine 0
    # with everything), on the query side and on the gallery side.
    distances, indices = rank_in(namespace, Z_query, Z_gallery, k=1)
    np.testing.assert_array_equal(indices, [[0], [2]])
    np.testing.assert_allclose(distances, [[1.0], [1 - np.sqrt(0.5)]])
    # Distances beyond float64's largest: the ranking alone can be returned.
    huge = np.array([[1e308, 0.0]])
    with pytest.raises(ValueError, match="exceed the largest float64"):
        rank_in(namespace, huge, -huge, metric="euclidean", k=1)
    _, indices = rank_in(
        namespace,
        huge,
        np.vstack([-huge, huge]),
        metric="euclidean",
        k=2,
        return_distance=False,
    )
    np.testing.assert_array_equal(indices, [[1, 0]])


def test_memory_stays_bounded():
    """10 000 x 20 000 pairs: the full matrix would be 1.6 GB of float64."""
    rng = np.random.default_rng(0)
    Z_query = rng.normal(size=(10_000, 8))
    Z_gallery = rng.normal(size=(20_000, 8))
    tracemalloc.start()
    try:
        with config_context(working_memory=32):
            indices = rank_embeddings(
                Z_query, Z_gallery, k=5, return_distance=False, batch_size=None
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100e6, f"peak {peak / 1e6:.0f} MB"
    # Spot-check a few queries against brute force.
    rows = [0, 4_321, 9_999]
    np.testing.assert_array_equal(
        indices[rows], brute_force_rank(Z_query[rows], Z_gallery, "cosine", 5)[1]
    )


def test_evaluation_memory_stays_bounded():
    rng = np.random.default_rng(0)
    Z_query, Z_gallery = rng.normal(size=(1_500, 4)), rng.normal(size=(20_000, 4))
    y_query, y_gallery = rng.integers(0, 10, 1_500), rng.integers(0, 10, 20_000)
    tracemalloc.start()
    try:
        with config_context(working_memory=16):
            evaluate_embeddings(Z_query, Z_gallery, y_query, y_gallery)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The full score matrix alone would be 240 MB.
    assert peak < 60e6, f"peak {peak / 1e6:.0f} MB"


# -- through a projection ------------------------------------------------------------


def make_paired(n=250, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, size=n)
    latent = rng.normal(size=(5, 3))[labels] * 2 + rng.normal(size=(n, 3))
    X = np.hstack(
        [latent @ rng.normal(size=(3, 6)), latent @ rng.normal(size=(3, 4))]
    ) + 0.5 * rng.normal(size=(n, 10))
    return X, labels, {"text": slice(0, 6), "image": slice(6, 10)}


def by_hand(model, X, name, columns):
    return (X[:, columns] - model.means_[name]) @ model.weights_[name]


def test_embed_is_the_modality_projection_and_leaves_the_model_alone(namespace):
    X, _, modalities = make_paired()
    X_missing = X.copy()
    X_missing[:10, 6:] = np.nan  # image missing
    X_missing[10:15, :6] = np.nan  # text missing: no matter for "image"
    with dispatch_for(namespace):
        model = SharedProjection(n_components=3, modalities=modalities).fit(
            to_xp(namespace, X)
        )
        Z = embed(model, to_xp(namespace, X_missing), "image")
        Z32 = embed(model, to_xp(namespace, X.astype(np.float32)), "text")
    assert namespace_of(Z) == namespace
    Z = to_numpy(Z)
    assert np.isnan(Z[:10]).all()
    weights, means = (
        {name: to_numpy(value) for name, value in attribute.items()}
        for attribute in (model.weights_, model.means_)
    )
    np.testing.assert_allclose(
        Z[10:], (X[10:, 6:] - means["image"]) @ weights["image"], rtol=1e-10
    )
    assert model.output == "mean"
    assert to_numpy(Z32).dtype == np.float32
    with pytest.raises(ValueError, match="'audio' is not one of"):
        embed(model, X, "audio")
    with pytest.raises(TypeError, match="needs a fitted SharedProjection"):
        embed(StandardScaler().fit(X), X, "text")
    if namespace != "numpy":
        with (
            config_context(array_api_dispatch=True),
            pytest.raises(ValueError, match="must use the same namespace"),
        ):
            embed(model, X, "text")


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_rank_through_a_projection(namespace, metric):
    X, _, modalities = make_paired()
    model = SharedProjection(n_components=3, modalities=modalities).fit(X[:150])
    texts, images = X[150:200].copy(), X[200:]
    texts[:4, 6:] = np.nan  # the gallery modality may be missing on queries
    with dispatch_for(namespace):
        fitted = (
            model
            if namespace == "numpy"
            else clone(model).fit(to_xp(namespace, X[:150]))
        )
        distances, indices = rank(
            fitted,
            to_xp(namespace, texts),
            to_xp(namespace, images),
            query_modality="text",
            gallery_modality="image",
            metric=metric,
            k=7,
        )
    assert namespace_of(indices) == namespace
    expected_distances, expected_indices = brute_force_rank(
        by_hand(model, texts, "text", modalities["text"]),
        by_hand(model, images, "image", modalities["image"]),
        metric,
        7,
    )
    np.testing.assert_array_equal(to_numpy(indices), expected_indices)
    np.testing.assert_allclose(to_numpy(distances), expected_distances, atol=1e-10)


def test_rank_requires_the_modality_on_every_row(namespace):
    X, _, modalities = make_paired()
    X_missing = X.copy()
    X_missing[3, :6] = np.nan
    X_missing[7, :6] = np.nan
    with dispatch_for(namespace):
        model = SharedProjection(modalities=modalities).fit(to_xp(namespace, X))
        with pytest.raises(ValueError, match="Row 3 of X_query does not carry.*2 such"):
            rank(
                model,
                to_xp(namespace, X_missing),
                query_modality="text",
                gallery_modality="image",
            )
        with pytest.raises(ValueError, match="Row 3 of X_gallery does not carry"):
            rank(
                model,
                to_xp(namespace, X),
                to_xp(namespace, X_missing),
                query_modality="image",
                gallery_modality="text",
            )


def test_evaluate_retrieval_equals_the_metrics_on_the_full_matrix(namespace):
    X, y, modalities = make_paired()
    model = SharedProjection(n_components=3, modalities=modalities).fit(X[:150])
    X_test, y_test = X[150:], y[150:]
    text = by_hand(model, X_test, "text", modalities["text"])
    image = by_hand(model, X_test, "image", modalities["image"])
    similarity = 1 - cdist(text, image, "cosine")
    expected = {
        "mean_average_precision": mean_average_precision(y_test, y_test, similarity),
        "recall@1": recall_at_k(y_test, y_test, similarity, k=1),
        "recall@10": recall_at_k(y_test, y_test, similarity, k=10),
        "median_rank": median_rank(y_test, y_test, similarity),
    }
    with dispatch_for(namespace):
        if namespace != "numpy":
            model = clone(model).fit(to_xp(namespace, X[:150]))
        X_test = to_xp(namespace, X_test)
        for batch_size in (None, 1, 7):
            result = evaluate_retrieval(
                model,
                X_test,
                query_modality="text",
                gallery_modality="image",
                y_query=y_test,
                batch_size=batch_size,
            )
            assert result["n_queries"] == 100
            for key, value in expected.items():
                assert result[key] == pytest.approx(value, abs=1e-12), key
        paired = evaluate_retrieval(
            model, X_test, query_modality="image", gallery_modality="text", k=5
        )
        assert paired["recall@5"] == recall_at_k(None, None, similarity.T, k=5)
        with pytest.raises(ValueError, match="do not pass y_gallery"):
            evaluate_retrieval(
                model,
                X_test,
                query_modality="image",
                gallery_modality="text",
                y_gallery=y_test,
            )


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("labels", ["int", "str", "device", "paired"])
def test_evaluate_embeddings_equals_the_metrics(namespace, metric, labels):
    """Batched, in each namespace, against the metrics of the full matrix."""
    rng = np.random.default_rng(4)
    Z_query, Z_gallery = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
    if labels == "paired":
        y_query = y_gallery = None
    else:
        y_query, y_gallery = rng.integers(0, 4, size=30), rng.integers(0, 5, size=30)
        y_gallery[:6] = 9  # labels no query has
        if labels == "str":
            y_query, y_gallery = y_query.astype(str), y_gallery.astype(str)
    similarity = -cdist(Z_query, Z_gallery, metric)
    n_queries = 30 if y_query is None else int(np.isin(y_query, y_gallery).sum())
    expected = {
        "mean_average_precision": mean_average_precision(
            y_query, y_gallery, similarity
        ),
        "recall@1": recall_at_k(y_query, y_gallery, similarity, k=1),
        "recall@3": recall_at_k(y_query, y_gallery, similarity, k=3),
        "median_rank": median_rank(y_query, y_gallery, similarity),
    }
    if labels == "device":
        y_query, y_gallery = to_xp(namespace, y_query), to_xp(namespace, y_gallery)
    Zq, Zg = to_xp(namespace, Z_query), to_xp(namespace, Z_gallery)
    for batch_size in (None, 7):
        with dispatch_for(namespace):
            result = evaluate_embeddings(
                Zq,
                Zg,
                y_query,
                y_gallery,
                metric=metric,
                k=(1, 3),
                batch_size=batch_size,
            )
        assert result.pop("n_queries") == n_queries
        assert result.keys() == expected.keys()
        for key, value in expected.items():
            assert result[key] == pytest.approx(value, rel=1e-12), key


def test_average_precision_by_hand(namespace):
    """One query, ties included: AP = mean of precision at each relevant rank."""
    Z_query = np.array([[1.0, 0.0]])
    # Cosine similarities 1, 0, 1, -1, 0: order by (distance, index) is
    # 0, 2, 1, 4, 3.
    Z_gallery = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0], [0, 3.0]])
    y_query, y_gallery = np.array([1]), np.array([0, 1, 1, 0, 1])
    # Relevant items 2, 1, 4 at ranks 2, 3, 4: precisions 1/2, 2/3, 3/4.
    expected_ap = (1 / 2 + 2 / 3 + 3 / 4) / 3
    with dispatch_for(namespace):
        result = evaluate_embeddings(
            to_xp(namespace, Z_query),
            to_xp(namespace, Z_gallery),
            y_query,
            y_gallery,
            k=(1, 2),
        )
    assert result == pytest.approx(
        {
            "mean_average_precision": expected_ap,
            "recall@1": 0.0,
            "recall@2": 1.0,
            "median_rank": 2.0,
            "n_queries": 1,
        },
        rel=1e-12,
    )


@pytest.mark.parametrize("namespace", ARRAY_API_NAMESPACES, indirect=True)
def test_labels_must_all_be_on_the_host_or_on_the_device(namespace):
    Z = to_xp(namespace, np.eye(3))
    with config_context(array_api_dispatch=True):
        with pytest.raises(ValueError, match="both be host labels"):
            evaluate_embeddings(Z, Z, to_xp(namespace, np.arange(3)), np.arange(3))
        with pytest.raises(ValueError, match="y_gallery has 2 labels"):
            evaluate_embeddings(
                Z, Z, to_xp(namespace, np.arange(3)), to_xp(namespace, np.arange(2))
            )


# -- modality names are never option values ------------------------------------------


@pytest.mark.parametrize(
    "names", [("mean", "concat"), ("query", "gallery"), ("X_query", "cosine")]
)
def test_modality_names_that_are_also_option_values(names):
    """``embed`` and ``rank`` read a modality name as that modality, always."""
    X, y, _ = make_paired()
    first, second = names
    modalities = {first: slice(0, 6), second: slice(6, 10)}
    model = SharedProjection(n_components=3, modalities=modalities).fit(X[:150])
    X_test = X[150:].copy()
    for name, columns in modalities.items():
        np.testing.assert_allclose(
            embed(model, X_test, name), by_hand(model, X_test, name, columns)
        )
    _, indices = rank(model, X_test, query_modality=first, gallery_modality=second, k=3)
    expected = brute_force_rank(
        by_hand(model, X_test, first, modalities[first]),
        by_hand(model, X_test, second, modalities[second]),
        "cosine",
        3,
    )[1]
    np.testing.assert_array_equal(indices, expected)
    X_test[5, 6:] = np.nan
    with pytest.raises(
        ValueError, match=f"Row 5 of X_query does not carry modality {second!r}"
    ):
        rank(model, X_test, query_modality=first, gallery_modality=second)


# -- nonlinear shared spaces by composition -----------------------------------------


def make_nonlinear(n, seed):
    """Modality "a" carries t, modality "b" carries t**2: no linear relation."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(-2, 2, size=n)
    a = np.column_stack([t, 0.3 * rng.normal(size=n), 0.3 * rng.normal(size=n)])
    b = np.column_stack([t**2 + 0.1 * rng.normal(size=n), 0.3 * rng.normal(size=n)])
    return np.hstack([a, b]), t


def kernel_cca(approximation):
    return make_pipeline(
        make_modality_transformer(
            ("a", make_pipeline(StandardScaler(), approximation("a")), [0, 1, 2]),
            ("b", make_pipeline(StandardScaler(), approximation("b")), [3, 4]),
        ),
        SharedProjection(n_components=1, reg="auto"),
    )


@pytest.mark.parametrize(
    "approximation",
    [
        lambda name: Nystroem(gamma=0.5, n_components=150, random_state=0),
        lambda name: RBFSampler(gamma=0.5, n_components=300, random_state=0),
    ],
    ids=["Nystroem", "RBFSampler"],
)
def test_kernel_composition_finds_the_nonlinear_relation(approximation):
    X_train, _ = make_nonlinear(1500, seed=0)
    X_test, _ = make_nonlinear(500, seed=1)
    modalities = {"a": [0, 1, 2], "b": [3, 4]}
    linear = SharedProjection(n_components=1, modalities=modalities).fit(X_train)
    kernel = kernel_cca(approximation).fit(X_train)
    projection = kernel[-1]
    assert list(projection.modalities_) == ["a", "b"]

    # Held-out correlation: the kernel space finds t -> t**2, linear CCA cannot.
    a_kernel = embed(kernel, X_test, "a")[:, 0]
    b_kernel = embed(kernel, X_test, "b")[:, 0]
    assert abs(np.corrcoef(a_kernel, b_kernel)[0, 1]) > 0.85
    assert abs(linear.score(X_test)) < 0.2
    assert kernel.score(X_test) == pytest.approx(
        np.corrcoef(a_kernel, b_kernel)[0, 1], abs=1e-8
    )

    # Retrieval: the paired row is found far more often in the kernel space.
    def recall(model):
        return evaluate_retrieval(
            model,
            X_test,
            query_modality="a",
            gallery_modality="b",
            metric="euclidean",
            k=[10],
        )["recall@10"]

    assert recall(kernel) > 0.15  # chance is 10/500 = 0.02
    assert recall(kernel) > 3 * recall(linear)
