"""WeightedFusion and ConcatFusion on array API inputs (retrieval's are in
test_retrieval.py, parametrised over namespaces).

Under ``sklearn.set_config(array_api_dispatch=True)`` these compute in the
namespace and on the device of their input. Here on the CPU:
array_api_strict on its non-default device ``"device1"`` (which refuses any
conversion to numpy, as a GPU array would) and torch CPU (skipped when torch
is not installed; it is a test-only extra). Every result is compared with
the numpy path on the same data, and with a small computation by hand.

scikit-learn refuses to dispatch unless ``SCIPY_ARRAY_API=1``; scipy reads it
when first imported, which happened long before these tests in a pytest
session. The paths tested here call no scipy function on array API arrays
(array_api_strict's "device1" would raise if anything went through numpy),
so the variable is set for scikit-learn's check only (the
``scipy_array_api_flag`` fixture). ``test_array_api_dispatch.py`` runs
scikit-learn's own array API checks of these estimators in a fresh
interpreter where it is set before the import.

Tolerances. float64: the asked rtol 1e-6, relative to each array's largest
entry (the measured worst case is 4.2e-14). float32, measured on the data
of these tests over both namespaces and 20 seeds (largest error relative to
the array's largest entry; the numpy path computes in float32 too, so this
is how much two float32 computations disagree):

* WeightedFusion, ``align=None``: 0 (the same float32 products and sums);
  ``align="shared"``: 1.0e-7 (the projection is fitted in float64 on both
  paths); ``align="pca"``: 5.0e-6 (two float32 SVDs or eigendecompositions);
* ConcatFusion (every scaling, with or without centring): 0 (statistics in
  float64 on both paths, the same float64 affine map, one rounding).

They are tested at ``FLOAT32_RTOL`` below: about 4 times the measured worst
case, and never below 1e-6.
"""

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.utils import get_tags

from skcrossmodal import (
    ConcatFusion,
    SharedProjection,
    WeightedFusion,
    _fusion_utils,
)

xp_strict = pytest.importorskip("array_api_strict")

