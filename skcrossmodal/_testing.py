"""Helpers for the tests: synthetic views, the public estimators.

As scikit-learn's ``sklearn.utils._testing``: shared by several test files
(which pytest imports in ``importlib`` mode, so they cannot import each
other). Array namespaces and their conversions are in tests/xp_testing.py.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import numpy as np
from sklearn.base import BaseEstimator

__all__ = [
    "contiguous_modalities",
    "correlated_views",
    "public_estimators",
]


def contiguous_modalities(widths):
    """``{"m0": slice(0, w0), "m1": slice(w0, w0 + w1), ...}``."""
    modalities = {}
    start = 0
    for position, width in enumerate(widths):
        modalities[f"m{position}"] = slice(start, start + width)
        start += width
    return modalities


def correlated_views(n=600, widths=(7, 5), n_latent=3, noise=1.0, offset=0.0, seed=0):
    """Views sharing a latent signal of distinct strengths.

    The canonical correlations are distinct, so the canonical vectors are
    unique (up to sign). Returns ``(X, views, modalities)``: the views side
    by side, each view, and their :func:`contiguous_modalities`.
    """
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, n_latent)) * np.linspace(2.0, 0.5, n_latent)
    views = [
        latent @ rng.normal(size=(n_latent, w))
        + noise * rng.normal(size=(n, w))
        + offset
        for w in widths
    ]
    return np.hstack(views), views, contiguous_modalities(widths)


def public_estimators():
    """``{name: class}`` of every public estimator of skcrossmodal.

    The estimator classes defined in skcrossmodal that the package or one of
    its public (not ``_``-prefixed) modules exposes under a public name.
    """
    import skcrossmodal

    modules = [skcrossmodal] + [
        importlib.import_module(f"skcrossmodal.{info.name}")
        for info in pkgutil.iter_modules(skcrossmodal.__path__)
        if not info.name.startswith("_")
    ]
    return {
        name: obj
        for module in modules
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseEstimator)
        and obj.__module__.startswith("skcrossmodal")
        and not name.startswith("_")
    }
