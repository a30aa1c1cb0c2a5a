"""Cross-modal transfer estimators against pipelines assembled by hand here."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.svm import LinearSVC

from skcrossmodal import SharedProjection
from skcrossmodal.transfer import (
    CrossModalTransferClassifier,
    CrossModalTransferRegressor,
)

EVEN_ODD = {"even": slice(0, None, 2), "odd": slice(1, None, 2)}
# scikit-learn's estimator checks run on both estimators in
# tests/test_estimator_checks.py, with every other public estimator.


# -- data --------------------------------------------------------------------------


LEFT = (np.arange(64) % 8) < 4  # left half of each 8x8 digit
HALVES = {"left": LEFT, "right": ~LEFT}


@pytest.fixture(scope="module")
def digits():
    return load_digits(return_X_y=True)


def only(X, keep):
    """Copy of X carrying only the columns `keep` (the rest NaN: missing)."""
    out = X.astype(float, copy=True)
    out[:, ~keep] = np.nan
    return out


def split_for_transfer(X, y):
    """Paired unlabelled rows, left-only labelled rows, right-only test rows."""
    paired, labelled, test = slice(0, 600), slice(600, 1200), slice(1200, None)
    X_train = np.vstack([X[paired], only(X[labelled], LEFT)])
    y_train = np.concatenate([np.full(600, -1), y[labelled]])
    return X_train, y_train, only(X[test], ~LEFT), y[test]


def by_hand_embedding(X, modality_columns, mean, weights):
    return (X[:, modality_columns] - mean) @ weights


# -- classifier --------------------------------------------------------------------


def test_labels_on_one_modality_predict_the_other(digits):
    """Labels only on left halves; right-only rows predicted far above chance."""
    X, y = digits
    X_train, y_train, X_test, y_test = split_for_transfer(X, y)
    clf = CrossModalTransferClassifier(
        SharedProjection(n_components=10, reg=1.0, modalities=HALVES),
        LogisticRegression(max_iter=2000),
    ).fit(X_train, y_train)
    assert np.isnan(X_test[:, LEFT]).all()  # the test rows carry no left half
    # Chance is 0.1; the left-trained classifier reads right halves.
    assert np.mean(clf.predict(X_test) == y_test) > 0.5
    assert clf.n_paired_samples_ == 600
    assert clf.n_labelled_samples_ == 600
    np.testing.assert_array_equal(clf.classes_, np.arange(10))


def test_equals_the_pipeline_assembled_by_hand(digits):
    X, y = digits
    X_train, y_train, X_test, _ = split_for_transfer(X, y)
    projection = SharedProjection(n_components=6, reg=0.5, modalities=HALVES)
    clf = CrossModalTransferClassifier(
        projection, LogisticRegression(max_iter=3000)
    ).fit(X_train, y_train)

    # Pre-training: on the paired rows only, without the single-modality ones.
    reference = clone(projection).fit(X[:600])
    for name in HALVES:
        np.testing.assert_allclose(
            clf.projection_.weights_[name], reference.weights_[name], atol=1e-10
        )
    left = np.flatnonzero(LEFT)
    right = np.flatnonzero(~LEFT)
    # Learning: on the left-half embeddings of the labelled rows.
    Z_labelled = by_hand_embedding(
        X[600:1200], left, reference.means_["left"], reference.weights_["left"]
    )
    by_hand = LogisticRegression(max_iter=3000).fit(Z_labelled, y[600:1200])
    # Transfer: the right-half embeddings of the test rows.
    Z_test = by_hand_embedding(
        X[1200:], right, reference.means_["right"], reference.weights_["right"]
    )
    np.testing.assert_allclose(
        clf.predict_proba(X_test), by_hand.predict_proba(Z_test), atol=1e-6
    )
    np.testing.assert_array_equal(clf.predict(X_test), by_hand.predict(Z_test))
    # Rows carrying both halves are embedded as the mean of the two.
    Z_both = (
        Z_test
        + by_hand_embedding(
            X[1200:], left, reference.means_["left"], reference.weights_["left"]
        )
    ) / 2
    np.testing.assert_allclose(
        clf.decision_function(X[1200:]), by_hand.decision_function(Z_both), atol=1e-6
    )


def test_user_projection_and_estimator_are_not_fitted(digits):
    X, y = digits
    X_train, y_train, _, _ = split_for_transfer(X, y)
    projection = SharedProjection(n_components=3, modalities=HALVES)
    estimator = LogisticRegression(max_iter=2000)
    clf = CrossModalTransferClassifier(projection, estimator).fit(X_train, y_train)
    assert not hasattr(projection, "weights_")
    assert not hasattr(estimator, "coef_")
    assert clf.projection_ is not projection


def test_labelled_paired_rows_count_twice_and_unlabelled_rows_never(digits):
    """Labelled rows with both modalities pre-train and train; -1 rows only
    pre-train."""
    X, y = digits
    X_train = X[:800]
    y_train = np.where(np.arange(800) < 300, -1, y[:800])
    clf = CrossModalTransferClassifier(
        SharedProjection(n_components=4, modalities=HALVES),
        LogisticRegression(max_iter=3000),
    ).fit(X_train, y_train)
    assert clf.n_paired_samples_ == 800
    assert clf.n_labelled_samples_ == 500
    reference = SharedProjection(n_components=4, modalities=HALVES).fit(X_train)
    Z = reference.transform(X_train[300:])
    by_hand = LogisticRegression(max_iter=3000).fit(Z, y_train[300:])
    np.testing.assert_allclose(
        clf.predict_proba(X[800:]),
        by_hand.predict_proba(reference.transform(X[800:])),
        atol=1e-6,
    )


def test_object_labels_with_minus_one_for_unlabelled(digits):
    X, y = digits
    X_train, y_train, X_test, y_test = split_for_transfer(X, y)
    names = np.array([f"digit {d}" for d in range(10)], dtype=object)
    y_named = np.where(y_train == -1, -1, names[np.maximum(y_train, 0)]).astype(object)
    clf = CrossModalTransferClassifier(
        SharedProjection(n_components=8, reg=1.0, modalities=HALVES),
        LogisticRegression(max_iter=2000),
    ).fit(X_train, y_named)
    np.testing.assert_array_equal(clf.classes_, np.sort(names))
    assert set(clf.predict(X_test)) <= set(names)
    numeric = clone(clf).fit(X_train, y_train)
    np.testing.assert_array_equal(clf.predict(X_test), names[numeric.predict(X_test)])


def test_score_ignores_unlabelled_rows(digits):
    X, y = digits
    X_train, y_train, X_test, y_test = split_for_transfer(X, y)
    clf = CrossModalTransferClassifier(
        SharedProjection(n_components=8, modalities=HALVES),
        LogisticRegression(max_iter=2000),
    ).fit(X_train, y_train)
    y_partly = y_test.copy()
    y_partly[::3] = -1
    keep = y_partly != -1
    expected = np.mean(clf.predict(X_test[keep]) == y_test[keep])
    assert clf.score(X_test, y_partly) == pytest.approx(expected)
    with pytest.raises(ValueError, match="nothing to score"):
        clf.score(X_test, np.full(len(y_test), -1))


def test_grid_search_and_cross_val_score(digits):
    X, y = digits
    X_train, y_train, _, _ = split_for_transfer(X, y)
    clf = CrossModalTransferClassifier(
        SharedProjection(n_components=6, modalities=HALVES),
        LogisticRegression(max_iter=2000),
    )
    cv = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(
        clf, {"projection__reg": [0.1, 10.0], "estimator__C": [0.01, 1.0]}, cv=cv
    ).fit(X_train, y_train)
    assert search.best_params_["estimator__C"] == 1.0
    assert search.best_estimator_.projection_.reg_ == {
        "left": search.best_params_["projection__reg"],
        "right": search.best_params_["projection__reg"],
    }
    scores = cross_val_score(clf, X_train, y_train, cv=cv)
    # Each fold scores only its labelled (left-only) rows: compute fold 0 here.
    train, test = next(cv.split(X_train))
    fold = clone(clf).fit(X_train[train], y_train[train])
    labelled = test[y_train[test] != -1]
    assert scores[0] == pytest.approx(
        np.mean(fold.predict(X_train[labelled]) == y_train[labelled])
    )
    assert scores.mean() > 0.7


def test_dataframe_modalities_from_feature_names(digits):
    X, y = digits
    columns = [f"{'left' if LEFT[j] else 'right'}__px{j}" for j in range(64)]
    X_train, y_train, X_test, _ = split_for_transfer(X, y)
    frame_train = pd.DataFrame(X_train, columns=columns)
    frame_test = pd.DataFrame(X_test, columns=columns)
    clf = CrossModalTransferClassifier(SharedProjection(n_components=5)).fit(
        frame_train, y_train
    )
    assert list(clf.projection_.modalities_) == ["left", "right"]
    np.testing.assert_array_equal(clf.feature_names_in_, columns)
    by_dict = CrossModalTransferClassifier(
        SharedProjection(n_components=5, modalities=HALVES)
    ).fit(X_train, y_train)
    np.testing.assert_allclose(
        clf.predict_proba(frame_test), by_dict.predict_proba(X_test), atol=1e-8
    )
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(frame_test[columns[::-1]])


def test_float32_and_sparse_inputs(digits):
    from scipy import sparse

    X, y = digits
    clf = CrossModalTransferClassifier(
        SharedProjection(n_components=4, modalities=HALVES),
        LogisticRegression(max_iter=2000),
    )
    dense = clone(clf).fit(X[:500], y[:500])
    as_sparse = clone(clf).fit(sparse.csr_matrix(X[:500]), y[:500])
    np.testing.assert_allclose(
        dense.predict_proba(X[500:600]),
        as_sparse.predict_proba(sparse.csr_matrix(X[500:600])),
        atol=1e-8,
    )
    single = clone(clf).fit(X[:500].astype(np.float32), y[:500])
    assert single.projection_.transform(X[:5].astype(np.float32)).dtype == np.float32
    assert np.mean(single.predict(X[500:600]) == dense.predict(X[500:600])) > 0.95


def test_estimator_without_predict_proba(digits):
    X, y = digits
    X_train, y_train, X_test, y_test = split_for_transfer(X, y)
    clf = CrossModalTransferClassifier(
        SharedProjection(n_components=8, modalities=HALVES), LinearSVC()
    )
    assert not hasattr(clf, "predict_proba")
    clf.fit(X_train, y_train)
    assert not hasattr(clf, "predict_proba")
    assert clf.decision_function(X_test).shape == (len(X_test), 10)
    assert hasattr(CrossModalTransferClassifier(), "predict_proba")


def test_defaults_are_shared_projection_and_logistic_regression(digits):
    X, y = digits
    columns = [f"{'left' if LEFT[j] else 'right'}__px{j}" for j in range(64)]
    frame = pd.DataFrame(X[:400], columns=columns)
    clf = CrossModalTransferClassifier().fit(frame, y[:400])
    assert isinstance(clf.projection_, SharedProjection)
    assert clf.projection_.n_components == 2
    assert isinstance(clf.estimator_, LogisticRegression)


# -- errors ------------------------------------------------------------------------


def test_projection_output_must_be_mean(digits):
    X, y = digits
    for output in ("concat", "left"):
        clf = CrossModalTransferClassifier(
            SharedProjection(modalities=HALVES, output=output)
        )
        with pytest.raises(ValueError, match="output='mean'"):
            clf.fit(X[:100], y[:100])


def test_projection_must_be_a_shared_projection(digits):
    from sklearn.decomposition import PCA

    X, y = digits
    with pytest.raises(TypeError, match="must be a SharedProjection"):
        CrossModalTransferClassifier(PCA(2)).fit(X[:100], y[:100])


def test_needs_labels_and_paired_rows(digits):
    X, y = digits
    clf = CrossModalTransferClassifier(SharedProjection(modalities=HALVES))
    with pytest.raises(ValueError, match="no labelled row"):
        clf.fit(X[:100], np.full(100, -1))
    one_paired = np.vstack([X[:1], only(X[1:100], LEFT)])
    with pytest.raises(ValueError, match="at least two modalities"):
        clf.fit(one_paired, y[:100])
    nothing = X[:100].astype(float, copy=True)
    nothing[5] = np.nan
    with pytest.raises(ValueError, match="no modality present"):
        clf.fit(nothing, y[:100])
    with pytest.raises(ValueError, match="requires y"):
        clf.fit(X[:100], None)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        clf.fit(X[:100], y[:99])


# -- regressor ---------------------------------------------------------------------


def make_latent_regression(n=900, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    X = np.hstack(
        [latent @ rng.normal(size=(3, 7)), latent @ rng.normal(size=(3, 5))]
    ) + 0.3 * rng.normal(size=(n, 12))
    y = latent @ np.array([1.0, -2.0, 0.5])
    return X, y, {"a": slice(0, 7), "b": slice(7, 12)}


def test_regressor_transfers_and_equals_the_pipeline_by_hand():
    X, y, modalities = make_latent_regression()
    a = np.zeros(12, dtype=bool)
    a[:7] = True
    X_train = np.vstack([X[:300], only(X[300:600], a)])
    y_train = np.concatenate([np.full(300, np.nan), y[300:600]])
    X_test = only(X[600:], ~a)
    reg = CrossModalTransferRegressor(
        SharedProjection(n_components=3, modalities=modalities), Ridge(alpha=0.1)
    ).fit(X_train, y_train)
    assert reg.score(X_test, y[600:]) > 0.9

    reference = SharedProjection(n_components=3, modalities=modalities).fit(X[:300])
    Z_train = (X[300:600, :7] - reference.means_["a"]) @ reference.weights_["a"]
    Z_test = (X[600:, 7:] - reference.means_["b"]) @ reference.weights_["b"]
    by_hand = Ridge(alpha=0.1).fit(Z_train, y[300:600])
    np.testing.assert_allclose(reg.predict(X_test), by_hand.predict(Z_test), atol=1e-8)

    # score: R^2 over the rows whose target is not NaN.
    y_partly = y[600:].copy()
    y_partly[:100] = np.nan
    prediction = by_hand.predict(Z_test[100:])
    expected = 1 - np.sum((y[700:] - prediction) ** 2) / np.sum(
        (y[700:] - y[700:].mean()) ** 2
    )
    assert reg.score(X_test, y_partly) == pytest.approx(expected)


def test_regressor_multioutput_rows_all_nan_are_unlabelled():
    X, y, modalities = make_latent_regression()
    Y = np.column_stack([y, -y + 1])
    Y[:300] = np.nan
    reg = CrossModalTransferRegressor(
        SharedProjection(n_components=3, modalities=modalities)
    ).fit(X[:600], Y[:600])
    assert reg.n_labelled_samples_ == 300
    assert reg.predict(X[600:]).shape == (300, 2)
    reference = SharedProjection(n_components=3, modalities=modalities).fit(X[:600])
    by_hand = Ridge().fit(reference.transform(X[300:600]), Y[300:600])
    np.testing.assert_allclose(
        reg.predict(X[600:]), by_hand.predict(reference.transform(X[600:])), atol=1e-8
    )
    Y[310, 1] = np.nan
    Y[310, 0] = 1.0
    with pytest.raises(ValueError, match="only some of its outputs"):
        reg.fit(X[:600], Y[:600])
    with pytest.raises(ValueError, match="no labelled row"):
        reg.fit(X[:600], np.full(600, np.nan))


def test_regressor_grid_search():
    X, y, modalities = make_latent_regression()
    search = GridSearchCV(
        CrossModalTransferRegressor(SharedProjection(modalities=modalities), Ridge()),
        {"projection__n_components": [1, 3], "estimator__alpha": [0.1, 1.0]},
        cv=3,
    ).fit(X, y)
    assert search.best_params_["projection__n_components"] == 3


def test_object_and_list_labels_fit_as_the_int_labels_they_hold():
    rng = np.random.default_rng(5)
    latent = rng.normal(size=(120, 2))
    X = np.hstack([latent @ rng.normal(size=(2, 3)), latent @ rng.normal(size=(2, 3))])
    X += 0.2 * rng.normal(size=X.shape)
    y = (latent[:, 0] > 0).astype(int)
    y[:40] = -1
    modalities = {"a": slice(0, 3), "b": slice(3, 6)}

    def fitted(labels):
        return CrossModalTransferClassifier(
            SharedProjection(1, modalities=modalities)
        ).fit(X, labels)

    reference = fitted(y)
    names = np.array(["no", "yes"], dtype=object)[np.maximum(y, 0)]
    names[:40] = -1
    for labels, mapping in [
        (y.astype(object), None),  # object array of ints
        (list(y), None),
        (list(names), {0: "no", 1: "yes"}),  # strings with the int marker
    ]:
        model = fitted(labels)
        expected = reference.predict(X)
        if mapping is not None:
            expected = np.array([mapping[v] for v in expected], dtype=object)
        np.testing.assert_array_equal(model.predict(X), expected)
        assert model.n_labelled_samples_ == 80
