"""Mini-batch gradient solver for the shared projection, for very wide data.

The closed form needs the ``D x D`` block covariance, which does not fit in
memory for sparse text with 10^5 features. This solver never forms it: it
minimises an unconstrained objective with the same optimum (the
Eckhart-Young loss of Chapman et al., ICLR 2024), on mini-batches, with
Adam, in ``O(D k + batch D)`` memory (plus, for sparse X, one copy of X
split by modality).

The parts, bottom up:

* ``_rows``: row access (numpy read in place, scipy sparse split by
  modality once, array API batches taken on the device);
* ``_moments``: the statistics (one accumulator, behind
  ``covariance_accumulator``) and the first pass (means, variances, narrow
  modalities' covariances);
* ``_problem``: the EY loss and its unbiased mini-batch gradient, the
  preconditioning (whitening or Jacobi), and the small closed form on the
  span found, which gives the closed form's normalisation and signs;
* ``_optim``: Adam, the learning-rate schedule, early stopping and the
  training loop.

:func:`fit_gradient_space` runs them and returns a fitted
:class:`~skcrossmodal._shared_space.SharedSpace` and the other fitted
attributes; ``GradientSharedProjection.fit`` calls it, and so can
``SharedProjection(solver="gradient")``. :func:`fit_gradient` is the same
fit with stacked arrays, what ``SharedProjection`` calls today.

Array API input
---------------
Dense X from any array API namespace (torch, CuPy, array_api_strict; under
``sklearn.set_config(array_api_dispatch=True)``) is fitted in its own
namespace and on its own device by this same code: numpy and scipy sparse
input run it with ``array_api_compat.numpy`` as the namespace. What scales
with the rows or the features stays on the device: the row batches, every
product with X, the gradients, Adam's moments and updates, the monitoring
pass and the final weights. What is moved to the host, as numpy, is small:
the per-feature means and variances once, each narrow modality's
``d_m x d_m`` covariance once (its whitener, ``d_m x rank``, goes back), and
after every epoch the ``Mq x Mq`` covariance of the projections, whose small
problem the closed form's own numpy solver settles. The random numbers
(initial weights, row orders, the validation split) are drawn by numpy from
``random_state`` and moved to the device, so a given ``random_state`` makes
the same start, batches and steps in every namespace. Missing modalities
are not supported for array API input (a NaN raises, as for the closed
form).

Threads
-------
Every BLAS call in the epochs is skinny (at most 20 columns) and memory
bound, so the epochs run with one BLAS thread (threadpoolctl, as
scikit-learn's KMeans does in its loop): on a busy two-core machine two
OpenBLAS threads made the same fit 5 to 20 times slower.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.utils import check_random_state

from .._closed_form import check_reg, is_auto, reg_values
from .._shared_space import SharedSpace
from .._statistics import check_pair_counts
from .._threads import one_blas_thread
from ._optim import Adam, GradientResult, auto_batch, train, working_width
from ._problem import Problem
from ._rows import Rows

__all__ = ["GradientResult", "fit_gradient", "fit_gradient_space", "resolve_ridges"]


def resolve_ridges(reg, names):
    """``reg`` (a float >= 0, or a dict of them by modality) as one float per
    modality, in the order of ``names``; ``"auto"`` is refused.

    Raises
    ------
    ValueError
        For ``"auto"`` (anywhere), a dict whose keys are not exactly
        ``names``, or a negative or non-numeric value.
    """
    check_reg(reg, names)
    values = reg_values(reg, names)
    if any(is_auto(value) for value in values):
        raise ValueError(
            "reg='auto' needs every entry of the covariance (Ledoit-Wolf), "
            "which the gradient solver (GradientSharedProjection, "
            "SharedProjection(solver='gradient')) never forms. Give a number "
            "(e.g. the reg_ SharedProjection(reg='auto') chose on a "
            "subsample), or use SharedProjection's exact solvers."
        )
    for name, value in zip(names, values):
        if isinstance(value, bool) or not isinstance(value, Real) or not value >= 0:
            raise ValueError(f"reg[{name!r}] must be a float >= 0, got {value!r}.")
    return [float(value) for value in values]


def fit_gradient_space(
    X,
    modalities,
    reg,
    *,
    n_components,
    scale=False,
    max_iter=200,
    tol=1e-4,
    batch_size="auto",
    learning_rate=0.03,
    random_state=None,
    early_stopping=False,
    validation_fraction=0.1,
    n_iter_no_change=5,
    verbose=0,
):
    """Fit a shared space by the gradient solver.

    Parameters
    ----------
    X : ndarray, sparse matrix or array API array of shape \
(n_samples, n_features)
        Validated input (``validate_modal_data``).
    modalities : dict of str -> ndarray of int
        Resolved modalities (``modalities_``).
    reg : float >= 0 or dict of str -> float
        As ``GradientSharedProjection``'s ``reg``; ``"auto"`` is refused.
    n_components, scale, max_iter, tol, batch_size, learning_rate, \
