"""SharedProjection against independent computations done here with scipy/numpy."""

import importlib.util
import pickle
import tracemalloc

import numpy as np
import pytest
import sklearn
from scipy import linalg, sparse
from sklearn.base import clone
from sklearn.covariance import LedoitWolf, ledoit_wolf_shrinkage
from sklearn.cross_decomposition import CCA
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags
from xp_testing import (
    ARRAY_API_NAMESPACES,
    close,
    namespace_of,
    require,
    to_numpy,
    to_xp,
)

from skcrossmodal import SharedProjection, _numpy_sums, _statistics
from skcrossmodal._shared_space import SharedSpace
from skcrossmodal._testing import correlated_views as make_views


def covariance(a, b):
    """Biased (1/n) cross-covariance, computed the textbook way."""
    return (a - a.mean(0)).T @ (b - b.mean(0)) / a.shape[0]


def match_signs(reference, weights):
    """Flip reference columns to the signs of weights (eigenvectors are +/-)."""
    signs = np.sign(np.sum(reference * weights, axis=0))
    return reference * signs


@pytest.mark.parametrize("solver", ["svd", "eigh"])
@pytest.mark.parametrize("reg", [0.0, 0.3])
@pytest.mark.parametrize(
    "views",
    [
        {},
        # Both modalities >= 200 wide and k far below: the top singular
        # triplets come from a partial eigendecomposition, not a full SVD.
        {"n": 3000, "widths": (260, 230), "n_latent": 6},
    ],
    ids=["narrow", "wide"],
)
def test_two_modalities_equal_whitening_plus_svd(solver, reg, views):
    X, (x, y), modalities = make_views(**views)
    k = 3
    model = SharedProjection(k, modalities=modalities, reg=reg, solver=solver).fit(X)

    # Independent: whiten with the inverse symmetric square root, then SVD.
    cxx = covariance(x, x) + reg * np.eye(x.shape[1])
    cyy = covariance(y, y) + reg * np.eye(y.shape[1])
    wx = linalg.inv(linalg.sqrtm(cxx)).real
    wy = linalg.inv(linalg.sqrtm(cyy)).real
    u, s, vt = linalg.svd(wx @ covariance(x, y) @ wy)
    np.testing.assert_allclose(model.canonical_correlations_, s[:k], rtol=1e-8)

    ours_x, ours_y = model.weights_["m0"], model.weights_["m1"]
    ref_x = match_signs(wx @ u[:, :k], ours_x)
    ref_y = match_signs(wy @ vt[:k].T, ours_y)
    np.testing.assert_allclose(ours_x, ref_x, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours_y, ref_y, rtol=1e-8, atol=1e-10)
    # The scale constraint W_m^T (C_mm + reg I) W_m = I.
    np.testing.assert_allclose(ours_x.T @ cxx @ ours_x, np.eye(k), atol=1e-10)
    np.testing.assert_allclose(ours_y.T @ cyy @ ours_y, np.eye(k), atol=1e-10)


def seed_objective(x, y, wx, wy, reg):
    """The seed's sum of squares with the ridge, per row (constraint assumed)."""
    zx = (x - x.mean(0)) @ wx
    zy = (y - y.mean(0)) @ wy
    return np.sum((zx - zy) ** 2) / x.shape[0] + reg * (np.sum(wx**2) + np.sum(wy**2))


def test_seed_objective_is_minimal_at_the_solution():
    reg = 0.2
    X, (x, y), modalities = make_views()
    k = 2
    model = SharedProjection(k, modalities=modalities, reg=reg).fit(X)
    wx, wy = model.weights_["m0"], model.weights_["m1"]
    at_solution = seed_objective(x, y, wx, wy, reg)
    np.testing.assert_allclose(
        at_solution, 2 * k - 2 * model.canonical_correlations_.sum(), rtol=1e-10
    )

    # 1000 random feasible W: W_m = D_m^{-1/2} Q_m with orthonormal Q_m.
    rng = np.random.default_rng(1)
    dx = linalg.inv(linalg.sqrtm(covariance(x, x) + reg * np.eye(x.shape[1]))).real
    dy = linalg.inv(linalg.sqrtm(covariance(y, y) + reg * np.eye(y.shape[1]))).real
    random_values = []
    for _ in range(1000):
        qx = linalg.qr(rng.normal(size=(x.shape[1], k)), mode="economic")[0]
        qy = linalg.qr(rng.normal(size=(y.shape[1], k)), mode="economic")[0]
        random_values.append(seed_objective(x, y, dx @ qx, dy @ qy, reg))
    assert at_solution <= min(random_values) + 1e-12


@pytest.mark.parametrize("widths", [(4, 6, 5), (3, 4, 5, 3, 6, 4)])
@pytest.mark.parametrize("solver", ["svd", "eigh"])
def test_many_modalities_equal_generalised_eigh(widths, solver):
    reg = 0.1
    X, views, modalities = make_views(widths=widths, noise=1.5)
    k = 3
    model = SharedProjection(k, modalities=modalities, reg=reg, solver=solver).fit(X)

    full = covariance(X, X) + reg * np.eye(X.shape[1])
    diagonal = np.zeros_like(full)
    start = 0
    for w in widths:
        diagonal[start : start + w, start : start + w] = full[
            start : start + w, start : start + w
        ]
        start += w
    values, vectors = linalg.eigh(full, diagonal)
    values, vectors = values[::-1][:k], vectors[:, ::-1][:, :k]
    n_modalities = len(widths)
    np.testing.assert_allclose(
        model.canonical_correlations_, (values - 1) / (n_modalities - 1), rtol=1e-8
    )
    ours = np.vstack([model.weights_[name] for name in modalities])
    reference = match_signs(vectors * np.sqrt(n_modalities), ours)
    np.testing.assert_allclose(ours, reference, rtol=1e-7, atol=1e-9)


def test_unregularised_correlations_agree_with_sklearn_cca():
    X, (x, y), modalities = make_views(n=2000, noise=0.8)
    k = 3
    ours = SharedProjection(k, modalities=modalities).fit(X)
    cca = CCA(n_components=k, scale=False, max_iter=5000, tol=1e-12).fit(x, y)
    x_scores, y_scores = cca.transform(x, y)
    theirs = [np.corrcoef(x_scores[:, j], y_scores[:, j])[0, 1] for j in range(k)]
    np.testing.assert_allclose(ours.canonical_correlations_, theirs, rtol=1e-6)


def test_score_on_training_rows_is_the_mean_canonical_correlation():
    X, _, modalities = make_views()
    model = SharedProjection(3, modalities=modalities).fit(X)
    assert model.score(X) == pytest.approx(model.canonical_correlations_.mean(), 1e-10)


