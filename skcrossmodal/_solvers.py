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

import numpy as np
from scipy import linalg
from scipy.linalg import lapack
from scipy.linalg.blas import dtrsm

from ._conventions import equilibration_factors, finish
from ._threads import one_blas_thread

# Below this many features in all, the dense solve runs on one BLAS thread
# (see solver_threads).
_ONE_THREAD_MAX_FEATURES = 1500


@contextlib.contextmanager
def solver_threads(n_features):
    """A context that runs the dense ``D x D`` solve on one BLAS thread when
    ``D`` is small.

    The solve alternates between numpy's and scipy's OpenBLAS (two thread
    pools) on matrices of a few hundred rows, where a second thread only adds
    hand-offs (measurements on the benchmarks page); above
    ``_ONE_THREAD_MAX_FEATURES`` the whitening (``trsm`` on whole blocks) and
    LAPACK's full reduction gain from more threads, while the partial
    eigensolvers (narrow products, decompositions of a few hundred rows)
    still run on one thread: on two cores a second thread made them two to
    five times slower (``_top_eigenpairs``, ``_top_singular_triplets``).
    Safe under concurrency (:func:`~._threads.one_blas_thread`).
    """
    if n_features >= _ONE_THREAD_MAX_FEATURES:
        yield
        return
    with one_blas_thread():
        yield


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
    """Generalised ``eigh(C_reg, D)``; D must be positive definite.

    Which eigensolver runs follows the rule of ``_use_partial``: for
    ``k`` far below ``D``, each ``D_mm`` is reduced by its Cholesky factor
    ``U_m`` (the same reduction LAPACK's ``sygvx`` makes, one block at a
    time) and the top ``k`` eigenpairs of ``U^-T C_reg U^-1`` are found by
    ``_top_eigenpairs`` on its off-diagonal blocks (``_WhitenedBlocks``,
    ``O(D^2 k)``); otherwise, or when that does not
    converge, LAPACK's ``sygvx`` reduces the whole ``D x D`` pencil
    (``O(D^3)``).
    """
    dimension = regularised.shape[0]
    if _use_partial(dimension, n_components):
        whiteners = []
        for block in blocks:
            factor, info = lapack.dpotrf(regularised[block, block], lower=0, clean=1)
            if info != 0:
                raise ValueError(_EIGH_NOT_DEFINITE)
            whiteners.append(_Whitener(factor=factor))
        operator = _WhitenedBlocks.from_covariance(regularised, blocks, whiteners)
        found = _top_eigenpairs(operator, n_components)
        if found is not None:
            values, vectors = found
            return _finish(values, operator.weights(vectors), blocks)
        del operator
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
        raise ValueError(_EIGH_NOT_DEFINITE) from exc
    return _finish(values[::-1], vectors[:, ::-1], blocks)


_EIGH_NOT_DEFINITE = (
    "solver='eigh' needs every modality's regularised covariance "
    "C_mm + reg*I to be positive definite, and at least one is not "
    "(rank-deficient data with reg=0?). Set reg > 0 or 'auto', or use "
    "solver='svd', which handles singular blocks."
)