random_state, early_stopping, validation_fraction, n_iter_no_change, verbose
        As in ``GradientSharedProjection``.

    Returns
    -------
    space : SharedSpace
        Means, weights (scaling folded in) and correlations, in X's
        namespace and on its device (numpy for numpy or sparse X), in the
        accumulation dtype (float64 where the device has it).
    info : dict
        The other fitted attributes: ``reg`` (dict of float), ``scale``
        (dict of per-feature divisors, or of None without ``scale``),
        ``n_samples_seen``, ``n_iter``, ``loss_curve`` and
        ``validation_scores`` (None without ``early_stopping``).
    """
    names = list(modalities)
    ridges = resolve_ridges(reg, names)
    result = fit_gradient(
        X,
        modalities,
        ridges,
        n_components=n_components,
        scale=scale,
        max_iter=max_iter,
        tol=tol,
        batch_size=batch_size,
        learning_rate=learning_rate,
        random_state=random_state,
        early_stopping=early_stopping,
        validation_fraction=validation_fraction,
        n_iter_no_change=n_iter_no_change,
        verbose=verbose,
    )
    blocks = dict(zip(names, result.blocks))
    space = SharedSpace(
        modalities,
        means={name: result.mean[block] for name, block in blocks.items()},
        weights={name: result.weights[block, :] for name, block in blocks.items()},
        correlations=result.correlations,
    )
    info = {
        "reg": dict(zip(names, ridges)),
        "scale": {
            name: (result.std[block] if scale else None)
            for name, block in blocks.items()
        },
        "n_samples_seen": result.n_samples,
        "n_iter": result.n_iter,
        "loss_curve": result.loss_curve,
        "validation_scores": result.validation_scores,
    }
    return space, info


def fit_gradient(
    X,
    modalities,
    ridges,
    *,
    n_components,
    scale,
    max_iter,
    tol,
    batch_size,
    learning_rate,
    random_state,
    early_stopping,
    validation_fraction,
    n_iter_no_change,
    verbose,
):
    """Fit the shared projection by mini-batch Adam on the EY objective.

    The stacked form of :func:`fit_gradient_space` (kept for
    ``SharedProjection``'s solver="gradient" until it delegates).

    Parameters
    ----------
    X : ndarray, sparse matrix or array API array of shape \
(n_samples, n_features)
        Validated input. An array API array (torch, CuPy, ...) is fitted in
        its namespace and on its device; it must be complete (no NaN).
    modalities : dict of str -> ndarray of int
        Resolved modalities.
    ridges : list of float
        ``lambda_m`` per modality, in the order of ``modalities``.
    n_components, scale, max_iter, tol, batch_size, learning_rate, \
random_state, early_stopping, validation_fraction, n_iter_no_change, verbose
        As in ``GradientSharedProjection``.

    Returns
    -------
    GradientResult
        ``correlations``, ``weights`` (stacked, raw feature scale),
        ``blocks`` (each modality's slice of the stacked features), ``mean``,
        ``std`` (the ``scale=True`` divisors, ones otherwise), ``n_samples``,
        ``n_iter``, ``loss_curve``, ``validation_scores``. The arrays are in
        X's namespace and on its device (numpy for numpy or sparse X), in the
        accumulation dtype (float64 where the device has it).
    """
    rng = check_random_state(random_state)
    data = Rows(X, modalities)
    names = list(modalities)
    n_samples = X.shape[0]
    rows = rng.permutation(n_samples)
    validation = None
    if early_stopping:
        n_validation = int(np.ceil(validation_fraction * n_samples))
        if n_validation < 2 or n_samples - n_validation < 2:
            raise ValueError(
                f"early_stopping=True with validation_fraction="
                f"{validation_fraction} leaves {n_validation} validation and "
                f"{n_samples - n_validation} training row(s) out of {n_samples}; "
                "both need at least 2. Provide more rows, change "
                "validation_fraction, or set early_stopping=False."
            )
        validation, rows = np.sort(rows[:n_validation]), rows[n_validation:]
    train_rows = np.sort(rows)

    problem = Problem.from_data(data, train_rows, ridges, scale)
    check_pair_counts(problem.counts, names)
    k = n_components
    q = working_width(k, [mapping.rank for mapping in problem.maps])
    V = problem.initial_parameters(rng, q)
    n_train = len(train_rows)
    batch = min(auto_batch(n_train) if batch_size == "auto" else batch_size, n_train)
    adam = Adam(V, learning_rate)
    monitored = validation if early_stopping else train_rows
    # Every BLAS call from here on is skinny (q <= 20 columns) and memory
    # bound; more threads only add synchronisation, which on a busy machine
    # cost 5-20x (as scikit-learn's KMeans, one BLAS thread in the loop).
    # The shared, counted limit: a plain threadpool_limits here left the
    # process at one BLAS thread after concurrent fits in threads.
    with one_blas_thread():
        return train(
            problem,
            data,
            V,
            adam,
            rng,
            train_rows=train_rows,
            monitored=monitored,
            names=names,
            k=k,
            batch=batch,
            max_iter=max_iter,
            tol=tol,
            n_iter_no_change=n_iter_no_change,
            early_stopping=early_stopping,
            verbose=verbose,
        )
