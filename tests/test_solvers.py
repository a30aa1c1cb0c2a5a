"""The partial (block Krylov) eigensolver against scipy's dense eigh.

Every reference here is scipy.linalg.eigh on a dense matrix: the whitened
block matrix, or the generalised pencil ``(C_reg, blockdiag(C_mm))`` itself.
The partial path normally runs from 1 500 features (``_use_partial``); the
tests lower that threshold (monkeypatch) so that it runs on matrices of a few
hundred, where the dense reference is cheap.
"""

import numpy as np
import pytest
from scipy import linalg

from skcrossmodal import _solvers

# Correlation agreement asked of the partial solver (absolute; correlations
# are in [0, 1]) and of unit weight vectors up to sign, given a spectral gap
# of at least 1e-3 around the eigenvalue (vector error ~ residual / gap).
CORRELATION_TOL = 1e-10
VECTOR_TOL = 1e-7


@pytest.fixture
def partial_everywhere(monkeypatch):
    """Let the rule choose the partial solver from 100 features on."""
    monkeypatch.setattr(_solvers, "_PARTIAL_MIN_SIDE", 100)
    monkeypatch.setattr(_solvers, "_PARTIAL_BASIS_SHARE", 1)


def _problem(seed, widths, n_signals, n_samples=2000, reg=1e-3):
    """A regularised covariance of modalities sharing ``n_signals`` signals."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_samples, n_signals)) * np.geomspace(
        3.0, 0.5, n_signals
    )
    parts = [
        latent @ rng.standard_normal((n_signals, width))
        + rng.standard_normal((n_samples, width)) * rng.uniform(0.5, 2.0)
        for width in widths
    ]
    X = np.hstack(parts)
    X -= X.mean(axis=0)
    covariance = X.T @ X / n_samples
    edges = np.concatenate([[0], np.cumsum(widths)])
    blocks = [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]
    for block in blocks:
        covariance[block, block] += reg * np.eye(block.stop - block.start)
    return covariance, blocks


def _dense_reference(covariance, blocks, k):
    """Correlations and weights from scipy's dense generalised eigh."""
    diagonal = np.zeros_like(covariance)
    for block in blocks:
        diagonal[block, block] = covariance[block, block]
    values, vectors = linalg.eigh(covariance, diagonal)
    values, vectors = values[::-1][:k], vectors[:, ::-1][:, :k]
    n_modalities = len(blocks)
    return (values - 1.0) / (n_modalities - 1), vectors * np.sqrt(n_modalities)


def _assert_same_columns_up_to_sign(actual, expected, tol):
    scale = np.linalg.norm(expected, axis=0)
    signs = np.sign(np.sum(actual * expected, axis=0))
    error = np.linalg.norm(actual * signs - expected, axis=0) / scale
    assert error.max() < tol, error


def _whitened(covariance, blocks):
    """Dense ``blockdiag(C_mm)^-1/2 C blockdiag(C_mm)^-1/2`` by eigh."""
    roots = []
    for block in blocks:
        values, vectors = linalg.eigh(covariance[block, block])
        roots.append(vectors / np.sqrt(values))
    whitened = np.empty_like(covariance)
    for block_m, root_m in zip(blocks, roots):
        for block_l, root_l in zip(blocks, roots):
            whitened[block_m, block_l] = (
                root_m.T @ covariance[block_m, block_l] @ root_l
            )
    return whitened


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("solver", ["svd", "eigh"])
def test_partial_solve_matches_dense_generalised_eigh(
    partial_everywhere, seed, solver, monkeypatch
):
    rng = np.random.default_rng(seed)
    n_modalities = 3 + seed % 2
    widths = list(rng.integers(60, 140, size=n_modalities))
    k = int(rng.integers(1, 8))
    covariance, blocks = _problem(seed, widths, n_signals=k + 2)
    calls = []
    original = _solvers._top_eigenpairs

    def spy(matrix, n):
        found = original(matrix, n)
        calls.append(found is not None)
        return found

    monkeypatch.setattr(_solvers, "_top_eigenpairs", spy)
    names = [f"m{i}" for i in range(n_modalities)]
    correlations, weights = _solvers.solve(
        covariance.copy(), blocks, k, names, solver=solver
    )
    assert calls == [True], "the partial solver should have run and converged"
    expected_correlations, expected_weights = _dense_reference(covariance, blocks, k)
    np.testing.assert_allclose(
        correlations, expected_correlations, rtol=0, atol=CORRELATION_TOL
    )
    _assert_same_columns_up_to_sign(weights, expected_weights, VECTOR_TOL)


