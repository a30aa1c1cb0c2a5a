"""Helpers for the tests: synthetic views, array API input.

As scikit-learn's ``sklearn.utils._testing``: shared by several test files
(which pytest imports in ``importlib`` mode, so they cannot import each
other). pytest is imported only when a helper needs it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from contextlib import nullcontext

import numpy as np
from sklearn import config_context
from sklearn.base import BaseEstimator

from ._namespace import to_numpy

__all__ = [
    "contiguous_modalities",
    "correlated_views",
    "dispatch",
    "namespace_of",
    "public_estimators",
    "to_numpy",
    "to_xp",
]


def to_xp(namespace, array):
    """``array`` in ``namespace``: "numpy", "array_api_strict" or "torch".

    array_api_strict's array lives on its non-default device "device1",
    which refuses any conversion to numpy, as a GPU array would; torch's on
    the CPU. The test is skipped when the library is not installed.
    """
    if namespace == "numpy":
        return np.asarray(array)
    import pytest

    if namespace == "array_api_strict":
        xps = pytest.importorskip("array_api_strict")
        return xps.asarray(array, device=xps.Device("device1"))
    torch = pytest.importorskip("torch")
    return torch.asarray(array, device="cpu")


def namespace_of(array):
    """The top-level module name of ``array``'s type ("numpy", "torch", ...)."""
    return type(array).__module__.split(".")[0]


def dispatch(namespace):
    """``array_api_dispatch`` on for the array API namespaces."""
    if namespace == "numpy":
        return nullcontext()
    return config_context(array_api_dispatch=True)


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
