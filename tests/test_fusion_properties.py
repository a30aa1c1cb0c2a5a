"""Properties of the fusion estimators that must hold for any data (hypothesis).

Each property is checked against an independent computation (a loop by hand,
the same data in other units, other names, repeated rows), over data drawn
by hypothesis: missing-modality patterns, weights and units from 1e-300 to
1e+300, modality names that are also option values.
"""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LinearRegression, LogisticRegression

from skcrossmodal import (
    ConcatFusion,
    LateFusionClassifier,
    LateFusionRegressor,
    WeightedFusion,
)

PROPERTY_SETTINGS = settings(max_examples=25, deadline=None)
# Words that are also option values somewhere in skcrossmodal.
RESERVED = [
    "mean",
    "concat",
    "pca",
    "shared",
    "auto",
    "frobenius",
    "mfa",
    "soft_vote",
    "stacking",
    "final_estimator",
    "weights",
]


@st.composite
def modal_data(draw, widths=None, n_min=30):
    """X with 2-3 modalities side by side, some rows missing one modality.

    Every row keeps at least one modality and every modality stays present
    in most rows.
    """
    if widths is None:
        widths = draw(st.lists(st.integers(1, 4), min_size=2, max_size=3))
    n = draw(st.integers(n_min, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))
    blocks = [
        latent @ rng.normal(size=(2, w)) + rng.normal(size=(n, w)) + 3.0 * i
        for i, w in enumerate(widths)
    ]
    X = np.hstack(blocks)
    stops = np.cumsum(widths)
    modalities = {
        f"m{i}": list(range(stop - w, stop))
        for i, (w, stop) in enumerate(zip(widths, stops))
    }
    # Each row misses at most one modality, in about a fifth of the rows.
    for row in np.flatnonzero(rng.random(n) < 0.2):
        cols = modalities[f"m{rng.integers(len(widths))}"]
        X[row, cols] = np.nan
    return X, modalities, rng


def present_mask(X, modalities):
    return np.column_stack(
        [~np.isnan(X[:, cols]).all(axis=1) for cols in modalities.values()]
    )


def close(actual, expected, rtol=1e-10):
    """rtol relative to the largest entry of ``expected``."""
    scale = np.abs(expected).max() if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# -- WeightedFusion --------------------------------------------------------------


@PROPERTY_SETTINGS
@given(
    modal_data(widths=[3, 3, 3]),
    st.lists(st.integers(1, 9), min_size=3, max_size=3),
    st.integers(-300, 300),
)
def test_weighted_sum_is_the_loop_at_any_weight_magnitude(data, raw, exponent):
    X, modalities, _ = data
    weights = {name: value * 10.0**exponent for name, value in zip(modalities, raw)}
    Z = WeightedFusion(weights, modalities=modalities).fit_transform(X)
    expected = np.zeros((X.shape[0], 3))
    for i, row in enumerate(X):
        total = 0
        for name, cols in modalities.items():
            if not np.isnan(row[cols]).all():
                expected[i] += weights[name] / 10.0**exponent * row[cols]
                total += weights[name] / 10.0**exponent
        expected[i] /= total
    close(Z, expected, 1e-12)


@PROPERTY_SETTINGS
@given(
    modal_data(),
    st.sampled_from([None, "pca"]),
    st.sampled_from([-300, -161, -19, 0, 19, 200, 300]),
)
def test_weighted_fusion_is_linear_in_the_unit(data, align, exponent):
    """X in other units gives the output in those units (no threshold,
    square or PCA step depends on the unit)."""
    X, modalities, _ = data
    if align is None:
        width = min(len(cols) for cols in modalities.values())
        modalities = {name: cols[:width] for name, cols in modalities.items()}
        X = X[:, np.concatenate(list(modalities.values()))]
        stops = np.cumsum([width] * len(modalities))
        modalities = {
            name: list(range(stop - width, stop))
            for name, stop in zip(modalities, stops)
        }
    unit = 10.0**exponent
    estimator = WeightedFusion(modalities=modalities, align=align, n_components=1)
    reference = clone(estimator).fit_transform(X)
    scaled = clone(estimator).fit_transform(X * unit)
    assert np.isfinite(scaled).all()
    close(scaled / unit, reference, 1e-9)


