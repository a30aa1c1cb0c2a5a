"""Tests of skcrossmodal.fusion against results computed by hand here."""

import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
from scipy import sparse
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, RidgeCV
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    StratifiedKFold,
    cross_val_predict,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils import get_tags
from xp_testing import ARRAY_API_NAMESPACES, close, namespace_of, to_numpy, to_xp

from skcrossmodal import SharedProjection
from skcrossmodal.fusion import (
    ConcatFusion,
    LateFusionClassifier,
    LateFusionRegressor,
    WeightedFusion,
)
from skcrossmodal.fusion import _utils as fusion_utils

EVEN_ODD = {"even": slice(0, None, 2), "odd": slice(1, None, 2)}
ABC = {"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7, 8]}


def _data(n=12, width=9, seed=0):
    return np.random.default_rng(seed).normal(size=(n, width))


# -- WeightedFusion ------------------------------------------------------------


def test_weighted_sum_by_hand():
    X = _data()
    a, b, c = X[:, 0:3], X[:, 3:6], X[:, 6:9]
    Z = WeightedFusion({"a": 1, "b": 2, "c": 5}, modalities=ABC).fit_transform(X)
    np.testing.assert_allclose(Z, (1 * a + 2 * b + 5 * c) / 8, rtol=1e-12)
    Z = WeightedFusion(modalities=ABC).fit_transform(X)
    np.testing.assert_allclose(Z, (a + b + c) / 3, rtol=1e-12)


def test_weighted_sum_renormalised_over_present_modalities():
    X = _data()
    X[1, 6:9] = np.nan  # row 1 misses c
    X[2, 0:6] = np.nan  # row 2 carries only c
    X[3, 3:6] = np.nan  # row 3 misses b
    fusion = WeightedFusion({"a": 1, "b": 2, "c": 5}, modalities=ABC).fit(X)
    Z = fusion.transform(X)
    a, b, c = X[:, 0:3], X[:, 3:6], X[:, 6:9]
    expected = (1 * a + 2 * b + 5 * c) / 8
    expected[1] = (1 * a[1] + 2 * b[1]) / 3
    expected[2] = c[2]
    expected[3] = (1 * a[3] + 5 * c[3]) / 6
    np.testing.assert_allclose(Z, expected, rtol=1e-12)
    assert fusion.weights_ == pytest.approx({"a": 1 / 8, "b": 2 / 8, "c": 5 / 8})


def test_weighted_fusion_sparse_and_float32():
    X = _data()
    X[X < 0.3] = 0
    X[4, 3:6] = np.nan
    dense = WeightedFusion({"a": 3, "b": 1, "c": 1}, modalities=ABC).fit_transform(X)
    out = WeightedFusion({"a": 3, "b": 1, "c": 1}, modalities=ABC).fit_transform(
        sparse.csr_matrix(X)
    )
    assert sparse.issparse(out)
    np.testing.assert_allclose(out.toarray(), dense, rtol=1e-12)
    out32 = WeightedFusion(modalities=ABC).fit_transform(X.astype(np.float32))
    assert out32.dtype == np.float32


def test_weighted_fusion_unequal_widths_need_align():
    X = _data(width=7)
    with pytest.raises(ValueError, match=r"widths differ.*align='pca'"):
        WeightedFusion(modalities={"a": [0, 1, 2], "b": [3, 4, 5, 6]}).fit(X)


@pytest.mark.parametrize(
    "weights, message",
    [
        ({"a": 1, "b": 1}, r"missing: \['c'\]"),
        ({"a": 1, "b": 1, "c": 1, "d": 1}, r"unknown: \['d'\]"),
        ({"a": 1, "b": -1, "c": 1}, r"weights\['b'\].*>= 0"),
        ({"a": 1, "b": np.nan, "c": 1}, r"weights\['b'\].*finite"),
        ({"a": 0, "b": 0, "c": 0}, "all 0"),
    ],
)
def test_weights_are_checked(weights, message):
    X = _data()
    with pytest.raises(ValueError, match=message):
        WeightedFusion(weights, modalities=ABC).fit(X)
    with pytest.raises(ValueError, match=message):
        LateFusionRegressor(modalities=ABC, weights=weights).fit(X, X[:, 0])


def test_row_with_only_zero_weight_modalities_is_an_error():
    X = _data()
    fusion = WeightedFusion({"a": 0, "b": 1, "c": 1}, modalities=ABC).fit(X)
    X[5, 3:9] = np.nan
    with pytest.raises(ValueError, match="Row 5 .* weight 0"):
        fusion.transform(X)


def _pca_by_hand(block, k, fitted_components):
    """Centred block and the top-k right singular vectors, signed like sklearn."""
    mean = block.mean(axis=0)
    _, _, vt = np.linalg.svd(block - mean, full_matrices=False)
    vt = vt[:k]
    signs = np.sign(np.sum(vt * fitted_components, axis=1))
    return mean, vt * signs[:, None]


def test_weighted_fusion_pca_alignment_by_hand():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 7)) * np.array([3, 2, 1, 5, 4, 3, 0.5])
    X[:5, 3:7] = np.nan  # b missing in 5 rows: its PCA must use the other 35
    mods = {"a": [0, 1, 2], "b": [3, 4, 5, 6]}
    fusion = WeightedFusion({"a": 1, "b": 3}, modalities=mods, align="pca")
    Z = fusion.fit_transform(X)
    assert Z.shape == (40, 3)  # n_components=None: the narrowest width
    k = 2
    fusion = WeightedFusion(
        {"a": 1, "b": 3}, modalities=mods, align="pca", n_components=k
    )
    Z = fusion.fit_transform(X)
    a, b = X[:, 0:3], X[5:, 3:7]
    mean_a, v_a = _pca_by_hand(a, k, fusion.aligners_["a"].components_)
    mean_b, v_b = _pca_by_hand(b, k, fusion.aligners_["b"].components_)
    za = (a - mean_a) @ v_a.T
    zb = (X[:, 3:7] - mean_b) @ v_b.T
    expected = (1 * za + 3 * zb) / 4
    expected[:5] = za[:5]
    np.testing.assert_allclose(Z, expected, atol=1e-10)
    names = list(fusion.get_feature_names_out())
    assert names == ["weightedfusion0", "weightedfusion1"]