def solve_svd(regularised, blocks, n_components, names):
    """Whiten each modality, then decompose the whitened cross-covariances.

    Each ``D_mm`` is whitened (``_whitening``: by its Cholesky factor when
    well conditioned, else through its eigendecomposition, dropping the
    directions whose variance is below ``d_m * eps`` of the largest, so a
    singular block, e.g. ``reg=0`` with fewer rows than features, gives a
    stable answer instead of NaN). Two modalities: the SVD of the whitened
    cross-covariance. More: the top ``k`` eigenpairs of the whitened block
    matrix (``_top_eigenpairs_or_full``: block Krylov iteration when
    ``_use_partial`` allows it and it converges, else LAPACK's full
    reduction, of a dense whitened matrix built in ``regularised``'s memory:
    ``regularised`` is ``solve``'s own array, and is overwritten).
    """
    whiteners = [_whitening(regularised[block, block]) for block in blocks]
    ranks = [white.rank for white in whiteners]
    available = min(ranks) if len(blocks) == 2 else sum(ranks)
    if n_components > available:
        position = int(np.argmin(ranks))
        raise ValueError(
            f"n_components={n_components} is larger than the number of "
            f"components the data supports ({available}): modality "
            f"{names[position]!r} has rank {ranks[position]} after "
            "regularisation. Lower n_components, or set reg > 0."
        )
    operator = _WhitenedBlocks.from_covariance(regularised, blocks, whiteners)
    if len(blocks) == 2:
        with one_blas_thread():  # small decompositions (solver_threads)
            left, singular, right_t = _top_singular_triplets(
                operator.cross[0, 1], n_components
            )
        weights = operator.weights(np.vstack([left, right_t.T]))
        return _finish(1.0 + singular, weights / np.sqrt(2), blocks)
    # The blocks are whitened copies: regularised's memory is free again.
    values, vectors = _top_eigenpairs_or_full(
        operator, n_components, workspace=regularised
    )
    return _finish(values, operator.weights(vectors), blocks)


# The partial eigensolver (see _use_partial for when it runs).
# Smallest matrix side for which the top k eigenpairs are found by block
# Krylov iteration instead of LAPACK's full tridiagonal reduction, and how
# many times one cycle's Krylov basis the side must be (see _use_partial).
_PARTIAL_MIN_SIDE = 1500
_PARTIAL_BASIS_SHARE = 6
# A Ritz pair is accepted when its residual norm is below this fraction of
# the spectrum's scale (the largest Ritz value): its eigenvalue is then within
# that distance of a true one, 1e-11 * M < 1e-10 * (M - 1) on the correlations.
_PARTIAL_RESIDUAL = 1e-11
# Products with the matrix per cycle of the block Krylov iteration, and
# cycles before it is given up (full solve).
_PARTIAL_DEPTH = 6
_PARTIAL_MAX_CYCLES = 8


def _use_partial(dimension, k):
    """Whether the top ``k`` of ``dimension`` eigenpairs are found partially.

    The rule (also in docs/user_guide/performance.rst): block Krylov
    iteration (``_top_eigenpairs``) when ``dimension >= 1500`` and one
    cycle's basis, ``7 (k + 10)`` vectors, is at most a sixth of the side
    (``42 (k + 10) <= dimension``: ``k <= 47`` at 2 400 features, ``k <= 66``
    at 3 200); LAPACK's full reduction otherwise. Measured on one core
    (three modalities, n = 20 000): below 1 500 features the full reduction
    stays in cache and takes 0.02 s at 600 and 0.1 s at 1 200, less than
    the iteration; at 2 400 it takes 1.3-1.4 s against 0.4 s for the
    iteration at k = 10, while at k = 50 the two are even.
    """
    basis = (k + 10) * (_PARTIAL_DEPTH + 1)
    return dimension >= _PARTIAL_MIN_SIDE and _PARTIAL_BASIS_SHARE * basis <= dimension


def _top_eigenpairs_or_full(matrix, k, workspace=None):
    """The ``k`` largest eigenpairs of a symmetric ``matrix``, descending.

    ``matrix`` is an array or a ``_WhitenedBlocks``. Partial
    (``_top_eigenpairs``) where ``_use_partial`` says so and it converges,
    else LAPACK's ``syevr`` on a subset after a full tridiagonal reduction
    (an array ``matrix`` is overwritten; a ``_WhitenedBlocks`` is made dense
    in ``workspace``, a contiguous float64 array of at least ``D^2`` entries
    that is overwritten, when given).
    """
    side = matrix.shape[0]
    if _use_partial(side, k):
        found = _top_eigenpairs(matrix, k)
        if found is not None:
            return found
    if isinstance(matrix, _WhitenedBlocks):
        matrix = matrix.toarray(out=workspace)
    values, vectors = linalg.eigh(
        matrix.T,  # symmetric; Fortran order lets LAPACK overwrite it
        subset_by_index=[side - k, side - 1],
        overwrite_a=True,
        # Built from a covariance whose variances were checked finite
        # (_closed_form), equilibrated: entries of magnitude about 1.
        check_finite=False,
    )
    return values[::-1], vectors[:, ::-1]