@PROPERTY_SETTINGS
@given(modal_data(), st.permutations(RESERVED), st.sampled_from([None, "pca"]))
def test_weighted_fusion_modality_names_are_only_names(data, names, align):
    X, modalities, _ = data
    renamed = dict(zip(names, modalities.values()))
    n = min(len(cols) for cols in modalities.values())
    if align is None:  # equal widths needed: keep the first n columns of each
        modalities = {k: cols[:n] for k, cols in modalities.items()}
        renamed = {k: cols[:n] for k, cols in renamed.items()}
        keep = np.concatenate(list(modalities.values()))
        X = X[:, keep]
        modalities = {
            k: list(range(i * n, (i + 1) * n)) for i, k in enumerate(modalities)
        }
        renamed = {k: list(range(i * n, (i + 1) * n)) for i, k in enumerate(renamed)}
    weights = [1.0, 2.0, 3.0][: len(modalities)]
    plain = WeightedFusion(
        dict(zip(modalities, weights)), modalities=modalities, align=align
    ).fit_transform(X)
    reserved = WeightedFusion(
        dict(zip(renamed, weights)), modalities=renamed, align=align
    ).fit_transform(X)
    np.testing.assert_array_equal(reserved, plain)


@PROPERTY_SETTINGS
@given(st.data())
def test_shared_alignment_modality_names_are_only_names(data):
    """Names such as "mean" or "concat" (SharedProjection's output options)
    do not change what align="shared" computes."""
    X, modalities, _ = data.draw(modal_data(widths=[3, 2], n_min=40))
    names = data.draw(st.permutations(RESERVED))[:2]
    renamed = dict(zip(names, modalities.values()))
    fusion = WeightedFusion(
        dict(zip(renamed, [1.0, 3.0])),
        modalities=renamed,
        align="shared",
        n_components=2,
        reg=0.1,
    )
    plain = WeightedFusion(
        dict(zip(modalities, [1.0, 3.0])),
        modalities=modalities,
        align="shared",
        n_components=2,
        reg=0.1,
    ).fit_transform(X)
    reserved = fusion.fit_transform(X)
    close(reserved, plain, 1e-12)


# -- ConcatFusion ----------------------------------------------------------------


@PROPERTY_SETTINGS
@given(
    modal_data(),
    st.sampled_from(["frobenius", "mfa", None]),
    st.booleans(),
    st.sampled_from([-300, -161, -19, 0, 19, 200, 300]),
)
def test_concat_fusion_output_does_not_depend_on_the_unit(data, scaling, center, e):
    """Scaled blocks are unit-free: the same output in any unit (as float64
    holds the data), the block statistics multiplied by the unit."""
    X, modalities, _ = data
    unit = 10.0**e
    estimator = ConcatFusion(scaling, modalities=modalities, center=center)
    reference = clone(estimator).fit(X)
    scaled = clone(estimator).fit(X * unit)
    Z, Z_scaled = reference.transform(X), scaled.transform(X * unit)
    assert np.isfinite(Z_scaled).all()
    if scaling is None:  # centring only: the output is in X's unit
        Z_scaled = Z_scaled / unit
    else:
        for name in modalities:
            ratio = scaled.scales_[name] / reference.scales_[name]
            assert ratio == pytest.approx(unit, rel=1e-12)
    close(Z_scaled, Z, 1e-9)


@PROPERTY_SETTINGS
@given(modal_data(), st.sampled_from([-300, -161, -19, 0, 19, 200, 300]))
def test_concat_fusion_blocks_have_unit_variance_at_any_unit(data, exponent):
    X, modalities, _ = data
    X = X * 10.0**exponent
    present = present_mask(X, modalities)
    for scaling in ("frobenius", "mfa"):
        Z = ConcatFusion(scaling, modalities=modalities).fit_transform(X)
        for position, cols in enumerate(modalities.values()):
            block = Z[present[:, position]][:, cols]
            if scaling == "frobenius":
                variance = block.var(axis=0).sum()
            else:
                centred = block - block.mean(axis=0)
                top = np.linalg.svd(centred, compute_uv=False)[0]
                variance = top**2 / len(block)
            assert variance == pytest.approx(1.0, rel=1e-9)


