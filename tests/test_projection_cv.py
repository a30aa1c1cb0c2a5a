"""SharedProjectionCV: one pass over X gives what GridSearchCV over
SharedProjection(reg=...) gives with n_folds x n_candidates passes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import sparse
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
    PredefinedSplit,
    ShuffleSplit,
)

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


# -- Dask: per-fold statistics chunk by chunk --------------------------------


DASK_SPLITTERS = [
    (5, None),
    (KFold(4, shuffle=True, random_state=0), None),
    (GroupKFold(3), np.arange(600) % 7),
    (ShuffleSplit(3, test_size=0.3, random_state=0), None),  # not a partition
]


def assert_same_model(model, expected, X, rtol=1e-10):
    """Same scores, choice and refit as ``expected`` (relative to the
    scores' scale: held-out correlations are at most 1)."""
    for key in expected.cv_results_:
        if key.endswith("score") or key == "mean_test_score_per_component":
            np.testing.assert_allclose(
                model.cv_results_[key], expected.cv_results_[key], rtol=0, atol=rtol
            )
    assert model.best_reg_ == expected.best_reg_
    assert model.reg_ == pytest.approx(expected.reg_, rel=rtol)
    np.testing.assert_allclose(
        model.canonical_correlations_, expected.canonical_correlations_, rtol=rtol
    )
    Z, Z_expected = model.transform(X), expected.transform(X)
    np.testing.assert_allclose(Z, Z_expected, atol=rtol * np.abs(Z_expected).max())


@pytest.mark.parametrize("cv, groups", DASK_SPLITTERS)
def test_dask_fit_equals_the_in_memory_fit(cv, groups):
    da = pytest.importorskip("dask.array")
    X = make_data()
    X[::11, 12:] = np.nan  # missing modalities too
    expected = SharedProjectionCV(GRID, n_components=3, modalities=MODALITIES, cv=cv)
    expected.fit(X, groups=groups)
    model = SharedProjectionCV(GRID, n_components=3, modalities=MODALITIES, cv=cv)
    # Uneven row chunks that cut through the folds, split columns too.
    model.fit(da.from_array(X, chunks=((97, 203, 1, 299), (7, 13))), groups=groups)
    assert_same_model(model, expected, X)
    assert model.n_samples_seen_ == expected.n_samples_seen_ == 600


def test_dask_fit_sparse_chunks_and_unknown_chunk_sizes():
    da = pytest.importorskip("dask.array")
    X = make_data()
    X[np.abs(X) < 1.0] = 0.0
    expected = SharedProjectionCV([0.1, 1.0], n_components=2, modalities=MODALITIES)
    expected.fit(X)
    chunks = da.from_array(X, chunks=(150, 20)).map_blocks(sparse.csr_matrix)
    model = SharedProjectionCV([0.1, 1.0], n_components=2, modalities=MODALITIES)
    assert_same_model(model.fit(chunks), expected, X)
    unknown = da.from_array(X, chunks=(150, 20))
    unknown = unknown[unknown[:, 0] > -np.inf]  # row chunk sizes now unknown
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        SharedProjectionCV([0.1], modalities=MODALITIES).fit(unknown)


# -- partial_fit: per-fold statistics over a stream --------------------------


def stream_folds(n_rows, n_splits, groups=None):
    """The documented rule, written out: row i -> i % n_splits, or the j-th
    distinct group (first appearance) -> j % n_splits."""
    if groups is None:
        return np.arange(n_rows) % n_splits
    order = {}
    for g in groups:
        order.setdefault(g, len(order) % n_splits)
    return np.array([order[g] for g in groups])


def batches(n_rows, sizes):
    starts = np.concatenate([[0], np.cumsum(sizes)])
    assert starts[-1] == n_rows
    return [slice(a, b) for a, b in zip(starts[:-1], starts[1:])]


@pytest.mark.parametrize("use_groups", [False, True])
def test_partial_fit_matches_a_brute_force_fold_loop(use_groups):
    """Each fold of the stream rule: SharedProjection fitted on the other
    rows, scored on the held-out rows by SharedProjection.score."""
    X = make_data(n=400, seed=5)
    groups = (np.arange(400) * 7919 % 37) if use_groups else None
    n_splits, grid = 4, [0.01, 1.0, "auto"]
    model = SharedProjectionCV(grid, n_components=2, modalities=MODALITIES, cv=4)
    for part in batches(400, [90, 3, 150, 157]):
        model.partial_fit(X[part], groups=None if groups is None else groups[part])
    folds = stream_folds(400, n_splits, None if groups is None else groups.tolist())
    for c, reg in enumerate(grid):
        for f in range(n_splits):
            train, test = folds != f, folds == f
            fitted = SharedProjection(2, modalities=MODALITIES, reg=reg).fit(X[train])
            np.testing.assert_allclose(
                model.cv_results_[f"split{f}_test_score"][c],
                fitted.score(X[test]),
                atol=1e-8,
            )
    best = np.argmax([model.cv_results_["mean_test_score"]])
    assert model.best_reg_ == grid[best]
    refit = SharedProjection(2, modalities=MODALITIES, reg=grid[best]).fit(X)
    np.testing.assert_allclose(
        model.canonical_correlations_, refit.canonical_correlations_, rtol=1e-8
    )


@pytest.mark.parametrize("use_groups", [False, True])
def test_partial_fit_equals_fit_with_the_same_folds(use_groups):
    da = pytest.importorskip("dask.array")
    X = make_data(seed=1)
    X[::13, :12] = np.nan
    groups = np.array([f"g{i % 23}" for i in range(600)]) if use_groups else None
    folds = stream_folds(600, 5, None if groups is None else groups.tolist())
    expected = SharedProjectionCV(
        GRID, n_components=3, modalities=MODALITIES, cv=PredefinedSplit(folds)
    ).fit(X)
    model = SharedProjectionCV(GRID, n_components=3, modalities=MODALITIES, cv=5)
    for i, part in enumerate(batches(600, [250, 1, 120, 229])):
        # Batches of numpy, sparse and Dask arrays join one stream.
        batch = X[part]
        if i == 0:
            batch = sparse.csr_matrix(batch)
        if i == 2:
            batch = da.from_array(batch, chunks=(50, 20))
        model.partial_fit(
            batch, groups=None if groups is None else groups[part], solve=i == 3
        )
    assert_same_model(model, expected, X, rtol=1e-8)
    assert model.n_samples_seen_ == 600


def test_partial_fit_is_atomic_on_a_rejected_batch():
    X = make_data(seed=2)
    model = SharedProjectionCV([0.1, 1.0], n_components=2, modalities=MODALITIES, cv=3)
    model.partial_fit(X[:300], groups=np.arange(300) % 10)
    before = {key: np.copy(value) for key, value in model.cv_results_.items()}
    sums = [(s.gram.copy(), s.n_rows) for s in model._stream.sums]
    bad = X[300:400].copy()
    bad[57, 3] = np.inf
    bad_groups = np.arange(300, 400) % 10
    for batch, kwargs, match in [
        (bad, {"groups": bad_groups}, "inf"),
        (X[300:400], {}, "groups"),  # the stream came with groups
        (X[300:400, :19], {"groups": bad_groups}, "features"),
    ]:
        with pytest.raises(ValueError, match=match):
            model.partial_fit(batch, **kwargs)
        for (gram, n), s in zip(sums, model._stream.sums):
            np.testing.assert_array_equal(s.gram, gram)
            assert s.n_rows == n
        assert model._stream.n_rows == 300
        for key, value in before.items():
            np.testing.assert_array_equal(model.cv_results_[key], value)
    # The stream goes on as if the rejected batches never came.
    model.partial_fit(X[300:], groups=np.arange(300, 600) % 10)
    expected = SharedProjectionCV(
        [0.1, 1.0],
        n_components=2,
        modalities=MODALITIES,
        cv=PredefinedSplit(stream_folds(600, 3, list(np.arange(600) % 10))),
    ).fit(X)
    assert_same_model(model, expected, X, rtol=1e-8)


def test_partial_fit_refuses_splitters_and_too_few_rows():
    X = make_data()
    for cv in [KFold(5), GroupKFold(3), [(np.arange(3), np.arange(3, 6))]]:
        model = SharedProjectionCV([0.1], modalities=MODALITIES, cv=cv)
        with pytest.raises(ValueError, match="partial_fit needs cv as an int"):
            model.partial_fit(X)
        assert not hasattr(model, "n_features_in_")
    model = SharedProjectionCV([0.1], modalities=MODALITIES, cv=5)
    with pytest.raises(ValueError, match=r"Fold\(s\) \[4\]"):
        model.partial_fit(X[:9])  # fold 4 has one row
    model.partial_fit(X[9:12], solve=False)  # the rows were kept
    assert model._stream.n_rows == 12
    model.partial_fit(X[12:])
    assert model.n_samples_seen_ == 600
    with pytest.warns(UserWarning, match="starts a new stream"):
        SharedProjectionCV([0.1], modalities=MODALITIES).fit(X).partial_fit(X)


def test_an_overflow_in_one_fold_merges_no_fold():
    from skcrossmodal._fold_statistics import merge_all_or_none

    X = make_data(n=60)
    model = SharedProjectionCV([0.1], modalities=MODALITIES, cv=3)
    model.partial_fit(X[:30], solve=False)
    sums = model._stream.sums
    before = [(s.gram.copy(), s.n_rows) for s in sums]
    batch = [
        sums[f].empty_like().update(X[30 + 10 * f : 40 + 10 * f]) for f in range(3)
    ]
    batch[2].gram[0, 0] = 1e308  # its fold's diagonal sum overflows
    sums[2].gram[0, 0] = 1e308
    before[2][0][0, 0] = 1e308
    with pytest.raises(ValueError, match="overflowed"):
        merge_all_or_none(sums, batch)
    for (gram, n), s in zip(before, sums):
        np.testing.assert_array_equal(s.gram, gram)
        assert s.n_rows == n


def test_dask_fit_on_a_distributed_local_cluster():
    """The per-chunk fold sums travel between processes (pickled)."""
    da = pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    X = make_data()
    groups = np.arange(600) % 7
    expected = SharedProjectionCV(
        GRID, n_components=2, modalities=MODALITIES, cv=GroupKFold(3)
    ).fit(X, groups=groups)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        model = SharedProjectionCV(
            GRID, n_components=2, modalities=MODALITIES, cv=GroupKFold(3)
        ).fit(da.from_array(X, chunks=(150, 20)), groups=groups)
    assert_same_model(model, expected, X)
