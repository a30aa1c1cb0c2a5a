"""The Eckhart-Young problem: its loss and gradient, the preconditioning,
and the small closed form on the span found.

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
that the closed form uses. The means ``mu`` come from a first pass
(``_moments``).

Conditioning: Adam works on ``V`` with ``W_m = P_m V_m``, where ``P_m``
makes the entries of ``V`` of order one and ``D_mm`` well conditioned in
``V``'s coordinates:

* a modality of at most ``_WHITEN_MAX`` features is whitened exactly:
  ``P_m^T D_mm P_m = I / rank``, from its own ``d_m x d_m`` covariance,
  accumulated in the first pass (at most 32 MB);
* a wider one gets the Jacobi preconditioner ``P_m = diag(D_mm)^(-1/2) /
  sqrt(d_m)``, which only needs the feature variances.

Sparse input is never densified or centred: the projections are centred
instead, ``(X - 1 mu^T) W = X W - 1 (mu^T W)``, and so are the gradients.
"""

from __future__ import annotations

import numpy as np
from sklearn.externals.array_api_compat import device as array_device
from sklearn.externals.array_api_compat import numpy as numpy_namespace

from .. import _solvers
from .._closed_form import feature_scales
from .._conventions import equilibration_factors, sign_convention
from .._namespace import to_numpy
from .._solvers import solve
from ._moments import covariance_accumulator, first_pass
from ._rows import on_host as _on_host
from ._rows import product as _product

# Modalities up to this width are whitened exactly (d_m x d_m, <= 32 MB).
_WHITEN_MAX = 2048


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


class Problem:
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
        moments = first_pass(data, rows, whiten)
        blocks = _blocks(data.widths)
        mean = np.concatenate(moments.mean)
        variance = np.concatenate(moments.variance)
        if scale:  # the closed form's scales (1 for a constant feature)
            std = feature_scales(numpy_namespace, variance, mean)
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
                maps.append(_Dense(whitener(scaled), data.to_device))
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
        accumulator = covariance_accumulator(projected)
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
        scale = equilibration_factors(self.diagonal[first])
        signs = sign_convention(weights[first, :] * scale[:, None])
        return weights * signs[None, :]


def whitener(block_covariance):
    """``P`` with ``P^T C P = I / rank``, dropping null directions.

    The closed form's whitener (``_solvers._whitener``: Cholesky when well
    conditioned, else eigenpairs above ``d * eps``) on the equilibrated
    block (as ``_solvers.solve`` equilibrates, so features in very different
    units lose no digits), with its columns' signs fixed by
    :func:`eigenvector_signs`, then divided by ``sqrt(rank)``.
    """
    diagonal = equilibration_factors(np.diag(block_covariance))
    equilibrated = block_covariance / np.outer(diagonal, diagonal)
    white = _solvers._whitener(equilibrated)
    white = white * eigenvector_signs(white)
    return white / np.sqrt(max(white.shape[1], 1)) / diagonal[:, None]


def eigenvector_signs(vectors):
    """Signs making each column's dot product with a fixed vector > 0.

    LAPACK returns each eigenvector up to its sign, and which sign can
    change with the last bit of the input (another BLAS, or the covariance
    summed on a GPU). The whitener fixes the coordinates Adam works in, so
    without this the same ``random_state`` would start the same numbers in a
    different direction. The fixed vector has incommensurable entries, so no
    symmetric data is orthogonal to it (as ``[1, -1] / sqrt(2)`` is to
    ``[1, 1]``), unlike a rule on the largest entry (the closed form's
    ``sign_convention``), which ties there.
    """
    golden = (np.sqrt(5.0) - 1.0) / 2.0
    reference = 1.0 + np.modf(golden * np.arange(1, vectors.shape[0] + 1))[0]
    signs = np.sign(reference @ vectors)
    signs[signs == 0] = 1.0
    return signs


def _blocks(widths):
    stops = np.cumsum(widths)
    return [slice(int(stop - w), int(stop)) for w, stop in zip(widths, stops)]