def test_weighted_fusion_shared_alignment_matches_shared_projection():
    rng = np.random.default_rng(2)
    latent = rng.normal(size=(80, 2))
    X = np.hstack(
        [latent @ rng.normal(size=(2, 4)), latent @ rng.normal(size=(2, 3))]
    ) + 0.3 * rng.normal(size=(80, 7))
    X[:6, 4:7] = np.nan
    mods = {"t": [0, 1, 2, 3], "i": [4, 5, 6]}
    mean = SharedProjection(2, modalities=mods, reg=0.1).fit(X).transform(X)
    Z = WeightedFusion(modalities=mods, align="shared", n_components=2, reg=0.1)
    np.testing.assert_allclose(Z.fit_transform(X), mean, atol=1e-10)

    concat = SharedProjection(2, modalities=mods, output="concat").fit(X).transform(X)
    zt, zi = concat[:, :2], concat[:, 2:]
    expected = (1 * zt + 4 * zi) / 5
    expected[:6] = zt[:6]
    fusion = WeightedFusion(
        {"t": 1, "i": 4}, modalities=mods, align="shared", n_components=2
    ).fit(X)
    np.testing.assert_allclose(fusion.transform(X), expected, atol=1e-10)
    assert isinstance(fusion.shared_projection_, SharedProjection)


def test_weighted_fusion_n_components_too_large():
    with pytest.raises(ValueError, match="n_components=4 is larger than modality 'a'"):
        WeightedFusion(
            modalities={"a": [0, 1, 2], "b": [3, 4, 5, 6]}, align="pca", n_components=4
        ).fit(_data(width=7))


def test_grid_search_over_weight_dicts():
    # Modality "a" carries the label, "b" is strong noise: the grid must find
    # that b's weight should be 0.
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 60)
    a = rng.normal(size=(120, 3)) + 1.5 * y[:, None]
    b = 5 * rng.normal(size=(120, 3))
    X = np.hstack([a, b])
    mods = {"a": [0, 1, 2], "b": [3, 4, 5]}
    grid = [{"a": 1, "b": 1}, {"a": 1, "b": 0}, {"a": 0, "b": 1}]
    search = GridSearchCV(
        make_pipeline(WeightedFusion(modalities=mods), LogisticRegression()),
        {"weightedfusion__weights": grid},
        cv=3,
    ).fit(X, y)
    assert search.best_params_ == {"weightedfusion__weights": {"a": 1, "b": 0}}
    # The soft vote's argmax barely moves when an uninformative modality is
    # averaged in, but its calibration does: score with the log loss.
    search = GridSearchCV(
        LateFusionClassifier(modalities=mods),
        {"weights": grid},
        cv=3,
        scoring="neg_log_loss",
    ).fit(X, y)
    assert search.best_params_ == {"weights": {"a": 1, "b": 0}}
    search = GridSearchCV(
        LateFusionRegressor(modalities=mods), {"weights": grid}, cv=3
    ).fit(X, a.sum(axis=1))
    assert search.best_params_ == {"weights": {"a": 1, "b": 0}}


# -- ConcatFusion --------------------------------------------------------------


def test_mfa_scaling_is_first_singular_value_by_hand():
    rng = np.random.default_rng(4)
    X = np.hstack([rng.normal(size=(30, 2)), 40 * rng.normal(size=(30, 6)) + 7])
    mods = {"narrow": [0, 1], "wide": [2, 3, 4, 5, 6, 7]}
    Z = ConcatFusion("mfa", modalities=mods).fit_transform(X)
    for cols in mods.values():
        block = X[:, cols] - X[:, cols].mean(axis=0)
        sigma_1 = np.linalg.svd(block / np.sqrt(len(X)), compute_uv=False)[0]
        np.testing.assert_allclose(Z[:, cols], block / sigma_1, rtol=1e-12)
        # The first principal variance of every block is now 1.
        assert np.linalg.svd(Z[:, cols], compute_uv=False)[0] ** 2 / len(X) == (
            pytest.approx(1.0)
        )