@pytest.mark.parametrize("seed", range(4))
def test_top_eigenpairs_on_clustered_top_eigenvalues(seed):
    # The top five eigenvalues within 1e-9 of each other, then a gap: each
    # vector is undetermined inside the cluster, so the cluster's subspace
    # (its projector) is compared, and the eigenvalues one by one.
    rng = np.random.default_rng(seed)
    side, k = 400, 5
    spectrum = np.concatenate(
        [2.0 + 1e-9 * np.arange(k)[::-1], rng.uniform(0.0, 1.2, side - k)]
    )
    basis, _ = np.linalg.qr(rng.standard_normal((side, side)))
    matrix = (basis * spectrum) @ basis.T
    matrix = (matrix + matrix.T) / 2
    values, vectors = _solvers._top_eigenpairs(matrix, k)
    expected_values, expected_vectors = linalg.eigh(
        matrix, subset_by_index=[side - k, side - 1]
    )
    np.testing.assert_allclose(values, expected_values[::-1], rtol=0, atol=1e-10)
    projector_error = np.abs(
        vectors @ vectors.T - expected_vectors @ expected_vectors.T
    ).max()
    assert projector_error < 1e-8


def test_top_eigenpairs_identity_plus_low_rank():
    # An invariant Krylov space after one product: the top eigenvalues above
    # 1 have multiplicity 1, and eigenvalue 1 fills the rest of the top k.
    rng = np.random.default_rng(3)
    side, rank, k = 500, 3, 8
    factor = rng.standard_normal((side, rank))
    matrix = np.eye(side) + factor @ factor.T / side
    values, vectors = _solvers._top_eigenpairs(matrix, k)
    expected = linalg.eigh(matrix, eigvals_only=True)[::-1][:k]
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(k), atol=1e-10)
    residual = matrix @ vectors - vectors * values
    assert np.abs(residual).max() < 1e-10


def test_partial_solve_rank_deficient_block(partial_everywhere, monkeypatch):
    # reg=0 and a modality whose columns repeat: solve_svd whitens it by
    # eigh with a cutoff, so only its column space counts. Reference: the
    # same problem with the repeated columns removed, solved densely.
    covariance, blocks = _problem(11, [120, 90, 100], n_signals=6, reg=0.0)
    widths = [120, 90, 100]
    duplicated = np.concatenate(
        [
            np.arange(0, 120),
            np.arange(120, 210),
            np.arange(120, 150),
            np.arange(210, 310),
        ]
    )
    wide = covariance[np.ix_(duplicated, duplicated)]
    wide_blocks = [slice(0, 120), slice(120, 240), slice(240, 340)]
    calls = []
    original = _solvers._top_eigenpairs
    monkeypatch.setattr(
        _solvers,
        "_top_eigenpairs",
        lambda matrix, n: calls.append(1) or original(matrix, n),
    )
    correlations, weights = _solvers.solve(
        wide.copy(), wide_blocks, 4, ["a", "b", "c"], solver="svd"
    )
    assert calls, "the partial solver should have run"
    expected, _ = _dense_reference(covariance, blocks, 4)
    np.testing.assert_allclose(correlations, expected, rtol=0, atol=CORRELATION_TOL)
    # The weights, mapped onto the data, give the same projections.
    assert sum(widths) == 310
    combined = np.zeros((310, 4))
    np.add.at(combined, duplicated, weights)
    _, reference = _dense_reference(covariance, blocks, 4)
    _assert_same_columns_up_to_sign(combined, reference, VECTOR_TOL)