def _top_eigenpairs(matrix, k):
    """Top ``k`` eigenpairs of a symmetric matrix by block Krylov iteration.

    ``O(D^2 k)`` instead of the ``O(D^3)`` of a tridiagonal reduction.
    ``matrix`` is an array or anything with ``shape`` and ``rows @ matrix``
    (``_WhitenedBlocks``). Each cycle extends a block of ``b = k + 10``
    orthonormal vectors by up to ``_PARTIAL_DEPTH`` products with
    ``matrix`` (BLAS-3), orthogonalising each new block against the basis
    (``_orthogonal_block``). After every product from the second on, the
    Rayleigh-Ritz pairs of the basis (whose Rayleigh quotient grows by one
    block row per product) are checked, so the iteration stops at the first
    product that makes them accurate rather than at the end of a cycle; a
    cycle that ends unconverged restarts from the top ``b`` Ritz vectors.
    The vectors are kept as rows, so every block is contiguous. The first
    block is a fixed-seed Gaussian one, so a fit gives the same answer on
    every run. The top ``k`` pairs are accepted when every residual
    ``||A v - theta v||`` is below ``_PARTIAL_RESIDUAL`` times the
    spectrum's scale (the largest Ritz value in magnitude): each ``theta``
    is then that close to an eigenvalue of ``A``, and each vector within
    ``residual / gap`` of its eigenvector. The ``b - k`` extra vectors keep
    eigenvalues clustered around the ``k``-th from slowing convergence.
    Returns ``None`` when the pairs have not converged after
    ``_PARTIAL_MAX_CYCLES`` cycles, or as soon as the rate of the last cycle
    says they would not (after two cycles at least): the caller then solves
    in full. ``matrix`` is not modified.
    """
    # Narrow products and small decompositions: one thread (solver_threads).
    with one_blas_thread():
        return _block_krylov(matrix, k)


def _block_krylov(matrix, k):
    side = matrix.shape[0]
    block = k + 10
    size = block * (_PARTIAL_DEPTH + 1)
    rng = np.random.default_rng(0)
    basis = np.empty((size, side))
    products = np.empty((size, side))
    # Rayleigh quotient B A B^T of the basis so far (A symmetric).
    quotient = np.empty((size, size))
    current = _orthonormal(rng.standard_normal((block, side)))
    previous = None
    for cycle in range(_PARTIAL_MAX_CYCLES):
        for step in range(_PARTIAL_DEPTH + 1):
            rows = slice(step * block, (step + 1) * block)
            filled = rows.stop
            basis[rows] = current
            products[rows] = current @ matrix
            quotient[:filled, rows] = basis[:filled] @ products[rows].T
            quotient[rows, :filled] = quotient[:filled, rows].T
            if step < _PARTIAL_DEPTH and not _ritz_check_due(step, block, side):
                current = _orthogonal_block(products[rows], basis[:filled], rng)
                continue
            values, coefficients = _ritz_pairs(quotient[:filled, :filled], block)
            vectors = coefficients.T @ basis[:filled]
            residuals = np.linalg.norm(
                coefficients[:, :k].T @ products[:filled]
                - values[:k, None] * vectors[:k],
                axis=1,
            )
            scale = max(abs(values[0]), abs(values[-1]), np.finfo(float).tiny)
            worst = residuals.max() / scale
            if worst <= _PARTIAL_RESIDUAL:
                return values[:k], vectors[:k].T
            if step < _PARTIAL_DEPTH:
                current = _orthogonal_block(products[rows], basis[:filled], rng)
        # Give up early when the rate of the last cycle could not reach the
        # tolerance within the cycles left (the k-th eigenvalue inside a
        # dense part of the spectrum, e.g. k above the number of signals):
        # the full solve is then cheaper than the cycles that would fail.
        if previous is not None:
            rate = min(worst / previous, 1.0)
            left = _PARTIAL_MAX_CYCLES - 1 - cycle
            if rate**left * worst > _PARTIAL_RESIDUAL:
                return None
        previous = worst
        # Restart from the best b Ritz vectors (orthonormal: Y^T B, Y orthogonal).
        current = vectors
    return None


