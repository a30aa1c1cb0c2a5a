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
"""

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
from numpy.testing import assert_allclose

from skcrossmodal import SharedProjection, _array_api
from skcrossmodal._array_api import (
    accumulation_dtype,
    fit_xp,
    get_array_namespace,
    score_xp,
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
def test_missing_modality_is_a_clear_error(namespace):
    X = make_data()
    X[3, 5:] = np.nan
    modalities = {"a": np.arange(5), "b": np.arange(5, 9)}
    Xx = to_xp(namespace, X)
    with pytest.raises(ValueError, match="Missing modalities .* not supported yet"):
        fit_xp(Xx, modalities, [0.1, 0.1], n_components=2)
    fitted = fit_xp(
        to_xp(namespace, make_data()), modalities, [0.1, 0.1], n_components=2
    )
    with pytest.raises(ValueError, match="Missing modalities .* not supported yet"):
        transform_xp(Xx, modalities, fitted.means, fitted.weights)


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