@PROPERTY_SETTINGS
@given(
    modal_data(),
    st.floats(1.0, 9.0),
    st.sampled_from([-300, -161, -19, 0, 19, 200, 300]),
    st.sampled_from(["frobenius", "mfa"]),
)
def test_constant_block_at_any_magnitude_keeps_scale_one(data, value, e, scaling):
    """A constant block is centred to 0 and keeps scale 1, whatever its
    magnitude; the other blocks are scaled as usual."""
    X, modalities, _ = data
    first = next(iter(modalities))
    cols = modalities[first]
    rows = ~np.isnan(X[:, cols]).all(axis=1)
    X[np.ix_(rows, cols)] = value * 10.0**e
    fusion = ConcatFusion(scaling, modalities=modalities).fit(X)
    assert fusion.scales_[first] == 1.0
    np.testing.assert_array_equal(fusion.transform(X)[:, cols], 0.0)


@PROPERTY_SETTINGS
@given(modal_data(), st.permutations(RESERVED), st.sampled_from(["frobenius", "mfa"]))
def test_concat_fusion_modality_names_are_only_names(data, names, scaling):
    X, modalities, _ = data
    renamed = dict(zip(names, modalities.values()))
    plain = ConcatFusion(scaling, modalities=modalities).fit(X)
    reserved = ConcatFusion(scaling, modalities=renamed).fit(X)
    np.testing.assert_array_equal(reserved.transform(X), plain.transform(X))
    assert list(reserved.get_feature_names_out()) == [
        f"{name}__x{j}" for name, cols in renamed.items() for j in cols
    ]


# -- where a bad row is, the message says: the caller's row number ---------------


@PROPERTY_SETTINGS
@given(modal_data(widths=[2, 2]), st.data())
def test_row_numbers_in_messages_are_the_callers(data, draw):
    X, modalities, _ = data
    X = X.copy()
    X[np.isnan(X)] = 1.0  # complete: the bad row is the only one
    row = draw.draw(st.integers(0, X.shape[0] - 1))
    kind = draw.draw(st.sampled_from(["partial", "empty", "zero weight"]))
    bad = X.copy()
    if kind == "partial":
        bad[row, 0] = np.nan
        message = f"only part of modality 'm0' in row {row} "
    elif kind == "empty":
        bad[row] = np.nan
        message = f"Row {row} of X has no modality present"
    else:
        bad[row, 2:] = np.nan
        message = f"Row {row} of X carries only modalities with weight 0"
    weights = {"m0": 0.0, "m1": 1.0}
    y = (X[:, 0] > X[:, 0].mean()).astype(int)
    # A DataFrame with a shuffled index: the row number is the position.
    index = np.random.default_rng(row).permutation(X.shape[0]) + 1000
    frame = pd.DataFrame(bad, index=index)
    fitted = [
        WeightedFusion(weights, modalities=modalities).fit(X),
        LateFusionRegressor(modalities=modalities, weights=weights).fit(X, y * 1.0),
        LateFusionClassifier(modalities=modalities, weights=weights).fit(X, y),
    ]
    if kind != "zero weight":
        fitted.append(ConcatFusion(modalities=modalities).fit(X))
    for estimator in fitted:
        use = getattr(estimator, "transform", getattr(estimator, "predict", None))
        for bad_input in (bad, frame):
            with pytest.raises(ValueError, match=message):
                use(bad_input)


# -- late fusion -----------------------------------------------------------------


