"""Retrieval on array API inputs.

(The fusion estimators' array API tests run in ``test_fusion.py``, the same
tests for every namespace.)

Under ``sklearn.set_config(array_api_dispatch=True)`` these compute in the
namespace and on the device of their input. Here on the CPU:
array_api_strict on its non-default device ``"device1"`` (which refuses any
conversion to numpy, as a GPU array would) and torch CPU (skipped when torch
is not installed; it is a test-only extra). Every result is compared with
the numpy path on the same data, and with a small computation by hand.

scikit-learn refuses to dispatch unless ``SCIPY_ARRAY_API=1``; scipy reads it
when first imported, which happened long before these tests in a pytest
session. The paths tested here call no scipy function on array API arrays
(array_api_strict's "device1" would raise if anything went through numpy),
so the variable is set for scikit-learn's check only (the
``scipy_array_api_flag`` fixture). ``test_array_api_dispatch.py`` runs
scikit-learn's own array API checks of these estimators in a fresh
interpreter where it is set before the import.

Tolerances. float64: the asked rtol 1e-6, relative to each array's largest
entry (the measured worst case is 4.2e-14). float32, measured on the data
of these tests over both namespaces and 20 seeds (largest error relative to
the array's largest entry; the numpy path computes in float32 too, so this
is how much two float32 computations disagree):

* ranking distances: 4.9e-7, with the same indices everywhere.

They are tested at ``FLOAT32_RTOL`` below: about 4 times the measured worst
case, and never below 1e-6.
"""

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from scipy.spatial.distance import cdist
from sklearn.base import clone

from skcrossmodal import SharedProjection, retrieval
from skcrossmodal.retrieval import (
    embed,
    evaluate_embeddings,
    evaluate_retrieval,
    rank,
    rank_embeddings,
)

xp_strict = pytest.importorskip("array_api_strict")

NAMESPACES = ["array_api_strict", "torch"]
FLOAT64_RTOL = 1e-6
FLOAT32_RTOL = {"ranking": 2e-6}


@pytest.fixture(autouse=True)
def scipy_array_api_flag(monkeypatch):
    """What scikit-learn checks before it dispatches (see the module docstring)."""
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


def to_xp(namespace, array):
    if namespace == "array_api_strict":
        return xp_strict.asarray(array, device=xp_strict.Device("device1"))
    torch = pytest.importorskip("torch")
    return torch.asarray(array, device="cpu")


def to_numpy(array):
    if hasattr(array, "cpu"):
        return array.cpu().numpy()
    if type(array).__module__.startswith("array_api_strict"):
        return np.asarray(array.to_device(xp_strict.Device("CPU_DEVICE")))
    return np.asarray(array)


def namespace_of(array):
    return type(array).__module__.split(".")[0]


def check_output(result, X_xp, namespace):
    """Same namespace, device and dtype as the input."""
    assert namespace_of(result) == namespace
    assert result.device == X_xp.device
    assert result.dtype == X_xp.dtype


def close(actual, expected, rtol):
    """rtol relative to the largest entry of ``expected``."""
    actual = to_numpy(actual)
    assert actual.shape == expected.shape
    assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


# -- retrieval -------------------------------------------------------------------


def brute_force_rank(Z_query, Z_gallery, metric, k):
    """Every pair's distance (scipy), each row sorted by (distance, index)."""
    distances = cdist(Z_query, Z_gallery, metric=metric)
    order = np.array(
        [sorted(range(len(row)), key=lambda j: (row[j], j)) for row in distances]
    )[:, :k]
    return np.take_along_axis(distances, order, axis=1), order


def exact_vectors(rng, n, d):
    """Entries in {-1, 0, 1} with 1 or 4 non-zeros: exact cosines and norms."""
    Z = np.zeros((n, d))
    for row in Z:
        support = rng.choice(d, size=rng.choice([1, 4]), replace=False)
        row[support] = rng.choice([-1.0, 1.0], size=support.size)
    return Z


@pytest.fixture
def small_chunks(monkeypatch):
    """Gallery chunks of 7 rows, so the running top-k merges many chunks."""
    monkeypatch.setattr(retrieval, "_GALLERY_CHUNK", 7)


