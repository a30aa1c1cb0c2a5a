"""The array API path of SharedProjection (skcrossmodal._array_api).

Runs on the CPU: array_api_strict (the standard and nothing more) and torch
CPU (skipped when torch is not installed; it is a test-only extra). Every
result is compared with the numpy SharedProjection on the same data, and the
solver once with scipy's generalised eigensolver by hand.

Tolerances, measured on the five CASES below at n=2000 (largest error
relative to the array's largest entry, worst case over both namespaces):

* float64 X: correlations 1.4e-15, weights 2.3e-14, transform 6.5e-15.
  Tested at the asked rtol 1e-6.
* float32 X, float64 sums (CPU, CUDA: every device with float64): the
  statistics are accumulated in float64 from the same float32 values the numpy
  path casts, so correlations 3.3e-15 and weights 2.8e-14 (tested at 1e-6);
  the float32 transform 3.0e-8 (tested at 1e-6).
* float32 sums, what a device without float64 (torch MPS) runs, simulated by
  forcing float32 accumulation: correlations 5.9e-7, weights 9.3e-6,
  transform 3.3e-6. Tested at 1e-5 (correlations) and 1e-4 (weights).

The estimators themselves run under array_api_dispatch (the ``dispatch``
fixture), array_api_strict on its non-default "device1" (which refuses any
conversion to numpy). Measured over the CASES (5 seeds) and GRADIENT_CASES
(4 seeds), both namespaces:

* partial_fit, float64: against fit on all the batches and against numpy's
  partial_fit, correlations 1.8e-15, weights 2.8e-14 (tested at the asked
  1e-8 and 1e-6); float32 sums: correlations 7.7e-7, weights 8.6e-6
  (tested at 1e-5 and 1e-4).
* solver="gradient", float64 sums (float64 or float32 X): the same epochs
  as numpy with the same random_state; correlations 1.0e-15, weights
  6.8e-14, transform 2.0e-14 (tested at 1e-6). float32 sums: the same
  epochs, correlations usually 1e-7 but up to 7.3e-5, weights up to 8e-2 (a
  run can drift to another approximate optimum; see test_gradient_float32).
"""

import pickle
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import get_tags

from skcrossmodal import SharedProjection, _array_api, _gradient, _namespace
from skcrossmodal._array_api import (
    ArrayAPIAccumulator,
    accumulation_dtype,
    fit_xp,
    get_array_namespace,
    score_xp,
    solve_accumulated,
    transform_xp,
)

xp_strict = pytest.importorskip("array_api_strict")


def _torch():
    return pytest.importorskip("torch")


NAMESPACES = ["array_api_strict", "torch"]


def to_xp(name, X):
    if name == "array_api_strict":
        return xp_strict.asarray(X)
    torch = _torch()
    return torch.asarray(X, device="cpu")


def to_numpy(array):
    if hasattr(array, "cpu"):
        array = array.cpu()
    if type(array).__module__.startswith("array_api_strict"):
        array = array.to_device(xp_strict.Device("CPU_DEVICE"))
    return np.asarray(array)


def namespace_name(array):
    return type(array).__module__.split(".")[0]


def make_data(n_samples=400, widths=(5, 4), seed=0, offset=0.0):
    """Modalities sharing a latent with well-separated strengths."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_samples, 3)) * np.array([3.0, 1.5, 0.7])
    blocks = [
        latent @ rng.normal(size=(3, w)) + rng.normal(size=(n_samples, w))
        for w in widths
    ]
    # Different units per modality exercise the equilibration.
    blocks = [block * 10.0**i for i, block in enumerate(blocks)]
    return np.hstack(blocks) + offset


def interleaved(widths):
    """Modalities whose columns are interleaved, not contiguous."""
    total = sum(widths)
    order = np.random.default_rng(1).permutation(total)
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


def ridges_of(reg, names):
    if isinstance(reg, dict):
        return [reg[name] for name in names]
    return [reg] * len(names)


def close(actual, expected, rtol):
    """rtol relative to each array's largest entry (weights have near-zeros)."""
    actual = to_numpy(actual)
    assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