@PROPERTY_SETTINGS
@given(modal_data(), st.lists(st.integers(0, 5), min_size=3, max_size=3))
def test_soft_vote_is_the_weighted_mean_of_the_present_modalities(data, raw):
    X, modalities, rng = data
    names = list(modalities)
    if sum(raw[: len(names)]) == 0:
        raw = [1] * len(names)
    weights = dict(zip(names, raw))
    y = (np.nan_to_num(X).sum(axis=1) > np.nan_to_num(X).sum(axis=1).mean()).astype(int)
    present = present_mask(X, modalities)
    # Rows carrying only weight-0 modalities have no vote: drop them.
    keep = (present * np.array(raw[: len(names)])).sum(axis=1) > 0
    X, y, present = X[keep], y[keep], present[keep]
    if len(np.unique(y)) < 2:
        y[:2] = [0, 1]
    clf = LateFusionClassifier(modalities=modalities, weights=weights).fit(X, y)
    proba = clf.predict_proba(X)
    expected = np.zeros_like(proba)
    for i in range(len(X)):
        total = 0.0
        for m, (name, cols) in enumerate(modalities.items()):
            if not present[i, m]:
                continue
            rows = present[:, m]
            model = LogisticRegression().fit(X[rows][:, cols], y[rows])
            p = np.zeros(2)
            p[np.searchsorted(clf.classes_, model.classes_)] = model.predict_proba(
                X[i : i + 1, cols]
            )[0]
            expected[i] += weights[name] * p
            total += weights[name]
        expected[i] /= total
    close(proba, expected, 1e-6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


@PROPERTY_SETTINGS
@given(modal_data(), st.lists(st.integers(0, 3), min_size=60, max_size=60))
def test_integer_sample_weight_is_repeating_rows(data, counts):
    """LateFusionRegressor(LinearRegression): weight k == the row k times."""
    X, modalities, rng = data
    counts = np.array(counts[: X.shape[0]])
    counts[:10] = np.maximum(counts[:10], 1)  # enough rows for every modality
    present = present_mask(X, modalities)
    for m in range(present.shape[1]):
        rows = np.flatnonzero(present[:, m])
        counts[rows[: len(modalities[f"m{m}"]) + 2]] += 1
    y = np.nan_to_num(X) @ rng.normal(size=X.shape[1]) + rng.normal(size=len(X))
    estimator = LateFusionRegressor(LinearRegression(), modalities=modalities)
    weighted = clone(estimator).fit(X, y, sample_weight=counts)
    repeated = clone(estimator).fit(np.repeat(X, counts, axis=0), np.repeat(y, counts))
    close(weighted.predict(X), repeated.predict(X), 1e-8)


class _Broken(ClassifierMixin, BaseEstimator):
    """A classifier that fails in ``where`` ("fit" or "predict_proba")."""

    def __init__(self, where="fit"):
        self.where = where

    def fit(self, X, y):
        if self.where == "fit":
            raise ValueError("broken on purpose in fit")
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        raise ValueError("broken on purpose in predict_proba")


@PROPERTY_SETTINGS
@given(
    modal_data(),
    st.data(),
    st.sampled_from(["fit", "predict_proba"]),
    st.sampled_from(["soft_vote", "stacking"]),
)
def test_a_failing_sub_estimator_is_named(data, draw, where, method):
    X, modalities, _ = data
    names = list(modalities)
    broken = draw.draw(st.sampled_from(names))
    y = np.arange(X.shape[0]) % 2
    estimators = {
        name: _Broken(where) if name == broken else LogisticRegression()
        for name in names
    }
    clf = LateFusionClassifier(estimators, modalities=modalities, method=method, cv=2)
    if where == "fit":
        with pytest.raises(ValueError, match=rf"modality '{broken}' \(_Broken\).*fit"):
            clf.fit(X, y)
        return
    step = "cross_val_predict" if method == "stacking" else "predict_proba"
    with pytest.raises(ValueError, match=rf"modality '{broken}' \(_Broken\).*{step}"):
        clf.fit(X, y).predict_proba(X)


@PROPERTY_SETTINGS
@given(
    modal_data(),
    st.lists(st.integers(0, 3), min_size=60, max_size=60),
    st.sampled_from(["frobenius", "mfa", None]),
    st.booleans(),
)
def test_concat_fusion_integer_sample_weight_is_repeating_rows(
    data, counts, scaling, center
):
    X, modalities, _ = data
    counts = np.array(counts[: X.shape[0]])
    present = present_mask(X, modalities)
    for m in range(present.shape[1]):
        counts[np.flatnonzero(present[:, m])[:2]] += 1  # every block weighs
    estimator = ConcatFusion(scaling, modalities=modalities, center=center)
    weighted = clone(estimator).fit(X, sample_weight=counts)
    repeated = clone(estimator).fit(np.repeat(X, counts, axis=0))
    close(weighted.transform(X), repeated.transform(X), 1e-10)
    for name in modalities:
        assert weighted.scales_[name] == pytest.approx(
            repeated.scales_[name], rel=1e-12
        )