def _ritz_check_due(step, block, side):
    """Whether the Ritz pairs are checked after product ``step`` of a cycle
    (always after its last).

    A check costs an eigendecomposition of the Rayleigh quotient (side
    ``(step + 1) b``), a product with the matrix ``2 D^2 b`` flops: checking
    after every product from the second on stops the iteration at the first
    accurate one, which pays while the quotient is small next to ``D``;
    with wide blocks (large ``k``) the check runs every other product.
    """
    if step == 0:
        return False
    return step % 2 == 0 or ((step + 1) * block) ** 2 <= 4 * side * block // 10


def _ritz_pairs(quotient, count):
    """The ``count`` largest eigenpairs of a Rayleigh quotient, descending;
    all its eigenvalues are returned (the last is the smallest)."""
    symmetric = (quotient + quotient.T) / 2  # symmetric up to rounding
    values, coefficients = linalg.eigh(symmetric)
    return values[::-1], coefficients[:, : -count - 1 : -1]


def _orthogonal_block(candidates, basis, rng):
    """``candidates`` orthonormalised against ``basis`` and among themselves
    (all vectors as rows).

    Classical Gram-Schmidt against the basis, then orthonormalising the block
    (``_orthonormal``), repeated. Near convergence ``A v`` is almost in the
    basis, and what is left after one round is small, so its rounding
    (``eps`` of the candidate's norm) is large relative to it: the second
    round, on the normalised block, restores orthogonality to ``eps``
    ("twice is enough"). A vector that loses more than half its norm in the
    second round was rounding noise (an invariant Krylov space, e.g. the
    identity plus a low-rank matrix, leaves nothing new): it is replaced by a
    random vector (``rng``, seeded: the same on every run), so the basis
    keeps growing, and the round is repeated.
    """
    block = _orthonormal(candidates - (candidates @ basis.T) @ basis)
    for _round in range(3):
        block -= (block @ basis.T) @ basis
        weak = np.linalg.norm(block, axis=1) < 0.5
        if not weak.any():
            break
        fresh = rng.standard_normal((int(weak.sum()), basis.shape[1]))
        block[weak] = fresh - (fresh @ basis.T) @ basis
        block = _orthonormal(block)
    return _orthonormal(block)


def _orthonormal(block):
    """An orthonormal basis of ``block``'s rows (as many as it has).

    Cholesky QR (a Gram matrix and a triangular solve: BLAS-3, several
    times faster than Householder QR on a long block) on the unit-norm
    rows when their Gram matrix is well conditioned, else Householder QR,
    which returns orthonormal vectors even for dependent ones (those then
    carry rounding noise, which ``_orthogonal_block`` replaces).
    """
    norms = np.linalg.norm(block, axis=1)
    if norms.min() > np.finfo(float).tiny ** 0.5:
        unit = block / norms[:, None]
        factor, info = lapack.dpotrf(unit @ unit.T, lower=0, clean=1)
        pivots = np.abs(np.diag(factor))
        if info == 0 and pivots.min() > _CHOLESKY_QR_MIN_PIVOT:
            # R R^T = U^T U, so U^-T R has orthonormal rows.
            return linalg.solve_triangular(factor, unit, trans="T", check_finite=False)
    orthonormal, _ = np.linalg.qr(block.T)
    return np.ascontiguousarray(orthonormal.T)


