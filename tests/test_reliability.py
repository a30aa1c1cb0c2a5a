"""No silent wrong answer from the shared projection: properties over classes
of awkward input, each compared with an independent computation.

* scale: any units float64 can square give the answer of units 1; beyond
  them, a clear error (never a quietly inaccurate fit);
* atomic state: a refused batch or fit leaves the estimator exactly as it was;
* undefined is not zero: a score with nothing to measure is NaN, with a
  warning.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st
from xp_testing import ARRAY_API_NAMESPACES, dispatch_for, to_xp

from skcrossmodal import GradientSharedProjection, SharedProjection
from skcrossmodal.deep import DeepSharedProjection

MODALITIES = {"a": slice(0, 5), "b": slice(5, 9)}


def make_data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2)) * [2.0, 1.0]
    a = latent @ rng.normal(size=(2, 5)) + rng.normal(size=(n, 5))
    b = latent @ rng.normal(size=(2, 4)) + rng.normal(size=(n, 4))
    return np.hstack([a, b])


def reference_correlations(X, k=2):
    """Plain CCA by scipy's dense generalised eigensolver, in units of 1."""
    from scipy import linalg

    Xa, Xb = X[:, :5], X[:, 5:]
    Xa = Xa - Xa.mean(0)
    Xb = Xb - Xb.mean(0)
    n = X.shape[0]
    Caa, Cbb, Cab = Xa.T @ Xa / n, Xb.T @ Xb / n, Xa.T @ Xb / n
    M = linalg.solve(Caa, Cab) @ linalg.solve(Cbb, Cab.T)
    values = np.sort(np.sqrt(np.abs(np.linalg.eigvals(M).real)))[::-1]
    return values[:k]


@settings(max_examples=25, deadline=None)
@given(
    exponents=st.lists(
        st.integers(min_value=-140, max_value=150), min_size=9, max_size=9
    ),
    scale=st.booleans(),
)
def test_any_units_float64_can_square_give_the_units_one_answer(exponents, scale):
    """Each feature in its own units, from 1e-140 to 1e150: the canonical
    correlations are those of the unscaled data (they are invariant to
    units), and the projections of the same rows are the same."""
    X = make_data()
    units = 10.0 ** np.asarray(exponents, dtype=float)
    model = SharedProjection(2, modalities=MODALITIES, scale=scale).fit(X * units)
    np.testing.assert_allclose(
        model.canonical_correlations_, reference_correlations(X), rtol=1e-9
    )
    plain = SharedProjection(2, modalities=MODALITIES, scale=scale).fit(X)
    np.testing.assert_allclose(
        model.transform(X * units), plain.transform(X), rtol=1e-7, atol=1e-9
    )


@pytest.mark.parametrize(
    "factor, match",
    [(1e160, "overflowed"), (1e200, "overflowed"), (1e-150, "normal range")],
)
@pytest.mark.parametrize("scale", [False, True])
def test_units_float64_cannot_square_are_a_clear_error(factor, match, scale):
    X = make_data() * factor
    with pytest.raises(ValueError, match=match):
        SharedProjection(2, modalities=MODALITIES, scale=scale).fit(X)


@pytest.mark.parametrize("exponent", [-150, -160, -170, -200, -300, -320])
@pytest.mark.parametrize(
    "kind",
    [
        "dense",
        "sparse",
        "missing",
        "dask",
        "gradient",
        "deep",
        *ARRAY_API_NAMESPACES,
        *(f"deep {name}" for name in ARRAY_API_NAMESPACES),
    ],
)
def test_features_whose_squares_vanish_are_a_clear_error(
    exponent, kind, scipy_array_api_flag
):
    """One modality in units of 10**exponent: from about 1e-146 down its
    squares lose digits, and below 1e-162 they are exactly 0, so its
    variance would come out 0 as for a constant (the fit then called the
    modality rank-deficient, a misleading error, or dropped it). Every
    input kind must refuse it naming the cause, and leave X as it was."""
    X = make_data()
    X[:, 5:] *= 10.0**exponent
    if kind == "missing":
        X[:40, 5:] = np.nan
    original = X.copy()
    if kind == "gradient":
        model = GradientSharedProjection(2, modalities=MODALITIES, random_state=0)
    elif kind.startswith("deep"):
        model = DeepSharedProjection(
            2, modalities=MODALITIES, hidden_layer_sizes=(4,), max_iter=1
        )
    else:
        model = SharedProjection(2, modalities=MODALITIES)
    with pytest.raises(ValueError, match="vary by so little"):
        if kind == "dask":
            import dask.array as da

            model.fit(da.from_array(X, chunks=(100, X.shape[1])))
        elif kind == "sparse":
            model.fit(scipy.sparse.csr_matrix(X))
        elif kind.split()[-1] in ARRAY_API_NAMESPACES:
            name = kind.split()[-1]
            data = to_xp(name, X)
            with dispatch_for(name):
                model.fit(data)
        else:
            model.fit(X)
    np.testing.assert_array_equal(X, original)