@pytest.mark.parametrize(
    ("dimension", "k", "expected"),
    [
        (2400, 10, True),
        (2400, 47, True),
        (2400, 48, False),  # 42 * (48 + 10) > 2400
        (3200, 66, True),
        (1499, 1, False),  # below the side where the full reduction is cheap
        (1500, 25, True),
        (2400, 2400, False),  # k close to D
    ],
)
def test_rule(dimension, k, expected):
    assert _solvers._use_partial(dimension, k) is expected
    # The documented form of the rule, restated independently.
    assert expected == (dimension >= 1500 and 42 * (k + 10) <= dimension)


def test_k_close_to_dimension_uses_the_full_solve(monkeypatch):
    monkeypatch.setattr(_solvers, "_PARTIAL_MIN_SIDE", 100)

    def fail(*args):
        raise AssertionError("the partial solver must not run for k close to D")

    monkeypatch.setattr(_solvers, "_top_eigenpairs", fail)
    covariance, blocks = _problem(5, [50, 60, 70], n_signals=5)
    k = 170
    correlations, weights = _solvers.solve(
        covariance.copy(), blocks, k, ["a", "b", "c"], solver="svd"
    )
    expected, _ = _dense_reference(covariance, blocks, k)
    np.testing.assert_allclose(correlations, expected, rtol=0, atol=CORRELATION_TOL)


def test_fallback_when_the_iteration_does_not_converge(partial_everywhere):
    # The k-th eigenvalue inside a dense part of the spectrum (eigenvalues
    # 1e-6 apart around it, many more than the block's 10 extra vectors):
    # the iteration gives up, and the full solve answers.
    rng = np.random.default_rng(0)
    side, k = 600, 4
    spectrum = np.concatenate(
        [[3.0, 2.9, 2.8], 1.5 + 1e-6 * rng.standard_normal(200), rng.uniform(0, 1, 397)]
    )
    basis, _ = np.linalg.qr(rng.standard_normal((side, side)))
    matrix = (basis * spectrum) @ basis.T
    matrix = (matrix + matrix.T) / 2
    assert _solvers._top_eigenpairs(matrix, k) is None
    expected = linalg.eigh(matrix, eigvals_only=True)[::-1][:k]
    values, vectors = _solvers._top_eigenpairs_or_full(matrix.copy(), k)
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-10)
    residual = matrix @ vectors - vectors * values
    assert np.abs(residual).max() < 1e-10


def test_partial_solve_eigh_rejects_singular_block(partial_everywhere):
    covariance, blocks = _problem(2, [80, 90, 100], n_signals=4, reg=0.0)
    covariance[:, 0] = covariance[:, 1]
    covariance[0, :] = covariance[1, :]
    with pytest.raises(ValueError, match="positive definite"):
        _solvers.solve(covariance, blocks, 3, ["a", "b", "c"], solver="eigh")


def test_partial_top_singular_triplets_match_svd(monkeypatch):
    monkeypatch.setattr(_solvers, "_PARTIAL_MIN_SIDE", 100)
    monkeypatch.setattr(_solvers, "_PARTIAL_BASIS_SHARE", 1)
    covariance, blocks = _problem(4, [300, 260], n_signals=8)
    whitened = _whitened(covariance, blocks)
    cross = whitened[blocks[0], blocks[1]]
    left, singular, right_t = _solvers._top_singular_triplets(cross, 6)
    expected_left, expected_singular, expected_right_t = linalg.svd(cross)
    np.testing.assert_allclose(singular, expected_singular[:6], rtol=0, atol=1e-10)
    _assert_same_columns_up_to_sign(left, expected_left[:, :6], VECTOR_TOL)
    _assert_same_columns_up_to_sign(right_t.T, expected_right_t[:6].T, VECTOR_TOL)