def test_auto_reg_is_ledoit_wolf_per_modality():
    X, views, modalities = make_views(n=300, widths=(20, 15), noise=2.0)
    for scale in (False, True):
        model = SharedProjection(2, modalities=modalities, reg="auto", scale=scale)
        model.fit(X)
        shrunk = []
        for name, view in zip(modalities, views):
            data = StandardScaler().fit_transform(view) if scale else view
            alpha = ledoit_wolf_shrinkage(data)
            mu = np.trace(covariance(data, data)) / data.shape[1]
            assert model.shrinkage_[name] == pytest.approx(alpha, rel=1e-9)
            assert model.reg_[name] == pytest.approx(alpha * mu, rel=1e-9)
            shrunk.append(LedoitWolf().fit(data).covariance_)
        # Independent: CCA on the joint covariance shrunk with sklearn's
        # Ledoit-Wolf blocks, the cross block scaled by sqrt(keep_x keep_y).
        x, y = (StandardScaler().fit_transform(v) if scale else v for v in views)
        keep = [1 - model.shrinkage_[name] for name in modalities]
        wx = linalg.inv(linalg.sqrtm(shrunk[0])).real
        wy = linalg.inv(linalg.sqrtm(shrunk[1])).real
        cross = np.sqrt(keep[0] * keep[1]) * covariance(x, y)
        s = linalg.svdvals(wx @ cross @ wy)
        np.testing.assert_allclose(model.canonical_correlations_, s[:2], rtol=1e-8)


def test_auto_reg_keeps_correlations_at_most_one_when_n_is_small():
    """Shrinking only the within-modality blocks would inflate the whitened
    cross-covariance by up to 1/(1 - alpha): with 40 rows for 30 + 30
    features that gives 'correlations' above 1 (computed here). The shrunk
    joint covariance keeps them in [0, 1]."""
    X, views, modalities = make_views(n=40, widths=(30, 30), noise=2.0, seed=3)
    model = SharedProjection(3, modalities=modalities, reg="auto").fit(X)
    shrunk = [LedoitWolf().fit(view).covariance_ for view in views]
    wx = linalg.inv(linalg.sqrtm(shrunk[0])).real
    wy = linalg.inv(linalg.sqrtm(shrunk[1])).real
    diagonal_only = linalg.svdvals(wx @ covariance(*views) @ wy)
    assert diagonal_only[0] > 1.0
    assert np.all(model.canonical_correlations_ <= 1.0)
    assert model.canonical_correlations_[0] < 1.0


def test_auto_reg_leaves_white_data_alone():
    """Whitened blocks: Ledoit-Wolf shrinks towards what is there already."""
    X, _, modalities = make_views(n=400, widths=(6, 6), noise=1.0)
    white = np.hstack(
        [PCA(whiten=True).fit_transform(X[:, block]) for block in modalities.values()]
    )
    auto = SharedProjection(3, modalities=modalities, reg="auto").fit(white)
    plain = SharedProjection(3, modalities=modalities, reg=0.0).fit(white)
    # The directions and weights are those of plain CCA; the correlations of
    # the shrunk joint covariance are plain's times sqrt(keep_a * keep_b),
    # near 0 here (Ledoit-Wolf shrinks white blocks fully): same ratios.
    np.testing.assert_allclose(auto.transform(white), plain.transform(white), atol=1e-5)
    assert max(auto.shrinkage_.values()) > 0.5
    assert np.all(auto.canonical_correlations_ <= plain.canonical_correlations_)
    np.testing.assert_allclose(
        auto.canonical_correlations_ / auto.canonical_correlations_[0],
        plain.canonical_correlations_ / plain.canonical_correlations_[0],
        rtol=1e-6,
    )


def test_reg_dict_applies_per_modality():
    X, (x, y), modalities = make_views()
    model = SharedProjection(2, modalities=modalities, reg={"m0": 0.5, "m1": 0.0})
    model.fit(X)
    cxx = covariance(x, x) + 0.5 * np.eye(x.shape[1])
    cyy = covariance(y, y)
    wx = linalg.inv(linalg.sqrtm(cxx)).real
    wy = linalg.inv(linalg.sqrtm(cyy)).real
    s = linalg.svdvals(wx @ covariance(x, y) @ wy)
    np.testing.assert_allclose(model.canonical_correlations_, s[:2], rtol=1e-8)
    assert model.reg_ == {"m0": 0.5, "m1": 0.0}


def test_scale_equals_fitting_standardised_data():
    X, _, modalities = make_views()
    X = X * np.linspace(0.01, 100, X.shape[1])
    scaled = SharedProjection(2, modalities=modalities, reg=0.1, scale=True).fit(X)
    standardised = StandardScaler().fit_transform(X)
    plain = SharedProjection(2, modalities=modalities, reg=0.1).fit(standardised)
    np.testing.assert_allclose(
        scaled.canonical_correlations_, plain.canonical_correlations_, rtol=1e-9
    )
    np.testing.assert_allclose(
        scaled.transform(X), plain.transform(standardised), rtol=1e-7, atol=1e-9
    )


def test_large_offsets_stay_accurate():
    """A mean 1e6 times the spread: the shifted sums keep the digits."""
    X, _, modalities = make_views(offset=1e6)
    centred = X - X.mean(0)
    far = SharedProjection(3, modalities=modalities).fit(X)
    near = SharedProjection(3, modalities=modalities).fit(centred)
    np.testing.assert_allclose(
        far.canonical_correlations_, near.canonical_correlations_, rtol=1e-8
    )


def test_sparse_input_equals_dense_without_densifying():
    rng = np.random.default_rng(3)
    dense = rng.normal(size=(400, 12)) * (rng.random((400, 12)) < 0.3)
    dense[:, 6:] += dense[:, :6] @ rng.normal(size=(6, 6))
    modalities = {"a": slice(0, 6), "b": slice(6, 12)}
    expected = SharedProjection(3, modalities=modalities, reg=0.01).fit(dense)
    for fmt in ("csr", "csc"):
        model = SharedProjection(3, modalities=modalities, reg=0.01)
        Z = model.fit_transform(sparse.csr_matrix(dense).asformat(fmt))
        np.testing.assert_allclose(
            model.canonical_correlations_, expected.canonical_correlations_, rtol=1e-10
        )
        np.testing.assert_allclose(Z, expected.transform(dense), rtol=1e-8, atol=1e-12)


def test_float32_in_float32_out_and_close_to_float64():
    X, _, modalities = make_views()
    model64 = SharedProjection(2, modalities=modalities, reg=0.1).fit(X)
    model32 = SharedProjection(2, modalities=modalities, reg=0.1).fit(
        X.astype(np.float32)
    )
    Z32 = model32.transform(X.astype(np.float32))
    assert Z32.dtype == np.float32
    # Statistics are accumulated in float64 whatever the input dtype; what is
    # left is the rounding of the float32 input itself.
    np.testing.assert_allclose(
        model32.canonical_correlations_, model64.canonical_correlations_, rtol=1e-5
    )
    np.testing.assert_allclose(Z32, model64.transform(X), rtol=1e-4, atol=1e-4)