def test_frobenius_scaling_gives_unit_total_variance():
    rng = np.random.default_rng(5)
    X = np.hstack([rng.normal(size=(30, 2)), 40 * rng.normal(size=(30, 6)) + 7])
    mods = {"narrow": [0, 1], "wide": [2, 3, 4, 5, 6, 7]}
    Z = ConcatFusion(modalities=mods).fit_transform(X)
    for cols in mods.values():
        block = X[:, cols] - X[:, cols].mean(axis=0)
        expected = block / (np.linalg.norm(block) / np.sqrt(len(X)))
        np.testing.assert_allclose(Z[:, cols], expected, rtol=1e-12)
        assert Z[:, cols].var(axis=0).sum() == pytest.approx(1.0)
    unscaled = ConcatFusion(None, modalities=mods).fit_transform(X)
    np.testing.assert_allclose(unscaled, X - X.mean(axis=0), atol=1e-12)


def test_concat_fusion_keeps_column_order():
    X = _data(n=20)
    mods = {"x": [0, 4, 8], "y": [1, 2, 3, 5, 6, 7]}
    fusion = ConcatFusion(modalities=mods).fit(X)
    Z = fusion.transform(X)
    for cols in mods.values():
        block = X[:, cols] - X[:, cols].mean(axis=0)
        np.testing.assert_allclose(
            Z[:, cols], block / (np.linalg.norm(block) / np.sqrt(20)), rtol=1e-12
        )
    names = fusion.get_feature_names_out()
    assert names[0] == "x__x0" and names[1] == "y__x1" and names[8] == "x__x8"


def test_concat_fusion_missing_block_uses_present_rows_and_fills_mean():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(25, 5)) + 3
    X[[2, 7], 2:5] = np.nan
    mods = {"a": [0, 1], "b": [2, 3, 4]}
    for scaling in ("frobenius", "mfa"):
        Z = ConcatFusion(scaling, modalities=mods).fit_transform(X)
        rows = np.setdiff1d(np.arange(25), [2, 7])
        block = X[rows, 2:5] - X[rows, 2:5].mean(axis=0)
        if scaling == "mfa":
            scale = np.linalg.svd(block, compute_uv=False)[0] / np.sqrt(len(rows))
        else:
            scale = np.linalg.norm(block) / np.sqrt(len(rows))
        np.testing.assert_allclose(Z[rows, 2:5], block / scale, rtol=1e-12)
        np.testing.assert_array_equal(Z[[2, 7], 2:5], 0.0)
        assert not np.isnan(Z).any()


def test_concat_fusion_sparse_without_centring():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(30, 6))
    X[X < 0.5] = 0
    X[[3, 4], 0:2] = np.nan
    mods = {"a": [0, 1], "b": [2, 3, 4, 5]}
    for scaling in ("frobenius", "mfa"):
        dense = ConcatFusion(scaling, modalities=mods, center=False).fit_transform(X)
        fusion = ConcatFusion(scaling, modalities=mods, center=False)
        out = fusion.fit_transform(sparse.csr_array(X))
        assert sparse.issparse(out)
        np.testing.assert_allclose(out.toarray(), dense, rtol=1e-12)
        rows = np.setdiff1d(np.arange(30), [3, 4])
        a = X[rows, 0:2]
        if scaling == "mfa":
            scale = np.linalg.svd(a, compute_uv=False)[0] / np.sqrt(len(rows))
        else:
            scale = np.linalg.norm(a) / np.sqrt(len(rows))
        np.testing.assert_allclose(dense[rows, 0:2], a / scale, rtol=1e-12)
        # Missing rows get the block mean, scaled.
        np.testing.assert_allclose(dense[3, 0:2], a.mean(axis=0) / scale, rtol=1e-12)
    with pytest.raises(ValueError, match="center=False"):
        ConcatFusion(modalities=mods).fit(sparse.csr_matrix(X))


def test_mfa_large_blocks_use_arpack_with_the_same_result(monkeypatch):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(40, 9)) * np.arange(1, 10)
    X[X < 0] = 0
    expected = ConcatFusion("mfa", modalities=ABC, center=False).fit(X).scales_
    monkeypatch.setattr(fusion_utils, "_GRAM_LIMIT", 1)  # force the svds branch
    for data in (X, sparse.csr_matrix(X)):
        scales = ConcatFusion("mfa", modalities=ABC, center=False).fit(data).scales_
        for name, cols in ABC.items():
            sigma_1 = np.linalg.svd(X[:, cols], compute_uv=False)[0] / np.sqrt(40)
            assert scales[name] == pytest.approx(sigma_1, rel=1e-10)
            assert expected[name] == pytest.approx(sigma_1, rel=1e-10)


