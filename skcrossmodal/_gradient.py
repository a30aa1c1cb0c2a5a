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

import time
import warnings

import numpy as np
from scipy import linalg, sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

from ._modalities import (
    check_no_infinite,
    check_rows_present,
    presence_mask,
    take_columns,
)
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
    X : ndarray or sparse matrix of shape (n_samples, n_features)
        Validated input.
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
        ``n_iter``, ``loss_curve``, ``validation_scores``.
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
    adam = _Adam(V.shape, learning_rate)
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
    best_score, best_loss, best_V = -np.inf, np.inf, V.copy()
    no_improvement, plateau, converged, epoch = 0, 0, False, 0
    start = time.perf_counter()
    for epoch in range(1, max_iter + 1):
        order = rng.permutation(train)
        total, seen = 0.0, 0
        for begin in range(0, n_train, batch):
            batch_rows = order[begin : begin + batch]
            if len(batch_rows) < 2:
                continue
            loss, gradient = problem.loss_and_gradient(V, *data.get(batch_rows))
            adam.step(V, gradient)
            total += loss * len(batch_rows)
            seen += len(batch_rows)
        loss_curve.append(total / seen)
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
            best_V[...] = V
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
        correlations=correlations,
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


class _Diagonal:
    """``W_m = p * V_m`` (Jacobi); ``p = 0`` on features that carry nothing."""

    def __init__(self, precondition):
        self.precondition = precondition
        self.n_parameters = len(precondition)
        self.rank = int(np.count_nonzero(precondition))

    def forward(self, V):
        return V * self.precondition[:, None]

    def backward(self, gradient):
        return gradient * self.precondition[:, None]

    def initial(self, rng, k):
        V = rng.standard_normal((self.n_parameters, k))
        V[self.precondition == 0] = 0.0
        return V


class _Dense:
    """``W_m = P V_m`` with ``P^T D_mm P = I / rank`` (exact whitening)."""

    def __init__(self, whitener):
        self.whitener = whitener
        self.n_parameters = self.rank = whitener.shape[1]

    def forward(self, V):
        return self.whitener @ V

    def backward(self, gradient):
        return self.whitener.T @ gradient

    def initial(self, rng, k):
        return rng.standard_normal((self.n_parameters, k))