def test_partial_fit_equals_fit_on_all_batches():
    X, _, modalities = make_views(n=1000, offset=50.0)
    full = SharedProjection(3, modalities=modalities, reg=0.05).fit(X)
    streamed = SharedProjection(3, modalities=modalities, reg=0.05)
    for batch in np.array_split(X, 7):
        streamed.partial_fit(batch)
    np.testing.assert_allclose(
        streamed.canonical_correlations_, full.canonical_correlations_, rtol=1e-8
    )
    for name in modalities:
        np.testing.assert_allclose(
            streamed.weights_[name], full.weights_[name], rtol=1e-8, atol=1e-12
        )
    assert streamed.n_samples_seen_ == 1000


def pairwise_complete_covariance(x, y, x_present, y_present):
    """Block (x, y) centred with each view's own mean, over rows carrying both."""
    mean_x = x[x_present].mean(0)
    mean_y = y[y_present].mean(0)
    both = x_present & y_present
    total = np.zeros((x.shape[1], y.shape[1]))
    for row in np.flatnonzero(both):
        total += np.outer(x[row] - mean_x, y[row] - mean_y)
    return total / both.sum()


def test_missing_modalities_use_every_informative_row(namespace, dispatch):
    X, (x, y), modalities = make_views(n=300)
    x_present = np.ones(300, bool)
    y_present = np.ones(300, bool)
    x_present[:40] = False
    y_present[40:100] = False
    X = X.copy()
    X[~x_present, :7] = np.nan
    X[~y_present, 7:] = np.nan
    X_xp = to_xp(namespace, X)
    model = SharedProjection(2, modalities=modalities, reg=0.1).fit(X_xp)
    np.testing.assert_array_equal(to_numpy(X_xp), X)  # input untouched
    assert_in_namespace_of(model, X_xp)

    cxx = pairwise_complete_covariance(x, x, x_present, x_present) + 0.1 * np.eye(7)
    cyy = pairwise_complete_covariance(y, y, y_present, y_present) + 0.1 * np.eye(5)
    cxy = pairwise_complete_covariance(x, y, x_present, y_present)
    wx = linalg.inv(linalg.sqrtm(cxx)).real
    wy = linalg.inv(linalg.sqrtm(cyy)).real
    s = linalg.svdvals(wx @ cxy @ wy)
    np.testing.assert_allclose(
        to_numpy(model.canonical_correlations_), s[:2], rtol=1e-8
    )
    means = {name: to_numpy(value) for name, value in model.means_.items()}
    weights = {name: to_numpy(value) for name, value in model.weights_.items()}
    np.testing.assert_allclose(means["m0"], x[x_present].mean(0), rtol=1e-12)

    # Transform: rows with one modality get that modality's projection.
    Z = to_numpy(model.transform(X_xp))
    zx = (x - means["m0"]) @ weights["m0"]
    zy = (y - means["m1"]) @ weights["m1"]
    np.testing.assert_allclose(Z[:40], zy[:40], rtol=1e-10)
    np.testing.assert_allclose(Z[40:100], zx[40:100], rtol=1e-10)
    np.testing.assert_allclose(Z[100:], (zx[100:] + zy[100:]) / 2, rtol=1e-10)
    # Every row carried a modality, so every row was seen.
    assert model.n_samples_seen_ == 300


def test_non_psd_pairwise_covariance_warns_and_clips_at_one():
    """Pairwise-complete blocks need not form a positive semi-definite
    covariance: with wide modalities and a tenth of each missing, scipy's
    generalised eigenvalue (computed here) exceeds 1 + 1. The fit warns,
    saying why, and clips the correlations at 1."""
    rng = np.random.default_rng(5)
    X, (x, y), modalities = make_views(n=600, widths=(150, 150), n_latent=4)
    X = X.copy()
    x_present = np.ones(600, bool)
    y_present = np.ones(600, bool)
    x_present[rng.choice(600, 60, replace=False)] = False
    y_present[rng.choice(np.flatnonzero(x_present), 60, replace=False)] = False
    X[~x_present, :150] = np.nan
    X[~y_present, 150:] = np.nan

    cxx = pairwise_complete_covariance(x, x, x_present, x_present) + 1.0 * np.eye(150)
    cyy = pairwise_complete_covariance(y, y, y_present, y_present) + 1.0 * np.eye(150)
    cxy = pairwise_complete_covariance(x, y, x_present, y_present)
    block_diagonal = linalg.block_diag(cxx, cyy)
    full = block_diagonal + np.block([[0 * cxx, cxy], [cxy.T, 0 * cyy]])
    top = linalg.eigh(full, block_diagonal, eigvals_only=True)[-1]
    assert top - 1 > 1.001  # the estimator itself is past 1

    with pytest.warns(UserWarning, match="above 1.*not positive semi-definite"):
        model = SharedProjection(2, modalities=modalities, reg=1.0).fit(X)
    assert model.canonical_correlations_.max() == 1.0


@pytest.mark.parametrize("first_nan_row", [0, 777, 1999])
@pytest.mark.parametrize(
    "offset, dtype",
    [(0.0, np.float64), (50.0, np.float64), (0.0, np.float32)],
    ids=["view-of-X", "shifted-copy", "float32-copy"],
)
def test_missing_rows_anywhere_give_the_pairwise_complete_answer(
    monkeypatch, first_nan_row, offset, dtype
):
    """Complete rows take an optimistic fast path (on a view of X, or on a
    shifted float64 copy of each chunk); a NaN in any chunk (first, middle,
    last) must still end in the pairwise-complete answer, however many
    chunks came before it."""
    monkeypatch.setattr(_numpy_sums, "_CHUNK_BYTES", 1)  # 256 rows, the least
    X, (x, y), modalities = make_views(n=2000, offset=offset)
    X = X.astype(dtype)
    x, y = X[:, :7].astype(np.float64), X[:, 7:].astype(np.float64)
    X[first_nan_row : first_nan_row + 1, :7] = np.nan
    x_present = ~np.isnan(X[:, 0])
    y_present = np.ones(2000, bool)
    for in_place in (False, True):
        model = SharedProjection(2, modalities=modalities, reg=0.1)
        if in_place:  # batches smaller than the Gram: checked chunk by chunk
            for batch in np.array_split(X, 200):
                model.partial_fit(batch)
        else:
            model.fit(X)
        cxx = pairwise_complete_covariance(x, x, x_present, x_present)
        cyy = pairwise_complete_covariance(y, y, y_present, y_present)
        cxy = pairwise_complete_covariance(x, y, x_present, y_present)
        wx = linalg.inv(linalg.sqrtm(cxx + 0.1 * np.eye(7))).real
        wy = linalg.inv(linalg.sqrtm(cyy + 0.1 * np.eye(5))).real
        s = linalg.svdvals(wx @ cxy @ wy)
        np.testing.assert_allclose(model.canonical_correlations_, s[:2], rtol=1e-8)
        assert model.n_samples_seen_ == 2000