def test_weighted_fusion_pca_on_sparse_input():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(30, 6))
    X[X < 0.3] = 0
    X[:4, 3:6] = np.nan
    mods = {"a": [0, 1, 2], "b": [3, 4, 5]}
    fusion = WeightedFusion(modalities=mods, align="pca").fit(sparse.csr_matrix(X))
    Z = fusion.transform(sparse.csr_matrix(X))
    # Whatever the solver, each PCA must be the centred block's own SVD.
    a, b = X[:, :3], X[4:, 3:]
    mean_a, v_a = _pca_by_hand(a, 3, fusion.aligners_["a"].components_)
    mean_b, v_b = _pca_by_hand(b, 3, fusion.aligners_["b"].components_)
    za, zb = (a - mean_a) @ v_a.T, (X[:, 3:] - mean_b) @ v_b.T
    expected = (za + zb) / 2
    expected[:4] = za[:4]
    np.testing.assert_allclose(Z, expected, atol=1e-10)


def test_concat_fusion_float32_and_constant_block():
    X = _data(n=20)
    X[:, 6:9] = 4.0  # constant block: scale 1, centred to 0
    Z64 = ConcatFusion("mfa", modalities=ABC).fit_transform(X)
    Z32 = ConcatFusion("mfa", modalities=ABC).fit_transform(X.astype(np.float32))
    assert Z32.dtype == np.float32
    np.testing.assert_allclose(Z32, Z64, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(Z64[:, 6:9], 0.0)


def test_column_transformer_pipeline_with_named_modalities():
    # modalities=None reads ColumnTransformer's "<branch>__<feature>" names,
    # and ConcatFusion keeps them so the next step finds the modalities again.
    rng = np.random.default_rng(8)
    frame = pd.DataFrame(rng.normal(size=(50, 7)), columns=[f"f{i}" for i in range(7)])
    y = (frame["f0"] + frame["f5"] > 0).astype(int)
    routing = ColumnTransformer(
        [
            ("text", StandardScaler(), ["f0", "f1", "f2"]),
            ("image", StandardScaler(), ["f3", "f4", "f5", "f6"]),
        ]
    ).set_output(transform="pandas")
    pipe = make_pipeline(
        routing,
        ConcatFusion("mfa"),
        WeightedFusion({"text": 1, "image": 2}, align="pca", n_components=2),
    ).set_output(transform="pandas")
    Z = pipe.fit_transform(frame)
    assert list(Z.columns) == ["weightedfusion0", "weightedfusion1"]
    concat = pipe[:2].transform(frame)
    assert list(concat.columns)[:2] == ["text__f0", "text__f1"]
    clf = make_pipeline(routing, LateFusionClassifier(method="stacking")).fit(frame, y)
    assert list(clf[-1].modalities_) == ["text", "image"]
    assert clf.score(frame, y) > 0.7


# -- LateFusionClassifier ------------------------------------------------------


def _classification(n=150, seed=9, n_classes=3):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    centres = rng.normal(size=(n_classes, 6))
    X = centres[y] + 1.2 * rng.normal(size=(n, 6))
    return X, y


MODS2 = {"a": [0, 1, 2], "b": [3, 4, 5]}


def test_soft_vote_is_weighted_average_of_per_modality_proba():
    X, y = _classification()
    clf = LateFusionClassifier(
        LogisticRegression(C=0.5), modalities=MODS2, weights={"a": 1, "b": 3}
    ).fit(X, y)
    pa = LogisticRegression(C=0.5).fit(X[:, :3], y).predict_proba(X[:, :3])
    pb = LogisticRegression(C=0.5).fit(X[:, 3:], y).predict_proba(X[:, 3:])
    expected = (1 * pa + 3 * pb) / 4
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-10)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[expected.argmax(1)])

    # Rows missing a modality use the one they carry.
    X_missing = X.copy()
    X_missing[:10, 3:] = np.nan
    X_missing[10:20, :3] = np.nan
    expected[:10] = pa[:10]
    expected[10:20] = pb[10:20]
    np.testing.assert_allclose(clf.predict_proba(X_missing), expected, rtol=1e-10)


def test_late_fusion_fits_each_modality_on_the_rows_that_carry_it():
    X, y = _classification()
    X[:30, 3:] = np.nan
    w = np.random.default_rng(0).uniform(0.5, 2, size=len(y))
    clf = LateFusionClassifier(modalities=MODS2).fit(X, y, sample_weight=w)
    hand_b = LogisticRegression().fit(X[30:, 3:], y[30:], sample_weight=w[30:])
    hand_a = LogisticRegression().fit(X[:, :3], y, sample_weight=w)
    np.testing.assert_allclose(clf.estimators_["b"].coef_, hand_b.coef_, rtol=1e-6)
    np.testing.assert_allclose(clf.estimators_["a"].coef_, hand_a.coef_, rtol=1e-6)
    assert clf.estimators_["a"] is not clf.estimators_["b"]


