"""WeightedFusion, ConcatFusion and retrieval on array API inputs.

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

* WeightedFusion, ``align=None``: 0 (the same float32 products and sums);
  ``align="shared"``: 1.0e-7 (the projection is fitted in float64 on both
  paths); ``align="pca"``: 5.0e-6 (two float32 SVDs or eigendecompositions);
* ConcatFusion (every scaling, with or without centring): 0 (statistics in
  float64 on both paths, the same float64 affine map, one rounding);
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
from sklearn.utils import get_tags

from skcrossmodal import (
    ConcatFusion,
    SharedProjection,
    WeightedFusion,

    retrieval,
)
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
FLOAT32_RTOL = {
    "none": 1e-6,
    "shared": 1e-6,
    "pca": 2e-5,
    "concat": 1e-6,
    "ranking": 2e-6,
}
ABC = {"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7, 8]}
# Interleaved, unequal widths: columns are gathered, not sliced.
INTERLEAVED = {"x": [0, 3, 5, 8], "y": [1, 4, 7], "z": [2, 6, 9]}


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


def run(estimator, X_fit, X_new=None):
    """fit then transform under dispatch; X_new defaults to X_fit."""
    with sklearn.config_context(array_api_dispatch=True):
        fitted = clone(estimator).fit(X_fit)
        return fitted, fitted.transform(X_fit if X_new is None else X_new)


def make_data(n=120, widths=(3, 3, 3), seed=0, missing=True):
    """Modalities sharing a latent; separated scales keep PCA well defined.

    ``missing``: the second modality is missing in rows 3-8 and the first in
    rows 12-14 (modalities as ``widths`` lays them out side by side, or the
    dict ``missing`` when one is given).
    """
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3)) * np.array([3.0, 1.5, 0.7])
    blocks = [
        latent @ rng.normal(size=(3, w)) + 0.5 * rng.normal(size=(n, w)) + 2.0 * i
        for i, w in enumerate(widths)
    ]
    X = np.hstack(blocks)
    if missing:
        if not isinstance(missing, dict):
            stops = np.cumsum(widths)
            missing = {
                i: range(stop - w, stop)
                for i, (w, stop) in enumerate(zip(widths, stops))
            }
        first, second = (list(cols) for cols in list(missing.values())[:2])
        X[3:9, second] = np.nan
        X[12:15, first] = np.nan
    return X


# -- WeightedFusion --------------------------------------------------------------

WEIGHTED_CASES = {
    "none": WeightedFusion({"a": 1, "b": 2, "c": 5}, modalities=ABC),
    "pca": WeightedFusion(
        {"a": 1, "b": 2, "c": 5}, modalities=ABC, align="pca", n_components=2
    ),
    "pca-interleaved": WeightedFusion(
        modalities=INTERLEAVED, align="pca", n_components=2
    ),
    "shared": WeightedFusion(
        {"a": 3, "b": 1, "c": 1}, modalities=ABC, align="shared", n_components=2
    ),
    "shared-reg": WeightedFusion(
        modalities=INTERLEAVED,
        align="shared",
        n_components=2,
        reg={"x": 0.1, "y": 0.0, "z": 1.0},
    ),
}


def weighted_data(case, dtype="float64", seed=0):
    """(X to fit, X to transform); align="shared" fits on complete rows."""
    modalities = WEIGHTED_CASES[case].modalities
    widths = [len(cols) for cols in modalities.values()]
    X = make_data(widths=widths, seed=seed, missing=modalities).astype(dtype)
    if case.startswith("shared"):
        return X[20:], X
    return X, X


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("case", list(WEIGHTED_CASES))
def test_weighted_fusion_equals_numpy_float64(namespace, case):
    estimator = WEIGHTED_CASES[case]
    X_fit, X_new = weighted_data(case)
    expected = clone(estimator).fit(X_fit).transform(X_new)
    X_fit_xp, X_new_xp = to_xp(namespace, X_fit), to_xp(namespace, X_new)
    fitted, result = run(estimator, X_fit_xp, X_new_xp)
    check_output(result, X_new_xp, namespace)
    close(result, expected, FLOAT64_RTOL)
    # The inputs are left as they were.
    assert_array_equal(to_numpy(X_fit_xp), X_fit)
    assert_array_equal(to_numpy(X_new_xp), X_new)
    assert fitted.weights_ == clone(estimator).fit(X_fit).weights_


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("case", list(WEIGHTED_CASES))
def test_weighted_fusion_float32(namespace, case):
    estimator = WEIGHTED_CASES[case]
    X_fit, X_new = weighted_data(case, "float32")
    expected = clone(estimator).fit(X_fit).transform(X_new)
    assert expected.dtype == np.float32
    X_new_xp = to_xp(namespace, X_new)
    _, result = run(estimator, to_xp(namespace, X_fit), X_new_xp)
    check_output(result, X_new_xp, namespace)
    close(result, expected, FLOAT32_RTOL[case.split("-")[0]])


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_weighted_sum_by_hand(namespace):
    """A loop over rows and modalities, renormalising over those present."""
    X = make_data()
    weights = {"a": 1.0, "b": 2.0, "c": 5.0}
    expected = np.zeros((X.shape[0], 3))
    for i, row in enumerate(X):
        total = 0.0
        for name, cols in ABC.items():
            if not np.isnan(row[cols]).all():
                expected[i] += weights[name] * row[cols]
                total += weights[name]
        expected[i] /= total
    _, result = run(WeightedFusion(weights, modalities=ABC), to_xp(namespace, X), None)
    close(result, expected, 1e-12)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_weighted_fusion_pca_by_hand(namespace):
    """Each modality's PCA (on the rows that carry it) by numpy's SVD."""
    X = make_data(missing=False)
    mods = {"a": [0, 1, 2], "bc": [3, 4, 5, 6, 7, 8]}
    X[3:9, 3:] = np.nan  # "bc" missing in 6 rows
    X[12:15, :3] = np.nan  # "a" in 3 others
    fitted, result = run(
        WeightedFusion({"a": 1, "bc": 3}, modalities=mods, align="pca"),
        to_xp(namespace, X),
        None,
    )
    projections, present = [], []
    for cols in mods.values():
        block = X[:, cols]
        rows = ~np.isnan(block).any(axis=1)
        mean = block[rows].mean(axis=0)
        _, _, vt = np.linalg.svd(block[rows] - mean, full_matrices=False)
        vt = vt[:3]
        # scikit-learn's convention: the largest entry of each component > 0.
        largest = vt[np.arange(3), np.argmax(np.abs(vt), axis=1)]
        vt = vt * np.sign(largest)[:, None]
        projections.append(np.where(rows[:, None], (block - mean) @ vt.T, 0.0))
        present.append(rows)
    weights = np.array([1.0, 3.0]) * np.column_stack(present)
    expected = (weights[:, :1] * projections[0] + weights[:, 1:] * projections[1]) / (
        weights.sum(axis=1, keepdims=True)
    )
    close(result, expected, 1e-10)
    assert namespace_of(fitted.aligners_["a"].components_) == namespace


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_weighted_fusion_shared_matches_shared_projection(namespace):
    """weights=None: SharedProjection(output="mean"), also with missing rows."""
    X = make_data()
    complete = X[20:]
    expected = SharedProjection(2, modalities=ABC, reg=0.1).fit(complete).transform(X)
    fitted, result = run(
        WeightedFusion(modalities=ABC, align="shared", n_components=2, reg=0.1),
        to_xp(namespace, complete),
        to_xp(namespace, X),
    )
    close(result, expected, 1e-10)
    assert namespace_of(fitted.shared_projection_.canonical_correlations_) == (
        namespace
    )


def test_weighted_fusion_tags():
    assert get_tags(WeightedFusion()).array_api_support
    assert get_tags(WeightedFusion(align="pca")).array_api_support
    assert get_tags(WeightedFusion(align="shared", reg=0.1)).array_api_support
    assert not get_tags(WeightedFusion(align="shared", reg="auto")).array_api_support
    assert not get_tags(
        WeightedFusion(align="shared", reg={"a": 0.1, "b": "auto"})
    ).array_api_support
    # reg="auto" only matters for align="shared".
    assert get_tags(WeightedFusion(align="pca", reg="auto")).array_api_support


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_weighted_fusion_unsupported_options_raise(namespace):
    X = to_xp(namespace, make_data())
    with pytest.raises(ValueError, match=r"reg='auto'.*only available for numpy"):
        run(WeightedFusion(modalities=ABC, align="shared", reg="auto"), X)
    with pytest.raises(ValueError, match="needs every modality in every row"):
        run(WeightedFusion(modalities=ABC, align="shared"), X)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_weighted_fusion_bad_rows_raise_as_numpy_does(namespace):
    X = make_data(missing=False)
    weights = {"a": 1, "b": 0, "c": 1}
    cases = []
    partial = X.copy()
    partial[4, 1] = np.nan
    cases.append((partial, "only part of modality 'a' in row 4"))
    infinite = X.copy()
    infinite[2, 5] = np.inf
    cases.append((infinite, "infinity"))
    empty = X.copy()
    empty[7] = np.nan
    cases.append((empty, "Row 7 of X has no modality present"))
    only_b = X.copy()
    only_b[6, [0, 1, 2, 6, 7, 8]] = np.nan
    cases.append((only_b, "Row 6 of X carries only modalities with weight 0"))
    fitted = WeightedFusion(weights, modalities=ABC).fit(X)
    with sklearn.config_context(array_api_dispatch=True):
        fitted_xp = clone(fitted).fit(to_xp(namespace, X))
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            fitted.transform(bad)
        with (
            pytest.raises(ValueError, match=message),
            sklearn.config_context(array_api_dispatch=True),
        ):
            fitted_xp.transform(to_xp(namespace, bad))
    nowhere = X.copy()
    nowhere[:, 3:6] = np.nan
    with pytest.raises(ValueError, match="Modality 'b' is missing"):
        run(WeightedFusion(modalities=ABC), to_xp(namespace, nowhere))


@pytest.mark.parametrize(
    "estimator",
    [
        WeightedFusion(modalities=ABC),
        WeightedFusion(modalities=ABC, align="pca"),
        ConcatFusion(modalities=ABC),
    ],
    ids=["weighted", "weighted-pca", "concat"],
)
def test_transform_in_another_namespace_raises(estimator):
    X = make_data(missing=False)
    numpy_fitted = clone(estimator).fit(X)
    with sklearn.config_context(array_api_dispatch=True):
        strict_fitted = clone(estimator).fit(to_xp("array_api_strict", X))
        with pytest.raises(ValueError, match="must use the same namespace"):
            numpy_fitted.transform(to_xp("array_api_strict", X))
        with pytest.raises(ValueError, match="must use the same namespace"):
            strict_fitted.transform(X)


# -- ConcatFusion ----------------------------------------------------------------

CONCAT_CASES = [
    (scaling, center) for scaling in (None, "frobenius", "mfa") for center in (1, 0)
]


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("scaling, center", CONCAT_CASES)
@pytest.mark.parametrize("modalities", [ABC, INTERLEAVED], ids=["abc", "interleaved"])
def test_concat_fusion_equals_numpy(namespace, scaling, center, modalities):
    n_features = sum(len(cols) for cols in modalities.values())
    widths = (3, 3, 3) if n_features == 9 else (4, 3, 3)
    estimator = ConcatFusion(scaling, modalities=modalities, center=bool(center))
    for dtype, rtol in (("float64", FLOAT64_RTOL), ("float32", FLOAT32_RTOL["concat"])):
        X = make_data(widths=widths, missing=modalities).astype(dtype)
        reference = clone(estimator).fit(X)
        expected = reference.transform(X)
        X_xp = to_xp(namespace, X)
        fitted, result = run(estimator, X_xp)
        check_output(result, X_xp, namespace)
        close(result, expected, rtol)
        assert_array_equal(to_numpy(X_xp), X)
        for name in modalities:
            assert namespace_of(fitted.means_[name]) == namespace
            close(fitted.means_[name], reference.means_[name], FLOAT64_RTOL)
            assert isinstance(fitted.scales_[name], float)
            assert fitted.scales_[name] == pytest.approx(
                reference.scales_[name], rel=FLOAT64_RTOL
            )


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_mfa_and_frobenius_scales_by_hand(namespace):
    """sigma_1 / sqrt(n) and ||X_m - mu||_F / sqrt(n) of the rows present."""
    X = make_data()
    X_xp = to_xp(namespace, X)
    mfa, Z_mfa = run(ConcatFusion("mfa", modalities=ABC), X_xp)
    frobenius, Z_frobenius = run(ConcatFusion(modalities=ABC), X_xp)
    expected_mfa, expected_frobenius = np.empty_like(X), np.empty_like(X)
    for name, cols in ABC.items():
        block = X[:, cols]
        rows = ~np.isnan(block).any(axis=1)
        centred = block[rows] - block[rows].mean(axis=0)
        sigma_1 = np.linalg.svd(centred, compute_uv=False)[0] / np.sqrt(rows.sum())
        norm = np.sqrt((centred**2).sum() / rows.sum())
        assert mfa.scales_[name] == pytest.approx(sigma_1, rel=1e-12)
        assert frobenius.scales_[name] == pytest.approx(norm, rel=1e-12)
        mean = block[rows].mean(axis=0)
        # Missing blocks are filled with the (centred) mean: 0.
        expected_mfa[:, cols] = np.where(rows[:, None], (block - mean) / sigma_1, 0)
        expected_frobenius[:, cols] = np.where(rows[:, None], (block - mean) / norm, 0)
    close(Z_mfa, expected_mfa, 1e-12)
    close(Z_frobenius, expected_frobenius, 1e-12)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_mfa_above_the_gram_limit_uses_svdvals(namespace, monkeypatch):
    """Above _GRAM_LIMIT numpy uses ARPACK, the array API path svdvals."""
    from skcrossmodal.fusion import _utils as fusion_utils

    monkeypatch.setattr(fusion_utils, "_GRAM_LIMIT", 2)
    X = make_data(widths=(4, 5, 3))
    mods = {"a": [0, 1, 2, 3], "b": [4, 5, 6, 7, 8], "c": [9, 10, 11]}
    expected = ConcatFusion("mfa", modalities=mods).fit(X)
    fitted, result = run(ConcatFusion("mfa", modalities=mods), to_xp(namespace, X))
    for name in mods:
        assert fitted.scales_[name] == pytest.approx(expected.scales_[name], rel=1e-9)
    close(result, expected.transform(X), 1e-9)


def test_concat_fusion_tags():
    for scaling in (None, "frobenius", "mfa"):
        for center in (True, False):
            estimator = ConcatFusion(scaling, center=center)
            assert get_tags(estimator).array_api_support


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