@pytest.mark.filterwarnings(
    "ignore:SharedProjection\\(solver='gradient'\\):FutureWarning"
)
@pytest.mark.parametrize("solver", ["auto", "gradient"])
def test_a_row_with_no_modality_is_an_error_in_fit_as_in_transform(solver):
    X, _, modalities = make_views(n=300)
    X = X.copy()
    X[123] = np.nan
    model = SharedProjection(2, modalities=modalities, solver=solver)
    with pytest.raises(ValueError, match="Row 123 of X has no modality present"):
        model.fit(X)
    with pytest.raises(ValueError, match="Row 23 of X has no modality present"):
        SharedProjection(2, modalities=modalities).partial_fit(X[100:])


def test_output_modes():
    X, (x, y), modalities = make_views()
    model = SharedProjection(2, modalities=modalities).fit(X)
    zx = (x - model.means_["m0"]) @ model.weights_["m0"]
    zy = (y - model.means_["m1"]) @ model.weights_["m1"]
    concat = model.set_params(output="concat").fit(X)
    np.testing.assert_allclose(concat.transform(X), np.hstack([zx, zy]), rtol=1e-10)
    assert list(concat.get_feature_names_out()) == [
        "m0__sharedprojection0",
        "m0__sharedprojection1",
        "m1__sharedprojection0",
        "m1__sharedprojection1",
    ]
    only_y = model.set_params(output="m1").fit(X)
    np.testing.assert_allclose(only_y.transform(X), zy, rtol=1e-10)
    assert list(only_y.get_feature_names_out()) == [
        "sharedprojection0",
        "sharedprojection1",
    ]


def test_rank_deficient_unregularised_gives_finite_answer():
    """n < d with reg=0: directions of zero variance are dropped, never NaN."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 30))
    model = SharedProjection(3, modalities={"a": slice(0, 15), "b": slice(15, 30)})
    Z = model.fit_transform(X)
    assert np.isfinite(Z).all()
    # With more features than rows, perfect correlation is always attainable.
    np.testing.assert_allclose(model.canonical_correlations_, 1.0, atol=1e-8)


@pytest.mark.parametrize("factor", [1e-8, 1e8])
def test_features_in_extreme_units_lose_no_accuracy(factor):
    """reg=0 CCA is unit-free: rescaling features must not change the answer."""
    X, _, modalities = make_views()
    units = np.ones(X.shape[1])
    units[::2] = factor
    plain = SharedProjection(3, modalities=modalities).fit(X)
    rescaled = SharedProjection(3, modalities=modalities).fit(X * units)
    np.testing.assert_allclose(
        rescaled.canonical_correlations_, plain.canonical_correlations_, rtol=1e-10
    )
    np.testing.assert_allclose(
        rescaled.transform(X * units), plain.transform(X), rtol=1e-7, atol=1e-9
    )


def test_ill_conditioned_block_keeps_correlations():
    """A block covariance with condition number ~1e12 (data ~1e6)."""
    X, _, modalities = make_views(n=5000)
    rng = np.random.default_rng(7)
    u = linalg.qr(rng.normal(size=(7, 7)))[0]
    v = linalg.qr(rng.normal(size=(7, 7)))[0]
    mixing = u @ np.diag(np.logspace(0, 6, 7)) @ v
    mixed = X.copy()
    mixed[:, :7] = X[:, :7] @ mixing
    plain = SharedProjection(3, modalities=modalities).fit(X)
    model = SharedProjection(3, modalities=modalities).fit(mixed)
    # Forming the covariance squares the condition number: the expected
    # relative error is around eps * 1e12 ~ 1e-4 at worst; measured ~1e-6.
    np.testing.assert_allclose(
        model.canonical_correlations_, plain.canonical_correlations_, rtol=1e-4
    )


def test_a_failed_fit_leaves_the_previous_model_and_partial_fit_starts_afresh():
    """A fit that fails (here on a row with no modality) leaves the model it
    would have replaced exactly as it was; fit keeps no statistics, so a
    partial_fit after it starts a new stream, with a warning that says so."""
    X, _, modalities = make_views(n=400)
    model = SharedProjection(2, modalities=modalities, reg=0.1).fit(X[:200])
    before = {k: np.copy(v) for k, v in model.weights_.items()}
    state_keys = set(vars(model))
    broken = X[200:].copy()
    broken[5] = np.nan
    with pytest.raises(ValueError, match="no modality present"):
        model.fit(broken)
    assert set(vars(model)) == state_keys
    for name, weights in before.items():
        np.testing.assert_array_equal(model.weights_[name], weights)
    np.testing.assert_allclose(model.transform(X[:5]), model.transform(X[:5]))
    with pytest.warns(UserWarning, match="partial_fit after fit starts a new"):
        model.partial_fit(X[200:])
    fresh = SharedProjection(2, modalities=modalities, reg=0.1).fit(X[200:])
    np.testing.assert_allclose(
        model.canonical_correlations_, fresh.canonical_correlations_, rtol=1e-12
    )
    assert model.n_samples_seen_ == 200


@pytest.mark.parametrize("width, expected_threads", [(20, 1), (800, 2)])
def test_dense_solve_of_small_problems_runs_on_one_blas_thread(
    monkeypatch, width, expected_threads
):
    """Below 1 500 features in all the solve runs on one BLAS thread (no
    hand-offs between numpy's and scipy's pools); above, it keeps the
    caller's threads; either way the caller's setting is restored."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from skcrossmodal import _closed_form

    def blas_threads():
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    seen = set()
    real_solve = _closed_form.solve

    def recording_solve(*args, **kwargs):
        seen.update(blas_threads())
        return real_solve(*args, **kwargs)

    monkeypatch.setattr(_closed_form, "solve", recording_solve)
    X, _, modalities = make_views(n=2000, widths=(width, width))
    with threadpool_limits(limits=2, user_api="blas"):
        SharedProjection(2, modalities=modalities, reg=0.1).fit(X)
        after = blas_threads()
    assert seen == {expected_threads}
    assert after == {2}