def test_classes_unseen_by_one_modality_get_zero_probability():
    X, y = _classification()
    X[y == 2, 3:] = np.nan  # modality b never sees class 2
    labels = np.array(["cat", "dog", "emu"])[y]
    clf = LateFusionClassifier(modalities=MODS2).fit(X, labels)
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    pa = LogisticRegression().fit(X[:, :3], labels).predict_proba(X[:, :3])
    rows = y != 2
    pb = LogisticRegression().fit(X[rows, 3:], labels[rows]).predict_proba(X[rows, 3:])
    expected = pa.copy()
    expected[rows] = (pa[rows] + np.column_stack([pb, np.zeros(rows.sum())])) / 2
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-10)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_stacking_equals_cross_validated_stack_by_hand(n_classes):
    X, y = _classification(n_classes=n_classes)
    clf = LateFusionClassifier(modalities=MODS2, method="stacking").fit(X, y)
    cv = StratifiedKFold(5)
    keep = slice(1, None) if n_classes == 2 else slice(None)
    meta = np.hstack(
        [
            cross_val_predict(
                LogisticRegression(), X[:, c], y, cv=cv, method="predict_proba"
            )[:, keep]
            for c in (slice(0, 3), slice(3, 6))
        ]
    )
    final = LogisticRegression().fit(meta, y)
    meta_test = np.hstack(
        [
            LogisticRegression().fit(X[:, c], y).predict_proba(X[:, c])[:, keep]
            for c in (slice(0, 3), slice(3, 6))
        ]
    )
    np.testing.assert_allclose(
        clf.final_estimator_.coef_, final.coef_, rtol=1e-6, atol=1e-8
    )
    np.testing.assert_allclose(
        clf.predict_proba(X), final.predict_proba(meta_test), rtol=1e-6, atol=1e-10
    )


def test_stacking_uses_class_prior_for_missing_modalities():
    X, y = _classification()
    X[:12, 3:] = np.nan  # rows 0..11 miss b: y there is 0,1,2 four times each
    X[12:15, 3:] = np.nan  # and 12..14 (classes 0, 1, 2 again)
    clf = LateFusionClassifier(modalities=MODS2, method="stacking", cv=KFold(3))
    clf.fit(X, y)
    prior_b = np.bincount(y[15:], minlength=3) / len(y[15:])
    np.testing.assert_allclose(clf.priors_["b"], prior_b)
    np.testing.assert_allclose(clf.priors_["a"], np.bincount(y) / len(y))
    meta_a = cross_val_predict(
        LogisticRegression(), X[:, :3], y, cv=KFold(3), method="predict_proba"
    )
    meta_b = np.tile(prior_b, (len(y), 1))
    meta_b[15:] = cross_val_predict(
        LogisticRegression(), X[15:, 3:], y[15:], cv=KFold(3), method="predict_proba"
    )
    final = LogisticRegression().fit(np.hstack([meta_a, meta_b]), y)
    test = X[:20]
    meta_test_a = LogisticRegression().fit(X[:, :3], y).predict_proba(test[:, :3])
    meta_test_b = np.tile(prior_b, (20, 1))
    meta_test_b[15:] = (
        LogisticRegression().fit(X[15:, 3:], y[15:]).predict_proba(test[15:, 3:])
    )
    expected = final.predict_proba(np.hstack([meta_test_a, meta_test_b]))
    np.testing.assert_allclose(clf.predict_proba(test), expected, rtol=1e-6)


def test_estimator_dict_per_modality():
    X, y = _classification()
    clf = LateFusionClassifier(
        {"a": LogisticRegression(C=0.1), "b": DecisionTreeClassifier(random_state=0)},
        modalities=MODS2,
    ).fit(X, y)
    assert isinstance(clf.estimators_["b"], DecisionTreeClassifier)
    pa = LogisticRegression(C=0.1).fit(X[:, :3], y).predict_proba(X[:, :3])
    pb = DecisionTreeClassifier(random_state=0).fit(X[:, 3:], y).predict_proba(X[:, 3:])
    np.testing.assert_allclose(clf.predict_proba(X), (pa + pb) / 2, rtol=1e-10)
    with pytest.raises(ValueError, match=r"missing: \['b'\]"):
        LateFusionClassifier({"a": LogisticRegression()}, modalities=MODS2).fit(X, y)


def test_estimator_without_predict_proba_is_refused():
    X, y = _classification()
    with pytest.raises(ValueError, match="no predict_proba"):
        LateFusionClassifier(LinearSVC(), modalities=MODS2).fit(X, y)


def test_modality_missing_everywhere_is_an_error():
    X, y = _classification()
    X[:, 3:] = np.nan
    for est in (
        LateFusionClassifier(modalities=MODS2),
        WeightedFusion(modalities=MODS2),
        ConcatFusion(modalities=MODS2),
    ):
        with pytest.raises(ValueError, match="'b' is missing .* in every row"):
            est.fit(X, y)


def test_late_fusion_pickles_and_clones():
    X, y = _classification()
    clf = LateFusionClassifier(modalities=MODS2, method="stacking").fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    assert clone(clf).get_params()["modalities"] == MODS2