CASES = [
    # widths, reg, scale, layout
    ((5, 4), 0.0, False, contiguous),
    ((5, 4), 0.1, True, interleaved),
    ((5, 4), {"m0": 0.5, "m1": 0.0}, False, interleaved),
    ((4, 3, 5), 0.2, False, contiguous),
    ((4, 3, 5), {"m0": 0.0, "m1": 1.0, "m2": 0.3}, True, interleaved),
]


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("widths, reg, scale, layout", CASES)
def test_fit_and_transform_equal_numpy_float64(namespace, widths, reg, scale, layout):
    X = make_data(widths=widths)
    k = 2
    reference = SharedProjection(k, modalities=layout(widths), reg=reg, scale=scale)
    reference.fit(X)
    modalities = reference.modalities_
    Xx = to_xp(namespace, X)

    result = fit_xp(
        Xx, modalities, ridges_of(reg, list(modalities)), n_components=k, scale=scale
    )

    close(result.correlations, reference.canonical_correlations_, 1e-6)
    for name in modalities:
        close(result.weights[name], reference.weights_[name], 1e-6)
        close(result.means[name], reference.means_[name], 1e-6)
        if scale:
            close(result.scale[name], reference.scale_[name], 1e-6)
        else:
            assert result.scale[name] is None
    for output in ["mean", "concat", *modalities]:
        Z = transform_xp(Xx, modalities, result.means, result.weights, output)
        assert namespace_name(Z) == namespace_name(Xx)
        assert Z.dtype == Xx.dtype
        close(Z, reference.set_params(output=output).transform(X), 1e-6)
    assert score_xp(Xx, modalities, result.means, result.weights) == pytest.approx(
        reference.score(X), rel=1e-9
    )
    assert result.n_samples == X.shape[0]


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_outputs_live_in_the_input_namespace(namespace):
    X = make_data()
    modalities = {"a": np.arange(5), "b": np.arange(5, 9)}
    Xx = to_xp(namespace, X.astype(np.float32))
    result = fit_xp(Xx, modalities, [0.1, 0.1], n_components=2)
    arrays = [result.correlations, *result.means.values(), *result.weights.values()]
    for array in arrays:
        assert namespace_name(array) == namespace_name(Xx)
        assert array.device == Xx.device
        # Fitted quantities keep the accumulation dtype (float64 on CPU), as
        # the numpy path keeps float64 attributes for float32 X.
        assert str(array.dtype).endswith("float64")
    Z = transform_xp(Xx, modalities, result.means, result.weights)
    assert namespace_name(Z) == namespace_name(Xx)
    assert Z.device == Xx.device
    assert str(Z.dtype).endswith("float32")
    assert Z.shape == (X.shape[0], 2)


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("widths", [(5, 4), (4, 3, 5)])
def test_float32_input_matches_numpy(namespace, widths):
    X = make_data(widths=widths).astype(np.float32)
    modalities = interleaved(widths)
    reference = SharedProjection(2, modalities=modalities, reg=0.1).fit(X)
    Xx = to_xp(namespace, X)
    result = fit_xp(Xx, reference.modalities_, [0.1] * len(widths), n_components=2)
    # Accumulated in float64 on the CPU, from the same float32 values.
    close(result.correlations, reference.canonical_correlations_, 1e-6)
    for name in reference.modalities_:
        close(result.weights[name], reference.weights_[name], 1e-6)
    for output in ["mean", "concat"]:
        Z = transform_xp(
            Xx, reference.modalities_, result.means, result.weights, output
        )
        assert str(Z.dtype).endswith("float32")
        close(Z, reference.set_params(output=output).transform(X), 1e-6)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_float32_accumulation_tolerance(namespace, monkeypatch):
    """A device without float64 (torch MPS) computes everything in float32."""
    X = make_data(n_samples=2000, widths=(6, 5)).astype(np.float32)
    modalities = {"a": np.arange(6), "b": np.arange(6, 11)}
    reference = SharedProjection(2, modalities=modalities, reg=0.1).fit(X)
    monkeypatch.setattr(_array_api, "accumulation_dtype", lambda xp, device: xp.float32)
    Xx = to_xp(namespace, X)
    result = fit_xp(Xx, reference.modalities_, [0.1, 0.1], n_components=2)
    assert str(result.correlations.dtype).endswith("float32")
    close(result.correlations, reference.canonical_correlations_, 1e-5)
    for name in modalities:
        close(result.weights[name], reference.weights_[name], 1e-4)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_generalised_eigenproblem_by_hand(namespace):
    """The solution against scipy's eigh(C_reg, D) on a hand-made covariance."""
    widths, reg = (4, 3, 5), 0.3
    X = make_data(widths=widths, seed=3)
    modalities = {"a": np.arange(4), "b": np.arange(4, 7), "c": np.arange(7, 12)}
    result = fit_xp(to_xp(namespace, X), modalities, [reg] * 3, n_components=2)

    centred = X - X.mean(axis=0)
    covariance = centred.T @ centred / X.shape[0]
    regularised = covariance + reg * np.eye(12)
    diagonal = np.zeros_like(regularised)
    for indices in modalities.values():
        diagonal[np.ix_(indices, indices)] = regularised[np.ix_(indices, indices)]
    values, vectors = scipy.linalg.eigh(regularised, diagonal)
    values, vectors = values[::-1][:2], vectors[:, ::-1][:, :2] * np.sqrt(3)
    # Signs: the largest entry of the first modality's block is positive in
    # the equilibrated problem (each feature scaled to unit regularised
    # variance), as _solvers.solve does.
    first = vectors[:4] * np.sqrt(np.diag(regularised))[:4, None]
    vectors *= np.sign(first[np.argmax(np.abs(first), axis=0), [0, 1]])

    close(result.correlations, (values - 1) / 2, 1e-9)
    stacked = np.vstack([to_numpy(result.weights[name]) for name in modalities])
    close(stacked, vectors, 1e-8)
    # The constraint W^T D W = M I of the stacked weights.
    assert_allclose(stacked.T @ diagonal @ stacked, 3 * np.eye(2), atol=1e-10)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_large_means_and_many_chunks(namespace, monkeypatch):
    """The shift keeps the digits a mean of 1e6 would cost; chunks add up."""
    X = make_data(n_samples=3000, offset=1e6)
    modalities = {"a": np.arange(5), "b": np.arange(5, 9)}
    reference = SharedProjection(2, modalities=modalities, reg=0.01).fit(X)
    # 256-row chunks (the floor): 12 chunks, the last one partial.
    monkeypatch.setattr(_array_api, "_CHUNK_BYTES", 1)
    result = fit_xp(to_xp(namespace, X), modalities, [0.01, 0.01], n_components=2)
    close(result.correlations, reference.canonical_correlations_, 1e-6)
    for name in modalities:
        close(result.weights[name], reference.weights_[name], 1e-6)
        close(result.means[name], reference.means_[name], 1e-12)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_transform_accepts_numpy_weights(namespace):
    X = make_data()
    modalities = {"a": np.arange(5), "b": np.arange(5, 9)}
    reference = SharedProjection(2, modalities=modalities).fit(X)
    Z = transform_xp(
        to_xp(namespace, X), reference.modalities_, reference.means_, reference.weights_
    )
    assert namespace_name(Z) == namespace
    close(Z, reference.transform(X), 1e-10)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_missing_modality_fit_is_a_clear_error_and_transform_handles_it(namespace):
    """The array API sums take complete rows only (a clear error); the one
    projection routine handles a missing modality in any namespace, giving
    numpy's answer."""
    X = make_data()
    X[3, 5:] = np.nan
    modalities = {"a": np.arange(5), "b": np.arange(5, 9)}
    Xx = to_xp(namespace, X)
    with pytest.raises(ValueError, match="Missing modalities .* not supported yet"):
        fit_xp(Xx, modalities, [0.1, 0.1], n_components=2)
    fitted = fit_xp(
        to_xp(namespace, make_data()), modalities, [0.1, 0.1], n_components=2
    )
    means = {name: to_numpy(value) for name, value in fitted.means.items()}
    weights = {name: to_numpy(value) for name, value in fitted.weights.items()}
    for output in ("mean", "concat", "a", "b"):
        expected = transform_xp(X, modalities, means, weights, output)
        got = transform_xp(Xx, modalities, fitted.means, fitted.weights, output)
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-12, atol=1e-12)


