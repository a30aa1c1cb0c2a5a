"""Scale: exact streaming and Dask (the gradient solver: test_gradient.py).

Every equality is checked against ``fit`` on the full in-memory array, or
against numpy computations done here.
"""

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from scipy import sparse

from skcrossmodal import SharedProjection
from skcrossmodal._testing import correlated_views

EVEN_ODD = {"even": slice(0, None, 2), "odd": slice(1, None, 2)}


def make_views(*args, **kwargs):
    X, _, modalities = correlated_views(*args, **kwargs)
    return X, modalities


# -- partial_fit ------------------------------------------------------------------


def test_partial_fit_float32_with_large_offset_loses_no_digits():
    """Mean 1e4, spread 1, float32 batches: the shifted float64 sums add no
    error beyond the rounding of the float32 input itself."""
    X64, modalities = make_views(n=3000, offset=1e4)
    X32 = X64.astype(np.float32)
    streamed = SharedProjection(3, modalities=modalities, reg=0.05)
    for batch in np.array_split(X32, 9):
        streamed.partial_fit(batch)
    exact = SharedProjection(3, modalities=modalities, reg=0.05).fit(
        X32.astype(np.float64)
    )
    np.testing.assert_allclose(
        streamed.canonical_correlations_, exact.canonical_correlations_, rtol=1e-8
    )
    for name in modalities:
        np.testing.assert_allclose(
            streamed.weights_[name], exact.weights_[name], rtol=1e-6, atol=1e-9
        )
        np.testing.assert_allclose(
            streamed.means_[name], exact.means_[name], rtol=1e-12
        )
    # Against the float64 data the float32 rounding (1e4 * 2**-24 ~ 6e-4 on
    # values of spread 1) is all that is left.
    original = SharedProjection(3, modalities=modalities, reg=0.05).fit(X64)
    np.testing.assert_allclose(
        streamed.canonical_correlations_, original.canonical_correlations_, atol=2e-3
    )
    # What raw float32 sums of squares would give: digits gone.
    n = X32.shape[0]
    sums = X32.sum(axis=0, dtype=np.float32)
    squares = np.einsum("ij,ij->j", X32, X32, dtype=np.float32)
    naive_variance = squares / n - (sums / n) ** 2
    true_variance = X64.var(axis=0)
    assert np.max(np.abs(naive_variance - true_variance) / true_variance) > 0.1


def test_partial_fit_sparse_and_missing_batches_equal_fit():
    X, modalities = make_views(n=900, widths=(6, 5, 4), offset=3.0)
    X = X * (np.random.default_rng(1).random(X.shape) < 0.7)
    X[:50, :6] = np.nan
    X[100:130, 11:] = np.nan
    full = SharedProjection(2, modalities=modalities, reg=0.1).fit(X)
    streamed = SharedProjection(2, modalities=modalities, reg=0.1)
    for position, batch in enumerate(np.array_split(X, 6)):
        streamed.partial_fit(sparse.csr_matrix(batch) if position % 2 else batch)
    np.testing.assert_allclose(
        streamed.canonical_correlations_, full.canonical_correlations_, rtol=1e-8
    )
    for name in modalities:
        np.testing.assert_allclose(
            streamed.weights_[name], full.weights_[name], rtol=1e-7, atol=1e-10
        )


def _streaming_peak(n_batches, batch_rows, width, seed=0):
    """tracemalloc peak of partial_fit over batches generated one by one."""
    modalities = {"a": slice(0, width), "b": slice(width, 2 * width)}
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(width, width))
    model = SharedProjection(2, modalities=modalities, reg=0.1)
    tracemalloc.start()
    for _ in range(n_batches):
        a = rng.normal(size=(batch_rows, width))
        model.partial_fit(np.hstack([a, a @ mixing + rng.normal(size=a.shape)]))
        del a
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_partial_fit_memory_does_not_grow_with_rows():
    batch_rows, width = 2000, 40
    short = _streaming_peak(2, batch_rows, width)
    long = _streaming_peak(30, batch_rows, width)
    batch_bytes = batch_rows * 2 * width * 8
    # 15 times the rows, same peak: O(D^2 + batch), not O(n).
    assert long < 1.25 * short
    assert long < 10 * batch_bytes


# -- Dask ---------------------------------------------------------------------


def dask_data(n=3000, seed=0):
    X, modalities = make_views(n=n, widths=(6, 5, 4), offset=50.0, seed=seed)
    X[:100, :6] = np.nan
    X[200:260, 11:] = np.nan
    return X, modalities