# -- LateFusionRegressor -------------------------------------------------------


def _regression(n=120, seed=10):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = X @ np.array([1.0, -2.0, 0.5, 1.5, 0.0, -1.0]) + 0.3 * rng.normal(size=n)
    return X, y


def test_weighted_mean_of_per_modality_predictions():
    X, y = _regression()
    reg = LateFusionRegressor(
        LinearRegression(), modalities=MODS2, weights={"a": 2, "b": 1}
    ).fit(X, y)
    ya = LinearRegression().fit(X[:, :3], y).predict(X[:, :3])
    yb = LinearRegression().fit(X[:, 3:], y).predict(X[:, 3:])
    np.testing.assert_allclose(reg.predict(X), (2 * ya + yb) / 3, rtol=1e-10)
    X_missing = X.copy()
    X_missing[:5, :3] = np.nan
    expected = (2 * ya + yb) / 3
    expected[:5] = yb[:5]
    np.testing.assert_allclose(reg.predict(X_missing), expected, rtol=1e-10)


def test_regressor_stacking_by_hand():
    X, y = _regression()
    X[:10, 3:] = np.nan
    reg = LateFusionRegressor(modalities=MODS2, method="stacking").fit(X, y)
    meta_a = cross_val_predict(Ridge(), X[:, :3], y, cv=KFold(5))
    meta_b = np.full(len(y), y[10:].mean())
    meta_b[10:] = cross_val_predict(Ridge(), X[10:, 3:], y[10:], cv=KFold(5))
    final = RidgeCV().fit(np.column_stack([meta_a, meta_b]), y)
    test_a = Ridge().fit(X[:, :3], y).predict(X[:, :3])
    test_b = np.full(len(y), y[10:].mean())
    test_b[10:] = Ridge().fit(X[10:, 3:], y[10:]).predict(X[10:, 3:])
    expected = final.predict(np.column_stack([test_a, test_b]))
    np.testing.assert_allclose(reg.predict(X), expected, rtol=1e-8)
    assert reg.target_means_["b"] == pytest.approx(y[10:].mean())


# -- every array namespace -----------------------------------------------------
#
# The same tests for numpy, array_api_strict (on its non-default "device1",
# which refuses any conversion to numpy, as a GPU array would) and torch on
# the CPU, under sklearn.set_config(array_api_dispatch=True): fit and
# transform compute in X's namespace and on its device, and each result is
# compared with a computation by hand in numpy.
#
# scikit-learn refuses to dispatch unless SCIPY_ARRAY_API=1; scipy reads it
# when first imported, long before these tests in a pytest session. The
# fusion paths call no scipy function on array API arrays ("device1" would
# raise if anything went through numpy), so the variable is set for
# scikit-learn's check only (the scipy_array_api_flag fixture, conftest.py).
#
# Tolerances. By hand: 1e-12 relative to each array's largest entry
# (float64 throughout, a few roundings apart). Against the numpy path in
# float32, measured over both namespaces and 20 seeds as the largest error
# relative to the array's largest entry: WeightedFusion align=None 0,
# align="shared" 1.0e-7, align="pca" 5.0e-6 (two float32 SVDs); ConcatFusion
# 0 (float64 statistics, one rounding). Tested at about 4 times that, never
# below 1e-6.

FLOAT32_RTOL = {"none": 1e-6, "shared": 1e-6, "pca": 2e-5}
INTERLEAVED = {"x": [0, 3, 5, 8], "y": [1, 4, 7], "z": [2, 6, 9]}


def check_output(result, X_xp, namespace):
    """Same namespace, device and dtype as the input."""
    assert namespace_of(result) == namespace
    if namespace != "numpy":
        assert result.device == X_xp.device
    assert result.dtype == X_xp.dtype


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


def weighted_by_hand(X, modalities, weights, project):
    """Loop over rows and modalities, renormalising over those present.

    ``project(name, block)`` gives the aligned block of one modality.
    """
    aligned = {name: project(name, X[:, cols]) for name, cols in modalities.items()}
    width = next(iter(aligned.values())).shape[1]
    expected = np.zeros((X.shape[0], width))
    for i, row in enumerate(X):
        total = 0.0
        for name, cols in modalities.items():
            if not np.isnan(row[cols]).all():
                expected[i] += weights[name] * aligned[name][i]
                total += weights[name]
        expected[i] /= total
    return expected


def pca_by_hand(fit_block, block, k, fitted_components):
    """``block`` on the top-k principal axes of ``fit_block``'s complete rows
    (numpy's SVD), signed like the fitted components."""
    rows = ~np.isnan(fit_block).any(axis=1)
    mean = fit_block[rows].mean(axis=0)
    _, _, vt = np.linalg.svd(fit_block[rows] - mean, full_matrices=False)
    vt = vt[:k]
    vt = vt * np.sign(np.sum(vt * to_numpy(fitted_components), axis=1))[:, None]
    return (block - mean) @ vt.T


