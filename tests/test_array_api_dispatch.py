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


def test_fit_transform_score_stay_in_the_array_namespace():
    env = dict(os.environ, SCIPY_ARRAY_API="1")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


def test_sklearn_array_api_checks_pass():
    """scikit-learn's own array API checks, which need SCIPY_ARRAY_API=1."""
    env = dict(os.environ, SCIPY_ARRAY_API="1")
    checks = os.path.join(os.path.dirname(__file__), "test_estimator_checks.py")
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
            "array_api",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