def test_partial_is_deterministic(partial_everywhere):
    covariance, blocks = _problem(8, [120, 130, 110], n_signals=5)
    first = _solvers.solve(covariance.copy(), blocks, 4, ["a", "b", "c"])
    second = _solvers.solve(covariance.copy(), blocks, 4, ["a", "b", "c"])
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


@pytest.mark.parametrize("singular", [False, True])
def test_whitener_applies_its_matrix(singular):
    # Cholesky whiteners are applied by triangular solves and never formed;
    # each operation must equal the product with the dense W it stands for,
    # and W^T C W = I on the kept directions (eigh whitener for a singular
    # block, whose repeated column leaves rank 59).
    covariance, blocks = _problem(7, [60, 50], n_signals=3)
    block = covariance[blocks[0], blocks[0]].copy()
    if singular:
        block[:, 0] = block[:, 1]
        block[0, :] = block[1, :]
    white = _solvers._whitening(block)
    dense = white.toarray()
    assert (white.factor is None) is singular
    assert dense.shape == (60, 59 if singular else 60)
    np.testing.assert_allclose(dense.T @ block @ dense, np.eye(white.rank), atol=1e-9)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((60, 7))
    V = rng.standard_normal((white.rank, 7))
    np.testing.assert_allclose(white.left(A), dense.T @ A, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(white.right(A.T), A.T @ dense, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(white.apply(V), dense @ V, rtol=1e-10, atol=1e-12)


def test_whitened_blocks_is_the_whitened_matrix():
    # The block operator (blocks above the diagonal only) multiplies like the
    # dense whitened matrix and has its spectrum; the reference whitens by
    # eigh, a different W with the same eigenvalues (W differs by a rotation
    # within each block).
    covariance, blocks = _problem(9, [70, 40, 55], n_signals=4)
    whiteners = [_solvers._whitening(covariance[b, b]) for b in blocks]
    operator = _solvers._WhitenedBlocks.from_covariance(covariance, blocks, whiteners)
    dense = operator.toarray()
    assert operator.shape == dense.shape == (165, 165)
    np.testing.assert_allclose(dense, dense.T, rtol=0, atol=0)
    rows = np.random.default_rng(1).standard_normal((6, 165))
    np.testing.assert_allclose(rows @ operator, rows @ dense, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        np.linalg.eigvalsh(dense),
        np.linalg.eigvalsh(_whitened(covariance, blocks)),
        rtol=0,
        atol=1e-10,
    )


@pytest.mark.parametrize("singular", [False, True])
def test_whitened_blocks_made_dense_in_a_given_buffer(singular):
    # The full reduction builds the dense whitened matrix in the memory of
    # the equilibrated covariance (already mapped, so no page faults on a
    # fresh D x D array): it must be W^T C W for W = blockdiag(W_m), formed
    # here by dense products, whatever the buffer held (NaN) and with a
    # rank-deficient block making the whitened side shorter than the buffer.
    covariance, blocks = _problem(3, [50, 40, 30], n_signals=4)
    if singular:
        covariance[:, 0] = covariance[:, 1]
        covariance[0, :] = covariance[1, :]
    whiteners = [_solvers._whitening(covariance[b, b]) for b in blocks]
    operator = _solvers._WhitenedBlocks.from_covariance(covariance, blocks, whiteners)
    dense_w = linalg.block_diag(*[white.toarray() for white in whiteners])
    expected = dense_w.T @ covariance @ dense_w
    side = 119 if singular else 120
    buffer = np.full((120, 120), np.nan)
    dense = operator.toarray(out=buffer)
    assert dense.shape == (side, side)
    assert np.shares_memory(dense, buffer)
    np.testing.assert_allclose(dense, expected, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(dense, operator.toarray())
    fortran = np.full((120, 120), np.nan, order="F")
    np.testing.assert_array_equal(operator.toarray(out=fortran), dense)
    with pytest.raises(ValueError, match="contiguous float64"):
        operator.toarray(out=np.zeros((240, 240))[::2, ::2])