@pytest.mark.usefixtures("scipy_array_api_flag")
@pytest.mark.parametrize("modalities", [ABC, INTERLEAVED], ids=["abc", "interleaved"])
@pytest.mark.parametrize("align", [None, "pca", "shared"])
def test_weighted_fusion_by_hand_in_every_namespace(namespace, modalities, align):
    if align is None:
        modalities = ABC  # align=None needs equal widths
    widths = [len(cols) for cols in modalities.values()]
    X = make_data(widths=widths, missing=modalities)
    weights = dict(zip(modalities, [1.0, 2.0, 5.0]))
    estimator = WeightedFusion(
        weights, modalities=modalities, align=align, n_components=2, reg=0.1
    )
    # align="shared" fits on complete rows (what SharedProjection's array API
    # path needs) and transforms every row, missing modalities included.
    X_fit = X[20:] if align == "shared" else X
    X_fit_xp, X_xp = to_xp(namespace, X_fit), to_xp(namespace, X)
    fitted, result = run(estimator, X_fit_xp, X_xp)
    check_output(result, X_xp, namespace)

    def project(name, block):
        if align is None:
            return block
        if align == "pca":
            components = fitted.aligners_[name].components_
            return pca_by_hand(X_fit[:, modalities[name]], block, 2, components)
        projection = fitted.shared_projection_
        mean = to_numpy(projection.means_[name])
        return (block - mean) @ to_numpy(projection.weights_[name])

    close(result, weighted_by_hand(X, modalities, weights, project), 1e-10)
    # The inputs are left as they were.
    np.testing.assert_array_equal(to_numpy(X_xp), X)
    assert fitted.weights_ == pytest.approx(
        {name: w / 8.0 for name, w in weights.items()}
    )
    if align == "pca":
        first = next(iter(modalities))
        assert namespace_of(fitted.aligners_[first].components_) == namespace


@pytest.mark.usefixtures("scipy_array_api_flag")
def test_weighted_fusion_shared_is_shared_projection_mean(namespace):
    """weights=None: SharedProjection(output="mean") (numpy), missing rows too."""
    X = make_data()
    expected = SharedProjection(2, modalities=ABC, reg=0.1).fit(X[20:]).transform(X)
    fitted, result = run(
        WeightedFusion(modalities=ABC, align="shared", n_components=2, reg=0.1),
        to_xp(namespace, X[20:]),
        to_xp(namespace, X),
    )
    close(result, expected, 1e-10)
    correlations = fitted.shared_projection_.canonical_correlations_
    assert namespace_of(correlations) == namespace


@pytest.mark.usefixtures("scipy_array_api_flag")
@pytest.mark.parametrize("namespace", ARRAY_API_NAMESPACES, indirect=True)
@pytest.mark.parametrize("align", [None, "pca", "shared"])
def test_weighted_fusion_float32_as_numpy(namespace, align):
    modalities = ABC if align is None else INTERLEAVED
    X = make_data(widths=[len(c) for c in modalities.values()], missing=modalities)
    X = X.astype(np.float32)
    X_fit = X[20:] if align == "shared" else X
    estimator = WeightedFusion(modalities=modalities, align=align, n_components=2)
    expected = clone(estimator).fit(X_fit).transform(X)
    assert expected.dtype == np.float32
    X_xp = to_xp(namespace, X)
    _, result = run(estimator, to_xp(namespace, X_fit), X_xp)
    check_output(result, X_xp, namespace)
    close(result, expected, FLOAT32_RTOL[str(align).lower()])


@pytest.mark.usefixtures("scipy_array_api_flag")
def test_weighted_fusion_bad_rows_raise_in_every_namespace(namespace):
    X = make_data(missing=False)
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
    with sklearn.config_context(array_api_dispatch=True):
        fitted = WeightedFusion({"a": 1, "b": 0, "c": 1}, modalities=ABC).fit(
            to_xp(namespace, X)
        )
        for bad, message in cases:
            with pytest.raises(ValueError, match=message):
                fitted.transform(to_xp(namespace, bad))
        nowhere = X.copy()
        nowhere[:, 3:6] = np.nan
        with pytest.raises(ValueError, match="Modality 'b' is missing"):
            WeightedFusion(modalities=ABC).fit(to_xp(namespace, nowhere))


@pytest.mark.usefixtures("scipy_array_api_flag")
def test_weighted_fusion_shared_errors_name_the_fusion(namespace):
    """What SharedProjection refuses for this namespace, WeightedFusion
    refuses with the same type and message, prefixed with its own name."""
    X = to_xp(namespace, make_data())  # rows 3-14 miss a modality
    for params in ({"reg": "auto"}, {"reg": 0.1}):
        try:
            with sklearn.config_context(array_api_dispatch=True):
                SharedProjection(2, modalities=ABC, **params).fit(X)
        except (ValueError, TypeError) as exc:
            refused = exc
        else:
            refused = None
        fusion = WeightedFusion(
            modalities=ABC, align="shared", n_components=2, **params
        )
        if refused is None:
            _, result = run(fusion, X)
            assert np.isfinite(to_numpy(result)).all()
            continue
        with pytest.raises(type(refused)) as caught:
            run(fusion, X)
        message = str(caught.value)
        assert message.startswith("WeightedFusion(align='shared')")
        assert str(refused) in message


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
    for scaling in (None, "frobenius", "mfa"):
        for center in (True, False):
            assert get_tags(ConcatFusion(scaling, center=center)).array_api_support