# numpy, under array_api_strict, warns about inf - inf before the check.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("namespace", NAMESPACES)
def test_infinity_is_rejected(namespace):
    X = make_data()
    X[7, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        fit_xp(
            to_xp(namespace, X),
            {"a": np.arange(5), "b": np.arange(5, 9)},
            [0.0, 0.0],
            n_components=2,
        )


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_auto_reg_is_a_clear_error(namespace):
    with pytest.raises(ValueError, match="reg='auto'.*numpy"):
        fit_xp(
            to_xp(namespace, make_data()),
            {"a": np.arange(5), "b": np.arange(5, 9)},
            ["auto", 0.0],
            n_components=2,
        )


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_singular_block_without_ridge_is_a_clear_error(namespace):
    X = make_data()
    X[:, 1] = X[:, 0]  # modality "a" is rank deficient
    modalities = {"a": np.arange(5), "b": np.arange(5, 9)}
    with pytest.raises(ValueError, match="'a'.*not positive definite.*reg > 0"):
        fit_xp(to_xp(namespace, X), modalities, [0.0, 0.0], n_components=2)
    # A ridge makes it positive definite, and the answer is numpy's again.
    reference = SharedProjection(2, modalities=modalities, reg=0.5).fit(X)
    result = fit_xp(to_xp(namespace, X), modalities, [0.5, 0.5], n_components=2)
    close(result.correlations, reference.canonical_correlations_, 1e-6)


def test_get_array_namespace():
    X = make_data()
    assert get_array_namespace(X) is None
    assert get_array_namespace([[1.0, 2.0]]) is None
    assert get_array_namespace(scipy.sparse.csr_matrix(X)) is None
    assert get_array_namespace(xp_strict.asarray(X)) is xp_strict
    torch = _torch()
    assert "torch" in get_array_namespace(torch.asarray(X)).__name__


def test_accumulation_dtype_on_cpu():
    assert accumulation_dtype(xp_strict, None) == xp_strict.float64
    torch = _torch()
    xp = get_array_namespace(torch.zeros((2, 2)))
    assert accumulation_dtype(xp, torch.device("cpu")) == torch.float64


# -- estimators under array_api_dispatch ------------------------------------


@pytest.fixture
def dispatch(monkeypatch):
    """sklearn's array_api_dispatch, in this process.

    scikit-learn refuses to dispatch unless SCIPY_ARRAY_API=1, which scipy
    reads when first imported, long before these tests. Nothing here calls
    scipy on array API arrays (array_api_strict's "device1" below refuses
    any conversion to numpy), so the variable is set for scikit-learn's
    check only. test_array_api_dispatch.py and
    test_sklearn_array_api_checks_of_the_gradient_solver run in a fresh
    interpreter where it is set before the import.
    """
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    with sklearn.config_context(array_api_dispatch=True):
        yield


def to_device(name, X):
    """array_api_strict on its non-default device "device1", which refuses
    any conversion to numpy as a GPU array would; torch on the CPU."""
    if name == "array_api_strict":
        return xp_strict.asarray(X, device=xp_strict.Device("device1"))
    return to_xp(name, X)


def assert_in_namespace_of(model, Xx):
    arrays = [
        model.canonical_correlations_,
        *model.weights_.values(),
        *model.means_.values(),
    ]
    for array in arrays:
        assert namespace_name(array) == namespace_name(Xx)
        assert array.device == Xx.device


def brute_force_moments(X, modalities):
    """Means and 1/n covariance of the stacked modalities, two-pass."""
    columns = np.concatenate([np.asarray(c) for c in modalities.values()])
    stacked = X[:, columns]
    mean = stacked.mean(axis=0)
    centred = stacked - mean
    return mean, centred.T @ centred / X.shape[0]


# Batch boundaries: a 2-row first batch (the shift), a 1-row batch, uneven.
BOUNDARIES = [2, 3, 700, 1500]


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_accumulator_batches_equal_brute_force_and_one_pass(namespace, monkeypatch):
    widths = (5, 4, 3)
    X = make_data(n_samples=3000, widths=widths, offset=1e4)
    modalities = interleaved(widths)
    # 256-row chunks inside the batches too.
    monkeypatch.setattr(_array_api, "_CHUNK_BYTES", 1)
    accumulator = ArrayAPIAccumulator(modalities)
    for batch in np.split(X, BOUNDARIES):
        accumulator.update(to_xp(namespace, batch))
    assert accumulator.n_samples_seen == 3000
    columns = np.concatenate(list(modalities.values()))
    # The shift is the first batch's mean, as CovarianceAccumulator's.
    close(accumulator.shift, X[:2, columns].mean(axis=0), 1e-12)
    moments = accumulator.finalize()
    mean, covariance = brute_force_moments(X, modalities)
    close(moments.mean, mean, 1e-12)
    for block_m in accumulator.blocks:
        for block_l in accumulator.blocks:
            close(
                to_numpy(moments.covariance)[block_m, block_l],
                covariance[block_m, block_l],
                1e-10,
            )

    streamed = solve_accumulated(accumulator, [0.1] * 3, n_components=2, scale=True)
    whole = fit_xp(
        to_xp(namespace, X), modalities, [0.1] * 3, n_components=2, scale=True
    )
    close(streamed.correlations, to_numpy(whole.correlations), 1e-8)
    for name in modalities:
        close(streamed.weights[name], to_numpy(whole.weights[name]), 1e-8)
        close(streamed.means[name], to_numpy(whole.means[name]), 1e-12)


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("widths, reg, scale, layout", CASES[1:4])
def test_partial_fit_equals_fit_and_numpy_partial_fit(
    namespace, widths, reg, scale, layout, dispatch
):
    X = make_data(n_samples=2000, widths=widths, offset=100.0)
    model = SharedProjection(2, modalities=layout(widths), reg=reg, scale=scale)
    # reg=0 needs more rows than features in the first batch (a Cholesky).
    batches = np.split(X, [300, 301, 1200])
    on_device = [to_device(namespace, batch) for batch in batches]
    streamed = clone(model)
    for batch in on_device:
        streamed.partial_fit(batch)
    for batch, original in zip(on_device, batches):
        assert_array_equal(to_numpy(batch), original)  # not modified
    assert_in_namespace_of(streamed, on_device[0])
    assert streamed.n_samples_seen_ == 2000 and streamed.n_iter_ == 1

    whole = clone(model).fit(to_device(namespace, X))
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
    Xx = to_device(namespace, X)
    close(streamed.transform(Xx), numpy_streamed.transform(X), 1e-6)
    assert streamed.score(Xx) == pytest.approx(numpy_streamed.score(X), rel=1e-9)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_partial_fit_float32_accumulation_tolerance(namespace, dispatch, monkeypatch):
    """A device without float64 (torch MPS) keeps float32 sums."""
    X = make_data(n_samples=2000, widths=(6, 5)).astype(np.float32)
    modalities = {"a": np.arange(6), "b": np.arange(6, 11)}
    reference = SharedProjection(2, modalities=modalities, reg=0.1)
    for batch in np.split(X, BOUNDARIES[1:]):
        reference.partial_fit(batch)
    monkeypatch.setattr(_array_api, "accumulation_dtype", lambda xp, device: xp.float32)
    model = SharedProjection(2, modalities=modalities, reg=0.1)
    for batch in np.split(X, BOUNDARIES[1:]):
        model.partial_fit(to_device(namespace, batch))
    assert str(model.canonical_correlations_.dtype).endswith("float32")
    close(model.canonical_correlations_, reference.canonical_correlations_, 1e-5)
    for name in modalities:
        close(model.weights_[name], reference.weights_[name], 1e-4)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_partial_fit_and_pickle_continue_the_stream(namespace, dispatch):
    X = make_data(n_samples=1200)
    modalities = {"a": slice(0, 5), "b": slice(5, 9)}
    model = SharedProjection(2, modalities=modalities, reg=0.1)
    model.partial_fit(to_device(namespace, X[:500]))
    model.partial_fit(to_device(namespace, X[500:900]))
    restored = pickle.loads(pickle.dumps(model))
    restored.partial_fit(to_device(namespace, X[900:]))
    expected = SharedProjection(2, modalities=modalities, reg=0.1).fit(X)
    close(restored.canonical_correlations_, expected.canonical_correlations_, 1e-8)
    assert restored.n_samples_seen_ == 1200
    assert_in_namespace_of(restored, to_device(namespace, X))
    # A new fit starts a new stream, and keeps no sums.
    model.fit(to_device(namespace, X[:300]))
    assert model.n_samples_seen_ == 300
    assert not hasattr(model, "_accumulator")


def test_partial_fit_rejects_a_batch_from_another_namespace_or_device(dispatch):
    X = make_data()
    modalities = {"a": slice(0, 5), "b": slice(5, 9)}
    on_device1 = SharedProjection(2, modalities=modalities, reg=0.1)
    on_device1.partial_fit(to_device("array_api_strict", X[:200]))
    expected = clone(on_device1).fit(X[:200]).canonical_correlations_
    match = "partial_fit got X .* earlier batches were array_api_strict arrays"
    others = [X[200:], xp_strict.asarray(X[200:])]  # numpy; the default device
    try:
        import torch
    except ImportError:  # a test-only extra
        torch = None
    if torch is not None:
        others.append(torch.asarray(X[200:]))
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
        on_device1.partial_fit(xp_strict.asarray(X[200:]))

    numpy_first = SharedProjection(2, modalities=modalities, reg=0.1)
    numpy_first.partial_fit(X[:200])
    with pytest.raises(ValueError, match="partial_fit got an array API batch"):
        numpy_first.partial_fit(to_device("array_api_strict", X[200:]))
    assert numpy_first.n_samples_seen_ == 200


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_partial_fit_bad_batches(namespace, dispatch):
    X = make_data(n_samples=600)
    modalities = {"a": slice(0, 5), "b": slice(5, 9)}
    model = SharedProjection(2, modalities=modalities, reg=0.1)
    model.partial_fit(to_device(namespace, X[:300]))
    bad = X[300:].copy()
    bad[10, 5:] = np.nan  # a missing modality
    with pytest.raises(ValueError, match="Missing modalities .* not supported yet"):
        model.partial_fit(to_device(namespace, bad))
    bad[10, 5:] = X[310, 5:]
    bad[20, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        model.partial_fit(to_device(namespace, bad))
    # A refused batch adds nothing: the stream goes on as if never sent.
    model.partial_fit(to_device(namespace, X[300:]))
    expected = SharedProjection(2, modalities=modalities, reg=0.1).fit(X)
    close(model.canonical_correlations_, expected.canonical_correlations_, 1e-8)

    auto = SharedProjection(2, modalities=modalities, reg={"a": "auto", "b": 0.1})
    with pytest.raises(ValueError, match="numeric reg.*reg='auto'"):
        auto.partial_fit(to_device(namespace, X))
    assert not hasattr(auto, "canonical_correlations_")
    with pytest.raises(ValueError, match="X has 8 features"):
        model.partial_fit(to_device(namespace, X[:, :8]))


def test_partial_fit_memory_does_not_grow_with_rows(dispatch):
    """O(D^2 + batch): array_api_strict arrays are numpy underneath, so
    tracemalloc sees them."""

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
            model.partial_fit(xp_strict.asarray(batch))
            del a, batch
        _, result = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return result

    short, long = peak(2), peak(20)
    assert long < 1.25 * short
    assert long < 10 * 2000 * 80 * 8


# -- solver="gradient" ---------------------------------------------------------


def make_views(n_samples=3000, widths=(8, 6), seed=0):
    """Modalities sharing 3 signals (correlations about 0.95, 0.8, 0.4)."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_samples, 3)) * np.array([2.0, 1.25, 0.5])
    return np.hstack(
        [
            latent @ rng.normal(size=(3, w)) + rng.normal(size=(n_samples, w)) + 3.0
            for w in widths
        ]
    )


GRADIENT_CASES = [
    # widths, layout, scale, early_stopping, whiten_max (0: Jacobi)
    ((8, 6), contiguous, False, False, 2048),
    ((6, 5), interleaved, True, False, 2048),
    ((5, 6, 7), contiguous, True, True, 0),
]


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize(
    "widths, layout, scale, early_stopping, whiten_max", GRADIENT_CASES
)
def test_gradient_equals_numpy_path(
    namespace, widths, layout, scale, early_stopping, whiten_max, dispatch, monkeypatch
):
    """Same random_state: the same start, batches and steps as numpy.

    The initial weights and row orders are numpy draws in both; the
    whiteners' eigenvectors have a fixed sign (_gradient._eigenvector_signs),
    so the coordinates Adam works in agree too. What remains is rounding
    (another BLAS), measured at 1e-15 relative on the correlations and
    weights: the runs take the same epochs and stop at the same one.
    """
    monkeypatch.setattr(_gradient, "_WHITEN_MAX", whiten_max)
    X = make_views(widths=widths)
    model = SharedProjection(
        3,
        modalities=layout(widths),
        reg=0.1,
        scale=scale,
        solver="gradient",
        early_stopping=early_stopping,
        random_state=0,
    )
    with sklearn.config_context(array_api_dispatch=False):
        reference = clone(model).fit(X)
    Xx = to_device(namespace, X)
    fitted = clone(model).fit(Xx)
    assert_array_equal(to_numpy(Xx), X)  # not modified
    assert_in_namespace_of(fitted, Xx)
    assert str(fitted.canonical_correlations_.dtype).endswith("float64")

    assert fitted.n_iter_ == reference.n_iter_
    assert_allclose(fitted.loss_curve_, reference.loss_curve_, rtol=1e-6)
    if early_stopping:
        assert_allclose(
            fitted.validation_scores_, reference.validation_scores_, rtol=1e-6
        )
    else:
        assert fitted.validation_scores_ is None
    assert fitted.n_samples_seen_ == reference.n_samples_seen_
    close(fitted.canonical_correlations_, reference.canonical_correlations_, 1e-6)
    for name in reference.modalities_:
        close(fitted.weights_[name], reference.weights_[name], 1e-6)
        close(fitted.means_[name], reference.means_[name], 1e-12)
        if scale:
            close(fitted.scale_[name], reference.scale_[name], 1e-12)
    for output in ["mean", "concat"]:
        Z = fitted.set_params(output=output).transform(Xx)
        assert namespace_name(Z) == namespace_name(Xx) and Z.device == Xx.device
        close(Z, reference.set_params(output=output).transform(X), 1e-6)
    assert fitted.score(Xx) == pytest.approx(reference.score(X), rel=1e-6)
    # And both found what the closed form finds.
    closed = SharedProjection(3, modalities=layout(widths), reg=0.1, scale=scale).fit(X)
    assert abs(
        float(to_numpy(fitted.canonical_correlations_).sum())
        - closed.canonical_correlations_.sum()
    ) < (2e-3 if early_stopping else 1e-3)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_gradient_float32(namespace, dispatch, monkeypatch):
    X = make_views(widths=(8, 6)).astype(np.float32)
    modalities = {"a": slice(0, 8), "b": slice(8, 14)}
    model = SharedProjection(
        3, modalities=modalities, reg=0.1, solver="gradient", random_state=0
    )
    with sklearn.config_context(array_api_dispatch=False):
        reference = clone(model).fit(X)
    closed = SharedProjection(3, modalities=modalities, reg=0.1).fit(X)

    # float64 sums on the CPU, from the same float32 values the numpy path
    # casts: the same computation.
    fitted = clone(model).fit(to_device(namespace, X))
    close(fitted.canonical_correlations_, reference.canonical_correlations_, 1e-6)
    for name in modalities:
        close(fitted.weights_[name], reference.weights_[name], 1e-6)
    Z = fitted.transform(to_device(namespace, X))
    assert str(Z.dtype).endswith("float32")
    close(Z, reference.transform(X), 1e-5)

    # float32 everything, as on a device without float64 (torch MPS). Each
    # step's rounding (1e-7) is no longer negligible next to the solver's
    # own accuracy, so a run can drift to another approximate optimum of
    # the same quality: usually the correlations agree to 1e-7, but on this
    # data torch's differ by 7e-5 (the weights by about 1%, the solver's own
    # accuracy). Tested: each correlation within 5e-4 of the numpy path's,
    # and the sum within 1e-3 of the numpy path's and the closed form's.
    monkeypatch.setattr(_array_api, "accumulation_dtype", lambda xp, device: xp.float32)
    monkeypatch.setattr(_namespace, "accumulation_dtype", lambda xp, device: xp.float32)
    fitted = clone(model).fit(to_device(namespace, X))
    assert str(fitted.canonical_correlations_.dtype).endswith("float32")
    correlations = to_numpy(fitted.canonical_correlations_).astype(np.float64)
    assert_allclose(correlations, reference.canonical_correlations_, atol=5e-4)
    for expected in [reference, closed]:
        assert abs(correlations.sum() - expected.canonical_correlations_.sum()) < 1e-3
    Z = fitted.transform(to_device(namespace, X))
    assert str(Z.dtype).endswith("float32") and Z.shape == (X.shape[0], 3)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_gradient_bad_input(namespace, dispatch):
    X = make_views(n_samples=400)
    modalities = {"a": slice(0, 8), "b": slice(8, 14)}
    model = SharedProjection(2, modalities=modalities, solver="gradient", max_iter=2)
    missing = X.copy()
    missing[3, 8:] = np.nan
    with pytest.raises(ValueError, match="Missing modalities .* not supported yet"):
        model.fit(to_device(namespace, missing))
    infinite = X.copy()
    infinite[5, 2] = -np.inf
    with pytest.raises(ValueError, match="infinity"):
        model.fit(to_device(namespace, infinite))
    with pytest.raises(ValueError, match="reg='auto'.*solver='gradient'"):
        clone(model).set_params(reg="auto").fit(to_device(namespace, X))
    with pytest.raises(AttributeError, match="partial_fit"):
        model.partial_fit(to_device(namespace, X))


def test_gradient_never_forms_a_features_by_features_matrix(dispatch, monkeypatch):
    """Two modalities of 2 500 features (wider than _WHITEN_MAX: Jacobi):
    a D x D float64 matrix would be 200 MB. array_api_strict arrays are
    numpy underneath, so tracemalloc sees them."""
    monkeypatch.setattr(_gradient, "_WHITEN_MAX", 2048)
    rng = np.random.default_rng(0)
    n, width = 300, 2500
    latent = rng.normal(size=(n, 1))
    X = np.hstack(
        [latent + rng.normal(size=(n, width)), latent + rng.normal(size=(n, width))]
    )
    Xx = xp_strict.asarray(X)
    model = SharedProjection(
        2,
        modalities={"a": slice(0, width), "b": slice(width, 2 * width)},
        reg=1.0,
        solver="gradient",
        max_iter=2,
        random_state=0,
    )
    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(Xx)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert model.weights_["a"].shape == (width, 2)
    # O(D q + n D): a few copies of X (batches, validation) and D x q buffers.
    assert peak < 4 * X.nbytes + 40 * 2 * width * 4 * 8
    assert peak < (2 * width) ** 2 * 8 / 4


def test_array_api_support_tags():
    modalities = {"a": slice(0, 2), "b": slice(2, 4)}
    for solver in ["auto", "svd", "eigh", "gradient"]:
        model = SharedProjection(modalities=modalities, solver=solver, reg=0.1)
        assert get_tags(model).array_api_support
    for reg in ["auto", {"a": "auto", "b": 0.1}]:
        model = SharedProjection(modalities=modalities, reg=reg)
        assert not get_tags(model).array_api_support


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_partial_fit_singular_first_batch_keeps_its_rows(namespace, dispatch):
    """reg=0 and fewer rows than features: the Cholesky reduction refuses,
    the rows are kept, and the next batch makes the stream solvable."""
    X = make_data(n_samples=600)
    modalities = {"a": slice(0, 5), "b": slice(5, 9)}
    model = SharedProjection(2, modalities=modalities)
    with pytest.raises(ValueError, match="not positive definite.*rows were added"):
        model.partial_fit(to_device(namespace, X[:3]))
    model.partial_fit(to_device(namespace, X[3:]))
    expected = SharedProjection(2, modalities=modalities).fit(X)
    close(model.canonical_correlations_, expected.canonical_correlations_, 1e-8)