@pytest.mark.parametrize("reg", [0.1, "auto"])
def test_dask_fit_equals_in_memory_fit(reg):
    da = pytest.importorskip("dask.array")
    X, modalities = dask_data()
    expected = SharedProjection(3, modalities=modalities, reg=reg).fit(X)
    # Chunks split rows and columns, unevenly.
    lazy = da.from_array(X, chunks=((700, 1000, 1300), (4, 11)))
    model = SharedProjection(3, modalities=modalities, reg=reg).fit(lazy)
    np.testing.assert_allclose(
        model.canonical_correlations_, expected.canonical_correlations_, rtol=1e-10
    )
    for name in modalities:
        np.testing.assert_allclose(
            model.weights_[name], expected.weights_[name], rtol=1e-9, atol=1e-12
        )
        np.testing.assert_allclose(model.means_[name], expected.means_[name])
    assert model.reg_ == pytest.approx(expected.reg_, rel=1e-10)
    assert model.n_features_in_ == 15 and model.n_samples_seen_ == 3000
    np.testing.assert_allclose(model.transform(X), expected.transform(X), rtol=1e-8)


def test_dask_partial_fit_equals_fit_and_mixes_with_numpy():
    da = pytest.importorskip("dask.array")
    X, modalities = dask_data()
    expected = SharedProjection(2, modalities=modalities, reg=0.1).fit(X)
    model = SharedProjection(2, modalities=modalities, reg=0.1)
    model.partial_fit(da.from_array(X[:1000], chunks=300))
    model.partial_fit(X[1000:2000])
    model.partial_fit(da.from_array(X[2000:], chunks=400))
    np.testing.assert_allclose(
        model.canonical_correlations_, expected.canonical_correlations_, rtol=1e-10
    )
    with pytest.raises(ValueError, match="X has 14 features"):
        model.partial_fit(da.from_array(X[:, :14], chunks=300))


def test_dask_fit_on_a_distributed_local_cluster():
    da = pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    X, modalities = dask_data(n=4000)
    expected = SharedProjection(3, modalities=modalities, reg="auto").fit(X)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster),
    ):
        lazy = da.from_array(X, chunks=(500, 15))
        model = SharedProjection(3, modalities=modalities, reg="auto").fit(lazy)
    np.testing.assert_allclose(
        model.canonical_correlations_, expected.canonical_correlations_, rtol=1e-10
    )
    for name in modalities:
        np.testing.assert_allclose(
            model.weights_[name], expected.weights_[name], rtol=1e-9, atol=1e-12
        )


def test_dask_input_errors():
    da = pytest.importorskip("dask.array")
    X, _ = dask_data()
    lazy = da.from_array(X, chunks=500)
    by_name = SharedProjection(2, modalities={"a": ["x0"], "b": ["x1"]})
    with pytest.raises(ValueError, match="column names"):
        by_name.fit(lazy)
    with pytest.raises(ValueError, match="reads the modalities from X's feature"):
        SharedProjection(2).fit(lazy)
    with pytest.raises(ValueError, match="2D"):
        SharedProjection(2, modalities=EVEN_ODD).fit(lazy[:, 0])
    with pytest.raises(ValueError, match="infinity"):
        SharedProjection(2, modalities=EVEN_ODD).fit(
            da.from_array(np.where(np.arange(15) == 3, np.inf, X), chunks=500)
        )


def test_check_dask_array_returns_what_it_found_and_sets_nothing():
    da = pytest.importorskip("dask.array")
    from skcrossmodal._dask import check_dask_array

    X, _ = dask_data()
    lazy = da.from_array(X, chunks=500)
    n_features, modalities = check_dask_array(
        lazy, estimator_name="Model", modalities=EVEN_ODD
    )
    assert n_features == 15
    np.testing.assert_array_equal(modalities["odd"], np.arange(1, 15, 2))
    n_features, modalities = check_dask_array(
        lazy, estimator_name="Model", n_features_in=15
    )
    assert (n_features, modalities) == (15, None)
    with pytest.raises(ValueError, match="X has 15 features, but Model is expecting"):
        check_dask_array(lazy, estimator_name="Model", n_features_in=14)


def test_dask_is_not_imported_by_skcrossmodal():
    code = (
        "import sys, numpy as np, skcrossmodal\n"
        "X = np.random.default_rng(0).normal(size=(50, 4))\n"
        "skcrossmodal.SharedProjection(1, modalities={'a': [0, 1], 'b': [2, 3]})"
        ".fit(X)\n"
        "assert not any(m == 'dask' or m.startswith('dask.') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