@pytest.mark.parametrize("exponent", [-20, -30, -36])
def test_float32_input_in_small_units_is_judged_in_the_float64_sums(exponent):
    """float32 X is summed in float64: values of 1e-36, whose float32 squares
    would vanish, square fine there, so the fit is that of units 1."""
    X = make_data()
    small = (X * 10.0**exponent).astype(np.float32)
    model = SharedProjection(2, modalities=MODALITIES).fit(small)
    np.testing.assert_allclose(
        model.canonical_correlations_,
        reference_correlations(small.astype(np.float64) * 10.0**-exponent),
        rtol=1e-9,
    )


@pytest.mark.parametrize("value", [1e-200, -3e-170, 5e-324])
def test_a_constant_feature_too_small_to_square_is_still_a_constant(value):
    """What tells the vanishing squares above from a constant: the values
    differ. A constant of any size gives the fit with that feature zeroed."""
    X = make_data()
    zeroed = X.copy()
    zeroed[:, 7] = 0.0
    constant = X.copy()
    constant[:, 7] = value
    reference = SharedProjection(2, modalities=MODALITIES).fit(zeroed)
    model = SharedProjection(2, modalities=MODALITIES).fit(constant)
    np.testing.assert_allclose(
        model.canonical_correlations_, reference.canonical_correlations_, rtol=1e-8
    )


def _state(model):
    return pickle.dumps(model.__dict__)


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(["inf", "partial-nan", "empty-row"]),
    where=st.floats(min_value=0.0, max_value=0.999),
    batch_rows=st.sampled_from([10, 300, 3000]),
)
def test_a_refused_partial_fit_batch_leaves_the_model_as_it_was(
    kind, where, batch_rows
):
    """Whatever the bad row's place in the batch (first chunk or any later
    one), the statistics and the fitted model are byte for byte those before
    the call, and the stream goes on as if the batch had never come."""
    X = make_data(n=600 + batch_rows, seed=1)
    model = SharedProjection(2, modalities=MODALITIES, reg=0.1)
    model.partial_fit(X[:300])
    before = _state(model)
    batch = X[300 : 300 + batch_rows].copy()
    row = int(where * batch_rows)
    if kind == "inf":
        batch[row, 7] = np.inf
    elif kind == "partial-nan":
        batch[row, 1] = np.nan
    else:
        batch[row, :] = np.nan
    with pytest.raises(ValueError):
        model.partial_fit(batch)
    assert _state(model) == before
    model.partial_fit(X[300 + batch_rows :])
    expected = SharedProjection(2, modalities=MODALITIES, reg=0.1).fit(
        np.vstack([X[:300], X[300 + batch_rows :]])
    )
    np.testing.assert_allclose(
        model.canonical_correlations_, expected.canonical_correlations_, rtol=1e-10
    )


@settings(max_examples=20, deadline=None)
@given(
    pattern=st.lists(st.sampled_from(["a", "b"]), min_size=2, max_size=30),
)
def test_a_score_with_nothing_to_measure_is_nan_with_a_warning(pattern):
    """Rows that never carry both modalities: no correlation exists, so the
    score is NaN (GridSearchCV then ranks the candidate last), never 0."""
    X = make_data()
    model = SharedProjection(2, modalities=MODALITIES, reg=0.1).fit(X)
    held_out = X[: len(pattern)].copy()
    for row, present in enumerate(pattern):
        if present == "a":
            held_out[row, 5:] = np.nan
        else:
            held_out[row, :5] = np.nan
    with pytest.warns(UserWarning, match="cannot be measured"):
        score = model.score(held_out)
    assert np.isnan(score)


def test_a_score_on_constant_projections_is_nan_with_a_warning():
    X = make_data()
    model = SharedProjection(2, modalities=MODALITIES, reg=0.1).fit(X)
    constant = np.tile(X[:1], (20, 1))
    with pytest.warns(UserWarning, match="constant"):
        assert np.isnan(model.score(constant))
    # Paired, varying rows are measured as before: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert 0 < model.score(X) <= 1


@settings(max_examples=40, deadline=None)
@given(
    row=st.integers(0, 399),
    level=st.sampled_from([1e-100, 1e-8, 1.0, 1e8, 1e100]),
    n_rows=st.integers(2, 300),
)
def test_constant_projections_are_undefined_at_any_magnitude(row, level, n_rows):
    # Whatever the rounding of the centring (which depends on the model's
    # last bits, the BLAS and the number of rows), rows that are all the same
    # give projections constant up to rounding: the score is undefined, never
    # a correlation of rounding noise (which came out as -1.0).
    X = make_data() * level
    model = SharedProjection(2, modalities=MODALITIES, reg=0.1).fit(X)
    constant = np.tile(X[row : row + 1], (n_rows, 1))
    with pytest.warns(UserWarning, match="constant"):
        assert np.isnan(model.score(constant))


@pytest.mark.parametrize("offset", [1e6, 1e8])
def test_varying_rows_far_from_zero_are_still_measured(offset):
    # The constancy test is relative to the projections' magnitude, but a
    # real spread of 1 on top of a level of 1e8 is far above rounding there:
    # its correlation is measured, and equals the one without the offset.
    X = make_data()
    model = SharedProjection(2, modalities=MODALITIES, reg=0.1).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = model.score(X)
        shifted = model.score(X + offset)
    # The fitted means are not offset, so every projection sits far from 0.
    np.testing.assert_allclose(shifted, expected, rtol=1e-6)