NAMESPACES = ["array_api_strict", "torch"]
FLOAT64_RTOL = 1e-6
FLOAT32_RTOL = {
    "none": 1e-6,
    "shared": 1e-6,
    "pca": 2e-5,
    "concat": 1e-6,
}
ABC = {"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7, 8]}
# Interleaved, unequal widths: columns are gathered, not sliced.
INTERLEAVED = {"x": [0, 3, 5, 8], "y": [1, 4, 7], "z": [2, 6, 9]}


@pytest.fixture(autouse=True)
def scipy_array_api_flag(monkeypatch):
    """What scikit-learn checks before it dispatches (see the module docstring)."""
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


def to_xp(namespace, array):
    if namespace == "array_api_strict":
        return xp_strict.asarray(array, device=xp_strict.Device("device1"))
    torch = pytest.importorskip("torch")
    return torch.asarray(array, device="cpu")


def to_numpy(array):
    if hasattr(array, "cpu"):
        return array.cpu().numpy()
    if type(array).__module__.startswith("array_api_strict"):
        return np.asarray(array.to_device(xp_strict.Device("CPU_DEVICE")))
    return np.asarray(array)


def namespace_of(array):
    return type(array).__module__.split(".")[0]


def check_output(result, X_xp, namespace):
    """Same namespace, device and dtype as the input."""
    assert namespace_of(result) == namespace
    assert result.device == X_xp.device
    assert result.dtype == X_xp.dtype


def close(actual, expected, rtol):
    """rtol relative to the largest entry of ``expected``."""
    actual = to_numpy(actual)
    assert actual.shape == expected.shape
    assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


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


# -- WeightedFusion --------------------------------------------------------------

WEIGHTED_CASES = {
    "none": WeightedFusion({"a": 1, "b": 2, "c": 5}, modalities=ABC),
    "pca": WeightedFusion(
        {"a": 1, "b": 2, "c": 5}, modalities=ABC, align="pca", n_components=2
    ),
    "pca-interleaved": WeightedFusion(
        modalities=INTERLEAVED, align="pca", n_components=2
    ),
    "shared": WeightedFusion(
        {"a": 3, "b": 1, "c": 1}, modalities=ABC, align="shared", n_components=2
    ),
    "shared-reg": WeightedFusion(
        modalities=INTERLEAVED,
        align="shared",
        n_components=2,
        reg={"x": 0.1, "y": 0.0, "z": 1.0},
    ),
}


def weighted_data(case, dtype="float64", seed=0):
    """(X to fit, X to transform); align="shared" fits on complete rows."""
    modalities = WEIGHTED_CASES[case].modalities
    widths = [len(cols) for cols in modalities.values()]
    X = make_data(widths=widths, seed=seed, missing=modalities).astype(dtype)
    if case.startswith("shared"):
        return X[20:], X
    return X, X


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("case", list(WEIGHTED_CASES))
def test_weighted_fusion_equals_numpy_float64(namespace, case):
    estimator = WEIGHTED_CASES[case]
    X_fit, X_new = weighted_data(case)
    expected = clone(estimator).fit(X_fit).transform(X_new)
    X_fit_xp, X_new_xp = to_xp(namespace, X_fit), to_xp(namespace, X_new)
    fitted, result = run(estimator, X_fit_xp, X_new_xp)
    check_output(result, X_new_xp, namespace)
    close(result, expected, FLOAT64_RTOL)
    # The inputs are left as they were.
    assert_array_equal(to_numpy(X_fit_xp), X_fit)
    assert_array_equal(to_numpy(X_new_xp), X_new)
    assert fitted.weights_ == clone(estimator).fit(X_fit).weights_


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("case", list(WEIGHTED_CASES))
def test_weighted_fusion_float32(namespace, case):
    estimator = WEIGHTED_CASES[case]
    X_fit, X_new = weighted_data(case, "float32")
    expected = clone(estimator).fit(X_fit).transform(X_new)
    assert expected.dtype == np.float32
    X_new_xp = to_xp(namespace, X_new)
    _, result = run(estimator, to_xp(namespace, X_fit), X_new_xp)
    check_output(result, X_new_xp, namespace)
    close(result, expected, FLOAT32_RTOL[case.split("-")[0]])


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_weighted_sum_by_hand(namespace):
    """A loop over rows and modalities, renormalising over those present."""
    X = make_data()
    weights = {"a": 1.0, "b": 2.0, "c": 5.0}
    expected = np.zeros((X.shape[0], 3))
    for i, row in enumerate(X):
        total = 0.0
        for name, cols in ABC.items():
            if not np.isnan(row[cols]).all():
                expected[i] += weights[name] * row[cols]
                total += weights[name]
        expected[i] /= total
    _, result = run(WeightedFusion(weights, modalities=ABC), to_xp(namespace, X), None)
    close(result, expected, 1e-12)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_weighted_fusion_pca_by_hand(namespace):
    """Each modality's PCA (on the rows that carry it) by numpy's SVD."""
    X = make_data(missing=False)
    mods = {"a": [0, 1, 2], "bc": [3, 4, 5, 6, 7, 8]}
    X[3:9, 3:] = np.nan  # "bc" missing in 6 rows
    X[12:15, :3] = np.nan  # "a" in 3 others
    fitted, result = run(
        WeightedFusion({"a": 1, "bc": 3}, modalities=mods, align="pca"),
        to_xp(namespace, X),
        None,
    )
    projections, present = [], []
    for cols in mods.values():
        block = X[:, cols]
        rows = ~np.isnan(block).any(axis=1)
        mean = block[rows].mean(axis=0)
        _, _, vt = np.linalg.svd(block[rows] - mean, full_matrices=False)
        vt = vt[:3]
        # scikit-learn's convention: the largest entry of each component > 0.
        largest = vt[np.arange(3), np.argmax(np.abs(vt), axis=1)]
        vt = vt * np.sign(largest)[:, None]
        projections.append(np.where(rows[:, None], (block - mean) @ vt.T, 0.0))
        present.append(rows)
    weights = np.array([1.0, 3.0]) * np.column_stack(present)
    expected = (weights[:, :1] * projections[0] + weights[:, 1:] * projections[1]) / (
        weights.sum(axis=1, keepdims=True)
    )
    close(result, expected, 1e-10)
    assert namespace_of(fitted.aligners_["a"].components_) == namespace


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_weighted_fusion_shared_matches_shared_projection(namespace):
    """weights=None: SharedProjection(output="mean"), also with missing rows."""
    X = make_data()
    complete = X[20:]
    expected = SharedProjection(2, modalities=ABC, reg=0.1).fit(complete).transform(X)
    fitted, result = run(
        WeightedFusion(modalities=ABC, align="shared", n_components=2, reg=0.1),
        to_xp(namespace, complete),
        to_xp(namespace, X),
    )
    close(result, expected, 1e-10)
    assert namespace_of(fitted.shared_projection_.canonical_correlations_) == (
        namespace
    )


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


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_weighted_fusion_unsupported_options_raise(namespace):
    X = to_xp(namespace, make_data())
    with pytest.raises(ValueError, match=r"reg='auto'.*only available for numpy"):
        run(WeightedFusion(modalities=ABC, align="shared", reg="auto"), X)
    with pytest.raises(ValueError, match="needs every modality in every row"):
        run(WeightedFusion(modalities=ABC, align="shared"), X)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_weighted_fusion_bad_rows_raise_as_numpy_does(namespace):
    X = make_data(missing=False)
    weights = {"a": 1, "b": 0, "c": 1}
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
    fitted = WeightedFusion(weights, modalities=ABC).fit(X)
    with sklearn.config_context(array_api_dispatch=True):
        fitted_xp = clone(fitted).fit(to_xp(namespace, X))
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            fitted.transform(bad)
        with (
            pytest.raises(ValueError, match=message),
            sklearn.config_context(array_api_dispatch=True),
        ):
            fitted_xp.transform(to_xp(namespace, bad))
    nowhere = X.copy()
    nowhere[:, 3:6] = np.nan
    with pytest.raises(ValueError, match="Modality 'b' is missing"):
        run(WeightedFusion(modalities=ABC), to_xp(namespace, nowhere))


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


# -- ConcatFusion ----------------------------------------------------------------

CONCAT_CASES = [
    (scaling, center) for scaling in (None, "frobenius", "mfa") for center in (1, 0)
]


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("scaling, center", CONCAT_CASES)
@pytest.mark.parametrize("modalities", [ABC, INTERLEAVED], ids=["abc", "interleaved"])
def test_concat_fusion_equals_numpy(namespace, scaling, center, modalities):
    n_features = sum(len(cols) for cols in modalities.values())
    widths = (3, 3, 3) if n_features == 9 else (4, 3, 3)
    estimator = ConcatFusion(scaling, modalities=modalities, center=bool(center))
    for dtype, rtol in (("float64", FLOAT64_RTOL), ("float32", FLOAT32_RTOL["concat"])):
        X = make_data(widths=widths, missing=modalities).astype(dtype)
        reference = clone(estimator).fit(X)
        expected = reference.transform(X)
        X_xp = to_xp(namespace, X)
        fitted, result = run(estimator, X_xp)
        check_output(result, X_xp, namespace)
        close(result, expected, rtol)
        assert_array_equal(to_numpy(X_xp), X)
        for name in modalities:
            assert namespace_of(fitted.means_[name]) == namespace
            close(fitted.means_[name], reference.means_[name], FLOAT64_RTOL)
            assert isinstance(fitted.scales_[name], float)
            assert fitted.scales_[name] == pytest.approx(
                reference.scales_[name], rel=FLOAT64_RTOL
            )


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_mfa_and_frobenius_scales_by_hand(namespace):
    """sigma_1 / sqrt(n) and ||X_m - mu||_F / sqrt(n) of the rows present."""
    X = make_data()
    X_xp = to_xp(namespace, X)
    mfa, Z_mfa = run(ConcatFusion("mfa", modalities=ABC), X_xp)
    frobenius, Z_frobenius = run(ConcatFusion(modalities=ABC), X_xp)
    expected_mfa, expected_frobenius = np.empty_like(X), np.empty_like(X)
    for name, cols in ABC.items():
        block = X[:, cols]
        rows = ~np.isnan(block).any(axis=1)
        centred = block[rows] - block[rows].mean(axis=0)
        sigma_1 = np.linalg.svd(centred, compute_uv=False)[0] / np.sqrt(rows.sum())
        norm = np.sqrt((centred**2).sum() / rows.sum())
        assert mfa.scales_[name] == pytest.approx(sigma_1, rel=1e-12)
        assert frobenius.scales_[name] == pytest.approx(norm, rel=1e-12)
        mean = block[rows].mean(axis=0)
        # Missing blocks are filled with the (centred) mean: 0.
        expected_mfa[:, cols] = np.where(rows[:, None], (block - mean) / sigma_1, 0)
        expected_frobenius[:, cols] = np.where(rows[:, None], (block - mean) / norm, 0)
    close(Z_mfa, expected_mfa, 1e-12)
    close(Z_frobenius, expected_frobenius, 1e-12)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_mfa_above_the_gram_limit_uses_svdvals(namespace, monkeypatch):
    """Above _GRAM_LIMIT numpy uses ARPACK, the array API path svdvals."""
    monkeypatch.setattr(_fusion_utils, "_GRAM_LIMIT", 2)
    X = make_data(widths=(4, 5, 3))
    mods = {"a": [0, 1, 2, 3], "b": [4, 5, 6, 7, 8], "c": [9, 10, 11]}
    expected = ConcatFusion("mfa", modalities=mods).fit(X)
    fitted, result = run(ConcatFusion("mfa", modalities=mods), to_xp(namespace, X))
    for name in mods:
        assert fitted.scales_[name] == pytest.approx(expected.scales_[name], rel=1e-9)
    close(result, expected.transform(X), 1e-9)


def test_concat_fusion_tags():
    for scaling in (None, "frobenius", "mfa"):
        for center in (True, False):
            estimator = ConcatFusion(scaling, center=center)
            assert get_tags(estimator).array_api_support