@pytest.mark.usefixtures("scipy_array_api_flag")
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


CONCAT_CASES = [
    (scaling, center) for scaling in (None, "frobenius", "mfa") for center in (1, 0)
]


def concat_by_hand(X, modalities, scaling, center):
    """Each block's statistics on its present rows (numpy's SVD for mfa)."""
    expected = np.empty_like(X)
    scales = {}
    for name, cols in modalities.items():
        block = X[:, cols]
        rows = ~np.isnan(block).any(axis=1)
        mean = block[rows].mean(axis=0)
        basis = block[rows] - mean if center else block[rows]
        if scaling is None:
            scale = 1.0
        elif scaling == "frobenius":
            scale = np.sqrt((basis**2).sum() / rows.sum())
        else:
            scale = np.linalg.svd(basis, compute_uv=False)[0] / np.sqrt(rows.sum())
        offset = mean if center else 0.0
        # Missing blocks get the fitted mean, transformed: 0 when centring.
        filled = np.where(rows[:, None], block, mean)
        expected[:, cols] = (filled - offset) / scale
        scales[name] = scale
    return expected, scales


@pytest.mark.usefixtures("scipy_array_api_flag")
@pytest.mark.parametrize("scaling, center", CONCAT_CASES)
@pytest.mark.parametrize("modalities", [ABC, INTERLEAVED], ids=["abc", "interleaved"])
def test_concat_fusion_by_hand_in_every_namespace(
    namespace, scaling, center, modalities
):
    widths = [len(cols) for cols in modalities.values()]
    X = make_data(widths=widths, missing=modalities)
    expected, scales = concat_by_hand(X, modalities, scaling, center)
    estimator = ConcatFusion(scaling, modalities=modalities, center=bool(center))
    X_xp = to_xp(namespace, X)
    fitted, result = run(estimator, X_xp)
    check_output(result, X_xp, namespace)
    close(result, expected, 1e-12)
    np.testing.assert_array_equal(to_numpy(X_xp), X)
    for name in modalities:
        assert namespace_of(fitted.means_[name]) == namespace
        assert isinstance(fitted.scales_[name], float)
        assert fitted.scales_[name] == pytest.approx(scales[name], rel=1e-12)
    # float32 in, float32 out: the numpy path's answer, rounded once.
    X32 = X.astype(np.float32)
    expected32 = clone(estimator).fit(X32).transform(X32)
    X32_xp = to_xp(namespace, X32)
    _, result32 = run(estimator, X32_xp)
    check_output(result32, X32_xp, namespace)
    close(result32, expected32, 1e-6)


@pytest.mark.usefixtures("scipy_array_api_flag")
def test_mfa_above_the_gram_limit(namespace, monkeypatch):
    """Above _GRAM_LIMIT: ARPACK (numpy) or svdvals (other namespaces)."""
    monkeypatch.setattr(fusion_utils, "_GRAM_LIMIT", 2)
    X = make_data(widths=(4, 5, 3))
    mods = {"a": [0, 1, 2, 3], "b": [4, 5, 6, 7, 8], "c": [9, 10, 11]}
    expected, scales = concat_by_hand(X, mods, "mfa", True)
    fitted, result = run(ConcatFusion("mfa", modalities=mods), to_xp(namespace, X))
    for name in mods:
        assert fitted.scales_[name] == pytest.approx(scales[name], rel=1e-9)
    close(result, expected, 1e-9)


@pytest.mark.usefixtures("scipy_array_api_flag")
@pytest.mark.parametrize("scaling", ["frobenius", "mfa"])
def test_concat_fusion_sample_weight_in_every_namespace(namespace, scaling):
    """Weighted statistics by hand: weighted mean, weighted mean square."""
    X = make_data()
    weights = np.random.default_rng(5).uniform(0, 3, size=X.shape[0])
    expected = np.empty_like(X)
    for cols in ABC.values():
        block = X[:, cols]
        rows = ~np.isnan(block).any(axis=1)
        share = weights[rows] / weights[rows].sum()
        mean = share @ block[rows]
        centred = (block[rows] - mean) * np.sqrt(share)[:, None]
        if scaling == "frobenius":
            scale = np.sqrt((centred**2).sum())
        else:
            scale = np.linalg.svd(centred, compute_uv=False)[0]
        expected[:, cols] = np.where(rows[:, None], (block - mean) / scale, 0.0)
    with sklearn.config_context(array_api_dispatch=True):
        X_xp = to_xp(namespace, X)
        fusion = ConcatFusion(scaling, modalities=ABC)
        result = fusion.fit(X_xp, sample_weight=weights).transform(X_xp)
    check_output(result, X_xp, namespace)
    close(result, expected, 1e-12)
