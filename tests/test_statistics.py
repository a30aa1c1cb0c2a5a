"""The one statistics accumulator (skcrossmodal._statistics), every namespace.

Each test runs on numpy, scipy sparse (CSR), array_api_strict (on its
"device1", which refuses any conversion to numpy as a GPU would) and torch
CPU, and compares with a brute-force pairwise-complete, weighted covariance
computed here in extended precision (``np.longdouble``), row by row
definitions and nothing of the accumulator's algebra.

Tolerances, measured (largest error relative to the largest variance, worst
over the namespaces and 3 seeds): plain data 4e-16; offsets 1e8 + signal in
every path (dense, sparse, mixed, array API, Dask with sparse chunks) 3e-14,
where sums without the shift would be off by O(1) (the sparse paths were,
before the shift reached them); integer weights against repeated rows 1e-15;
Ledoit-Wolf against scikit-learn 3e-15 (relative). Tested at 1e-10.
"""

import numpy as np
import pytest
import scipy.sparse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sklearn.covariance import ledoit_wolf_shrinkage
from xp_testing import ARRAY_API_NAMESPACES, to_xp

from skcrossmodal import _numpy_sums, _statistics
from skcrossmodal._namespace import accumulation_dtype, get_array_namespace, to_numpy
from skcrossmodal._statistics import CovarianceAccumulator

# Scipy sparse besides the namespaces of the other estimators' tests.
NAMESPACES = ["numpy", "sparse", *ARRAY_API_NAMESPACES]
# Modalities interleaved and out of order, so column gathering is exercised.
MODALITIES = {
    "a": np.array([0, 3, 4, 9]),
    "b": np.array([1, 2, 7]),
    "c": np.array([5, 6, 8, 10, 11]),
}
N_FEATURES = 12


def convert(namespace, X):
    if namespace == "numpy":
        return X
    if namespace == "sparse":
        return scipy.sparse.csr_matrix(X)
    return to_xp(namespace, X)


def host(array):
    return np.asarray(to_numpy(array), dtype=np.float64)


