"""Input validation shared by every estimator that reads ``modalities``."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
from sklearn.utils._array_api import get_namespace
from sklearn.utils.validation import validate_data

from ._dtypes import check_numeric_features
from ._modalities import check_finite_blocks, resolve_modalities  # noqa: F401 (re-exported)
from ._version import __version__
from .exceptions import InconsistentVersionWarning

FLOAT_DTYPES = (np.float64, np.float32)


def validate_modal_data(estimator, X, *, reset, min_modalities=2, accept_sparse=True):
    """Validate X, resolve ``modalities_`` on reset, and return X.

    NaN is allowed (a modality block of NaN marks it missing); infinity is
    checked by the caller's statistics, or by :func:`check_finite_blocks`.
    """
    raw = X
    # Before any conversion: a date column would otherwise become a number
    # in some containers (polars, numpy) and an error in others (pandas).
    check_numeric_features(X)
    # Under sklearn.set_config(array_api_dispatch=True), torch/CuPy arrays
    # stay in their namespace; the dtypes must then be that namespace's.
    xp, _ = get_namespace(X)
    X = validate_data(
        estimator,
        X,
        reset=reset,
        accept_sparse=("csr", "csc") if accept_sparse else False,
        dtype=[xp.float64, xp.float32],
        ensure_all_finite=False,
        ensure_min_samples=2 if reset else 1,
    )
    if reset:
        estimator.modalities_ = resolve_modalities(
            estimator.modalities,
            X,
            raw,
            getattr(estimator, "feature_names_in_", None),
            min_modalities=min_modalities,
        )
    return X


@contextlib.contextmanager
def restore_on_error(estimator):
    """Leave ``estimator`` exactly as it was if the block raises.

    ``fit`` and ``partial_fit`` set attributes as they go (``n_features_in_``,
    ``modalities_``, the statistics...): a failure half way must neither
    leave a half-updated model nor lose the previous one. Attributes are
    replaced, never mutated in place, by the code inside, so a shallow copy
    of ``__dict__`` is the whole previous state.
    """
    saved = dict(estimator.__dict__)
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(saved)
        raise


class VersionedPickleMixin:
    """Record the skcrossmodal version in pickles; warn when it differs on load.

    scikit-learn does the same for its own estimators only, so this mixin goes
    first in the bases of every skcrossmodal estimator.
    """

    def __getstate__(self):
        state = super().__getstate__()
        state["_skcrossmodal_version"] = __version__
        return state

    def __setstate__(self, state):
        saved = state.pop("_skcrossmodal_version", None)
        if saved != __version__:
            warnings.warn(
                InconsistentVersionWarning(
                    estimator_name=type(self).__name__,
                    saved_version=saved,
                    current_version=__version__,
                ),
                stacklevel=2,
            )
        super().__setstate__(state)
