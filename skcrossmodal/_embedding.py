"""Embeddings for retrieval: from a fitted projection, or given, validated.

:func:`embed` is one modality's rows in the shared space, through the
projection's one projection routine (``SharedSpace.project``); the checks
here put the query and gallery embeddings in one namespace, device and
dtype before :mod:`skcrossmodal._ranking` ranks them.
"""

from __future__ import annotations

import numpy as np
from sklearn import get_config
from sklearn.externals.array_api_compat import numpy as compat_numpy
from sklearn.pipeline import Pipeline
from sklearn.utils._array_api import check_same_namespace
from sklearn.utils.validation import check_array, check_is_fitted

from ._base import validate_modal_data
from ._modalities import check_no_infinite, presence_mask
from ._namespace import (
    array_device,
    array_namespace,
    get_array_namespace,
    namespace_name,
)
from ._ranking import check_k, first_true, is_numpy
from ._shared_space import SharedSpace

METRICS = ("cosine", "euclidean")


# -- embedding ---------------------------------------------------------------------


def final_projection(estimator):
    """The fitted SharedProjection-like object at the end of ``estimator``."""
    if hasattr(estimator, "projection_") and not hasattr(estimator, "weights_"):
        estimator = estimator.projection_
    if isinstance(estimator, Pipeline):
        estimator = estimator[-1]
    check_is_fitted(estimator)
    if not hasattr(estimator, "modalities_") or "output" not in estimator.get_params(
        deep=False
    ):
        raise TypeError(
            "Retrieval needs a fitted SharedProjection, or a Pipeline whose last "
            f"step is one; got {type(estimator).__name__}."
        )
    return estimator


def shared_space(final):
    """The fitted projection's shared space (its one projection routine)."""
    space = getattr(final, "_space", None)
    if space is None:
        space = SharedSpace(
            final.modalities_,
            final.means_,
            final.weights_,
            final.canonical_correlations_,
        )
    return space


def embed(projection, X, modality):
    """Each row's embedding by one modality, in the fitted shared space.

    Parameters
    ----------
    projection : SharedProjection or Pipeline
        Fitted. A Pipeline's steps before the last transform ``X``; its last
        step must be a ``SharedProjection``. A fitted
        :class:`~skcrossmodal.transfer.CrossModalTransferClassifier` (or
        regressor) is accepted too: its ``projection_`` is used.
    X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
        Rows as the projection takes them (every modality's columns, a
        missing modality as an all-NaN block).
    modality : str
        A modality of the projection. Any name the projection was fitted
        with, including names such as ``"mean"`` or ``"concat"`` that are
        also values of ``SharedProjection(output=...)``: it always means the
        modality.

    Returns
    -------
    Z : ndarray of shape (n_samples, n_components)
        ``(X_m - means_[m]) @ weights_[m]``; NaN rows where the modality is
        missing (other modalities may be missing anywhere). The projection is
        not modified. An array of X's namespace and device for array API
        input (see the module's Array API section).
    """
    final = final_projection(projection)
    if hasattr(projection, "projection_") and not hasattr(projection, "weights_"):
        projection = projection.projection_
    names = list(final.modalities_)
    if not isinstance(modality, str) or modality not in names:
        raise ValueError(
            f"Modality {modality!r} is not one of the projection's modalities {names}."
        )
    if isinstance(projection, Pipeline) and len(projection) > 1:
        X = projection[:-1].transform(X)
    X = validate_modal_data(final, X, reset=False)
    check_same_namespace(X, final, attribute="canonical_correlations_", method="embed")
    check_no_infinite(X)
    present = presence_mask(X, final.modalities_)
    (Z,), _ = shared_space(final).project(X, [modality], present=present)
    return Z


def embed_complete(projection, X, modality, role):
    """:func:`embed`, refusing rows that miss the modality."""
    Z = embed(projection, X, modality)
    xp = array_namespace(Z)
    row, count = first_true(xp, xp.any(xp.isnan(Z), axis=1))
    if count:
        raise ValueError(
            f"Row {row} of {role} does not carry modality {modality!r} "
            f"(its columns are all NaN; {count} such row(s) in all). "
            f"Every {role} row must carry it: select the rows that do first."
        )
    return Z


# -- embeddings ----------------------------------------------------------------------


def check_metric(metric):
    if metric not in METRICS:
        raise ValueError(f"`metric` must be 'cosine' or 'euclidean', got {metric!r}.")


def check_batch_size(batch_size):
    if batch_size is None:
        return None
    return check_k(batch_size, "batch_size")


def embeddings_namespace(Z_query, Z_gallery):
    """The array namespace and device the embeddings are computed in.

    numpy (``array_api_compat.numpy``, on the CPU) unless
    ``array_api_dispatch`` is on and one of them is an array API array other
    than numpy. Everything then follows that array: a numpy array or list on
    the other side is moved to its device; an array of another namespace or
    device is an error.
    """
    found = []
    if get_config()["array_api_dispatch"]:
        found = [Z for Z in (Z_query, Z_gallery) if get_array_namespace(Z) is not None]
    if not found:
        return compat_numpy, "cpu"
    xp, device = array_namespace(found[0]), array_device(found[0])
    for Z in found[1:]:
        if array_namespace(Z) is not xp or array_device(Z) != device:
            raise ValueError(
                "Z_query and Z_gallery must be in the same array namespace and "
                f"on the same device; got {namespace_name(xp)} on {device} and "
                f"{namespace_name(array_namespace(Z))} on {array_device(Z)}. "
                "Move one of them first."
            )
    return xp, device


def check_embeddings(xp, device, Z_query, Z_gallery):
    """Both embeddings as 2-D float arrays of xp, of one dtype, same width."""
    checked = []
    for Z, name in ((Z_query, "Z_query"), (Z_gallery, "Z_gallery")):
        if not is_numpy(xp) and get_array_namespace(Z) is None:
            # A numpy array or list: moved to the other side's device.
            Z = xp.asarray(np.asarray(Z), device=device)
        checked.append(check_array(Z, dtype=[xp.float64, xp.float32], input_name=name))
    Z_query, Z_gallery = checked
    if Z_query.shape[1] != Z_gallery.shape[1]:
        raise ValueError(
            f"Z_query has {Z_query.shape[1]} columns but Z_gallery has "
            f"{Z_gallery.shape[1]}: both must live in the same space."
        )
    dtype = xp.result_type(Z_query.dtype, Z_gallery.dtype)
    return (
        xp.astype(Z_query, dtype, copy=False),
        xp.astype(Z_gallery, dtype, copy=False),
    )


def row_names(X_gallery):
    """Names of the rows in messages: the caller's X, row for row."""
    return (("X_query", None), ("X_query" if X_gallery is None else "X_gallery", None))


def embed_sides(projection, X_query, X_gallery, query_modality, gallery_modality):
    """Query and gallery embeddings; the gallery is X_query's rows if None."""
    for name, value in (
        ("query_modality", query_modality),
        ("gallery_modality", gallery_modality),
    ):
        if not isinstance(value, str):
            raise ValueError(f"`{name}` must be a modality name, got {value!r}.")
    Z_query = embed_complete(projection, X_query, query_modality, "X_query")
    if X_gallery is None:
        Z_gallery = embed_complete(projection, X_query, gallery_modality, "X_query")
    else:
        Z_gallery = embed_complete(projection, X_gallery, gallery_modality, "X_gallery")
    return Z_query, Z_gallery