def test_concurrent_fits_leave_the_blas_thread_limit_as_it_was():
    """Fits running at once in threads (GridSearchCV's threading backend)
    each limit the small solve to one BLAS thread; the process's setting is
    the caller's again once they are all done, however they interleave."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    X, _, modalities = make_views(n=3000, widths=(30, 30))
    expected = SharedProjection(2, modalities=modalities, reg=0.1).fit(X)
    with threadpool_limits(limits=2, user_api="blas"):
        with ThreadPoolExecutor(max_workers=6) as pool:
            fitted = list(
                pool.map(
                    lambda _: SharedProjection(2, modalities=modalities, reg=0.1).fit(
                        X
                    ),
                    range(24),
                )
            )
        assert blas_threads() == {2}
    for model in fitted:
        np.testing.assert_allclose(
            model.canonical_correlations_, expected.canonical_correlations_, rtol=1e-10
        )


@pytest.mark.parametrize("scale", [False, True])
@pytest.mark.parametrize("missing", [False, True])
def test_loadings_are_the_structure_correlations(scale, missing):
    """loadings_[m][j, c] is the Pearson correlation of feature j with
    component c of modality m's projection, over the rows carrying m,
    as np.corrcoef computes it from the data (units do not matter)."""
    X, _, modalities = make_views(n=500, widths=(6, 4, 5), offset=3.0)
    X[:, 2] *= 1e6  # a feature in other units
    if missing:
        X[:60, 6:10] = np.nan  # modality m1 missing in some rows
    model = SharedProjection(3, modalities=modalities, reg=0.1, scale=scale).fit(X)
    for name, columns in modalities.items():
        block = X[:, columns]
        rows = ~np.isnan(block).any(axis=1)
        projection = (block[rows] - model.means_[name]) @ model.weights_[name]
        expected = np.array(
            [
                [np.corrcoef(block[rows, j], projection[:, c])[0, 1] for c in range(3)]
                for j in range(block.shape[1])
            ]
        )
        np.testing.assert_allclose(model.loadings_[name], expected, atol=1e-10)


def test_partial_fit_without_solving_defers_the_solve_to_the_last_batch():
    """solve=False only grows the statistics: the model stays as it was
    (unfitted before any solve), and the batch that solves gives fit's
    answer on every row so far."""
    X, _, modalities = make_views(n=1000)
    model = SharedProjection(2, modalities=modalities, reg=0.1)
    for start in range(0, 800, 100):
        model.partial_fit(X[start : start + 100], solve=False)
    assert not hasattr(model, "canonical_correlations_")
    model.partial_fit(X[800:900])
    solved_at_900 = model.canonical_correlations_.copy()
    model.partial_fit(X[900:], solve=False)
    np.testing.assert_array_equal(model.canonical_correlations_, solved_at_900)
    assert model.n_samples_seen_ == 900
    model.partial_fit(X[900:901], solve=True)
    expected = SharedProjection(2, modalities=modalities, reg=0.1).fit(
        np.vstack([X, X[900:901]])
    )
    np.testing.assert_allclose(
        model.canonical_correlations_, expected.canonical_correlations_, rtol=1e-10
    )
    assert model.n_samples_seen_ == 1001


def test_solver_gradient_is_deprecated_for_gradient_shared_projection():
    from skcrossmodal import GradientSharedProjection

    X, _, modalities = make_views(n=300)
    params = dict(modalities=modalities, reg=0.1, random_state=0, max_iter=5)
    with pytest.warns(FutureWarning, match="use skcrossmodal.GradientSharedProjection"):
        old = SharedProjection(2, solver="gradient", **params).fit(X)
    new = GradientSharedProjection(2, **params).fit(X)
    np.testing.assert_array_equal(
        old.canonical_correlations_, new.canonical_correlations_
    )


@pytest.mark.parametrize("missing", [False, True])
def test_integer_sample_weight_equals_repeating_rows(missing):
    """Weighted sufficient statistics: weight k is the row k times, weight 0
    drops it, in fit and across partial_fit batches alike."""
    X, _, modalities = make_views(n=300, offset=4.0)
    if missing:
        X[:40, :7] = np.nan
    weights = np.random.default_rng(0).integers(0, 4, size=300)
    repeated = np.repeat(X, weights, axis=0)
    expected = SharedProjection(2, modalities=modalities, reg=0.1).fit(repeated)
    weighted = SharedProjection(2, modalities=modalities, reg=0.1)
    weighted.fit(X, sample_weight=weights)
    streamed = SharedProjection(2, modalities=modalities, reg=0.1)
    streamed.partial_fit(X[:150], sample_weight=weights[:150])
    streamed.partial_fit(X[150:], sample_weight=weights[150:])
    for model in (weighted, streamed):
        np.testing.assert_allclose(
            model.canonical_correlations_,
            expected.canonical_correlations_,
            rtol=1e-10,
        )
        for name in modalities:
            np.testing.assert_allclose(
                model.weights_[name], expected.weights_[name], rtol=1e-8, atol=1e-10
            )


# -- every array namespace -------------------------------------------------------
#
# The same estimator on numpy, array_api_strict (on its "device1", which
# refuses any conversion to numpy, as a GPU would) and torch on the CPU, under
# array_api_dispatch (the `namespace` and `dispatch` fixtures, conftest.py).
# Each result is compared with the numpy fit of the same data, or with scipy
# by hand.
#
# Tolerances, measured on the CASES below at n=2000 (largest error relative
# to the array's largest entry, worst case over both array API namespaces):
#
# * float64 X: correlations 1.4e-15, weights 2.3e-14, transform 6.5e-15;
#   tested at 1e-6.
# * float32 X, float64 sums (CPU, CUDA: every device with float64): the sums
#   are taken in float64 from the same float32 values the numpy path casts,
#   so correlations 3.3e-15 and weights 2.8e-14 (tested at 1e-6); the
#   float32 transform 3.0e-8 (tested at 1e-6).
# * float32 sums, what a device without float64 (torch MPS) runs, simulated
#   by forcing float32 accumulation: correlations 5.9e-7, weights 9.3e-6,
#   transform 3.3e-6; tested at 1e-5 (correlations) and 1e-4 (weights).
# * partial_fit, float64: against fit on all the batches and against numpy's
#   partial_fit, correlations 1.8e-15, weights 2.8e-14 (tested at 1e-8 and
#   1e-6); float32 sums: correlations 7.7e-7, weights 8.6e-6 (1e-5, 1e-4).


def xp_data(n_samples=400, widths=(5, 4), seed=0, offset=0.0):
    """Modalities sharing a latent with well-separated strengths, in
    different units per modality (which exercises the equilibration)."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_samples, 3)) * np.array([3.0, 1.5, 0.7])
    blocks = [
        latent @ rng.normal(size=(3, w)) + rng.normal(size=(n_samples, w))
        for w in widths
    ]
    blocks = [block * 10.0**i for i, block in enumerate(blocks)]
    return np.hstack(blocks) + offset


def interleaved(widths):
    """Modalities whose columns are interleaved, not contiguous."""
    order = np.random.default_rng(1).permutation(sum(widths))
    stops = np.cumsum(widths)
    return {
        f"m{i}": np.sort(order[stop - w : stop])
        for i, (w, stop) in enumerate(zip(widths, stops))
    }


def contiguous(widths):
    stops = np.cumsum(widths)
    return {
        f"m{i}": slice(stop - w, stop) for i, (w, stop) in enumerate(zip(widths, stops))
    }