# Smallest pivot of the unit-row Gram's Cholesky factor (the block's
# smallest singular value, roughly) for Cholesky QR: its loss of
# orthogonality, about eps / pivot**2, is then below 1e-8, which the second
# Gram-Schmidt round removes.
_CHOLESKY_QR_MIN_PIVOT = 1e-4


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
    itself, so the singular values are not squared (Rayleigh-Ritz). Where
    ``_use_partial(r, k)`` allows it, the top ``k`` eigenvectors of the Gram
    come from block Krylov iteration (``_top_eigenpairs``) instead.
    """
    rows, columns = matrix.shape
    if rows > columns:
        right, singular, left_t = _top_singular_triplets(matrix.T, k)
        return left_t.T, singular, right.T
    n_subspace = min(rows, 2 * k + 10)
    if rows < _PARTIAL_SVD_MIN_SIDE or n_subspace > rows // 2:
        left, singular, right_t = linalg.svd(matrix, full_matrices=False)
        return left[:, :k], singular[:k], right_t[:k]
    gram = matrix @ matrix.T
    if _use_partial(rows, k):
        found = _top_eigenpairs(gram, k)
        if found is not None:
            return _rayleigh_ritz_svd(found[1], matrix, k)
    _, subspace = linalg.eigh(gram, subset_by_index=[rows - n_subspace, rows - 1])
    return _rayleigh_ritz_svd(subspace, matrix, k)


def _rayleigh_ritz_svd(subspace, matrix, k):
    """Top ``k`` singular triplets of ``matrix`` within ``span(subspace)``."""
    small_left, singular, right_t = linalg.svd(subspace.T @ matrix, full_matrices=False)
    return subspace @ small_left[:, :k], singular[:k], right_t[:k]


# Reciprocal condition number above which a block is whitened by its
# Cholesky factor: its rounding error (about eps / rcond) is then below 1e-10,
# as small as the eigendecomposition's.
_CHOLESKY_MIN_RCOND = 1e-6


class _Whitener:
    """``W`` with ``W^T C W = I`` for one modality's block ``C``.

    Either ``W = U^-1`` for ``C``'s Cholesky factor ``U`` (``C = U^T U``),
    applied by triangular solves (BLAS ``trsm``, in place on a Fortran-ordered
    operand) and never formed (half the flops of a product with a dense
    ``W``, and no inverse to compute), or a dense ``W``.
    """

    def __init__(self, *, factor=None, dense=None):
        self.factor, self.dense = factor, dense

    @property
    def rank(self):
        return (self.factor if self.dense is None else self.dense).shape[1]

    def left(self, A, *, overwrite=False):
        """``W^T A`` (in ``A``'s buffer if ``overwrite`` and it is
        Fortran-ordered)."""
        if self.dense is not None:
            return self.dense.T @ A
        return dtrsm(1.0, self.factor, A, trans_a=1, overwrite_b=overwrite)

    def right(self, A, *, overwrite=False):
        """``A W`` (in ``A``'s buffer if ``overwrite`` and it is
        Fortran-ordered)."""
        if self.dense is not None:
            return A @ self.dense
        return dtrsm(1.0, self.factor, A, side=1, overwrite_b=overwrite)

    def apply(self, V):
        """``W V``."""
        if self.dense is not None:
            return self.dense @ V
        return dtrsm(1.0, self.factor, V)

    def toarray(self):
        """``W`` itself."""
        if self.dense is not None:
            return self.dense
        inverse, _ = lapack.dtrtri(self.factor, lower=0)
        return inverse


def _whitening(block_covariance):
    """A ``_Whitener`` of ``block_covariance`` on its well-determined
    directions.

    A well-conditioned block (the usual case, with any ridge) is whitened by
    its Cholesky factor, four times cheaper than an eigendecomposition; any
    other block by ``V_r diag(s_r)^-1/2`` over the eigenpairs above
    ``d * eps`` of the largest. Which W is used does not change the
    solution: the decomposition that follows is invariant to it. The block
    is copied once (Fortran order), and LAPACK factors it in that copy.
    """
    work = np.array(block_covariance, order="F")
    norm = lapack.dlange("1", work)
    factor, info = lapack.dpotrf(work, lower=0, clean=1, overwrite_a=1)
    if info == 0:
        rcond, info = lapack.dpocon(factor, norm)
        if info == 0 and rcond > _CHOLESKY_MIN_RCOND:
            return _Whitener(factor=factor)
    values, vectors = linalg.eigh(block_covariance)
    cutoff = max(values[-1], 0.0) * block_covariance.shape[0] * np.finfo(float).eps
    keep = values > cutoff
    return _Whitener(dense=vectors[:, keep] / np.sqrt(values[keep]))


def _whitener(block_covariance):
    """Return W with ``W^T C W = I`` on C's well-determined directions (the
    dense matrix of :func:`_whitening`)."""
    return _whitening(block_covariance).toarray()


class _WhitenedBlocks:
    """The whitened block matrix ``I + B``, ``B_ml = W_m^T C_ml W_l``, kept
    as its blocks above the diagonal.

    A product with it reads those blocks (each twice, as ``B_ml`` and
    ``B_ml^T``) instead of a dense ``D x D`` matrix whose diagonal blocks are
    identities: a third less memory traffic for three modalities, and no
    ``D x D`` array to allocate and fill. Supports ``rows @ self`` (the
    symmetric matrix times row vectors, as ``_top_eigenpairs`` asks).
    """

    # numpy then leaves ``rows @ self`` to __rmatmul__ instead of turning
    # this object into an array.
    __array_ufunc__ = None

    def __init__(self, cross, offsets, whiteners):
        self.cross, self.offsets, self.whiteners = cross, offsets, whiteners
        self.shape = (offsets[-1], offsets[-1])

    @classmethod
    def from_covariance(cls, regularised, blocks, whiteners):
        offsets = np.concatenate([[0], np.cumsum([w.rank for w in whiteners])])
        cross = {}
        for m, (block_m, white_m) in enumerate(zip(blocks, whiteners)):
            for l in range(m + 1, len(blocks)):
                # One Fortran-ordered copy of C_ml, whitened in place.
                block = np.array(regularised[block_m, blocks[l]], order="F")
                block = white_m.left(block, overwrite=True)
                cross[m, l] = whiteners[l].right(block, overwrite=True)
        return cls(cross, offsets, whiteners)

    def _part(self, m):
        return slice(self.offsets[m], self.offsets[m + 1])

    def __rmatmul__(self, rows):
        out = np.array(rows, dtype=float)
        for (m, l), block in self.cross.items():
            out[:, self._part(l)] += rows[:, self._part(m)] @ block
            out[:, self._part(m)] += rows[:, self._part(l)] @ block.T
        return out

    def toarray(self, out=None):
        """The dense ``I + B``; in ``out``'s memory when given (a contiguous
        float64 array of at least ``D^2`` entries, overwritten).

        Reusing memory that is already mapped matters: a fresh ``D x D``
        array costs page faults on first touch (112 ms for ``np.eye`` at
        ``D = 2 400`` on the benchmark machine, 10 % of the pass over
        20 000 rows).
        """
        side = self.shape[0]
        if out is None:
            dense = np.empty((side, side))
        else:
            contiguous = out.flags.c_contiguous or out.flags.f_contiguous
            if not (out.dtype == np.float64 and contiguous):
                raise ValueError("out must be a contiguous float64 array")
            # Its memory, in memory order (a view: out is contiguous).
            dense = out.ravel(order="K")[: side * side].reshape(side, side)
        for m in range(len(self.offsets) - 1):
            part = self._part(m)
            dense[part, part] = 0.0
            np.fill_diagonal(dense[part, part], 1.0)
        for (m, l), block in self.cross.items():
            dense[self._part(m), self._part(l)] = block
            dense[self._part(l), self._part(m)] = block.T
        return dense

    def weights(self, vectors):
        """The weights ``blockdiag(W_m) V`` of whitened vectors ``V``,
        C-ordered (as a pickled copy is, so both project bit-identically)."""
        return np.ascontiguousarray(
            np.vstack(
                [
                    white.apply(vectors[self._part(m)])
                    for m, white in enumerate(self.whiteners)
                ]
            )
        )


def _finish(values, vectors, blocks):
    """The shared conventions (``_conventions.finish``): correlations, signs."""
    return finish(values, vectors, blocks)
