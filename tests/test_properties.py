"""Properties of SharedProjection that must hold for any data (hypothesis)."""

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from skcrossmodal import SharedProjection

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def paired_views(draw):
    """Two correlated views; n well above the widths so reg=0 is well posed."""
    width_a = draw(st.integers(1, 5))
    width_b = draw(st.integers(1, 5))
    n = draw(st.integers(4 * (width_a + width_b) + 10, 120))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))
    a = latent @ rng.normal(size=(2, width_a)) + rng.normal(size=(n, width_a))
    b = latent @ rng.normal(size=(2, width_b)) + rng.normal(size=(n, width_b))
    k = draw(st.integers(1, min(width_a, width_b)))
    return a, b, k, rng


def fit(a, b, k, **params):
    X = np.hstack([a, b])
    modalities = {"a": slice(0, a.shape[1]), "b": slice(a.shape[1], X.shape[1])}
    return SharedProjection(k, modalities=modalities, **params).fit(X)


@PROPERTY_SETTINGS
@given(paired_views(), st.sampled_from([0.0, 0.5, "auto"]))
def test_correlations_lie_in_unit_interval_and_descend(views, reg):
    a, b, k, _ = views
    with warnings.catch_warnings():
        # Values past 1 (beyond rounding) would be clipped with a warning:
        # make that a failure, so the bound is the solver's, not the clip's.
        warnings.simplefilter("error", UserWarning)
        correlations = fit(a, b, k, reg=reg).canonical_correlations_
    assert np.all(correlations >= 0) and np.all(correlations <= 1)
    assert np.all(np.diff(correlations) <= 1e-12)


@PROPERTY_SETTINGS
@given(paired_views())
def test_invertible_map_of_a_modality_leaves_correlations_unchanged(views):
    a, b, k, rng = views
    # A random, reasonably conditioned invertible map (condition <= ~1e3).
    q, _ = np.linalg.qr(rng.normal(size=(a.shape[1], a.shape[1])))
    mixing = q * np.logspace(0, 3, a.shape[1])
    original = fit(a, b, k).canonical_correlations_
    mapped = fit(a @ mixing + 5.0, b, k).canonical_correlations_
    np.testing.assert_allclose(mapped, original, rtol=1e-7, atol=1e-9)


@PROPERTY_SETTINGS
@given(paired_views())
def test_row_permutation_changes_nothing(views):
    a, b, k, rng = views
    order = rng.permutation(a.shape[0])
    original = fit(a, b, k)
    permuted = fit(a[order], b[order], k)
    np.testing.assert_allclose(
        permuted.canonical_correlations_, original.canonical_correlations_, rtol=1e-9
    )
    # Weights, signs included: the sign convention does not depend on row order.
    for name in ("a", "b"):
        np.testing.assert_allclose(
            permuted.weights_[name], original.weights_[name], rtol=1e-6, atol=1e-9
        )


@PROPERTY_SETTINGS
@given(paired_views())
def test_swapping_modality_order_changes_nothing(views):
    a, b, k, _ = views
    ab = fit(a, b, k)
    ba = fit(b, a, k)
    np.testing.assert_allclose(
        ba.canonical_correlations_, ab.canonical_correlations_, rtol=1e-9, atol=1e-12
    )


@PROPERTY_SETTINGS
@given(paired_views(), st.sampled_from([0.0, 0.5, "auto"]), st.booleans())
def test_transform_equals_fit_transform(views, reg, scale):
    a, b, k, _ = views
    X = np.hstack([a, b])
    modalities = {"a": slice(0, a.shape[1]), "b": slice(a.shape[1], X.shape[1])}
    model = SharedProjection(k, modalities=modalities, reg=reg, scale=scale)
    np.testing.assert_allclose(
        model.fit_transform(X), model.transform(X), rtol=1e-12, atol=1e-12
    )
