"""Array namespaces for the tests: numpy, array_api_strict and torch (CPU).

The one list of namespaces and the one way to move test data into and out of
them; the ``namespace`` fixture (``conftest.py``) parametrises a test over
them, skipping a namespace that is not installed (torch and
array_api_strict are test-only extras). array_api_strict arrays live on its
non-default "device1", which refuses any conversion to numpy, as a GPU array
would: a code path that silently went through numpy fails there.
"""

from contextlib import nullcontext

import numpy as np
import pytest
from sklearn import config_context

NAMESPACES = ("numpy", "array_api_strict", "torch")
ARRAY_API_NAMESPACES = NAMESPACES[1:]


def require(name):
    """Skip the calling test unless namespace ``name`` is installed."""
    if name != "numpy":
        pytest.importorskip(name)


def to_xp(name, array, *, default_device=False):
    """A copy of ``array`` in namespace ``name`` (array_api_strict on
    "device1" unless ``default_device``; torch on the CPU)."""
    require(name)
    if name == "numpy":
        return np.array(array, copy=True)
    if name == "array_api_strict":
        import array_api_strict as xp

        if default_device:
            return xp.asarray(array)
        return xp.asarray(array, device=xp.Device("device1"))
    import torch

    return torch.asarray(array, device="cpu")


def to_numpy(array):
    """A numpy copy of an array of any of the namespaces, from any device."""
    if hasattr(array, "cpu"):
        return array.cpu().numpy()
    if type(array).__module__.startswith("array_api_strict"):
        import array_api_strict

        return np.asarray(array.to_device(array_api_strict.Device("CPU_DEVICE")))
    return np.asarray(array)


def namespace_of(array):
    """ "numpy", "array_api_strict" or "torch"."""
    return type(array).__module__.split(".")[0]


def close(actual, expected, rtol):
    """rtol relative to the largest entry of ``expected`` (weights and
    projections have near-zero entries that a plain rtol would judge alone)."""
    actual = to_numpy(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(
        actual, expected, rtol=rtol, atol=rtol * np.nanmax(np.abs(expected))
    )


def dispatch_for(name):
    """scikit-learn's ``array_api_dispatch``, on for the array API namespaces
    (a context; the ``dispatch`` fixture of conftest.py is the same for a
    whole test)."""
    if name == "numpy":
        return nullcontext()
    return config_context(array_api_dispatch=True)
