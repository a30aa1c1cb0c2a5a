"""SharedProjectionCV: one pass over X gives what GridSearchCV over
SharedProjection(reg=...) gives with n_folds x n_candidates passes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import sparse
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, ShuffleSplit

from skcrossmodal import SharedProjection, SharedProjectionCV

MODALITIES = {"a": slice(0, 12), "b": slice(12, 20)}
GRID = [1e-3, 1e-2, 0.1, 1.0, 10.0, "auto"]


def make_data(n=600, seed=0, noise=2.0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3)) * [2.0, 1.5, 1.0]
    a = latent @ rng.normal(size=(3, 12)) + noise * rng.normal(size=(n, 12))
    b = latent @ rng.normal(size=(3, 8)) + noise * rng.normal(size=(n, 8)) + 5.0
    return np.hstack([a, b])


def grid_search(X, cv, groups=None, grid=GRID):
    search = GridSearchCV(
        SharedProjection(3, modalities=MODALITIES), {"reg": grid}, cv=cv
    )
    return search.fit(X, groups=groups)


@pytest.mark.parametrize(
    "cv, groups",
    [
        (KFold(5), None),
        (KFold(4, shuffle=True, random_state=0), None),
        (GroupKFold(3), np.arange(600) % 7),
        (ShuffleSplit(3, test_size=0.3, random_state=0), None),  # not a partition
    ],
)
def test_same_scores_and_choice_as_grid_search(cv, groups):
    X = make_data()
    search = grid_search(X, cv, groups)
    model = SharedProjectionCV(GRID, n_components=3, modalities=MODALITIES, cv=cv)
    model.fit(X, groups=groups)
    for key in ["mean_test_score", "std_test_score"] + [
        f"split{f}_test_score" for f in range(search.n_splits_)
    ]:
        np.testing.assert_allclose(
            model.cv_results_[key], search.cv_results_[key], rtol=0, atol=1e-8
        )
    assert model.best_reg_ == search.best_params_["reg"]
    np.testing.assert_array_equal(
        model.cv_results_["rank_test_score"], search.cv_results_["rank_test_score"]
    )
    # The refit is SharedProjection's on all rows with the chosen ridge.
    refit = search.best_estimator_
    np.testing.assert_allclose(
        model.canonical_correlations_, refit.canonical_correlations_, rtol=1e-10
    )
    np.testing.assert_allclose(model.transform(X), refit.transform(X), atol=1e-9)


def test_per_component_scores_average_to_the_score():
    X = make_data()
    model = SharedProjectionCV(GRID, n_components=3, modalities=MODALITIES).fit(X)
    per_component = model.cv_results_["mean_test_score_per_component"]
    assert per_component.shape == (len(GRID), 3)
    np.testing.assert_allclose(
        per_component.mean(axis=1), model.cv_results_["mean_test_score"], rtol=1e-12
    )


def pairwise_complete_covariance(X, blocks):
    """Brute force: each block pair from the rows carrying both modalities,
    each modality centred by its own mean over the rows carrying it."""
    present = [~np.isnan(X[:, b]).any(axis=1) for b in blocks]
    means = [np.nanmean(X[p][:, b], axis=0) for p, b in zip(present, blocks)]
    D = X.shape[1]
    C = np.zeros((D, D))
    for (m, bm), (l, bl) in itertools.product(enumerate(blocks), repeat=2):
        rows = present[m] & present[l]
        A = X[rows][:, bm] - means[m]
        B = X[rows][:, bl] - means[l]
        C[bm, bl] = A.T @ B / rows.sum()
    return C


def test_missing_modalities_match_a_brute_force_fold_loop():
    """Each fold: SharedProjection fitted on the other folds' rows, scored
    by the Pearson correlation its weights give on the held-out fold's
    pairwise-complete covariance, computed here from the raw rows."""
    X = make_data(seed=3)
    rng = np.random.default_rng(3)
    X[rng.random(600) < 0.2, :12] = np.nan
    X[rng.random(600) < 0.2, 12:] = np.nan
    X = X[~np.isnan(X).all(axis=1)]
    blocks = [slice(0, 12), slice(12, 20)]
    cv = KFold(4)
    grid = [0.01, 1.0, "auto"]
    model = SharedProjectionCV(grid, n_components=2, modalities=MODALITIES, cv=cv)
    model.fit(X)
    for c, reg in enumerate(grid):
        for f, (train, test) in enumerate(cv.split(X)):
            fitted = SharedProjection(2, modalities=MODALITIES, reg=reg).fit(X[train])
            C = pairwise_complete_covariance(X[test], blocks)
            Wa, Wb = fitted.weights_["a"], fitted.weights_["b"]
            cross = np.diag(Wa.T @ C[blocks[0], blocks[1]] @ Wb)
            var_a = np.diag(Wa.T @ C[blocks[0], blocks[0]] @ Wa)
            var_b = np.diag(Wb.T @ C[blocks[1], blocks[1]] @ Wb)
            expected = np.mean(cross / np.sqrt(var_a * var_b))
            np.testing.assert_allclose(
                model.cv_results_[f"split{f}_test_score"][c], expected, atol=1e-8
            )


def test_sparse_input_gives_the_dense_answer():
    X = make_data()
    X[np.abs(X) < 1.0] = 0.0
    dense = SharedProjectionCV([0.1, 1.0], n_components=2, modalities=MODALITIES)
    sparse_model = SharedProjectionCV([0.1, 1.0], n_components=2, modalities=MODALITIES)
    dense.fit(X)
    sparse_model.fit(sparse.csr_matrix(X))
    np.testing.assert_allclose(
        sparse_model.cv_results_["mean_test_score"],
        dense.cv_results_["mean_test_score"],
        atol=1e-9,
    )


def test_a_grid_per_modality_is_every_combination():
    X = make_data()
    regs = {"a": [0.01, 1.0], "b": [0.1, "auto"]}
    model = SharedProjectionCV(regs, n_components=2, modalities=MODALITIES).fit(X)
    params = [p["reg"] for p in model.cv_results_["params"]]
    assert params == [
        {"a": 0.01, "b": 0.1},
        {"a": 0.01, "b": "auto"},
        {"a": 1.0, "b": 0.1},
        {"a": 1.0, "b": "auto"},
    ]
    search = GridSearchCV(
        SharedProjection(2, modalities=MODALITIES), {"reg": params}, cv=5
    ).fit(X)
    np.testing.assert_allclose(
        model.cv_results_["mean_test_score"],
        search.cv_results_["mean_test_score"],
        atol=1e-8,
    )


def test_one_standard_error_rule_picks_the_most_regularised_close_candidate():
    X = make_data(n=300, noise=4.0)
    grid = [1e-3, 0.1, 1.0, 10.0, 100.0]
    model = SharedProjectionCV(
        grid, n_components=2, modalities=MODALITIES, refit_rule="one_standard_error"
    ).fit(X)
    scores = np.array([model.cv_results_[f"split{f}_test_score"] for f in range(5)]).T
    means = scores.mean(axis=1)
    best = int(np.argmax(means))
    threshold = means[best] - scores[best].std() / np.sqrt(5)
    expected = max(i for i in range(len(grid)) if means[i] >= threshold)
    assert model.best_reg_ == grid[expected]
    assert model.reg_ == {"a": grid[expected], "b": grid[expected]}


@pytest.mark.parametrize(
    "regs, match",
    [
        ([], "regs is empty"),
        ([0.1, -1.0], "float >= 0 or 'auto'"),
        ([0.1, "ridge"], "float >= 0 or 'auto'"),
        ({"a": [0.1]}, "one list of candidates per modality"),
    ],
)
def test_bad_candidates_are_clear_errors(regs, match):
    X = make_data()
    before = X.copy()
    with pytest.raises(ValueError, match=match):
        SharedProjectionCV(regs, modalities=MODALITIES).fit(X)
    np.testing.assert_array_equal(X, before)
