"""Mini-batch gradient solver for the shared projection, for very wide data.

The closed form needs the ``D x D`` block covariance, which does not fit in
memory for sparse text with 10^5 features. This solver never forms it: it
minimises an unconstrained objective with the same optimum, on mini-batches,
with Adam, in ``O(D k + batch D)`` memory (plus, for sparse X, one copy of X
split by modality, see ``_Rows``).

Objective
---------
The shared projection is the top of the generalised eigenproblem
``C_reg w = r D w`` (see ``_solvers``). The Eckhart-Young (EY) loss of
Chapman et al. (ICLR 2024) for a GEP ``A w = r B w`` with ``B`` positive
definite is

    L(W) = -2 tr(W^T A W) + tr((W^T B W)^2),

unconstrained; its minimum is ``-sum_j r_j^2`` over the top ``k``
eigenvalues, reached at ``W = V diag(r_1..r_k)^(1/2) Q`` (``V`` the top
B-normalised eigenvectors, ``Q`` any rotation), and it has no other local
minimum. Here ``A = C_reg`` and ``B = D``, so with ``z_m = (x_m - mu_m) W_m``
the projection of modality ``m``,

    W^T A W = Cov(sum_m z_m) + sum_m lambda_m W_m^T W_m,
    W^T B W = sum_m (Cov(z_m) + lambda_m W_m^T W_m),

both ``k x k`` and estimated without bias from a mini-batch; ``tr(B^2)`` is
estimated without bias as ``tr(B_1 B_2)`` with ``B_1`` and ``B_2`` from the
two halves of the batch (independent rows). With missing modalities each
block ``(m, l)`` is reweighted by ``n / n_ml`` (``n_ml`` the rows carrying
both), so the estimates stay unbiased for the pairwise-complete covariance
that the closed form uses. The means ``mu`` come from a first pass.

Adam optimises ``q = min(2k, k + 10)`` columns, not ``k`` (oversampling, as
subspace iteration does): the top-k subspace alone converges at a rate set
by the gap ``r_k - r_(k+1)``, which can be tiny, while the final small
problem picks the top ``k`` out of the ``q`` found.

Conditioning
------------
Adam works on ``V`` with ``W_m = P_m V_m``, where ``P_m`` makes the entries
of ``V`` of order one and ``D_mm`` well conditioned in ``V``'s coordinates:

* a modality of at most ``_WHITEN_MAX`` features is whitened exactly:
  ``P_m = D_mm^(-1/2) / sqrt(rank)``, from its own ``d_m x d_m`` covariance,
  accumulated in the first pass (at most 32 MB);
* a wider one gets the Jacobi preconditioner ``P_m = diag(D_mm)^(-1/2) /
  sqrt(d_m)``, which only needs the feature variances.

Sparse input is never densified or centred: the projections are centred
instead, ``(X - 1 mu^T) W = X W - 1 (mu^T W)``, and so are the gradients.

Monitoring and finishing
------------------------
After every epoch one pass over the rows (training rows, or the validation
rows with early stopping) accumulates the exact ``Mq x Mq`` covariance of
the projections (``CovarianceAccumulator`` on the projected batches). From
it comes the closed form restricted to ``span(W_m)`` for each modality,
solved with the closed form's own solver. Progress is judged on the sum of
its top ``k`` correlations and on the exact loss (which falls while a random
start leaves a saddle, where the correlations stay flat): when neither has
improved (by ``tol``, relative for the loss) for 2 epochs the learning rate
is divided by 5; after ``n_iter_no_change`` epochs training stops. The final
weights, correlations, normalisation and signs are those of the small
solution for the epoch with the best correlation sum.

Array API input
---------------
Dense X from any array API namespace (torch, CuPy, array_api_strict; under
``sklearn.set_config(array_api_dispatch=True)``) is fitted in its own
namespace and on its own device by this same code: numpy and scipy sparse
input run it with ``array_api_compat.numpy`` as the namespace. What scales
with the rows or the features stays on the device: the row batches, every
product with X, the gradients, Adam's moments and updates, the monitoring
pass (its ``Mq x Mq`` sums kept by ``_array_api.ArrayAPIAccumulator``) and
the final weights. What is moved to the host, as numpy, is small: the
per-feature means and variances once, each narrow modality's ``d_m x d_m``
covariance once (its whitener, ``d_m x rank``, goes back), and after every
epoch the ``Mq x Mq`` covariance of the projections, whose small problem the
closed form's own numpy solver settles. The random numbers (initial
weights, row orders, the validation split) are drawn by numpy from
``random_state`` as on the numpy path and moved to the device, so a given
``random_state`` makes the same start, batches and steps in every
namespace. Missing modalities are not supported for array API input (a
NaN raises, as for the closed form).

Threads
-------
Every BLAS call in the epochs is skinny (at most 20 columns) and memory
bound, so the epochs run with one BLAS thread (threadpoolctl, as
scikit-learn's KMeans does in its loop): on a busy two-core machine two
OpenBLAS threads made the same fit 5 to 20 times slower.

Reference: J. Chapman, L. Wells, A. L. Aguila, "Efficient Algorithms for the
CCA Family: Unconstrained Objectives with Unbiased Gradients", ICLR 2024.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
from scipy import linalg, sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.externals.array_api_compat import device as array_device
from sklearn.externals.array_api_compat import numpy as numpy_namespace
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

from . import _namespace
from ._array_api import ArrayAPIAccumulator, _raise_non_finite
from ._conventions import sign_convention
from ._modalities import (
    check_no_infinite,
    check_rows_present,
    presence_mask,
    take_columns,
)
from ._namespace import get_array_namespace, to_numpy
from ._namespace import to_namespace as _to_namespace
from ._solvers import solve
from ._statistics import CovarianceAccumulator, check_pair_counts

_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8
# Modalities up to this width are whitened exactly (d_m x d_m, <= 32 MB).
_WHITEN_MAX = 2048
# Learning-rate plateau schedule: divide by _DECAY_FACTOR after
# _DECAY_PATIENCE epochs in a row without an improvement of tol.
_DECAY_PATIENCE = 2
_DECAY_FACTOR = 5.0


def _working_width(k, ranks):
    """Columns optimised: k plus oversampling (as in subspace iteration).

    The top-k subspace converges at a rate set by the gap r_k - r_(k+1),
    which can be tiny; optimising q > k columns makes the rate depend on
    r_q - r_(q+1) instead, and the final small problem keeps the top k.
    """
    return int(max(k, min(k + min(k, 10), min(ranks))))


# Rows per batch in the passes that only read the data (moments,
# monitoring): enough for BLAS efficiency, small next to X.
_PASS_BYTES = 32 * 2**20


class GradientResult:
    """What the gradient solver found (attributes only)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


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
        As in ``SharedProjection``.

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
    data = _Rows(X, modalities)
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
    train = np.sort(rows)

    problem = _Problem.from_data(data, train, ridges, scale)
    check_pair_counts(problem.counts, names)
    k = n_components
    q = _working_width(k, [mapping.rank for mapping in problem.maps])
    V = problem.initial_parameters(rng, q)
    n_train = len(train)
    batch = min(_auto_batch(n_train) if batch_size == "auto" else batch_size, n_train)
    adam = _Adam(V, learning_rate)
    monitored = validation if early_stopping else train
    # Every BLAS call from here on is skinny (q <= 20 columns) and memory
    # bound; more threads only add synchronisation, which on a busy machine
    # cost 5-20x (as scikit-learn's KMeans, one BLAS thread in the loop).
    with threadpool_limits(limits=1, user_api="blas"):
        return _train(
            problem,
            data,
            V,
            adam,
            rng,
            train=train,
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


def _train(
    problem,
    data,
    V,
    adam,
    rng,
    *,
    train,
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
    n_train = len(train)
    loss_curve, scores = [], []
    xp = problem.xp
    best_score, best_loss, best_V = -np.inf, np.inf, xp.asarray(V, copy=True)
    no_improvement, plateau, converged, epoch = 0, 0, False, 0
    start = time.perf_counter()
    for epoch in range(1, max_iter + 1):
        order = rng.permutation(train)
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
                "solver='gradient' diverged (the loss is not finite). Lower "
                "learning_rate."
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
            f"solver='gradient' stopped after max_iter={max_iter} epochs, "
            f"before the correlation sum stopped improving by more than "
            f"tol={tol}. Increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=4,
        )
    small = problem.project_covariance(best_V, data, train)
    correlations, coefficients = problem.solve_small(small, k, names=names)
    if coefficients is None:
        raise ValueError(
            "solver='gradient' found fewer than n_components independent "
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
        n_samples=len(train),
        n_iter=epoch,
        loss_curve=loss_curve,
        validation_scores=scores if early_stopping else None,
    )


def _auto_batch(n_rows):
    # Adam normalises away the gradient's scale, so at the noise floor its
    # steps are as large as useful ones; larger batches (a better signal to
    # noise ratio per step) converged further in every case tried.
    return int(min(max(n_rows // 10, 32), 4096))


def _on_host(array):
    return np.asarray(array, dtype=np.float64)


class _Diagonal:
    """``W_m = p * V_m`` (Jacobi); ``p = 0`` on features that carry nothing.

    ``precondition`` is a numpy vector; ``to_device`` moves it to the data's
    namespace and device (the initial weights are drawn on the host).
    """

    def __init__(self, precondition, to_device=_on_host):
        self.dead = precondition == 0
        self.precondition = to_device(precondition)
        self.n_parameters = len(precondition)
        self.rank = int(np.count_nonzero(precondition))

    def forward(self, V):
        return V * self.precondition[:, None]

    def backward(self, gradient):
        return gradient * self.precondition[:, None]

    def initial(self, rng, k):
        """Numpy draws (the same in every namespace)."""
        V = rng.standard_normal((self.n_parameters, k))
        V[self.dead] = 0.0
        return V


class _Dense:
    """``W_m = P V_m`` with ``P^T D_mm P = I / rank`` (exact whitening)."""

    def __init__(self, whitener, to_device=_on_host):
        self.whitener = to_device(whitener)
        self.n_parameters = self.rank = whitener.shape[1]

    def forward(self, V):
        return self.whitener @ V

    def backward(self, gradient):
        return self.whitener.T @ gradient

    def initial(self, rng, k):
        return rng.standard_normal((self.n_parameters, k))


class _Problem:
    """The EY loss and its gradient in V; the small problem on span(W)."""

    def __init__(
        self,
        *,
        blocks,
        maps,
        mean,
        std,
        ridges,
        counts,
        n_rows,
        diagonal,
        xp=numpy_namespace,
        to_device=_on_host,
    ):
        # mean, std and diagonal are numpy vectors, kept on the device.
        self.xp = xp
        self.to_device = to_device
        self.blocks = blocks
        self.maps = maps
        stops = np.cumsum([m.n_parameters for m in maps])
        self.parameter_blocks = [
            slice(int(stop - m.n_parameters), int(stop)) for m, stop in zip(maps, stops)
        ]
        self.mean = to_device(mean)
        self.std = to_device(std)
        # Python floats: a numpy scalar times a non-numpy array would go
        # through numpy first.
        self.ridges = [float(ridge) for ridge in ridges]
        self.counts = counts
        self.weights = n_rows / np.maximum(counts, 1)  # n / n_ml
        self._pair_weights = [[float(w) for w in row] for row in self.weights]
        self.diagonal = to_device(diagonal)  # diag(D) in the scaled space

    @classmethod
    def from_data(cls, data, rows, ridges, scale):
        """First pass: counts, means, variances, small modalities' covariances."""
        whiten = [width <= _WHITEN_MAX for width in data.widths]
        moments = _moments(data, rows, whiten)
        blocks = _blocks(data.widths)
        mean = np.concatenate(moments.mean)
        variance = np.concatenate(moments.variance)
        if scale:  # as the closed form: std over the stacked features
            std = np.sqrt(variance)
            std = np.where(std > np.finfo(float).eps * max(std.max(), 1.0), std, 1.0)
        else:
            std = np.ones_like(variance)
        diagonal = variance / std**2 + np.repeat(np.asarray(ridges), data.widths)
        # The whiteners are computed on the host from the small d_m x d_m
        # covariances, then moved to the device (see the module docstring).
        maps = []
        for m, (block, width) in enumerate(zip(blocks, data.widths)):
            if moments.covariance[m] is not None:
                scaled = moments.covariance[m] / np.outer(std[block], std[block])
                scaled[np.diag_indices(width)] += ridges[m]
                maps.append(_Dense(_whitener(scaled), data.to_device))
            else:
                d = diagonal[block]
                alive = d > width * np.finfo(float).eps * max(d.max(), 0.0)
                precondition = np.zeros(width)
                precondition[alive] = 1.0 / np.sqrt(d[alive] * max(alive.sum(), 1))
                maps.append(_Diagonal(precondition, data.to_device))
        return cls(
            blocks=blocks,
            maps=maps,
            mean=mean,
            std=std,
            ridges=ridges,
            counts=moments.counts,
            n_rows=len(rows),
            diagonal=diagonal,
            xp=data.xp,
            to_device=data.to_device,
        )

    def initial_parameters(self, rng, k):
        """Drawn by numpy (as on the numpy path), moved to the device."""
        return self.to_device(np.vstack([m.initial(rng, k) for m in self.maps]))

    def _weights_of(self, V):
        """W (scaled space) and E = W / std (raw space), per modality."""
        W = [
            mapping.forward(V[parameters, :])
            for mapping, parameters in zip(self.maps, self.parameter_blocks)
        ]
        E = [w / self.std[block][:, None] for w, block in zip(W, self.blocks)]
        return W, E

    def _zero_missing(self, array, present, value=0.0):
        """``array`` with the rows where ``present`` (numpy bool) is False
        set to ``value``; numpy path only (array API input is complete)."""
        if present.all():
            return array
        array[~present] = value
        return array

    def loss_and_gradient(self, V, X_blocks, present):
        """The EY loss of one batch and its gradient in V, in V's namespace.

        Returns the loss as a 0-d array (no device sync) and the gradient.
        """
        xp = self.xp
        W, E = self._weights_of(V)
        n_rows, k = present.shape[0], V.shape[1]
        half = n_rows // 2
        n_modalities = len(W)
        weights = self._pair_weights
        Z = []
        for m, (block, X_m) in enumerate(zip(self.blocks, X_blocks)):
            z = _product(X_m, E[m]) - self.mean[block] @ E[m]
            Z.append(self._zero_missing(z, present[:, m]))
        ridge_gram = sum(lam * (w.T @ w) for lam, w in zip(self.ridges, W))
        # tr(B^2) from the two halves (independent rows), tr(A) from all.
        B = []
        for rows, size in ((slice(0, half), half), (slice(half, None), n_rows - half)):
            estimate = ridge_gram
            for m in range(n_modalities):
                Z_half = Z[m][rows, :]
                estimate = estimate + weights[m][m] * (Z_half.T @ Z_half) / size
            B.append(estimate)
        trace_A = sum(lam * xp.sum(w**2) for lam, w in zip(self.ridges, W))
        identity = xp.eye(k, dtype=V.dtype, device=array_device(V))
        gradients = []
        for m, (block, X_m) in enumerate(zip(self.blocks, X_blocks)):
            G = None
            for l in range(n_modalities):
                term = (4.0 * weights[m][l] / n_rows) * Z[l]
                G = -term if G is None else G - term
                if l >= m:
                    pair = 1.0 if l == m else 2.0
                    trace_A = (
                        trace_A + pair * weights[m][l] * xp.sum(Z[m] * Z[l]) / n_rows
                    )
            G = xp.concat(
                [
                    G[:half, :]
                    + (2.0 * weights[m][m] / half) * (Z[m][:half, :] @ B[1]),
                    G[half:, :]
                    + (2.0 * weights[m][m] / (n_rows - half)) * (Z[m][half:, :] @ B[0]),
                ],
                axis=0,
            )
            G = self._zero_missing(G, present[:, m])
            grad_E = (
                _product(X_m.T, G)
                - self.mean[block][:, None] * xp.sum(G, axis=0)[None, :]
            )
            grad_W = grad_E / self.std[block][:, None] + self.ridges[m] * (
                W[m] @ (2.0 * (B[0] + B[1]) - 4.0 * identity)
            )
            gradients.append(self.maps[m].backward(grad_W))
        loss = -2.0 * trace_A + xp.sum(B[0] * B[1])
        return loss, xp.concat(gradients, axis=0)

    def project_covariance(self, V, data, rows):
        """Exact (Mk x Mk) covariance of the projections, ridge added (numpy).

        One pass over ``rows``; pairwise-complete like the closed form's, so
        it equals ``W^T C_reg W`` blockwise. The projections and their sums
        stay on the device; only the small result comes to the host.
        """
        xp = self.xp
        W, E = self._weights_of(V)
        k = V.shape[1]
        n_modalities = len(self.blocks)
        projected = {
            f"m{m}": np.arange(m * k, (m + 1) * k) for m in range(n_modalities)
        }
        accumulator = data.accumulator(projected)
        offsets = [self.mean[block] @ e for block, e in zip(self.blocks, E)]
        for chunk in data.chunks(rows):
            X_blocks, present = data.get(chunk)
            Z = [
                self._zero_missing(
                    _product(X_m, E[m]) - offsets[m], present[:, m], np.nan
                )
                for m, X_m in enumerate(X_blocks)
            ]
            accumulator.update(xp.concat(Z, axis=1))
        covariance = np.array(
            to_numpy(accumulator.finalize().covariance), dtype=np.float64
        )
        for m, (lam, w) in enumerate(zip(self.ridges, W)):
            covariance[m * k : (m + 1) * k, m * k : (m + 1) * k] += lam * to_numpy(
                w.T @ w
            )
        return covariance

    def loss_from_covariance(self, covariance):
        """The exact EY loss from the (Mq x Mq) covariance of the projections.

        ``W^T A W`` is the sum of all its ``q x q`` blocks and ``W^T B W``
        the sum of the diagonal ones (the ridge is in them already).
        """
        n_modalities = len(self.blocks)
        q = covariance.shape[0] // n_modalities
        blocks = covariance.reshape(n_modalities, q, n_modalities, q)
        a = blocks.sum(axis=(0, 2))
        b = np.einsum("mimj->ij", blocks)
        return float(-2.0 * np.trace(a) + np.sum(b * b))

    def solve_small(self, covariance, k, names=None):
        """The closed form on span(W_m): correlations and (Mq, k) coefficients.

        ``q`` (the columns of V) may exceed ``k``. ``(NaN, None)`` when a
        modality's weights are (numerically) of rank below k.
        """
        n_modalities = len(self.blocks)
        q = covariance.shape[0] // n_modalities
        small_blocks = [slice(m * q, (m + 1) * q) for m in range(n_modalities)]
        names = names or [f"m{m}" for m in range(n_modalities)]
        try:
            return solve(covariance, small_blocks, k, names)
        except ValueError:
            return np.full(k, np.nan), None

    def final_weights(self, V, coefficients):
        """Stacked weights (scaled space) with the closed form's signs.

        ``coefficients`` is the small solution (numpy); the weights are in
        V's namespace.
        """
        xp = self.xp
        W, _ = self._weights_of(V)
        coefficients = self.to_device(coefficients)
        q = coefficients.shape[0] // len(W)
        weights = xp.concat(
            [w @ coefficients[m * q : (m + 1) * q, :] for m, w in enumerate(W)],
            axis=0,
        )
        # The convention of _solvers.solve: in each component, the first
        # modality's largest weight after equilibration (times sqrt(D_ii)) is
        # positive.
        first = self.blocks[0]
        scale = xp.sqrt(self.diagonal[first])
        tiny = float(np.finfo(np.float64).tiny) ** 0.25
        scale = xp.where(scale > tiny, scale, xp.ones_like(scale))
        signs = sign_convention(weights[first, :] * scale[:, None])
        return weights * signs[None, :]


def _product(X_m, dense):
    """``X_m @ dense`` as a dense array (scipy sparse @ ndarray is one)."""
    product = X_m @ dense
    return np.asarray(product) if sparse.issparse(X_m) else product


def _whitener(block_covariance):
    """``P`` with ``P^T C P = I / rank``, dropping null directions.

    Equilibrated first (as ``_solvers.solve``), so features in very
    different units lose no digits.
    """
    diagonal = np.sqrt(np.diag(block_covariance))
    diagonal = np.where(diagonal > np.finfo(float).tiny ** 0.25, diagonal, 1.0)
    equilibrated = block_covariance / np.outer(diagonal, diagonal)
    values, vectors = linalg.eigh(equilibrated)
    cutoff = max(values[-1], 0.0) * len(values) * np.finfo(float).eps
    keep = values > cutoff
    rank = max(int(keep.sum()), 1)
    vectors = vectors[:, keep] * _eigenvector_signs(vectors[:, keep])
    return vectors / np.sqrt(values[keep] * rank) / diagonal[:, None]


def _eigenvector_signs(vectors):
    """Signs making each eigenvector's dot product with a fixed vector > 0.

    LAPACK returns each eigenvector up to its sign, and which sign can
    change with the last bit of the input (another BLAS, or the covariance
    summed on a GPU). The whitener fixes the coordinates Adam works in, so
    without this the same ``random_state`` would start the same numbers in a
    different direction. The fixed vector has incommensurable entries, so no
    symmetric data is orthogonal to it (as ``[1, -1] / sqrt(2)`` is to
    ``[1, 1]``), unlike a rule on the largest entry, which ties there.
    """
    golden = (np.sqrt(5.0) - 1.0) / 2.0
    reference = 1.0 + np.modf(golden * np.arange(1, vectors.shape[0] + 1))[0]
    signs = np.sign(reference @ vectors)
    signs[signs == 0] = 1.0
    return signs


def _blocks(widths):
    stops = np.cumsum(widths)
    return [slice(int(stop - w), int(stop)) for w, stop in zip(widths, stops)]


class _Adam:
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


class _Rows:
    """Row batches of X, split by modality, with missing blocks zeroed.

    One pass at construction checks for infinity, finds which modalities
    each row carries (an ``(n, M)`` boolean mask, kept) and rejects partial
    NaN blocks, so the epochs skip those checks. Sparse X is split once into
    one matrix per modality (about one copy of X; a modality more than half
    non-zero is stored dense, which is smaller), so that batches need no
    column slicing; dense X is read in place.

    ``xp`` is the namespace the solver computes in: X's own for an array
    API array (whose batches are taken on its device, in the accumulation
    dtype), ``array_api_compat.numpy`` for numpy and scipy sparse X (float64
    batches). An array API X must be complete: its pass only checks that
    every value is finite (one device sync).
    """

    def __init__(self, X, modalities):
        self.modalities = modalities
        self.columns = list(modalities.values())
        self.widths = [len(c) for c in self.columns]
        self.n_rows = X.shape[0]
        xp = get_array_namespace(X)
        self.on_host = xp is None
        if self.on_host:
            self.xp, self.device, self.dtype = numpy_namespace, "cpu", np.float64
        else:
            self.xp, self.device = xp, array_device(X)
            self.dtype = _namespace.accumulation_dtype(xp, self.device)
        if sparse.issparse(X):
            X = X.tocsr()
            self.X = None
            self.parts, present = [], []
            for (name, columns), width in zip(modalities.items(), self.widths):
                part = take_columns(X, columns).tocsr()
                # Our own float64 copy: NaN is zeroed in place below.
                part = part.astype(np.float64, copy=np.shares_memory(part.data, X.data))
                check_no_infinite(part)
                present.append(presence_mask(part, {name: np.arange(width)})[:, 0])
                part.data[np.isnan(part.data)] = 0.0
                if part.nnz > 0.5 * part.shape[0] * part.shape[1]:
                    part = part.toarray()
                self.parts.append(part)
            self.present = np.column_stack(present)
            row_bytes = 12.0 * max(X.nnz / max(X.shape[0], 1), 1.0)
        elif self.on_host:
            self.X, self.parts = X, None
            row_bytes = 8.0 * X.shape[1]
            self.pass_rows = int(max(256, _PASS_BYTES // row_bytes))
            present = []
            for chunk in self.chunks(np.arange(self.n_rows)):
                block = X[chunk]
                check_no_infinite(block)
                present.append(presence_mask(block, modalities))
            self.present = np.vstack(present)
        else:
            self.X, self.parts = X, None
            row_bytes = 8.0 * X.shape[1]
            self.pass_rows = int(max(256, _PASS_BYTES // row_bytes))
            finite = None
            for begin in range(0, self.n_rows, self.pass_rows):
                stop = min(begin + self.pass_rows, self.n_rows)
                ok = xp.all(xp.isfinite(X[begin:stop, :]))
                finite = ok if finite is None else finite & ok
            if not bool(finite):
                # NaN (a missing modality: not supported here) or infinity.
                _raise_non_finite(xp, X, modalities)
            self.present = np.ones((self.n_rows, len(self.widths)), dtype=bool)
            # Each modality's columns: a slice when contiguous, else indices
            # copied to the device once (a copy per batch would wait for it).
            self.device_columns = []
            for columns in self.columns:
                columns = np.asarray(columns)
                if columns[-1] - columns[0] + 1 == columns.size:
                    self.device_columns.append(
                        slice(int(columns[0]), int(columns[-1]) + 1)
                    )
                else:
                    self.device_columns.append(xp.asarray(columns, device=self.device))
        check_rows_present(self.present)
        self.has_missing = ~self.present.all(axis=0)
        self.pass_rows = int(max(256, _PASS_BYTES // row_bytes))

    def to_device(self, array):
        """A numpy array as an array of the solver's namespace, device, dtype."""
        if self.on_host:
            return _on_host(array)
        return _to_namespace(self.xp, np.asarray(array), self.dtype, self.device)

    def accumulator(self, modalities):
        """Sums for the covariance of dense rows of ``xp`` (stacked columns).

        ``CovarianceAccumulator`` for numpy (NaN rows mark missing blocks),
        ``ArrayAPIAccumulator`` (complete rows) on a device.
        """
        if self.on_host:
            n_columns = sum(len(indices) for indices in modalities.values())
            return CovarianceAccumulator(modalities, n_columns)
        return ArrayAPIAccumulator(modalities)

    def chunks(self, rows):
        for begin in range(0, len(rows), self.pass_rows):
            yield rows[begin : begin + self.pass_rows]

    def device_index(self, rows):
        """``rows`` (numpy indices) on the device, or None on the host."""
        if self.on_host:
            return None
        return self.xp.asarray(np.asarray(rows), device=self.device)

    def get(self, rows, index=None):
        """Return ([X_m with missing rows zeroed], presence (b, M) bool).

        ``rows`` are numpy indices (drawn on the host); the blocks are in
        ``xp``, on the device. ``index``: ``rows`` already on the device
        (:meth:`device_index`), to save a copy.
        """
        present = self.present[rows]
        if self.parts is not None:
            return [part[rows] for part in self.parts], present
        if not self.on_host:
            xp = self.xp
            if index is None:
                index = self.device_index(rows)
            X = xp.astype(xp.take(self.X, index, axis=0), self.dtype, copy=False)
            return [
                X[:, columns]
                if isinstance(columns, slice)
                else xp.take(X, columns, axis=1)
                for columns in self.device_columns
            ], present
        X = np.asarray(self.X[rows], dtype=np.float64)
        blocks = []
        for m, columns in enumerate(self.columns):
            block = take_columns(X, columns)
            if self.has_missing[m]:
                block = np.where(present[:, m, None], block, 0.0)
            blocks.append(block)
        return blocks, present


class _Moments:
    def __init__(self, counts, mean, variance, covariance):
        self.counts = counts
        self.mean = mean
        self.variance = variance
        self.covariance = covariance


def _moments(data, rows, whiten):
    """Pair counts, per-feature means and variances, merged batch by batch.

    Each batch's mean and centred sum of squares are merged with Chan et
    al.'s update, so large offsets do not cost digits. Modalities marked in
    ``whiten`` also get their full covariance (shifted sums,
    ``data.accumulator``). The sums are taken in ``data.xp`` (on the
    device); the results, ``O(D)`` vectors and ``d_m x d_m`` matrices, are
    returned as numpy.
    """
    xp = data.xp
    n_modalities = len(data.widths)
    counts = np.zeros((n_modalities, n_modalities))
    seen = np.zeros(n_modalities)
    mean = [data.to_device(np.zeros(w)) for w in data.widths]
    squares = [data.to_device(np.zeros(w)) for w in data.widths]
    accumulators = [
        data.accumulator({"m": np.arange(w)}) if small else None
        for w, small in zip(data.widths, whiten)
    ]
    for chunk in data.chunks(rows):
        blocks, present = data.get(chunk)
        presence = present.astype(np.float64)
        counts += presence.T @ presence
        for m, block in enumerate(blocks):
            carried = present[:, m]
            c = int(carried.sum())
            if c == 0:
                continue
            # (Rows are dropped on the numpy path only: array API X is complete.)
            block = block if carried.all() else block[carried]
            if accumulators[m] is not None:  # narrow: dense is O(batch D)
                accumulators[m].update(
                    block.toarray() if sparse.issparse(block) else block
                )
            if sparse.issparse(block):
                batch_mean = np.asarray(block.sum(axis=0)).ravel() / c
                batch_squares = np.asarray(block.multiply(block).sum(axis=0)).ravel()
                batch_squares = np.maximum(batch_squares - c * batch_mean**2, 0.0)
            else:
                batch_mean = xp.sum(block, axis=0) / c
                batch_squares = xp.sum((block - batch_mean) ** 2, axis=0)
            delta = batch_mean - mean[m]
            total = seen[m] + c
            mean[m] = mean[m] + delta * float(c / total)
            squares[m] = (
                squares[m] + batch_squares + delta**2 * float(seen[m] * c / total)
            )
            seen[m] = total
    variance = [
        np.asarray(to_numpy(s), dtype=np.float64) / max(n, 1)
        for s, n in zip(squares, seen)
    ]
    mean = [np.asarray(to_numpy(m), dtype=np.float64) for m in mean]
    covariance = [
        None
        if acc is None or acc.n_samples_seen < 2
        else np.array(to_numpy(acc.finalize().covariance), dtype=np.float64)
        for acc in accumulators
    ]
    return _Moments(counts, mean, variance, covariance)