def rank_xp(namespace, Z_query, Z_gallery, **params):
    Zq, Zg = to_xp(namespace, Z_query), to_xp(namespace, Z_gallery)
    with sklearn.config_context(array_api_dispatch=True):
        distances, indices = rank_embeddings(Zq, Zg, **params)
    check_output(distances, Zq, namespace)
    assert namespace_of(indices) == namespace
    assert indices.device == Zq.device
    assert_array_equal(to_numpy(Zq), Z_query)
    return to_numpy(distances), to_numpy(indices)


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k, batch_size", [(1, None), (3, 4), (10, 1), (60, 5)])
def test_rank_embeddings_equals_numpy(namespace, metric, k, batch_size, small_chunks):
    rng = np.random.default_rng(k)
    Z_query, Z_gallery = rng.normal(size=(23, 4)), rng.normal(size=(60, 4))
    params = {"metric": metric, "k": k, "batch_size": batch_size}
    expected_distances, expected_indices = rank_embeddings(Z_query, Z_gallery, **params)
    distances, indices = rank_xp(namespace, Z_query, Z_gallery, **params)
    assert_array_equal(indices, expected_indices)
    close(distances, expected_distances, FLOAT64_RTOL)
    # And by hand (scipy's distances, sorted by (distance, index)).
    by_hand_distances, by_hand_indices = brute_force_rank(Z_query, Z_gallery, metric, k)
    assert_array_equal(indices, by_hand_indices)
    assert_allclose(distances, by_hand_distances, atol=1e-12)


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 5, 40])
def test_ties_rank_by_gallery_index_as_numpy(namespace, metric, k, small_chunks):
    rng = np.random.default_rng(0)
    Z_query = exact_vectors(rng, 15, 5)
    # Few distinct rows, repeated: many exact ties, across chunk boundaries.
    Z_gallery = exact_vectors(rng, 6, 5)[rng.integers(0, 6, size=40)]
    _, expected = rank_embeddings(Z_query, Z_gallery, metric=metric, k=k, batch_size=4)
    _, indices = rank_xp(
        namespace, Z_query, Z_gallery, metric=metric, k=k, batch_size=4
    )
    assert_array_equal(indices, expected)
    assert_array_equal(indices, brute_force_rank(Z_query, Z_gallery, metric, k)[1])


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_rank_embeddings_float32(namespace, metric):
    rng = np.random.default_rng(2)
    Z_query = rng.normal(size=(20, 5)).astype(np.float32)
    Z_gallery = rng.normal(size=(50, 5)).astype(np.float32)
    expected_distances, expected = rank_embeddings(
        Z_query, Z_gallery, metric=metric, k=3
    )
    distances, indices = rank_xp(namespace, Z_query, Z_gallery, metric=metric, k=3)
    assert distances.dtype == np.float32
    assert_array_equal(indices, expected)
    close(distances, expected_distances, FLOAT32_RTOL["ranking"])


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_rank_embeddings_zero_vectors_and_errors(namespace):
    distances, indices = rank_xp(
        namespace, np.array([[1.0, 0.0]]), np.array([[0.0, 0.0], [-1.0, 0.0]]), k=2
    )
    assert_array_equal(indices, [[0, 1]])
    assert_allclose(distances, [[1.0, 2.0]])
    ones = to_xp(namespace, np.ones((3, 2)))
    with sklearn.config_context(array_api_dispatch=True):
        with pytest.raises(ValueError, match="larger than the gallery"):
            rank_embeddings(ones, ones, k=4)
        with pytest.raises(ValueError, match="same space"):
            rank_embeddings(ones, to_xp(namespace, np.ones((3, 3))))
        with pytest.raises(ValueError, match="NaN"):
            rank_embeddings(to_xp(namespace, np.full((2, 2), np.nan)), ones)
        other = "torch" if namespace == "array_api_strict" else "array_api_strict"
        with pytest.raises(ValueError, match="same array namespace"):
            rank_embeddings(ones, to_xp(other, np.ones((3, 2))))
        # A numpy gallery follows the query onto its device.
        distances, _ = rank_embeddings(ones, np.ones((3, 2)), k=1)
        assert namespace_of(distances) == namespace


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("labels", ["int", "str", "device", "paired"])
def test_evaluate_embeddings_equals_numpy(namespace, metric, labels):
    rng = np.random.default_rng(4)
    Z_query, Z_gallery = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
    if labels == "paired":
        y_query = y_gallery = None
    else:
        y_query, y_gallery = rng.integers(0, 4, size=30), rng.integers(0, 5, size=30)
        y_gallery[:6] = 9  # labels no query has
        if labels == "str":
            y_query, y_gallery = y_query.astype(str), y_gallery.astype(str)
    expected = evaluate_embeddings(
        Z_query, Z_gallery, y_query, y_gallery, metric=metric, k=(1, 3)
    )
    if labels == "device":
        y_query, y_gallery = to_xp(namespace, y_query), to_xp(namespace, y_gallery)
    Zq, Zg = to_xp(namespace, Z_query), to_xp(namespace, Z_gallery)
    for batch_size in (None, 7):
        with sklearn.config_context(array_api_dispatch=True):
            result = evaluate_embeddings(
                Zq,
                Zg,
                y_query,
                y_gallery,
                metric=metric,
                k=(1, 3),
                batch_size=batch_size,
            )
        assert result.keys() == expected.keys()
        for key, value in expected.items():
            assert result[key] == pytest.approx(value, rel=1e-12), key


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_average_precision_by_hand(namespace):
    """One query, ties included: AP = mean of precision at each relevant rank."""
    Z_query = np.array([[1.0, 0.0]])
    # Cosine similarities 1, 0, 1, -1, 0: order by (distance, index) is
    # 0, 2, 1, 4, 3.
    Z_gallery = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0], [0, 3.0]])
    y_query, y_gallery = np.array([1]), np.array([0, 1, 1, 0, 1])
    # Relevant items 2, 1, 4 at ranks 2, 3, 4: precisions 1/2, 2/3, 3/4.
    expected_ap = (1 / 2 + 2 / 3 + 3 / 4) / 3
    with sklearn.config_context(array_api_dispatch=True):
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