class _Problem:
    """The EY loss and its gradient in V; the small problem on span(W)."""

    def __init__(self, *, blocks, maps, mean, std, ridges, counts, n_rows, diagonal):
        self.blocks = blocks
        self.maps = maps
        stops = np.cumsum([m.n_parameters for m in maps])
        self.parameter_blocks = [
            slice(int(stop - m.n_parameters), int(stop)) for m, stop in zip(maps, stops)
        ]
        self.mean = mean
        self.std = std
        self.ridges = np.asarray(ridges, dtype=float)
        self.counts = counts
        self.weights = n_rows / np.maximum(counts, 1)  # n / n_ml
        self.diagonal = diagonal  # diag(D) in the scaled space

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
        maps = []
        for m, (block, width) in enumerate(zip(blocks, data.widths)):
            if moments.covariance[m] is not None:
                scaled = moments.covariance[m] / np.outer(std[block], std[block])
                scaled[np.diag_indices(width)] += ridges[m]
                maps.append(_Dense(_whitener(scaled)))
            else:
                d = diagonal[block]
                alive = d > width * np.finfo(float).eps * max(d.max(), 0.0)
                precondition = np.zeros(width)
                precondition[alive] = 1.0 / np.sqrt(d[alive] * max(alive.sum(), 1))
                maps.append(_Diagonal(precondition))
        return cls(
            blocks=blocks,
            maps=maps,
            mean=mean,
            std=std,
            ridges=ridges,
            counts=moments.counts,
            n_rows=len(rows),
            diagonal=diagonal,
        )

    def initial_parameters(self, rng, k):
        return np.vstack([m.initial(rng, k) for m in self.maps])

    def _weights_of(self, V):
        """W (scaled space) and E = W / std (raw space), per modality."""
        W = [
            mapping.forward(V[parameters])
            for mapping, parameters in zip(self.maps, self.parameter_blocks)
        ]
        E = [w / self.std[block, None] for w, block in zip(W, self.blocks)]
        return W, E

    def loss_and_gradient(self, V, X_blocks, present):
        W, E = self._weights_of(V)
        n_rows, k = present.shape[0], V.shape[1]
        half = n_rows // 2
        n_modalities = len(W)
        Z = []
        for m, (block, X_m) in enumerate(zip(self.blocks, X_blocks)):
            z = np.asarray(X_m @ E[m]) - self.mean[block] @ E[m]
            z[~present[:, m]] = 0.0
            Z.append(z)
        ridge_gram = sum(lam * (w.T @ w) for lam, w in zip(self.ridges, W))
        # tr(B^2) from the two halves (independent rows), tr(A) from all.
        B = []
        for rows, size in ((slice(0, half), half), (slice(half, None), n_rows - half)):
            estimate = ridge_gram.copy()
            for m in range(n_modalities):
                estimate += self.weights[m, m] * (Z[m][rows].T @ Z[m][rows]) / size
            B.append(estimate)
        trace_A = sum(lam * np.sum(w**2) for lam, w in zip(self.ridges, W))
        gradient = np.empty_like(V)
        for m, (block, X_m) in enumerate(zip(self.blocks, X_blocks)):
            G = np.zeros((n_rows, k))
            for l in range(n_modalities):
                G -= (4.0 * self.weights[m, l] / n_rows) * Z[l]
                if l >= m:
                    pair = 1.0 if l == m else 2.0
                    trace_A += pair * self.weights[m, l] * np.sum(Z[m] * Z[l]) / n_rows
            G[:half] += (2.0 * self.weights[m, m] / half) * (Z[m][:half] @ B[1])
            G[half:] += (2.0 * self.weights[m, m] / (n_rows - half)) * (
                Z[m][half:] @ B[0]
            )
            G[~present[:, m]] = 0.0
            grad_E = np.asarray(X_m.T @ G) - np.outer(self.mean[block], G.sum(axis=0))
            grad_W = grad_E / self.std[block, None] + self.ridges[m] * (
                W[m] @ (2.0 * (B[0] + B[1]) - 4.0 * np.eye(k))
            )
            gradient[self.parameter_blocks[m]] = self.maps[m].backward(grad_W)
        loss = -2.0 * trace_A + np.sum(B[0] * B[1])
        return float(loss), gradient

    def project_covariance(self, V, data, rows):
        """Exact (Mk x Mk) covariance of the projections, ridge added.

        One pass over ``rows``; pairwise-complete like the closed form's, so
        it equals ``W^T C_reg W`` blockwise.
        """
        W, E = self._weights_of(V)
        k = V.shape[1]
        n_modalities = len(self.blocks)
        projected = {
            f"m{m}": np.arange(m * k, (m + 1) * k) for m in range(n_modalities)
        }
        accumulator = CovarianceAccumulator(projected, n_modalities * k)
        offsets = [self.mean[block] @ e for block, e in zip(self.blocks, E)]
        for chunk in data.chunks(rows):
            X_blocks, present = data.get(chunk)
            Z = np.empty((len(chunk), n_modalities * k))
            for m, X_m in enumerate(X_blocks):
                z = np.asarray(X_m @ E[m]) - offsets[m]
                z[~present[:, m]] = np.nan
                Z[:, m * k : (m + 1) * k] = z
            accumulator.update(Z)
        covariance = accumulator.finalize().covariance
        for m, (lam, w) in enumerate(zip(self.ridges, W)):
            covariance[m * k : (m + 1) * k, m * k : (m + 1) * k] += lam * (w.T @ w)
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
        """Stacked weights (scaled space) with the closed form's signs."""
        W, _ = self._weights_of(V)
        q, k = coefficients.shape[0] // len(W), coefficients.shape[1]
        weights = np.vstack(
            [w @ coefficients[m * q : (m + 1) * q] for m, w in enumerate(W)]
        )
        # The convention of _solvers.solve: in each component, the first
        # modality's largest weight after equilibration (times sqrt(D_ii)) is
        # positive.
        first = self.blocks[0]
        scale = np.sqrt(self.diagonal[first])
        scale = np.where(scale > np.finfo(float).tiny ** 0.25, scale, 1.0)
        equilibrated = weights[first] * scale[:, None]
        largest = np.argmax(np.abs(equilibrated), axis=0)
        signs = np.sign(equilibrated[largest, np.arange(k)])
        signs[signs == 0] = 1.0
        return weights * signs


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
    return vectors[:, keep] / np.sqrt(values[keep] * rank) / diagonal[:, None]