def assert_in_namespace_of(model, X_xp):
    for array in [
        model.canonical_correlations_,
        *model.weights_.values(),
        *model.means_.values(),
    ]:
        assert namespace_of(array) == namespace_of(X_xp)
        if namespace_of(X_xp) != "numpy":
            assert array.device == X_xp.device


CASES = [
    # widths, reg, scale, layout
    ((5, 4), 0.0, False, contiguous),
    ((5, 4), 0.1, True, interleaved),
    ((5, 4), {"m0": 0.5, "m1": 0.0}, False, interleaved),
    ((4, 3, 5), 0.2, False, contiguous),
    ((4, 3, 5), {"m0": 0.0, "m1": 1.0, "m2": 0.3}, True, interleaved),
]


@pytest.mark.parametrize("namespace", ARRAY_API_NAMESPACES, indirect=True)
@pytest.mark.parametrize("widths, reg, scale, layout", CASES)
def test_every_namespace_fits_transforms_and_scores_as_numpy(
    namespace, widths, reg, scale, layout, dispatch
):
    X = xp_data(widths=widths)
    model = SharedProjection(2, modalities=layout(widths), reg=reg, scale=scale)
    reference = clone(model).fit(X)
    X_xp = to_xp(namespace, X)
    fitted = clone(model).fit(X_xp)
    assert_in_namespace_of(fitted, X_xp)
    close(fitted.canonical_correlations_, reference.canonical_correlations_, 1e-6)
    for name in reference.modalities_:
        close(fitted.weights_[name], reference.weights_[name], 1e-6)
        close(fitted.means_[name], reference.means_[name], 1e-6)
        if scale:
            close(fitted.scale_[name], reference.scale_[name], 1e-6)
        else:
            assert fitted.scale_[name] is None
    for output in ["mean", "concat", *reference.modalities_]:
        Z = fitted.set_params(output=output).transform(X_xp)
        assert namespace_of(Z) == namespace and Z.dtype == X_xp.dtype
        close(Z, reference.set_params(output=output).transform(X), 1e-6)
    assert fitted.score(X_xp) == pytest.approx(reference.score(X), rel=1e-9)
    assert fitted.n_samples_seen_ == X.shape[0]


def test_every_namespace_keeps_float64_attributes_and_float32_outputs(
    namespace, dispatch
):
    X_xp = to_xp(namespace, xp_data().astype(np.float32))
    modalities = {"a": np.arange(5), "b": np.arange(5, 9)}
    model = SharedProjection(2, modalities=modalities, reg=0.1).fit(X_xp)
    assert_in_namespace_of(model, X_xp)
    # Fitted quantities keep the accumulation dtype (float64 on the CPU), as
    # the numpy path keeps float64 attributes for float32 X.
    for array in [model.canonical_correlations_, *model.weights_.values()]:
        assert str(array.dtype).endswith("float64")
    Z = model.transform(X_xp)
    assert namespace_of(Z) == namespace and str(Z.dtype).endswith("float32")
    if namespace != "numpy":
        assert Z.device == X_xp.device
    assert Z.shape == (X_xp.shape[0], 2)


@pytest.mark.parametrize("namespace", ARRAY_API_NAMESPACES, indirect=True)
@pytest.mark.parametrize("widths", [(5, 4), (4, 3, 5)])
def test_every_namespace_float32_input_matches_numpy(namespace, widths, dispatch):
    X = xp_data(widths=widths).astype(np.float32)
    model = SharedProjection(2, modalities=interleaved(widths), reg=0.1)
    reference = clone(model).fit(X)
    X_xp = to_xp(namespace, X)
    fitted = clone(model).fit(X_xp)
    # Accumulated in float64 on the CPU, from the same float32 values.
    close(fitted.canonical_correlations_, reference.canonical_correlations_, 1e-6)
    for name in reference.modalities_:
        close(fitted.weights_[name], reference.weights_[name], 1e-6)
    for output in ["mean", "concat"]:
        Z = fitted.set_params(output=output).transform(X_xp)
        assert str(Z.dtype).endswith("float32")
        close(Z, reference.set_params(output=output).transform(X), 1e-6)


@pytest.mark.parametrize("namespace", ARRAY_API_NAMESPACES, indirect=True)
@pytest.mark.parametrize("streamed", [False, True], ids=["fit", "partial_fit"])
def test_float32_accumulation_tolerance(namespace, streamed, dispatch, monkeypatch):
    """A device without float64 (torch MPS) computes everything in float32."""
    X = xp_data(n_samples=2000, widths=(6, 5)).astype(np.float32)
    model = SharedProjection(2, modalities={"a": slice(0, 6), "b": slice(6, 11)})
    model.set_params(reg=0.1)
    reference, fitted = clone(model), clone(model)
    batches = np.split(X, [3, 700, 1500]) if streamed else [X]
    for batch in batches:
        reference.partial_fit(batch)
    monkeypatch.setattr(_statistics, "accumulation_dtype", lambda xp, dev: xp.float32)
    for batch in batches:
        fitted.partial_fit(to_xp(namespace, batch))
    assert str(fitted.canonical_correlations_.dtype).endswith("float32")
    close(fitted.canonical_correlations_, reference.canonical_correlations_, 1e-5)
    for name in ["a", "b"]:
        close(fitted.weights_[name], reference.weights_[name], 1e-4)


def test_every_namespace_solves_the_generalised_eigenproblem(namespace, dispatch):
    """The solution against scipy's eigh(C_reg, D) on a hand-made covariance."""
    reg = 0.3
    X = xp_data(widths=(4, 3, 5), seed=3)
    modalities = {"a": np.arange(4), "b": np.arange(4, 7), "c": np.arange(7, 12)}
    model = SharedProjection(2, modalities=modalities, reg=reg)
    model.fit(to_xp(namespace, X))

    centred = X - X.mean(axis=0)
    regularised = centred.T @ centred / X.shape[0] + reg * np.eye(12)
    diagonal = np.zeros_like(regularised)
    for indices in modalities.values():
        diagonal[np.ix_(indices, indices)] = regularised[np.ix_(indices, indices)]
    values, vectors = linalg.eigh(regularised, diagonal)
    values, vectors = values[::-1][:2], vectors[:, ::-1][:, :2] * np.sqrt(3)
    # Signs: the largest entry of the first modality's block is positive in
    # the equilibrated problem (each feature scaled to unit regularised
    # variance), as _conventions.finish does.
    first = vectors[:4] * np.sqrt(np.diag(regularised))[:4, None]
    vectors *= np.sign(first[np.argmax(np.abs(first), axis=0), [0, 1]])

    close(model.canonical_correlations_, (values - 1) / 2, 1e-9)
    stacked = np.vstack([to_numpy(model.weights_[name]) for name in modalities])
    close(stacked, vectors, 1e-8)
    # The constraint W^T D W = M I of the stacked weights.
    np.testing.assert_allclose(
        stacked.T @ diagonal @ stacked, 3 * np.eye(2), atol=1e-10
    )


