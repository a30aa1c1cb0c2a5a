"""Which array namespace an array lives in, and moving small arrays between.

The bottom layer of the numerical core: every module that computes in X's
namespace (numpy, torch, CuPy, array_api_strict, ...) asks here. Numpy is
reached through ``array_api_compat.numpy`` like any other namespace, so one
function body serves all; numpy-only fast paths (BLAS ``syrk``, LAPACK) are
local branches in the modules that want them.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.externals import array_api_compat
from sklearn.externals.array_api_compat import array_namespace
from sklearn.externals.array_api_compat import device as array_device

__all__ = [
    "accumulation_dtype",
    "array_device",
    "array_namespace",
    "get_array_namespace",
    "namespace_name",
    "to_namespace",
    "to_numpy",
]


def get_array_namespace(X):
    """Return X's array API namespace, or None for numpy, sparse and the rest.

    A non-None result means X is an array API array that is not numpy
    (torch, CuPy, array_api_strict, ...).
    """
    if isinstance(X, np.ndarray) or sparse.issparse(X):
        return None
    if array_api_compat.is_dask_array(X):
        # Dask arrays are summed chunk by chunk into numpy statistics
        # (skcrossmodal._dask), not computed in a namespace of their own.
        return None
    try:
        xp = array_namespace(X)
    except TypeError:
        return None
    if array_api_compat.is_numpy_namespace(xp):
        return None
    return xp


def accumulation_dtype(xp, device):
    """float64 where ``device`` supports it, else float32 (e.g. torch MPS)."""
    try:
        xp.zeros((1,), dtype=xp.float64, device=device)
    except Exception:  # the device has no float64 (TypeError, RuntimeError...)
        return xp.float32
    return xp.float64


def numpy_float(dtype):
    """numpy's float dtype for a float dtype of any namespace (numpy's,
    ``torch.float64``, array_api_strict's)."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return np.dtype(str(dtype).rsplit(".", 1)[-1])


def smallest_square(dtype):
    """``smallest_normal / eps`` of a float dtype of any namespace: sums of
    squares below it lose digits to the subnormal range (or vanish), so a
    spread below its square root cannot be measured."""
    finfo = np.finfo(numpy_float(dtype))
    return float(finfo.smallest_normal) / float(finfo.eps)


def namespace_name(xp):
    """``torch`` for ``sklearn.externals.array_api_compat.torch``, etc."""
    return xp.__name__.removeprefix("sklearn.externals.array_api_compat.")


def to_numpy(array):
    """A numpy array on the host with ``array``'s values, from any namespace."""
    if isinstance(array, np.ndarray):
        return array
    if array_api_compat.is_torch_array(array):
        return array.detach().cpu().numpy()
    if array_api_compat.is_cupy_array(array):
        return array.get()
    xp = array_namespace(array)
    if array_api_compat.is_array_api_strict_namespace(xp):
        # Its other devices refuse numpy conversion, as a GPU's would.
        array = array.to_device(xp.Device("CPU_DEVICE"))
    return np.asarray(array)


def to_namespace(xp, array, dtype, dev):
    """``array`` (xp or numpy) as an xp array of ``dtype`` on ``dev``."""
    try:
        same = array_namespace(array) is xp
    except TypeError:
        same = False
    if same and array_device(array) == dev:
        return xp.astype(array, dtype, copy=False)
    if not isinstance(array, np.ndarray):
        array = to_numpy(array)
    return xp.asarray(np.ascontiguousarray(array), dtype=dtype, device=dev)
