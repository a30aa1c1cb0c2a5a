"""Relevance for ranking metrics: which gallery items each query should find.

Labels become arrays whose ``==`` is the relevance (integer codes for host
labels of any type; device labels compared as they are), or, without
labels, the pairing of query ``i`` with gallery item ``i``. Used by
:mod:`skcrossmodal.retrieval` and :mod:`skcrossmodal.metrics` beside the
ranking core of :mod:`._ranking`.
"""

from __future__ import annotations

import numpy as np

from ._namespace import (
    array_device,
    array_namespace,
    get_array_namespace,
    namespace_name,
)
from ._ranking import is_numpy


def label_codes(xp, device, y_query, y_gallery, n_query, n_gallery, rows_of):
    """Labels as arrays of xp on ``device`` whose ``==`` is the relevance.

    ``None`` for both: paired relevance (query ``i`` matches gallery ``i``).
    Labels of xp on that device (not numpy) are compared as they are. Host
    labels (numpy, lists: strings or objects too) become integer codes,
    equal exactly where the labels compare equal. ``rows_of`` names what
    gives the number of queries and gallery items, for the messages.
    """
    if (y_query is None) != (y_gallery is None):
        raise ValueError(
            "Pass both y_query and y_gallery (label relevance), or neither "
            "(paired relevance: query i matches gallery item i only)."
        )
    if y_query is None:
        if n_query != n_gallery:
            raise ValueError(
                "Paired relevance (y_query=y_gallery=None) needs as many queries "
                f"as gallery items; got {n_query} and {n_gallery}. Pass labels "
                "to use label relevance."
            )
        codes = xp.arange(n_query, device=device)
        return codes, codes
    wanted = {"y_query": n_query, "y_gallery": n_gallery}
    on_device = [
        not is_numpy(xp) and get_array_namespace(y) is not None
        for y in (y_query, y_gallery)
    ]
    if any(on_device):
        if not all(on_device) or any(
            array_namespace(y) is not xp or array_device(y) != device
            for y in (y_query, y_gallery)
        ):
            raise ValueError(
                "y_query and y_gallery must both be host labels (numpy arrays, "
                "lists) or both arrays of the embeddings' namespace "
                f"({namespace_name(xp)}) on their device ({device})."
            )
        labels = [
            _check_label_shape(xp, y, name, n, rows_of)
            for y, (name, n) in zip((y_query, y_gallery), wanted.items())
        ]
        return labels[0], labels[1]
    y_query, y_gallery = (
        _check_label_shape(np, np.asarray(y), name, n, rows_of)
        for y, (name, n) in zip((y_query, y_gallery), wanted.items())
    )
    codes_query, codes_gallery = _host_codes(y_query, y_gallery)
    return (
        xp.asarray(codes_query, device=device),
        xp.asarray(codes_gallery, device=device),
    )


def _check_label_shape(xp, y, name, n_rows, rows_of):
    if y.ndim == 2 and y.shape[1] == 1:
        y = xp.reshape(y, (-1,))
    if y.ndim != 1 or y.shape[0] != n_rows:
        got = f"{y.shape[0]} labels" if y.ndim == 1 else f"shape {tuple(y.shape)}"
        raise ValueError(
            f"{name} has {got}, but there are {n_rows} {rows_of[name]}: pass "
            "one label for each."
        )
    return y


def _host_codes(y_query, y_gallery):
    """Integer codes of two label arrays, equal where the labels are ``==``."""
    try:
        _, codes = np.unique(
            np.concatenate([y_query, y_gallery]), return_inverse=True, equal_nan=False
        )
        codes = codes.reshape(-1)
        return codes[: y_query.shape[0]], codes[y_query.shape[0] :]
    except (TypeError, ValueError):  # labels that numpy cannot sort together
        lookup = {}
        gallery = [
            lookup.setdefault(value, len(lookup)) for value in y_gallery.tolist()
        ]
        query = [lookup.get(value, -1) for value in y_query.tolist()]
        return np.asarray(query, dtype=np.int64), np.asarray(gallery, dtype=np.int64)