def make_paired(n=160, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    X = np.hstack(
        [latent @ rng.normal(size=(3, 5)), latent @ rng.normal(size=(3, 4))]
    ) + 0.3 * rng.normal(size=(n, 9))
    return X, {"text": slice(0, 5), "image": slice(5, 9)}


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_rank_and_evaluate_through_a_projection(namespace, metric):
    X, modalities = make_paired()
    reference = SharedProjection(3, modalities=modalities, reg=0.1).fit(X[:100])
    texts, images = X[100:130].copy(), X[130:].copy()
    texts[:4, 5:] = np.nan  # the gallery modality may be missing on queries
    expected = rank(
        reference,
        texts,
        images,
        query_modality="text",
        gallery_modality="image",
        metric=metric,
        k=5,
    )
    expected_scores = evaluate_retrieval(
        reference, X[100:], query_modality="text", gallery_modality="image"
    )
    with sklearn.config_context(array_api_dispatch=True):
        model = clone(reference).fit(to_xp(namespace, X[:100]))
        distances, indices = rank(
            model,
            to_xp(namespace, texts),
            to_xp(namespace, images),
            query_modality="text",
            gallery_modality="image",
            metric=metric,
            k=5,
        )
        scores = evaluate_retrieval(
            model,
            to_xp(namespace, X[100:]),
            query_modality="text",
            gallery_modality="image",
        )
        Z = embed(model, to_xp(namespace, texts), "image")
    assert namespace_of(distances) == namespace
    assert_array_equal(to_numpy(indices), expected[1])
    close(distances, expected[0], FLOAT64_RTOL)
    for key, value in expected_scores.items():
        assert scores[key] == pytest.approx(value, rel=1e-9), key
    # embed: NaN where the modality is missing, by hand elsewhere.
    Z = to_numpy(Z)
    assert np.isnan(Z[:4]).all()
    weights, mean = reference.weights_["image"], reference.means_["image"]
    close(Z[4:], (texts[4:, 5:] - mean) @ weights, FLOAT64_RTOL)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_rank_requires_the_modality_on_every_row(namespace):
    X, modalities = make_paired()
    X_missing = X.copy()
    X_missing[3, :5] = np.nan
    with sklearn.config_context(array_api_dispatch=True):
        model = SharedProjection(modalities=modalities).fit(to_xp(namespace, X))
        with pytest.raises(ValueError, match="Row 3 of X_query does not carry"):
            rank(
                model,
                to_xp(namespace, X_missing),
                query_modality="text",
                gallery_modality="image",
            )
        with pytest.raises(ValueError, match="must use the same namespace"):
            embed(model, X, "text")
