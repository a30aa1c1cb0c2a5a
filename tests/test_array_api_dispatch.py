"""SharedProjection under sklearn's array_api_dispatch, end to end.

scipy and scikit-learn read SCIPY_ARRAY_API when they are first imported, so
the check runs in a fresh interpreter with it set, leaving the rest of the
test session untouched.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("array_api_strict")

SCRIPT = textwrap.dedent(
    """
    import array_api_strict as xp
    import numpy as np
    import sklearn
    from sklearn.base import clone
    from skcrossmodal import SharedProjection

    rng = np.random.default_rng(0)
    latent = rng.normal(size=(500, 2))
    data = np.hstack([
        latent @ rng.normal(size=(2, 5)) + rng.normal(size=(500, 5)),
        latent @ rng.normal(size=(2, 4)) + rng.normal(size=(500, 4)),
    ])
    model = SharedProjection(2, modalities={"a": slice(0, 5), "b": slice(5, 9)},
                             reg={"a": 0.1, "b": 0.3}, scale=True)
    expected = clone(model).fit(data)
    with sklearn.config_context(array_api_dispatch=True):
        X = xp.asarray(data)
        fitted = model.fit(X)
        Z = fitted.transform(X)
        score = fitted.score(X)
    assert type(Z).__module__.startswith("array_api_strict"), type(Z)
    np.testing.assert_allclose(
        np.asarray(fitted.canonical_correlations_),
        expected.canonical_correlations_, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(Z), expected.transform(data),
                               rtol=1e-6, atol=1e-9)
    assert abs(score - expected.score(data)) < 1e-6
    print("ok")
    """
)


def run_with_scipy_array_api(script):
    """Run ``script`` in a fresh interpreter with SCIPY_ARRAY_API=1; it must
    exit 0 and print exactly "ok"."""
    env = dict(os.environ, SCIPY_ARRAY_API="1")
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


def test_fit_transform_score_stay_in_the_array_namespace():
    run_with_scipy_array_api(SCRIPT)


@pytest.mark.parametrize(
    "test_file, selection",
    [("test_estimator_checks.py", "array_api")],
)
def test_sklearn_array_api_checks_pass(test_file, selection):
    """scikit-learn's own array API checks, which need SCIPY_ARRAY_API=1:
    parametrize_with_checks skips them in this process, so they run in a
    fresh interpreter with it set."""
    env = dict(os.environ, SCIPY_ARRAY_API="1")
    checks = os.path.join(os.path.dirname(__file__), test_file)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            checks,
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            selection,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


FUSION_CHECKS = textwrap.dedent(
    """
    import warnings
    from unittest import SkipTest

    from sklearn.utils import get_tags
    from sklearn.utils.estimator_checks import _yield_array_api_checks
    from skcrossmodal import ConcatFusion, WeightedFusion

    EVEN_ODD = {"even": slice(0, None, 2), "odd": slice(1, None, 2)}
    SUPPORTED = [
        WeightedFusion(modalities=EVEN_ODD),
        WeightedFusion({"even": 1, "odd": 3}, modalities=EVEN_ODD, align="pca",
                       n_components=2),
        WeightedFusion(modalities=EVEN_ODD, align="shared", n_components=2,
                       reg=0.1),
        ConcatFusion(modalities=EVEN_ODD),
        ConcatFusion("mfa", modalities=EVEN_ODD),
        ConcatFusion(None, modalities=EVEN_ODD, center=False),
    ]
    # Not array API (Ledoit-Wolf is numpy-only): the numpy-under-dispatch check.
    NUMPY_ONLY = [WeightedFusion(modalities=EVEN_ODD, align="shared", reg="auto")]
    ran = 0
    for estimators, only_numpy in ((SUPPORTED, False), (NUMPY_ONLY, True)):
        for estimator in estimators:
            assert get_tags(estimator).array_api_support is not only_numpy
            name = type(estimator).__name__
            for check in _yield_array_api_checks(estimator, only_numpy=only_numpy):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("error")
                        check(name, estimator)
                except SkipTest:  # a namespace or device that is not here
                    continue
                ran += 1
    # At least numpy under dispatch, array_api_strict on its 2 devices and
    # dtypes, and the fit/transform namespace check, for each estimator.
    assert ran >= 4 * len(SUPPORTED), ran
    print("ok")
    """
)


def test_sklearn_array_api_checks_pass_for_fusion():
    """scikit-learn's array API checks of WeightedFusion and ConcatFusion."""
    run_with_scipy_array_api(FUSION_CHECKS)