@pytest.fixture
def small_chunks(monkeypatch):
    """256-row chunks in every path, so batches span several chunks."""
    monkeypatch.setattr(_numpy_sums, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(_statistics, "_XP_CHUNK_BYTES", 1)


def make_data(n=1500, *, offset=0.0, missing=True, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))
    X = latent @ rng.normal(size=(2, N_FEATURES)) + rng.normal(size=(n, N_FEATURES))
    X *= rng.uniform(0.5, 3.0, size=N_FEATURES)
    X += offset * rng.uniform(0.5, 1.5, size=N_FEATURES)
    if missing:
        names = list(MODALITIES)
        for row in rng.choice(n, size=n // 3, replace=False):
            # Keep one modality at least in each row.
            absent = rng.choice(names, size=rng.integers(1, 3), replace=False)
            for name in absent:
                X[row, MODALITIES[name]] = np.nan
    return X


def brute_force(X, modalities=MODALITIES, weights=None):
    """Means, pairwise-complete covariance and pair weights, by definition."""
    X = np.asarray(X, dtype=np.longdouble)
    n = X.shape[0]
    w = np.ones(n, np.longdouble) if weights is None else np.asarray(weights)
    w = w.astype(np.longdouble)
    columns = np.concatenate(list(modalities.values()))
    owner = np.repeat(np.arange(len(modalities)), [len(c) for c in modalities.values()])
    present = np.column_stack([~np.isnan(X[:, c[0]]) for c in modalities.values()])
    stacked = X[:, columns]
    mean = np.empty(len(columns), np.longdouble)
    for i in range(len(columns)):
        rows = present[:, owner[i]]
        mean[i] = np.sum(w[rows] * stacked[rows, i]) / np.sum(w[rows])
    covariance = np.empty((len(columns),) * 2, np.longdouble)
    for i in range(len(columns)):
        for j in range(len(columns)):
            rows = present[:, owner[i]] & present[:, owner[j]]
            centred = (stacked[rows, i] - mean[i]) * (stacked[rows, j] - mean[j])
            covariance[i, j] = np.sum(w[rows] * centred) / np.sum(w[rows])
    counts = np.array(
        [[np.sum(w[present[:, m] & present[:, l]]) for l in range(3)] for m in range(3)]
    )
    return mean.astype(float), covariance.astype(float), counts.astype(float)


def assert_statistics(stats, X, weights=None, rtol=1e-10):
    mean, covariance, counts = brute_force(X, weights=weights)
    scale = np.abs(np.diag(covariance)).max()
    np.testing.assert_allclose(
        host(stats.covariance), covariance, rtol=0, atol=rtol * scale
    )
    spread = np.sqrt(np.diag(covariance))
    np.testing.assert_allclose(host(stats.mean), mean, rtol=0, atol=rtol * spread.max())
    np.testing.assert_allclose(host(stats.counts), counts, rtol=1e-12)


def accumulate(namespace, batches, weights=None, **kwargs):
    acc = CovarianceAccumulator(MODALITIES, N_FEATURES, **kwargs)
    weights = weights or [None] * len(batches)
    for batch, w in zip(batches, weights):
        acc.update(convert(namespace, batch), sample_weight=w)
    return acc


# -- the statistics ------------------------------------------------------------


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
def test_batches_equal_the_brute_force_covariance(namespace, missing, small_chunks):
    X = make_data(missing=missing, offset=5.0)
    acc = accumulate(namespace, np.split(X, [2, 3, 700]))
    stats = acc.finalize()
    assert acc.n_samples_seen == X.shape[0]
    assert_statistics(stats, X)
    np.testing.assert_array_equal(
        stats.columns, np.concatenate(list(MODALITIES.values()))
    )
    expected_namespace = None if namespace in ("numpy", "sparse") else namespace
    name = None if acc.namespace is None else acc.namespace.__name__
    assert (name is None) == (expected_namespace is None)
    if expected_namespace is not None:
        assert expected_namespace in name
        assert type(stats.covariance).__module__.startswith(expected_namespace)
        # Array API sums are always shifted, by the first batch's mean.
        first = X[:2, stats.columns]
        given = np.maximum((~np.isnan(first)).sum(axis=0), 1)
        shift = np.nansum(first, axis=0) / given  # 0 where both rows miss it
        np.testing.assert_allclose(host(acc.shift), shift, rtol=1e-12)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_merge_equals_one_pass(namespace, small_chunks):
    X = make_data()
    whole = accumulate(namespace, [X]).finalize()
    first = accumulate(namespace, [X[:600]])
    second = CovarianceAccumulator(MODALITIES, N_FEATURES)
    second.shift, second.large_offset = first.shift, first.large_offset
    second.update(convert(namespace, X[600:]))
    merged = first.merge(second).finalize()
    scale = np.abs(host(whole.covariance)).max()
    np.testing.assert_allclose(
        host(merged.covariance), host(whole.covariance), atol=1e-12 * scale
    )
    assert first.n_samples_seen == X.shape[0]


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_finalize_needs_two_rows_per_modality_and_paired_rows(namespace):
    acc = CovarianceAccumulator(MODALITIES, N_FEATURES)
    with pytest.raises(ValueError, match="present in 0 row"):
        acc.finalize()
    X = make_data(n=20, missing=False)
    X[:10, MODALITIES["a"]] = np.nan
    X[10:, MODALITIES["b"]] = np.nan
    acc.update(convert(namespace, X))
    with pytest.raises(ValueError, match="'a' and 'b' are never present"):
        acc.finalize()


# -- one arithmetic for every path (large offsets) ---------------------------


@pytest.mark.parametrize(
    "kinds",
    [
        ("numpy", "numpy"),
        ("sparse", "sparse"),
        ("numpy", "sparse"),
        ("sparse", "numpy"),
        ("float32", "sparse"),
        *[(name, name) for name in ARRAY_API_NAMESPACES],
    ],
    ids="-then-".join,
)
def test_large_offsets_give_the_dense_answer_in_every_path(kinds, small_chunks):
    """1e8 + signal: unshifted sums of squares would lose every digit of the
    signal's covariance (1e16 * eps ~ 1), in any path that skipped the shift."""
    X = make_data(offset=1e8, n=1200)
    first, second = X[:500], X[500:]
    if kinds[0] == "float32":
        X = make_data(offset=3.0, n=1200)
        first, second = X[:500].astype(np.float32), X[500:]
        X = np.vstack([first.astype(np.float64), second])
        kinds = ("numpy", kinds[1])
    for fourth_moments in (False, True):
        acc = CovarianceAccumulator(
            MODALITIES, N_FEATURES, fourth_moments=fourth_moments
        )
        for kind, batch in zip(kinds, (first, second)):
            acc.update(convert(kind, batch))
        assert_statistics(acc.finalize(), X, rtol=1e-10)


def test_sparse_offsets_in_dask_chunks(small_chunks):
    da = pytest.importorskip("dask.array")
    X = make_data(offset=1e8, n=1200)
    lazy = da.from_array(X, chunks=(300, N_FEATURES)).map_blocks(
        scipy.sparse.csr_matrix, dtype=X.dtype
    )
    from skcrossmodal._dask import accumulate_dask

    acc = accumulate_dask(lazy, CovarianceAccumulator(MODALITIES, N_FEATURES))
    assert_statistics(acc.finalize(), X, rtol=1e-10)


@pytest.mark.parametrize("started", [False, True])
def test_a_rejected_dask_array_leaves_the_statistics_as_they_were(started):
    da = pytest.importorskip("dask.array")
    from skcrossmodal._dask import accumulate_dask

    X = make_data(n=900)
    acc = CovarianceAccumulator(MODALITIES, N_FEATURES)
    if started:
        acc.update(X[:100])
    before = snapshot(acc)
    bad = X.copy()
    bad[700, MODALITIES["b"][0]] = np.inf  # in the last of three chunks
    with pytest.raises(ValueError, match="infinity"):
        accumulate_dask(da.from_array(bad, chunks=(300, N_FEATURES)), acc)
    assert_same_state(before, snapshot(acc))
    # Dask chunks are numpy: they join numpy sums, not array API ones.
    acc.check_compatible(da.from_array(X), method="partial_fit")
    torch_first = accumulate("torch", [X])
    with pytest.raises(ValueError, match="same array namespace and device"):
        torch_first.check_compatible(da.from_array(X), method="partial_fit")


# -- sample_weight ------------------------------------------------------------


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
def test_integer_weights_equal_repeated_rows(namespace, missing, small_chunks):
    X = make_data(n=700, missing=missing, offset=2.0)
    weights = np.random.default_rng(1).integers(0, 4, size=X.shape[0])
    weights[0] = 1  # the first row sets nothing special
    batches = np.split(X, [300])
    weighted = accumulate(
        namespace,
        batches,
        weights=[w.astype(float) for w in np.split(weights, [300])],
        fourth_moments=True,
    )
    repeated = accumulate(
        namespace, [np.repeat(X, weights, axis=0)], fourth_moments=True
    )
    a, b = weighted.finalize(), repeated.finalize()
    scale = np.abs(host(b.covariance)).max()
    np.testing.assert_allclose(
        host(a.covariance), host(b.covariance), atol=1e-12 * scale
    )
    np.testing.assert_allclose(host(a.mean), host(b.mean), atol=1e-12 * np.sqrt(scale))
    np.testing.assert_allclose(host(a.counts), host(b.counts))
    # Zero weights are rows dropped: counted nowhere.
    assert weighted.n_samples_seen == np.count_nonzero(weights)
    assert_statistics(a, X, weights=weights)
    for position, block in enumerate(a.blocks):
        scale_m = np.linspace(0.5, 2.0, block.stop - block.start)
        np.testing.assert_allclose(
            a.ledoit_wolf_shrinkage(position, scale_m),
            b.ledoit_wolf_shrinkage(position, scale_m),
            rtol=1e-10,
            atol=1e-12,
        )


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_fractional_weights_equal_the_weighted_definition(namespace, small_chunks):
    X = make_data(n=900)
    weights = np.random.default_rng(2).uniform(0, 3, size=X.shape[0])
    acc = accumulate(namespace, np.split(X, [400]), weights=np.split(weights, [400]))
    assert_statistics(acc.finalize(), X, weights=weights)


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize(
    "weights, message",
    [
        (-1.0, "finite and non-negative; row 3"),
        (np.nan, "finite and non-negative; row 3"),
        (np.inf, "finite and non-negative; row 3"),
        ("short", r"sample_weight has shape \(9,\); expected \(10,\)"),
    ],
)
def test_bad_sample_weight_is_a_clear_error(namespace, weights, message):
    X = make_data(n=10, missing=False)
    if isinstance(weights, str):
        w = np.ones(9)
    else:
        w = np.ones(10)
        w[3] = weights
    acc = CovarianceAccumulator(MODALITIES, N_FEATURES)
    with pytest.raises(ValueError, match="sample_weight") as error:
        acc.update(convert(namespace, X), sample_weight=w)
    assert error.match(message)
    assert acc.gram is None and acc.n_samples_seen == 0


# -- ledoit-wolf ---------------------------------------------------------------


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_ledoit_wolf_equals_scikit_learn(namespace, small_chunks):
    X = make_data(n=800, missing=False, offset=40.0)
    acc = accumulate(namespace, np.split(X, [300]), fourth_moments=True)
    stats = acc.finalize()
    for position, columns in enumerate(MODALITIES.values()):
        scale = np.linspace(0.5, 2.0, len(columns))
        shrinkage, target = stats.ledoit_wolf_shrinkage(position, scale)
        expected = ledoit_wolf_shrinkage(X[:, columns] / scale)
        assert shrinkage == pytest.approx(expected, rel=1e-10, abs=1e-13)
        standardized = (X[:, columns] - X[:, columns].mean(0)) / scale
        assert target == pytest.approx(np.mean(np.var(standardized, axis=0)), rel=1e-10)


# -- namespaces and devices ------------------------------------------------------


def test_later_batches_must_share_the_namespace():
    torch = pytest.importorskip("torch")
    X = make_data(n=50, missing=False)
    numpy_first = accumulate("numpy", [X])
    with pytest.raises(ValueError, match="same array namespace"):
        numpy_first.update(torch.asarray(X))
    numpy_first.update(scipy.sparse.csr_matrix(X))  # sparse joins numpy sums
    torch_first = accumulate("torch", [X])
    assert torch_first.namespace is not None and torch_first.device is not None
    for other in (X, scipy.sparse.csr_matrix(X), convert("array_api_strict", X)):
        with pytest.raises(ValueError, match="same array namespace and device"):
            torch_first.update(other)
    assert torch_first.n_samples_seen == 50


def test_get_array_namespace():
    X = make_data(n=20, missing=False)
    assert get_array_namespace(X) is None
    assert get_array_namespace([[1.0, 2.0]]) is None
    assert get_array_namespace(scipy.sparse.csr_matrix(X)) is None
    xp_strict = pytest.importorskip("array_api_strict")
    assert get_array_namespace(xp_strict.asarray(X)) is xp_strict
    torch = pytest.importorskip("torch")
    assert "torch" in get_array_namespace(torch.asarray(X)).__name__


def test_accumulation_dtype_on_cpu():
    xp_strict = pytest.importorskip("array_api_strict")
    assert accumulation_dtype(xp_strict, None) == xp_strict.float64
    torch = pytest.importorskip("torch")
    xp = get_array_namespace(torch.zeros((2, 2)))
    assert accumulation_dtype(xp, torch.device("cpu")) == torch.float64


# -- atomic updates (hypothesis) ------------------------------------------------


def snapshot(acc):
    names = ["shift", "large_offset", "gram", "sum_given", "pair_counts", "pair_rows"]
    state = {name: getattr(acc, name) for name in names}
    state = {k: None if v is None else np.array(to_numpy(v)) for k, v in state.items()}
    for name in ("square_gram", "square_cross"):
        value = getattr(acc, name)
        state[name] = None if value is None else [np.array(to_numpy(v)) for v in value]
    state["n_rows"] = acc.n_rows
    return state


def assert_same_state(before, after):
    assert before.keys() == after.keys()
    for name, value in before.items():
        other = after[name]
        if value is None or isinstance(value, int):
            assert other == value, name
        elif isinstance(value, list):
            assert len(value) == len(other)
            for a, b in zip(value, other):
                np.testing.assert_array_equal(a, b, err_msg=name, strict=True)
        else:
            np.testing.assert_array_equal(value, other, err_msg=name, strict=True)


BAD_ROWS = {
    "infinity": "infinity",
    "partial NaN": "NaN in only part",
    "no modality": "no modality present",
    "overflow": "overflowed",
}


def spoil(X, row, kind, rng):
    X = X.copy()
    if kind == "infinity":
        X[row, rng.integers(N_FEATURES)] = rng.choice([np.inf, -np.inf])
    elif kind == "partial NaN":
        columns = MODALITIES[rng.choice(list(MODALITIES))]
        X[row, columns] = 0.5
        X[row, columns[rng.integers(len(columns))]] = np.nan
    elif kind == "no modality":
        X[row] = np.nan
    else:
        # Finite values whose squares overflow, whatever the shift.
        other = (row + 1) % X.shape[0]
        X[row, MODALITIES["a"]] = 1e200
        X[other, MODALITIES["a"]] = -1e200
    return X


def edge_examples(test):
    """Each kind of bad row in a tiny batch (last row) and in a batch of
    several chunks (the middle), after complete rows."""
    for kind in BAD_ROWS:
        for n_rows, where in [(5, 0.9), (800, 0.5)]:
            test = example(
                n_rows=n_rows,
                where=where,
                kind=kind,
                started="complete",
                weighted=False,
                fourth_moments=True,
                seed=0,
            )(test)
    return test


@pytest.mark.parametrize("namespace", NAMESPACES)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@edge_examples
@given(
    # Small batches (in place once started) as often as large ones.
    n_rows=st.one_of(st.integers(1, 11), st.integers(12, 900)),
    where=st.floats(0, 1, exclude_max=True),
    kind=st.sampled_from(list(BAD_ROWS)),
    started=st.sampled_from([None, "complete", "missing"]),
    weighted=st.booleans(),
    fourth_moments=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_a_rejected_batch_leaves_the_statistics_exactly_as_they_were(
    namespace,
    small_chunks,
    n_rows,
    where,
    kind,
    started,
    weighted,
    fourth_moments,
    seed,
):
    """A bad row anywhere in a batch of any size (one chunk or several; in
    place for small batches, into a temporary for large ones; complete or
    with missing modalities elsewhere) raises and changes no array."""
    rng = np.random.default_rng(seed)
    n_rows = max(n_rows, 2) if kind == "overflow" else n_rows
    acc = CovarianceAccumulator(MODALITIES, N_FEATURES, fourth_moments=fourth_moments)
    if started is not None:
        acc.update(convert(namespace, make_data(n=40, missing=started == "missing")))
    X = make_data(n=n_rows, missing=rng.random() < 0.5, seed=seed)
    row = int(where * n_rows)
    X = spoil(X, row, kind, rng)
    weights = rng.uniform(0.5, 2, size=n_rows) if weighted else None
    before = snapshot(acc)
    with pytest.raises(ValueError, match=BAD_ROWS[kind]):
        acc.update(convert(namespace, X), sample_weight=weights)
    assert_same_state(before, snapshot(acc))


@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
@pytest.mark.parametrize("constant", [False, True])
def test_consuming_finalize_equals_the_kept_one(missing, constant):
    # fit builds the covariance in the Gram's own buffer; the result must be
    # the non-destructive one bit for bit (same band arithmetic), with a
    # constant column (whose row and column are zeroed afterwards) too, and
    # the consumed accumulator must refuse to be used again.
    X = make_data(800, missing=missing, seed=3)
    if constant:
        X[:, 4] = np.where(np.isnan(X[:, 4]), np.nan, 2.5)  # column of "c"
    kept = accumulate("numpy", [X[:300], X[300:]]).finalize()
    acc = accumulate("numpy", [X[:300], X[300:]])
    consumed = acc.finalize(consume=True)
    np.testing.assert_array_equal(consumed.covariance, kept.covariance)
    np.testing.assert_array_equal(consumed.mean, kept.mean)
    for use in (acc.finalize, lambda: acc.update(X[:5]), lambda: acc.merge(acc)):
        with pytest.raises(RuntimeError, match="consume=True"):
            use()


def test_consume_keeps_the_gram_that_ledoit_wolf_reads():
    # With fourth moments (reg="auto") the Gram is read again after the
    # covariance: consume must leave it alone.
    X = make_data(600, missing=False, seed=4)
    acc = accumulate("numpy", [X], fourth_moments=True)
    gram = acc.gram.copy()
    acc.finalize(consume=True)
    np.testing.assert_array_equal(acc.gram, gram)
    acc.update(X[:10])  # still usable


IN_ORDER = {"a": np.arange(0, 4), "b": np.arange(4, 7), "c": np.arange(7, 12)}


@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
@pytest.mark.parametrize(
    "layout", ["float64 C", "float64 F", "float32 C", "offset 1e8", "weighted"]
)
def test_every_layout_of_an_in_order_batch_gives_the_brute_force_answer(
    missing, layout, small_chunks, monkeypatch
):
    # Modalities in column order: a float64 C-ordered batch needs no copy
    # and is summed by one syrk over all its rows (_optimistic_step), every
    # other layout in copied chunks; with missing rows both fall back to the
    # chunked general path. Each must equal the definition, and the whole
    # batch path must really be the one taken.
    X = make_data(1100, missing=missing, seed=5)
    X = np.ascontiguousarray(X[:, np.concatenate(list(MODALITIES.values()))])
    weights = None
    if layout == "float64 F":
        X = np.asfortranarray(X)
    elif layout == "float32 C":
        X = X.astype(np.float32)
    elif layout == "offset 1e8":
        X = X + 1e8
    elif layout == "weighted":
        weights = np.random.default_rng(5).uniform(0.5, 2.0, size=X.shape[0])
    calls = []
    syrk = _numpy_sums._syrk_update
    monkeypatch.setattr(
        _numpy_sums,
        "_syrk_update",
        lambda gram, Z: calls.append(Z.shape[0]) or syrk(gram, Z),
    )
    original = X.copy()
    acc = CovarianceAccumulator(IN_ORDER, N_FEATURES)
    acc.update(X, sample_weight=weights)
    np.testing.assert_array_equal(X, original)  # never modified
    mean, covariance, counts = brute_force(
        X.astype(np.float64), modalities=IN_ORDER, weights=weights
    )
    stats = acc.finalize()
    scale = np.abs(np.diag(covariance)).max()
    tolerance = 1e-6 if layout == "float32 C" else 1e-10  # float32 input
    np.testing.assert_allclose(
        stats.covariance, covariance, rtol=0, atol=tolerance * scale
    )
    np.testing.assert_allclose(stats.counts, counts, rtol=1e-12)
    whole = layout == "float64 C"
    if not missing:
        assert (calls[0] == X.shape[0]) == whole
        assert len(calls) == (1 if whole else -(-X.shape[0] // 256))


@pytest.mark.parametrize(
    "head_level, rest_level", [(0.0, 1e8), (1e8, 0.0), (1e8, 1e8 + 10.0)]
)
@pytest.mark.parametrize("order", ["in order", "out of order"])
def test_the_shift_from_the_first_rows_serves_rows_at_another_level(
    head_level, rest_level, order, monkeypatch
):
    # The shift is chosen from the first _HEAD_ROWS rows only. Whatever the
    # later rows do (jump to 1e8, leave it, drift by 10 spreads), the sums
    # must still give the definition: the shift only has to keep the
    # spread's digits where the level is constant, and a level that moves is
    # part of the spread. Here the head is a twelfth of the rows.
    monkeypatch.setattr(_numpy_sums, "_HEAD_ROWS", 50)
    modalities = IN_ORDER if order == "in order" else MODALITIES
    X = make_data(600, missing=False, seed=7)
    if order == "in order":  # the zero-copy path: one syrk over X itself
        X = np.ascontiguousarray(X[:, np.concatenate(list(MODALITIES.values()))])
    X[:50] += head_level
    X[50:] += rest_level
    acc = CovarianceAccumulator(modalities, N_FEATURES)
    acc.update(X)
    mean, covariance, _ = brute_force(X, modalities=modalities)
    stats = acc.finalize()
    scale = np.abs(np.diag(covariance)).max()
    np.testing.assert_allclose(stats.covariance, covariance, rtol=0, atol=1e-10 * scale)
    spread = np.sqrt(np.diag(covariance))
    np.testing.assert_allclose(stats.mean, mean, rtol=0, atol=1e-10 * spread.max())


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("first_present", [60, 700])
def test_a_modality_missing_from_the_first_rows_still_gets_its_own_shift(
    namespace, first_present, small_chunks, monkeypatch
):
    # Modality "b" sits at a level of 1e8 (spread ~1) and is missing from
    # the first rows: past the head that chooses the shift (first 50 rows
    # here) and, at 700, past the first 256-row chunk of the array API path.
    # A shift of 0 for it would lose every digit of its covariance (the fit
    # then gave correlations 0.32 and 0 for 0.92 and 0.48); its shift must
    # come from its own first rows.
    monkeypatch.setattr(_numpy_sums, "_HEAD_ROWS", 50)
    X = make_data(1200, missing=False, seed=3)
    X[:, MODALITIES["b"]] += 1e8
    X[:first_present, MODALITIES["b"]] = np.nan
    X[first_present + 100 : first_present + 150, MODALITIES["c"]] = np.nan
    acc = CovarianceAccumulator(MODALITIES, N_FEATURES)
    acc.update(convert(namespace, X))
    assert_statistics(acc.finalize(), X, rtol=1e-10)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_a_modality_missing_from_the_whole_first_batch_gets_its_shift_later(
    namespace,
):
    # partial_fit's first batch has no row of "b" (so it chose b's shift
    # from nothing: 0); b arrives at a level of 1e8 in the next batches.
    # Its sums are all zero until then, so its shift is chosen from the
    # batch where it first appears and the digits are kept. A rejected
    # batch (an infinity) leaves the shift as it was.
    X = make_data(900, missing=False, seed=4)
    X[:, MODALITIES["b"]] += 1e8
    X[:300, MODALITIES["b"]] = np.nan
    acc = CovarianceAccumulator(MODALITIES, N_FEATURES)
    acc.update(convert(namespace, X[:300]))
    assert not np.any(host(acc.shift)[acc.block_of_column == 1])
    bad = X[300:600].copy()
    bad[5, 0] = np.inf
    with pytest.raises(ValueError):
        acc.update(convert(namespace, bad))
    assert not np.any(host(acc.shift)[acc.block_of_column == 1])
    acc.update(convert(namespace, X[300:600]))
    acc.update(convert(namespace, X[600:]))
    assert_statistics(acc.finalize(), X, rtol=1e-10)


@pytest.mark.parametrize("kind", ["numpy", "sparse"])
def test_a_modality_missing_from_the_first_dask_chunk_gets_its_own_shift(kind):
    # The Dask shift comes from the first chunk; "b" (at 1e8) is missing
    # from all of its rows, so its shift must come from a later chunk.
    da = pytest.importorskip("dask.array")
    from skcrossmodal._dask import accumulate_dask

    X = make_data(900, missing=False, seed=6)
    X[:, MODALITIES["b"]] += 1e8
    X[:300, MODALITIES["b"]] = np.nan
    lazy = da.from_array(X, chunks=(300, N_FEATURES))
    if kind == "sparse":
        lazy = lazy.map_blocks(scipy.sparse.csr_matrix, dtype=X.dtype)
    acc = accumulate_dask(lazy, CovarianceAccumulator(MODALITIES, N_FEATURES))
    assert_statistics(acc.finalize(), X, rtol=1e-10)
