"""Compatibility shim: the fusion helpers now live in ``skcrossmodal.fusion``.

Only what ``retrieval`` still imports is kept, as thin aliases of the one
namespace-generic implementation in ``_modalities``; remove this module once
nothing imports it.
"""

from ._modalities import check_finite_blocks, take_columns


def xp_take_columns(xp, X, indices):
    """``X[:, indices]`` (``xp`` is unused: take_columns finds X's namespace)."""
    return take_columns(X, indices)


def xp_presence_mask(X, modalities):
    """The checked (n, M) presence mask of X, in X's namespace."""
    return check_finite_blocks(X, modalities)
