"""``SharedProjection(solver="gradient")``: the deprecated route to the
gradient solver (:class:`~skcrossmodal.GradientSharedProjection` is its
estimator). Kept apart so that it leaves with the deprecation in one piece.
"""

from __future__ import annotations

import warnings

from ._base import validate_modal_data
from ._closed_form import is_auto, reg_values
from ._dask import is_dask_collection
from ._gradient import fit_gradient


def fit_deprecated_gradient(estimator, X, sample_weight):
    """Warn, validate and fit ``estimator`` (a SharedProjection) by gradient."""
    warnings.warn(
        "SharedProjection(solver='gradient') is deprecated and will "
        "be removed in the next release: use "
        "skcrossmodal.GradientSharedProjection, which runs the same "
        "solver with the same parameters (max_iter, tol, batch_size, "
        "learning_rate, random_state, early_stopping, ...), each of "
        "which applies to it.",
        FutureWarning,
        stacklevel=4,
    )
    if is_dask_collection(X):
        raise ValueError(
            "solver='gradient' needs X in memory (a numpy array or "
            "a scipy sparse matrix). For a Dask array use an exact "
            "solver ('auto', 'svd' or 'eigh'): its statistics are "
            "computed chunk by chunk where the chunks live."
        )
    X = validate_modal_data(estimator, X, reset=True)
    estimator._check_params_against_modalities()
    if sample_weight is not None:
        raise ValueError(
            "sample_weight is not supported by the gradient solver; "
            "use an exact solver ('auto', 'svd' or 'eigh')."
        )
    return _fit(estimator, X)


def _fit(estimator, X):
    reg = reg_values(estimator.reg, list(estimator.modalities_))
    if any(is_auto(value) for value in reg):
        raise ValueError(
            "reg='auto' needs every entry of the covariance (Ledoit-Wolf), "
            "which solver='gradient' never forms. Give a number (e.g. the "
            "reg_ an exact solver chose on a subsample), or use an exact "
            "solver."
        )
    result = fit_gradient(
        X,
        estimator.modalities_,
        [float(value) for value in reg],
        n_components=estimator.n_components,
        scale=estimator.scale,
        max_iter=estimator.max_iter,
        tol=estimator.tol,
        batch_size=estimator.batch_size,
        learning_rate=estimator.learning_rate,
        random_state=estimator.random_state,
        early_stopping=estimator.early_stopping,
        validation_fraction=estimator.validation_fraction,
        n_iter_no_change=estimator.n_iter_no_change,
        verbose=estimator.verbose,
    )
    names = list(estimator.modalities_)
    estimator.reg_ = {name: float(value) for name, value in zip(names, reg)}
    estimator.shrinkage_ = dict.fromkeys(names, 0.0)
    estimator.n_iter_ = result.n_iter
    estimator.loss_curve_ = result.loss_curve
    estimator.validation_scores_ = result.validation_scores
    blocks = result.blocks
    return estimator._set_fitted(
        result.correlations,
        {name: result.weights[b, :] for name, b in zip(names, blocks)},
        {name: result.mean[b] for name, b in zip(names, blocks)},
        {
            name: (result.std[b] if estimator.scale else None)
            for name, b in zip(names, blocks)
        },
        result.n_samples,
        None,
    )