def _blocks(widths):
    stops = np.cumsum(widths)
    return [slice(int(stop - w), int(stop)) for w, stop in zip(widths, stops)]


class _Adam:
    """Adam (Kingma & Ba, 2015) on one array, in place."""

    def __init__(self, shape, learning_rate):
        self.learning_rate = learning_rate
        self.first = np.zeros(shape)
        self.second = np.zeros(shape)
        self.t = 0

    def step(self, params, gradient):
        """Update ``params`` in place; ``gradient`` is overwritten."""
        self.t += 1
        self.first *= _BETA1
        self.first += (1 - _BETA1) * gradient
        self.second *= _BETA2
        gradient *= gradient
        gradient *= 1 - _BETA2
        self.second += gradient
        rate = self.learning_rate * np.sqrt(1 - _BETA2**self.t) / (1 - _BETA1**self.t)
        denominator = np.sqrt(self.second, out=gradient)
        denominator += _ADAM_EPS
        np.divide(self.first, denominator, out=denominator)
        denominator *= rate
        params -= denominator


class _Rows:
    """Row batches of X, split by modality, with missing blocks zeroed.

    One pass at construction checks for infinity, finds which modalities
    each row carries (an ``(n, M)`` boolean mask, kept) and rejects partial
    NaN blocks, so the epochs skip those checks. Sparse X is split once into
    one matrix per modality (about one copy of X; a modality more than half
    non-zero is stored dense, which is smaller), so that batches need no
    column slicing; dense X is read in place.
    """

    def __init__(self, X, modalities):
        self.modalities = modalities
        self.columns = list(modalities.values())
        self.widths = [len(c) for c in self.columns]
        self.n_rows = X.shape[0]
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
        else:
            self.X, self.parts = X, None
            row_bytes = 8.0 * X.shape[1]
            self.pass_rows = int(max(256, _PASS_BYTES // row_bytes))
            present = []
            for chunk in self.chunks(np.arange(self.n_rows)):
                block = X[chunk]
                check_no_infinite(block)
                present.append(presence_mask(block, modalities))
            self.present = np.vstack(present)
        check_rows_present(self.present)
        self.has_missing = ~self.present.all(axis=0)
        self.pass_rows = int(max(256, _PASS_BYTES // row_bytes))

    def chunks(self, rows):
        for begin in range(0, len(rows), self.pass_rows):
            yield rows[begin : begin + self.pass_rows]

    def get(self, rows):
        """Return ([X_m with missing rows zeroed], presence (b, M) bool)."""
        present = self.present[rows]
        if self.parts is not None:
            return [part[rows] for part in self.parts], present
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
    ``CovarianceAccumulator``).
    """
    n_modalities = len(data.widths)
    counts = np.zeros((n_modalities, n_modalities))
    seen = np.zeros(n_modalities)
    mean = [np.zeros(w) for w in data.widths]
    squares = [np.zeros(w) for w in data.widths]
    accumulators = [
        CovarianceAccumulator({"m": np.arange(w)}, w) if small else None
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
            block = block if carried.all() else block[carried]
            if accumulators[m] is not None:  # narrow: dense is O(batch D)
                accumulators[m].update(
                    block.toarray() if sparse.issparse(block) else block
                )
            batch_mean = np.asarray(block.sum(axis=0)).ravel() / c
            if sparse.issparse(block):
                batch_squares = np.asarray(block.multiply(block).sum(axis=0)).ravel()
                batch_squares = np.maximum(batch_squares - c * batch_mean**2, 0.0)
            else:
                batch_squares = np.sum((block - batch_mean) ** 2, axis=0)
            delta = batch_mean - mean[m]
            total = seen[m] + c
            mean[m] += delta * (c / total)
            squares[m] += batch_squares + delta**2 * (seen[m] * c / total)
            seen[m] = total
    variance = [s / max(n, 1) for s, n in zip(squares, seen)]
    covariance = [
        None if acc is None or acc.n_samples_seen < 2 else acc.finalize().covariance
        for acc in accumulators
    ]
    return _Moments(counts, mean, variance, covariance)