def test_every_namespace_keeps_the_digits_of_large_means_over_many_chunks(
    namespace, dispatch, monkeypatch
):
    """The shift keeps the digits a mean of 1e6 would cost; chunks add up."""
    X = xp_data(n_samples=3000, offset=1e6)
    model = SharedProjection(2, modalities={"a": slice(0, 5), "b": slice(5, 9)})
    model.set_params(reg=0.01)
    reference = clone(model).fit(X)  # default chunks
    # 256-row chunks (the floor) in every path: 12, the last one partial.
    monkeypatch.setattr(_numpy_sums, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(_statistics, "_XP_CHUNK_BYTES", 1)
    fitted = clone(model).fit(to_xp(namespace, X))
    close(fitted.canonical_correlations_, reference.canonical_correlations_, 1e-6)
    for name, columns in [("a", slice(0, 5)), ("b", slice(5, 9))]:
        close(fitted.weights_[name], reference.weights_[name], 1e-6)
        close(fitted.means_[name], X[:, columns].mean(axis=0), 1e-12)


@pytest.mark.parametrize("namespace", ARRAY_API_NAMESPACES, indirect=True)
def test_the_projection_routine_takes_numpy_weights_for_array_api_input(namespace):
    """The one projection (X_m - mu_m) W_m moves numpy weights to X's
    namespace and device (the estimator itself refuses X of another
    namespace than its fit's, as scikit-learn's estimators do)."""
    X = xp_data()
    reference = SharedProjection(2, modalities={"a": slice(0, 5), "b": slice(5, 9)})
    reference.fit(X)
    space = SharedSpace(
        reference.modalities_,
        reference.means_,
        reference.weights_,
        reference.canonical_correlations_,
    )
    X_xp = to_xp(namespace, X)
    for output in ("mean", "concat", "a", "b"):
        Z = space.combine(*space.project(X_xp), output)
        assert namespace_of(Z) == namespace
        close(Z, reference.set_params(output=output).transform(X), 1e-10)


@pytest.mark.parametrize("namespace", ARRAY_API_NAMESPACES, indirect=True)
@pytest.mark.parametrize("streamed", [False, True], ids=["fit", "partial_fit"])
def test_every_namespace_fits_missing_modalities_as_numpy(
    namespace, streamed, dispatch
):
    """Missing modalities (a NaN block) in any namespace: the pairwise-complete
    statistics numpy computes, on the device, and the same transform."""
    X = xp_data(n_samples=600, widths=(5, 4), offset=20.0)
    X[:50, :5] = np.nan
    X[50:120, 5:] = np.nan
    X[300:310, :5] = np.nan  # a missing block in a later chunk or batch
    model = SharedProjection(2, modalities={"a": slice(0, 5), "b": slice(5, 9)})
    model.set_params(reg=0.1, scale=True)
    reference, fitted = clone(model), clone(model)
    batches = np.split(X, [250, 251, 400]) if streamed else [X]
    for batch in batches:
        reference.partial_fit(batch)
        fitted.partial_fit(to_xp(namespace, batch))
    assert_in_namespace_of(fitted, to_xp(namespace, X))
    assert fitted.n_samples_seen_ == reference.n_samples_seen_ == 600
    close(fitted.canonical_correlations_, reference.canonical_correlations_, 1e-8)
    for name in ["a", "b"]:
        close(fitted.weights_[name], reference.weights_[name], 1e-8)
        close(fitted.means_[name], reference.means_[name], 1e-12)
        close(fitted.scale_[name], reference.scale_[name], 1e-12)
    X_xp = to_xp(namespace, X)
    for output in ("mean", "concat", "a", "b"):
        close(
            fitted.set_params(output=output).transform(X_xp),
            reference.set_params(output=output).transform(X),
            1e-8,
        )
    assert fitted.score(X_xp) == pytest.approx(reference.score(X), rel=1e-8)


# numpy, under array_api_strict, warns about inf - inf before the check.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_every_namespace_refuses_infinity(namespace, dispatch):
    X = xp_data()
    X[7, 2] = np.inf
    model = SharedProjection(2, modalities={"a": slice(0, 5), "b": slice(5, 9)})
    with pytest.raises(ValueError, match="infinity"):
        model.fit(to_xp(namespace, X))


@pytest.mark.parametrize("namespace", ARRAY_API_NAMESPACES, indirect=True)
def test_array_api_auto_reg_is_a_clear_error(namespace, dispatch):
    model = SharedProjection(
        2, modalities={"a": slice(0, 5), "b": slice(5, 9)}, reg={"a": "auto", "b": 0.0}
    )
    with pytest.raises(ValueError, match="numeric reg.*reg='auto'.*numpy"):
        model.fit(to_xp(namespace, xp_data()))
    assert not hasattr(model, "canonical_correlations_")


@pytest.mark.parametrize("namespace", ARRAY_API_NAMESPACES, indirect=True)
def test_array_api_singular_block_without_ridge_is_a_clear_error(namespace, dispatch):
    X = xp_data()
    X[:, 1] = X[:, 0]  # modality "a" is rank deficient
    model = SharedProjection(2, modalities={"a": slice(0, 5), "b": slice(5, 9)})
    with pytest.raises(ValueError, match="'a'.*not positive definite.*reg > 0"):
        clone(model).fit(to_xp(namespace, X))
    # A ridge makes it positive definite, and the answer is numpy's again.
    model.set_params(reg=0.5)
    reference = clone(model).fit(X)
    fitted = clone(model).fit(to_xp(namespace, X))
    close(fitted.canonical_correlations_, reference.canonical_correlations_, 1e-6)


@pytest.mark.parametrize("namespace", ARRAY_API_NAMESPACES, indirect=True)
@pytest.mark.parametrize("widths, reg, scale, layout", CASES[1:4])
def test_every_namespace_partial_fit_equals_fit_and_numpy_partial_fit(
    namespace, widths, reg, scale, layout, dispatch
):
    X = xp_data(n_samples=2000, widths=widths, offset=100.0)
    model = SharedProjection(2, modalities=layout(widths), reg=reg, scale=scale)
    # reg=0 needs more rows than features in the first batch (a Cholesky).
    batches = np.split(X, [300, 301, 1200])
    on_device = [to_xp(namespace, batch) for batch in batches]
    streamed = clone(model)
    for batch in on_device:
        streamed.partial_fit(batch)
    for batch, original in zip(on_device, batches):
        np.testing.assert_array_equal(to_numpy(batch), original)  # not modified
    assert_in_namespace_of(streamed, on_device[0])
    assert streamed.n_samples_seen_ == 2000 and streamed.n_iter_ == 1

    whole = clone(model).fit(to_xp(namespace, X))
    numpy_streamed = clone(model)
    for batch in batches:
        numpy_streamed.partial_fit(batch)
    close(
        streamed.canonical_correlations_,
        to_numpy(whole.canonical_correlations_),
        1e-8,
    )
    close(
        streamed.canonical_correlations_, numpy_streamed.canonical_correlations_, 1e-6
    )
    for name in streamed.modalities_:
        close(streamed.weights_[name], to_numpy(whole.weights_[name]), 1e-8)
        close(streamed.weights_[name], numpy_streamed.weights_[name], 1e-6)
        close(streamed.means_[name], numpy_streamed.means_[name], 1e-12)
    X_xp = to_xp(namespace, X)
    close(streamed.transform(X_xp), numpy_streamed.transform(X), 1e-6)
    assert streamed.score(X_xp) == pytest.approx(numpy_streamed.score(X), rel=1e-9)


def test_every_namespace_partial_fit_and_pickle_continue_the_stream(
    namespace, dispatch
):
    X = xp_data(n_samples=1200)
    modalities = {"a": slice(0, 5), "b": slice(5, 9)}
    model = SharedProjection(2, modalities=modalities, reg=0.1)
    model.partial_fit(to_xp(namespace, X[:500]))
    model.partial_fit(to_xp(namespace, X[500:900]))
    restored = pickle.loads(pickle.dumps(model))
    restored.partial_fit(to_xp(namespace, X[900:]))
    with sklearn.config_context(array_api_dispatch=False):
        expected = SharedProjection(2, modalities=modalities, reg=0.1).fit(X)
    close(restored.canonical_correlations_, expected.canonical_correlations_, 1e-8)
    assert restored.n_samples_seen_ == 1200
    assert_in_namespace_of(restored, to_xp(namespace, X))
    # A new fit starts a new stream, and keeps no sums.
    model.fit(to_xp(namespace, X[:300]))
    assert model.n_samples_seen_ == 300
    assert not hasattr(model, "_accumulator")


def test_partial_fit_rejects_a_batch_from_another_namespace_or_device(dispatch):
    require("array_api_strict")
    X = xp_data()
    modalities = {"a": slice(0, 5), "b": slice(5, 9)}
    on_device1 = SharedProjection(2, modalities=modalities, reg=0.1)
    on_device1.partial_fit(to_xp("array_api_strict", X[:200]))
    expected = clone(on_device1).fit(X[:200]).canonical_correlations_
    match = "partial_fit got X .* earlier batches were array_api_strict arrays"
    # numpy; array_api_strict on its default device; torch where installed.
    others = [X[200:], to_xp("array_api_strict", X[200:], default_device=True)]
    if importlib.util.find_spec("torch") is not None:  # a test-only extra
        others.append(to_xp("torch", X[200:]))
    for other in others:
        with pytest.raises(ValueError, match=match):
            on_device1.partial_fit(other)
    # The refused batches added nothing.
    assert on_device1.n_samples_seen_ == 200
    close(on_device1.canonical_correlations_, expected, 1e-12)
    # Without dispatch an array API batch reaches partial_fit as numpy.
    with (
        sklearn.config_context(array_api_dispatch=False),
        pytest.raises(ValueError, match=match),
    ):
        on_device1.partial_fit(others[1])

    numpy_first = SharedProjection(2, modalities=modalities, reg=0.1)
    numpy_first.partial_fit(X[:200])
    with pytest.raises(ValueError, match="partial_fit got an array API batch"):
        numpy_first.partial_fit(to_xp("array_api_strict", X[200:]))
    assert numpy_first.n_samples_seen_ == 200


def test_every_namespace_partial_fit_refuses_bad_batches_atomically(
    namespace, dispatch
):
    X = xp_data(n_samples=600)
    X[400, 5:] = np.nan  # a missing modality: accepted, pairwise complete
    modalities = {"a": slice(0, 5), "b": slice(5, 9)}
    model = SharedProjection(2, modalities=modalities, reg=0.1)
    model.partial_fit(to_xp(namespace, X[:300]))
    bad = X[300:].copy()
    bad[20, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        model.partial_fit(to_xp(namespace, bad))
    # A refused batch adds nothing: the stream goes on as if never sent.
    model.partial_fit(to_xp(namespace, X[300:]))
    with sklearn.config_context(array_api_dispatch=False):
        expected = SharedProjection(2, modalities=modalities, reg=0.1).fit(X)
    close(model.canonical_correlations_, expected.canonical_correlations_, 1e-8)
    with pytest.raises(ValueError, match="X has 8 features"):
        model.partial_fit(to_xp(namespace, X[:, :8]))
    if namespace != "numpy":
        auto = SharedProjection(2, modalities=modalities, reg={"a": "auto", "b": 0.1})
        with pytest.raises(ValueError, match="numeric reg.*reg='auto'"):
            auto.partial_fit(to_xp(namespace, X))
        assert not hasattr(auto, "canonical_correlations_")


def test_array_api_partial_fit_memory_does_not_grow_with_rows(dispatch):
    """O(D^2 + batch): array_api_strict arrays are numpy underneath, so
    tracemalloc sees them."""
    require("array_api_strict")

    def peak(n_batches, batch_rows=2000, width=40):
        rng = np.random.default_rng(0)
        mixing = rng.normal(size=(width, width))
        model = SharedProjection(
            2, modalities={"a": slice(0, width), "b": slice(width, 2 * width)}
        )
        tracemalloc.start()
        for _ in range(n_batches):
            a = rng.normal(size=(batch_rows, width))
            batch = np.hstack([a, a @ mixing + rng.normal(size=a.shape)])
            model.partial_fit(to_xp("array_api_strict", batch, default_device=True))
            del a, batch
        _, result = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return result

    short, long = peak(2), peak(20)
    assert long < 1.25 * short
    assert long < 10 * 2000 * 80 * 8


def test_array_api_support_tags():
    modalities = {"a": slice(0, 2), "b": slice(2, 4)}
    for solver in ["auto", "svd", "eigh", "gradient"]:
        model = SharedProjection(modalities=modalities, solver=solver, reg=0.1)
        assert get_tags(model).array_api_support
    for reg in ["auto", {"a": "auto", "b": 0.1}]:
        model = SharedProjection(modalities=modalities, reg=reg)
        assert not get_tags(model).array_api_support


@pytest.mark.parametrize("namespace", ARRAY_API_NAMESPACES, indirect=True)
def test_array_api_partial_fit_singular_first_batch_keeps_its_rows(namespace, dispatch):
    """reg=0 and fewer rows than features: the Cholesky reduction refuses,
    the rows are kept, and the next batch makes the stream solvable."""
    X = xp_data(n_samples=600)
    modalities = {"a": slice(0, 5), "b": slice(5, 9)}
    model = SharedProjection(2, modalities=modalities)
    with pytest.raises(ValueError, match="not positive definite.*rows were added"):
        model.partial_fit(to_xp(namespace, X[:3]))
    model.partial_fit(to_xp(namespace, X[3:]))
    expected = clone(model).fit(X)
    close(model.canonical_correlations_, expected.canonical_correlations_, 1e-8)
