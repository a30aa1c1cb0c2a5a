"""Properties over every public estimator, one class of failure each (issue 13).

Each test states one property of a class of awkward input and checks it
against an independent computation (the same data without the awkwardness,
or the state before the call), for every estimator or path it applies to:

* atomic state: a refused refit leaves every estimator exactly as it was;
* one arithmetic: a large offset (1e8 + signal) gives the offset-free answer
  in every path (dense, sparse) of the PCA alignment;
* scale-free constancy: a constant column is constant whatever its units.
"""

from __future__ import annotations

import importlib.util
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse
from sklearn.base import clone, is_classifier, is_regressor

from skcrossmodal import SharedProjection, WeightedFusion


def _every_public_estimator():
    """The one list of every public estimator (test_estimator_checks.py)."""
    path = Path(__file__).with_name("test_estimator_checks.py")
    spec = importlib.util.spec_from_file_location("_every_estimator_rc", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ESTIMATORS


# Every estimator that reads modality blocks (AudioFeaturizer reads clips,
# ModalityBranch hands its columns to any transformer).
ESTIMATORS = [
    e
    for e in _every_public_estimator()
    if type(e).__name__ not in ("AudioFeaturizer", "ModalityBranch")
]
MODALITIES = {"a": slice(0, 5), "b": slice(5, 9)}


def make_data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2)) * [2.0, 1.0]
    a = latent @ rng.normal(size=(2, 5)) + rng.normal(size=(n, 5))
    b = latent @ rng.normal(size=(2, 4)) + rng.normal(size=(n, 4))
    return np.hstack([a, b])


def _fit(estimator, X):
    y = (make_data()[: X.shape[0], 0] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny iterative fits' convergence
        if is_classifier(estimator):
            return estimator.fit(X, y)
        if is_regressor(estimator):
            return estimator.fit(X, y.astype(float))
        return estimator.fit(X)


def _bad(kind, X):
    X = X.copy()
    if kind == "infinity":
        X[77, 6] = np.inf
    elif kind == "partial NaN":
        X[50, 1] = np.nan
    elif kind == "a row with no modality":
        X[99, :] = np.nan
    else:  # complex values
        X = X * (1 + 1j)
    return X


@pytest.mark.parametrize(
    "kind", ["infinity", "partial NaN", "a row with no modality", "complex"]
)
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_a_refused_refit_leaves_the_previous_model_as_it_was(estimator, kind):
    """Fitted, then refitted on refused data: the refit raises a ValueError
    and every attribute is byte for byte the previous fit's (so the model
    still predicts as before)."""
    X = make_data()
    fitted = _fit(clone(estimator), X)
    before = pickle.dumps(fitted.__dict__)
    with pytest.raises(ValueError):
        _fit(fitted, _bad(kind, X))
    assert pickle.dumps(fitted.__dict__) == before


@settings(max_examples=15, deadline=None)
@given(
    offsets=st.lists(
        st.sampled_from([0.0, 1e3, 1e6, 1e8, -1e8]), min_size=9, max_size=9
    ),
    as_sparse=st.booleans(),
)
def test_pca_alignment_is_blind_to_offsets_in_every_path(offsets, as_sparse):
    """WeightedFusion(align="pca") with columns offset by up to 1e8: the
    output of the offset data is that of the offset-free data (PCA centres,
    so the offset is invisible in exact arithmetic), dense or sparse.
    scikit-learn's covariance solver forms X^T X - n mu mu^T, which cancels
    every digit at 1e8: the fusion must not rely on it."""
    X = make_data()
    shifted = X + np.asarray(offsets)
    model = WeightedFusion(modalities=MODALITIES, align="pca", n_components=2)
    reference = clone(model).fit(X).transform(X)
    data = sparse.csr_matrix(shifted) if as_sparse else shifted
    output = model.fit(data).transform(data)
    np.testing.assert_allclose(
        np.abs(output),
        np.abs(reference),
        rtol=1e-6,
        atol=1e-6 * np.abs(reference).max(),
    )


@settings(max_examples=20, deadline=None)
@given(
    exponent=st.integers(min_value=-140, max_value=140),
    value=st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
    column=st.integers(min_value=0, max_value=8),
    scale=st.booleans(),
)
def test_a_constant_column_is_constant_in_any_units(exponent, value, column, scale):
    """A constant column (any value) in data of units 10**exponent: the
    canonical correlations are those of the same data with that column
    zero, in units of 1. Its centred values are rounding of its mean
    (an ulp of 3e100 is 1e84): they must count as constant relative to its
    level, not carry that rounding into the covariances."""
    X = make_data()
    zeroed = X.copy()
    zeroed[:, column] = 0.0
    reference = SharedProjection(2, modalities=MODALITIES, scale=scale).fit(zeroed)
    units = 10.0**exponent
    constant = X * units
    constant[:, column] = value * units
    model = SharedProjection(2, modalities=MODALITIES, scale=scale).fit(constant)
    np.testing.assert_allclose(
        model.canonical_correlations_, reference.canonical_correlations_, rtol=1e-8
    )


def _blas_threads():
    from threadpoolctl import threadpool_info

    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_fits_in_threads_leave_the_blas_thread_limit_as_it_was(estimator):
    """Four fits of the same estimator at once in threads (GridSearchCV's
    threading backend): each gives the answer of a fit alone, and the
    process's BLAS limit is the caller's afterwards. A plain
    threadpool_limits in one path (the gradient solver's epochs) restored
    "1 thread" when fits interleaved."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    X = make_data()
    alone = _fit(clone(estimator), X)
    use = "transform" if hasattr(alone, "transform") else "predict"
    with threadpool_limits(limits=2, user_api="blas"):
        with ThreadPoolExecutor(max_workers=8) as pool:
            fitted = list(pool.map(lambda _: _fit(clone(estimator), X), range(24)))
        assert _blas_threads() == {2}
    for model in fitted:
        np.testing.assert_allclose(
            getattr(model, use)(X), getattr(alone, use)(X), rtol=1e-9, atol=1e-12
        )


@settings(max_examples=6, deadline=None)
@given(exponent=st.integers(min_value=-30, max_value=30))
def test_deep_projection_is_blind_to_units(exponent):
    """DeepSharedProjection standardises its inputs: data in units of
    10**exponent trains the same encoders as in units of 1 (up to the
    float32 rounding of the standardised inputs). An absolute floor on the
    standard deviations left data in units of 1e-19 unscaled and its
    encoders' outputs constant. (Units past float32's range, which the
    encoders compute in, are left to the deep estimator's own checks.)"""
    from skcrossmodal import DeepSharedProjection

    X = make_data()

    def fit(data):
        model = DeepSharedProjection(
            2,
            modalities=MODALITIES,
            hidden_layer_sizes=(4,),
            max_iter=5,
            random_state=0,
        )
        return _fit(model, data)

    reference = fit(X)
    model = fit(X * 10.0**exponent)
    np.testing.assert_allclose(
        model.canonical_correlations_, reference.canonical_correlations_, rtol=1e-4
    )
