"""The optimiser: Adam on mini-batches, the learning-rate schedule, early
stopping, and the training loop.

After every epoch one pass over the rows (training rows, or the validation
rows with early stopping) gives the exact ``Mq x Mq`` covariance of the
projections, and from it the closed form restricted to ``span(W_m)``
(``Problem.solve_small``). Progress is judged on the sum of its top ``k``
correlations and on the exact loss (which falls while a random start leaves
a saddle, where the correlations stay flat): when neither has improved (by
``tol``, relative for the loss) for ``_DECAY_PATIENCE`` epochs the learning
rate is divided by ``_DECAY_FACTOR``; after ``n_iter_no_change`` epochs
training stops. The final weights, correlations, normalisation and signs
are those of the small solution for the epoch with the best correlation
sum.

Adam optimises ``q = min(2k, k + 10)`` columns, not ``k`` (oversampling, as
subspace iteration does): the top-k subspace alone converges at a rate set
by the gap ``r_k - r_(k+1)``, which can be tiny, while the final small
problem picks the top ``k`` out of the ``q`` found.

Reference: D. P. Kingma, J. Ba, "Adam: A Method for Stochastic
Optimization", ICLR 2015.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.externals.array_api_compat import numpy as numpy_namespace

from .._namespace import get_array_namespace

_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8
# Learning-rate plateau schedule: divide by _DECAY_FACTOR after
# _DECAY_PATIENCE epochs in a row without an improvement of tol.
_DECAY_PATIENCE = 2
_DECAY_FACTOR = 5.0


class GradientResult:
    """What the gradient solver found (attributes only)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def working_width(k, ranks):
    """Columns optimised: k plus oversampling (as in subspace iteration).

    The top-k subspace converges at a rate set by the gap r_k - r_(k+1),
    which can be tiny; optimising q > k columns makes the rate depend on
    r_q - r_(q+1) instead, and the final small problem keeps the top k.
    """
    return int(max(k, min(k + min(k, 10), min(ranks))))


def auto_batch(n_rows):
    # Adam normalises away the gradient's scale, so at the noise floor its
    # steps are as large as useful ones; larger batches (a better signal to
    # noise ratio per step) converged further in every case tried.
    return int(min(max(n_rows // 10, 32), 4096))


class Adam:
    """Adam (Kingma & Ba, 2015) on one array, in its namespace."""

    def __init__(self, params, learning_rate):
        self.learning_rate = learning_rate
        xp = get_array_namespace(params) or numpy_namespace
        self.first = xp.zeros_like(params)
        self.second = xp.zeros_like(params)
        self.xp = xp
        self.t = 0

    def step(self, params, gradient):
        """Return the updated ``params``; ``gradient`` is overwritten.

        In place where the namespace allows it (numpy, torch, CuPy: no
        allocation but one array); with immutable arrays the augmented
        assignments below rebind, and the returned array is the new one.
        """
        self.t += 1
        self.first *= _BETA1
        self.first += (1 - _BETA1) * gradient
        self.second *= _BETA2
        gradient *= gradient
        gradient *= 1 - _BETA2
        self.second += gradient
        rate = self.learning_rate * math.sqrt(1 - _BETA2**self.t) / (1 - _BETA1**self.t)
        denominator = self.xp.sqrt(self.second)
        denominator += _ADAM_EPS
        step = self.first / denominator
        step *= rate
        params -= step
        return params


def train(
    problem,
    data,
    V,
    adam,
    rng,
    *,
    train_rows,
    monitored,
    names,
    k,
    batch,
    max_iter,
    tol,
    n_iter_no_change,
    early_stopping,
    verbose,
):
    """The epochs, the monitoring and the final small solve; see the module."""
    n_train = len(train_rows)
    loss_curve, scores = [], []
    xp = problem.xp
    best_score, best_loss, best_V = -np.inf, np.inf, xp.asarray(V, copy=True)
    no_improvement, plateau, converged, epoch = 0, 0, False, 0
    start = time.perf_counter()
    for epoch in range(1, max_iter + 1):
        order = rng.permutation(train_rows)
        # On a device, the epoch's row order is copied there once: a copy
        # per batch would wait for the device each time.
        device_order = data.device_index(order)
        total, seen = 0.0, 0
        for begin in range(0, n_train, batch):
            batch_rows = order[begin : begin + batch]
            if len(batch_rows) < 2:
                continue
            index = (
                None
                if device_order is None
                else device_order[begin : begin + len(batch_rows)]
            )
            loss, gradient = problem.loss_and_gradient(
                V, *data.get(batch_rows, index=index)
            )
            V = adam.step(V, gradient)
            # Summed on the device; read once per epoch (one sync on a GPU).
            total = total + loss * len(batch_rows)
            seen += len(batch_rows)
        loss_curve.append(float(total) / seen)
        if not np.isfinite(loss_curve[-1]):
            raise FloatingPointError(
                "The gradient solver diverged (the loss is not finite). "
                "Lower learning_rate."
            )
        small = problem.project_covariance(V, data, monitored)
        score = float(np.sum(problem.solve_small(small, k)[0]))
        scores.append(score)
        exact_loss = problem.loss_from_covariance(small)
        if verbose:
            kind = "validation" if early_stopping else "training"
            print(
                f"Epoch {epoch}: loss={loss_curve[-1]:.6f}, {kind} correlation "
                f"sum={score:.6f}, learning rate={adam.learning_rate:.3g}, "
                f"{time.perf_counter() - start:.2f} s",
                flush=True,
            )
        # Progress is a better score, or a lower exact loss: away from the
        # optimum (e.g. while a random start leaves a saddle) the loss falls
        # while the best correlations in the span stay flat.
        loss_target = best_loss - tol * abs(best_loss)
        improved = score > best_score + tol or exact_loss < loss_target
        best_loss = min(best_loss, exact_loss)
        no_improvement = 0 if improved else no_improvement + 1
        plateau = 0 if improved else plateau + 1
        if score > best_score:
            best_score = score
            best_V = xp.asarray(V, copy=True)
        if no_improvement >= n_iter_no_change:
            converged = True
            break
        if plateau >= _DECAY_PATIENCE:
            adam.learning_rate /= _DECAY_FACTOR
            plateau = 0
    if not converged:
        warnings.warn(
            f"The gradient solver stopped after max_iter={max_iter} epochs, "
            f"before the correlation sum stopped improving by more than "
            f"tol={tol}. Increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=4,
        )
    small = problem.project_covariance(best_V, data, train_rows)
    correlations, coefficients = problem.solve_small(small, k, names=names)
    if coefficients is None:
        raise ValueError(
            "The gradient solver found fewer than n_components independent "
            "directions in a modality (the weights collapsed). Lower "
            "learning_rate, increase max_iter, or lower n_components."
        )
    weights = problem.final_weights(best_V, coefficients)
    return GradientResult(
        correlations=problem.to_device(correlations),
        weights=weights / problem.std[:, None],
        blocks=problem.blocks,
        mean=problem.mean,
        std=problem.std,
        n_samples=len(train_rows),
        n_iter=epoch,
        loss_curve=loss_curve,
        validation_scores=scores if early_stopping else None,
    )
