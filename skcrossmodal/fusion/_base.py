"""What every fusion estimator shares: validation, tags, error context."""

from __future__ import annotations

import contextlib

from sklearn import get_config
from sklearn.utils._array_api import check_same_namespace

from .._base import validate_modal_data
from .._modalities import check_finite_blocks
from .._namespace import get_array_namespace, namespace_name
from ._utils import require_every_modality


class ModalInputMixin:
    """Validation of X and its modality blocks, and the tags that follow.

    NaN is accepted only as whole missing blocks; arbitrary NaN is an error,
    which is what ``allow_nan=False`` promises to scikit-learn's checks.
    """

    def _validate_blocks(self, X, *, reset, fitted_array=None):
        """Validate X; return it and its (n, M) presence mask (X's namespace).

        On ``reset`` (fit) the modalities are resolved and every modality
        must be present in at least one row. Otherwise X must be in the
        namespace and on the device of the fitted array named
        ``fitted_array`` (when it is set: models pickled before it had none).
        """
        X = validate_modal_data(self, X, reset=reset)
        if fitted_array is not None and getattr(self, fitted_array) is not None:
            check_same_namespace(X, self, attribute=fitted_array, method="transform")
        present = check_finite_blocks(X, self.modalities_)
        if reset:
            require_every_modality(present, list(self.modalities_))
        return X, present

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def refuse_array_api(estimator, *arrays):
    """Raise a TypeError for array API input (torch, CuPy, ...) under dispatch.

    Late fusion hands each modality to arbitrary scikit-learn estimators,
    most of which take numpy only. Without ``array_api_dispatch``
    scikit-learn converts such input to numpy itself (CPU arrays), so only
    the dispatching case is refused, before anything is set on the estimator.
    """
    if not get_config()["array_api_dispatch"]:
        return
    for array in arrays:
        xp = get_array_namespace(array)
        if xp is not None:
            raise TypeError(
                f"{type(estimator).__name__} takes numpy arrays (or sparse "
                f"matrices, DataFrames) only, got an array of namespace "
                f"{namespace_name(xp)!r} "
                "under array_api_dispatch: its per-modality estimators are "
                "arbitrary scikit-learn estimators, most of them numpy-only. "
                "Convert the input first (e.g. X.cpu().numpy() for torch), or "
                "use WeightedFusion / ConcatFusion / SharedProjection, which "
                "compute in X's namespace."
            )


@contextlib.contextmanager
def error_context(prefix):
    """Re-raise any exception with ``prefix`` before its message, same type.

    A ValueError stays a ValueError, so callers (and scikit-learn's checks)
    that catch by type still do. An exception type whose constructor takes
    other arguments keeps its message and gets the prefix as a note.
    """
    try:
        yield
    except Exception as exc:
        message = f"{prefix}: {exc}"
        try:
            wrapped = type(exc)(message)
        except Exception:
            exc.add_note(message)
            raise
        raise wrapped from exc


def modality_context(name, estimator, method):
    """:func:`error_context` naming the modality whose estimator failed.

    Row numbers in the original message count the rows handed to that
    estimator (those that carry the modality), which the prefix says.
    """
    return error_context(
        f"The estimator of modality {name!r} ({type(estimator).__name__}) "
        f"failed in {method} (its rows are the rows of X that carry {name!r}, "
        "numbered from 0 among them)"
    )
