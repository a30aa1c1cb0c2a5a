"""Closed-form solvers for the shared projection.

Given the block covariance ``C`` of the stacked modalities and a ridge
``lambda_m`` per modality, let ``C_reg`` be ``C`` with ``lambda_m I`` added to
each diagonal block and ``D = blockdiag(C_mm + lambda_m I)``. The shared
projection is the top of the generalised symmetric eigenproblem

    C_reg w = r D w,   normalised so that W^T D W = I,

(multi-set CCA; for two modalities ``r = 1 + rho`` with ``rho`` the ridge-CCA
correlations). Both solvers return

* ``correlations``: ``(r - 1) / (M - 1)``, which for two modalities is the
  canonical correlation, and for ``M`` modalities the average pairwise
  correlation of the projections when every modality has unit variance;
* ``weights``: the stacked eigenvectors times ``sqrt(M)``, so that each
  modality's block satisfies ``W_m^T D_mm W_m = I`` exactly for two
  modalities, and on average over the modalities for more.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
from scipy import linalg
from scipy.linalg import lapack

from ._conventions import equilibration_factors, finish

# Below this many features in all, the dense solve runs on one BLAS thread
# (see solver_threads).
_ONE_THREAD_MAX_FEATURES = 1500
_threadpool_controller = None


# The one-thread limit is process-wide (it sets OpenBLAS's pool size), so
# concurrent fits (GridSearchCV's threading backend) share one: the first to
# enter applies it, the last to leave restores the caller's setting. Without
# the count, a fit that entered while another held the limit would save
# "1 thread" as the original and restore it after the first had left.
_limit_lock = threading.Lock()
_limit_holders = 0
_limiter = None


@contextlib.contextmanager
def solver_threads(n_features):
    """A context that runs the dense ``D x D`` solve on one BLAS thread when
    ``D`` is small.

    The solve alternates between numpy's and scipy's OpenBLAS (two thread
    pools) on matrices of a few hundred rows, where a second thread only adds
    hand-offs (measurements on the benchmarks page); above
    ``_ONE_THREAD_MAX_FEATURES`` the eigensolver gains from more threads.
    Safe under concurrency: the caller's limits are restored when the last
    concurrent solve leaves. The controller is built once (scanning the
    loaded libraries costs milliseconds), as scikit-learn does.
    """
    global _threadpool_controller, _limit_holders, _limiter
    if n_features >= _ONE_THREAD_MAX_FEATURES:
        yield
        return
    with _limit_lock:
        if _limit_holders == 0:
            if _threadpool_controller is None:
                from threadpoolctl import ThreadpoolController

                _threadpool_controller = ThreadpoolController()
            _limiter = _threadpool_controller.limit(limits=1, user_api="blas")
        _limit_holders += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_holders -= 1
            if _limit_holders == 0:
                _limiter.restore_original_limits()
                _limiter = None


# Smallest factor kept of a Ledoit-Wolf shrunk block (see add_ridge).
_MIN_KEEP = 1e-12


def add_ridge(covariance, blocks, ridges, keep=None, *, overwrite=False):
    """Return the regularised covariance ``S C S + blockdiag(ridge_m I)``.

    ``S = blockdiag(sqrt(keep_m) I)``: each diagonal block becomes
    ``keep_m * C_mm + ridge_m * I`` and each cross block
    ``sqrt(keep_m * keep_l) * C_ml``. ``keep`` (default all 1: a plain ridge)
    is ``1 - alpha_m`` for a Ledoit-Wolf shrunk modality. Scaling the cross
    blocks with the diagonal ones keeps the result a sum of positive
    semi-definite matrices, so the canonical correlations it implies stay in
    [0, 1]; shrinking the diagonal blocks alone does not (it inflates the
    whitened cross-covariance by up to ``1 / (1 - alpha)``). With one common
    ``alpha`` this is Ledoit-Wolf shrinkage of the joint covariance towards
    ``blockdiag(mu_m I)``. A ``keep`` of 0 (Ledoit-Wolf finds the block
    indistinguishable from ``mu I``, e.g. already white data) is raised to
    ``_MIN_KEEP``, the limit ``alpha -> 1``: the directions stay those the
    cross-covariance defines, and the correlations come out near 0. With
    ``overwrite``, ``covariance`` itself is changed and returned (no
    ``D x D`` copy).
    """
    regularised = covariance if overwrite else covariance.copy()
    keep = [1.0] * len(blocks) if keep is None else [max(k, _MIN_KEEP) for k in keep]
    for m, (block, ridge, factor) in enumerate(zip(blocks, ridges, keep)):
        for l in range(m, len(blocks)):
            scale = np.sqrt(factor * keep[l])
            if scale != 1.0:
                regularised[block, blocks[l]] *= scale
                if l != m:
                    regularised[blocks[l], block] *= scale
        indices = np.arange(block.start, block.stop)
        regularised[indices, indices] += ridge
    return regularised


def solve(regularised, blocks, n_components, names, solver="svd", *, overwrite=False):
    """Solve with ``solver`` ("svd" or "eigh") after diagonal equilibration.

    Dividing row and column i of both ``C_reg`` and ``D`` by ``sqrt(D_ii)``
    leaves the eigenvalues unchanged and maps the eigenvectors back by the
    same factors, whatever the ridge; it makes every feature's variance 1, so
    features measured in wildly different units (1e-8 next to 1e8) lose no
    digits in the whitening. With ``overwrite``, ``regularised`` is
    equilibrated in place (no ``D x D`` copy) and must not be used after.
    """
    diagonal = equilibration_factors(np.diag(regularised))
    equilibrated = regularised if overwrite else regularised.copy()
    equilibrated /= diagonal[:, None]
    equilibrated /= diagonal[None, :]
    if solver == "eigh":
        correlations, weights = solve_eigh(equilibrated, blocks, n_components)
    else:
        correlations, weights = solve_svd(equilibrated, blocks, n_components, names)
    return correlations, weights / diagonal[:, None]


def solve_eigh(regularised, blocks, n_components):
    """Generalised ``eigh(C_reg, D)``; D must be positive definite."""
    dimension = regularised.shape[0]
    diagonal = np.zeros_like(regularised)
    for block in blocks:
        diagonal[block, block] = regularised[block, block]
    try:
        # .T: the same symmetric matrices, Fortran-ordered, which LAPACK
        # then overwrites instead of copying.
        values, vectors = linalg.eigh(
            regularised.T,
            diagonal.T,
            subset_by_index=[dimension - n_components, dimension - 1],
            driver="gvx",
            # Both are this module's own arrays (see solve): no D x D copies.
            overwrite_a=True,
            overwrite_b=True,
        )
    except linalg.LinAlgError as exc:
        raise ValueError(
            "solver='eigh' needs every modality's regularised covariance "
            "C_mm + reg*I to be positive definite, and at least one is not "
            "(rank-deficient data with reg=0?). Set reg > 0 or 'auto', or use "
            "solver='svd', which handles singular blocks."
        ) from exc
    return _finish(values[::-1], vectors[:, ::-1], blocks)


def solve_svd(regularised, blocks, n_components, names):
    """Whiten each modality, then decompose the whitened cross-covariances.

    Each ``D_mm`` is whitened (``_whitener``: by its Cholesky factor when
    well conditioned, else through its eigendecomposition, dropping the
    directions whose variance is below ``d_m * eps`` of the largest, so a
    singular block, e.g. ``reg=0`` with fewer rows than features, gives a
    stable answer instead of NaN). Two modalities: the SVD of the whitened
    cross-covariance. More: the symmetric eigendecomposition of the whitened
    block matrix.
    """
    whiteners = [_whitener(regularised[block, block]) for block in blocks]
    ranks = [w.shape[1] for w in whiteners]
    available = min(ranks) if len(blocks) == 2 else sum(ranks)
    if n_components > available:
        position = int(np.argmin(ranks))
        raise ValueError(
            f"n_components={n_components} is larger than the number of "
            f"components the data supports ({available}): modality "
            f"{names[position]!r} has rank {ranks[position]} after "
            "regularisation. Lower n_components, or set reg > 0."
        )
    if len(blocks) == 2:
        (x_block, y_block), (x_white, y_white) = blocks, whiteners
        cross = x_white.T @ regularised[x_block, y_block] @ y_white
        left, singular, right_t = _top_singular_triplets(cross, n_components)
        weights = np.vstack([x_white @ left, y_white @ right_t.T])
        return _finish(1.0 + singular, weights / np.sqrt(2), blocks)

    offsets = np.concatenate([[0], np.cumsum(ranks)])
    whitened = np.eye(offsets[-1])
    for m, (block_m, white_m) in enumerate(zip(blocks, whiteners)):
        for l in range(m + 1, len(blocks)):
            product = white_m.T @ regularised[block_m, blocks[l]] @ whiteners[l]
            whitened[offsets[m] : offsets[m + 1], offsets[l] : offsets[l + 1]] = product
            whitened[offsets[l] : offsets[l + 1], offsets[m] : offsets[m + 1]] = (
                product.T
            )
    values, vectors = linalg.eigh(
        whitened.T,  # symmetric; Fortran order lets LAPACK overwrite it
        subset_by_index=[offsets[-1] - n_components, offsets[-1] - 1],
        overwrite_a=True,
    )
    weights = np.vstack(
        [
            white @ vectors[offsets[m] : offsets[m + 1]]
            for m, white in enumerate(whiteners)
        ]
    )
    return _finish(values[::-1], weights[:, ::-1], blocks)


# Smallest side of the whitened cross-covariance from which its top singular
# triplets are found by a partial eigendecomposition instead of a full SVD.
_PARTIAL_SVD_MIN_SIDE = 200


def _top_singular_triplets(matrix, k):
    """The ``k`` largest singular triplets of ``matrix``, descending.

    A full SVD computes every singular vector, while the solution needs ``k``,
    often a few out of hundreds. For ``k`` well below the smaller side ``r``,
    the top ``q = min(r, 2k + 10)`` eigenvectors of the ``r x r`` Gram
    ``M M^T`` (LAPACK ``syevr`` on a subset, about five times cheaper than
    the SVD at ``r = 800``) span the top left singular subspace; the SVD of
    the small ``q x c`` projection ``U^T M`` then gives the triplets from M
    itself, so the singular values are not squared (Rayleigh-Ritz).
    """
    rows, columns = matrix.shape
    if rows > columns:
        right, singular, left_t = _top_singular_triplets(matrix.T, k)
        return left_t.T, singular, right.T
    n_subspace = min(rows, 2 * k + 10)
    if rows < _PARTIAL_SVD_MIN_SIDE or n_subspace > rows // 2:
        left, singular, right_t = linalg.svd(matrix, full_matrices=False)
        return left[:, :k], singular[:k], right_t[:k]
    _, subspace = linalg.eigh(
        matrix @ matrix.T, subset_by_index=[rows - n_subspace, rows - 1]
    )
    small_left, singular, right_t = linalg.svd(subspace.T @ matrix, full_matrices=False)
    return subspace @ small_left[:, :k], singular[:k], right_t[:k]


# Reciprocal condition number above which a block is whitened by its
# Cholesky factor: its rounding error (about eps / rcond) is then below 1e-10,
# as small as the eigendecomposition's.
_CHOLESKY_MIN_RCOND = 1e-6


def _whitener(block_covariance):
    """Return W with ``W^T C W = I`` on C's well-determined directions.

    A well-conditioned block (the usual case, with any ridge) is whitened by
    the inverse of its Cholesky factor, four times cheaper than an
    eigendecomposition; any other block by ``V_r diag(s_r)^-1/2`` over the
    eigenpairs above ``d * eps`` of the largest. Which W is used does not
    change the solution: the decomposition that follows is invariant to it.
    """
    factor, info = lapack.dpotrf(block_covariance, lower=0, clean=1)
    if info == 0:
        norm = np.abs(block_covariance).sum(axis=0).max()
        rcond, info = lapack.dpocon(factor, norm)
        if info == 0 and rcond > _CHOLESKY_MIN_RCOND:
            inverse, info = lapack.dtrtri(factor, lower=0, overwrite_c=1)
            if info == 0:
                return inverse
    values, vectors = linalg.eigh(block_covariance)
    cutoff = max(values[-1], 0.0) * block_covariance.shape[0] * np.finfo(float).eps
    keep = values > cutoff
    return vectors[:, keep] / np.sqrt(values[keep])


def _finish(values, vectors, blocks):
    """The shared conventions (``_conventions.finish``): correlations, signs."""
    return finish(values, vectors, blocks)
