"""The catalogue of bad input: every public estimator, every mistake.

Each case is fed to every estimator it applies to. A mistake must raise a
ValueError or TypeError whose message names the parameter (or the data
problem) and says what to do; awkward-but-valid data (constant, duplicate or
all-zero columns) must give finite results. Inputs are hashed before and
after every call: nothing may be modified in place.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from skcrossmodal import (
    ConcatFusion,
    CrossModalTransferClassifier,
    CrossModalTransferRegressor,
    LateFusionClassifier,
    LateFusionRegressor,
    SharedProjection,
    WeightedFusion,
)
from skcrossmodal.metrics import (
    make_retrieval_scorer,
    mean_average_precision,
    median_rank,
    recall_at_k,
)
from skcrossmodal.retrieval import (
    evaluate_embeddings,
    evaluate_retrieval,
    rank,
    rank_embeddings,
)

N_SAMPLES = 40
COLUMNS = ["a__0", "a__1", "a__2", "b__0", "b__1", "b__2"]
AB = {"a": [0, 1, 2], "b": [3, 4, 5]}


def frame(seed=0):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(N_SAMPLES, 6))
    data[:, 3:] += data[:, :3]
    return pd.DataFrame(data, columns=COLUMNS)


def labels(X):
    values = np.asarray(X).real.astype(float)
    values = values if values.ndim == 1 else values[:, 0]
    return (np.nan_to_num(values) > 0).astype(int)


@dataclass
class Subject:
    """How to build, fit and use one public estimator."""

    name: str
    build: callable
    supervised: bool = False
    regression: bool = False
    has_n_components: bool = False
    sparse_ok: bool = True
    weights_param: bool = False

    @property
    def projects(self):
        """Whether the estimator is, or wraps, a SharedProjection."""
        return self.name.startswith(("SharedProjection", "CrossModalTransfer"))

    def fit(self, estimator, X, y=None):
        if self.supervised:
            y = labels(X) if y is None else y
            if self.regression:
                y = y.astype(float)
            return unmodified(estimator.fit, X, y)
        return unmodified(estimator.fit, X)

    def use(self, estimator, X):
        if hasattr(estimator, "transform"):
            return unmodified(estimator.transform, X)
        return unmodified(estimator.predict, X)


def unmodified(method, *arrays):
    """Call method(*arrays) and check, even when it raises, that no input changed."""
    before = [digest(array) for array in arrays]
    try:
        return method(*arrays)
    finally:
        after = [digest(array) for array in arrays]
        assert after == before, f"{method.__qualname__} modified its input"


SUBJECTS = [
    Subject(
        "SharedProjection",
        lambda **p: SharedProjection(**{"n_components": 1, **p}),
        has_n_components=True,
    ),
    Subject(
        "WeightedFusion",
        lambda **p: WeightedFusion(**p),
        weights_param=True,
    ),
    Subject(
        "WeightedFusion-pca",
        lambda **p: WeightedFusion(**{"align": "pca", "n_components": 2, **p}),
        has_n_components=True,
        weights_param=True,
    ),
    Subject("ConcatFusion", lambda **p: ConcatFusion("mfa", **p), sparse_ok=False),
    Subject(
        "LateFusionClassifier",
        lambda **p: LateFusionClassifier(**p),
        supervised=True,
        weights_param=True,
    ),
    Subject(
        "LateFusionRegressor",
        lambda **p: LateFusionRegressor(**p),
        supervised=True,
        regression=True,
        weights_param=True,
    ),
    Subject(
        "CrossModalTransferClassifier",
        lambda **p: CrossModalTransferClassifier(SharedProjection(1, **p)),
        supervised=True,
    ),
    Subject(
        "CrossModalTransferRegressor",
        lambda **p: CrossModalTransferRegressor(SharedProjection(1, **p)),
        supervised=True,
        regression=True,
    ),
]


@dataclass
class Case:
    """One mistake (error and message) or one awkward input (finite result)."""

    name: str
    run: callable  # run(subject) -> None; raises on mistake
    error: type | None = None
    match: str | None = None
    applies: callable = field(default=lambda subject: True)


def digest(obj):
    if sparse.issparse(obj):
        parts = [obj.data, obj.indices, obj.indptr]
        payload = b"".join(np.ascontiguousarray(p).tobytes() for p in parts)
    else:
        payload = pickle.dumps(obj)
    return hashlib.sha256(payload).hexdigest()


def fit_with(params=None, X=None, y=None):
    def run(subject):
        data = frame() if X is None else X()
        subject.fit(subject.build(**(params or {})), data, y)

    return run


def fit_then_use(X_later, params=None):
    def run(subject):
        estimator = subject.fit(subject.build(**(params or {})), frame())
        subject.use(estimator, X_later())

    return run


def fit_finite(X, params=None):
    """Awkward but valid data: the fit and its output must be finite."""

    def run(subject):
        data = X()
        estimator = subject.fit(subject.build(**(params or {})), data)
        output = np.asarray(subject.use(estimator, data), dtype=float)
        assert np.isfinite(output).all(), f"{subject.name} gave non-finite output"

    return run


def with_values(change):
    def make():
        data = frame()
        change(data)
        return data

    return make


def numpy_frame():
    return frame().to_numpy()


CASES = [
    # -- wrong modalities ---------------------------------------------------
    Case(
        "unknown column name",
        fit_with({"modalities": {"a": ["a__0", "zz"], "b": ["b__0", "b__1", "b__2"]}}),
        ValueError,
        r"modalities\['a'\].*zz",
    ),
    Case(
        "column index out of range",
        fit_with({"modalities": {"a": [0, 1, 2], "b": [3, 4, 9]}}),
        ValueError,
        r"modalities\['b'\]",
    ),
    Case(
        "overlapping modalities",
        fit_with({"modalities": {"a": [0, 1, 2, 3], "b": [3, 4, 5]}}),
        ValueError,
        "overlap",
    ),
    Case(
        "empty modality",
        fit_with({"modalities": {"a": [], "b": [0, 1, 2, 3, 4, 5]}}),
        ValueError,
        r"modalities\['a'\]. selects no column",
    ),
    Case(
        "a single modality",
        fit_with({"modalities": {"a": [0, 1, 2, 3, 4, 5]}}),
        ValueError,
        "at least 2 modalities",
    ),
    Case(
        "columns left in no modality",
        fit_with({"modalities": {"a": [0, 1], "b": [3, 4]}}),
        ValueError,
        "in no modality",
    ),
    Case(
        "no feature names and no dict",
        fit_with(X=numpy_frame),
        ValueError,
        "modalities=None. reads the modalities from X's feature names",
    ),
    Case(
        "modalities of the wrong type",
        fit_with({"modalities": [[0, 1, 2], [3, 4, 5]]}),
        ValueError,
        "modalities",
    ),
    # -- columns at transform/predict that do not match fit ----------------
    Case(
        "fewer columns later",
        fit_then_use(lambda: frame().iloc[:, :5]),
        ValueError,
        "(?s)[Ff]eature names should match.*missing:.*b__2",
    ),
    Case(
        "reordered columns later",
        fit_then_use(lambda: frame()[COLUMNS[::-1]]),
        ValueError,
        "feature names",
    ),
    Case(
        "renamed columns later",
        fit_then_use(lambda: frame().rename(columns={"a__0": "c__0"})),
        ValueError,
        "feature names",
    ),
    # -- NaN and infinity -----------------------------------------------------
    Case(
        "NaN in part of a block",
        fit_with(X=with_values(lambda d: d.iloc.__setitem__((3, 1), np.nan))),
        ValueError,
        "only part of modality 'a' in row 3",
    ),
    Case(
        "infinity at fit",
        fit_with(X=with_values(lambda d: d.iloc.__setitem__((2, 4), np.inf))),
        ValueError,
        "infinity",
    ),
    Case(
        "infinity later",
        fit_then_use(with_values(lambda d: d.iloc.__setitem__((2, 4), -np.inf))),
        ValueError,
        "infinity",
    ),
    Case(
        "NaN in part of a block later",
        fit_then_use(with_values(lambda d: d.iloc.__setitem__((5, 5), np.nan))),
        ValueError,
        "only part of modality 'b' in row 5",
    ),
    Case(
        "a row with no modality later",
        fit_then_use(with_values(lambda d: d.iloc.__setitem__(7, np.nan))),
        ValueError,
        "Row 7 of X has no modality present",
    ),
    # -- too little data ------------------------------------------------------
    Case(
        "one sample",
        fit_with(X=lambda: frame().iloc[:1]),
        ValueError,
        "1 sample",
    ),
    Case(
        "no sample",
        fit_with(X=lambda: frame().iloc[:0]),
        ValueError,
        "0 sample",
    ),
    # -- n_components ---------------------------------------------------------
    Case(
        "n_components above the narrowest modality",
        fit_with({"n_components": 4}),
        ValueError,
        "n_components=4",
        applies=lambda s: s.has_n_components,
    ),
    Case(
        "n_components of the wrong type",
        fit_with({"n_components": 1.5}),
        ValueError,
        "n_components",
        applies=lambda s: s.has_n_components,
    ),
    # -- weights / reg / output -----------------------------------------------
    Case(
        "weights for an unknown modality",
        fit_with({"weights": {"a": 1.0, "zz": 2.0}}),
        ValueError,
        "weights",
        applies=lambda s: s.weights_param,
    ),
    Case(
        "negative weight",
        fit_with({"weights": {"a": -1.0, "b": 1.0}}),
        ValueError,
        "weights",
        applies=lambda s: s.weights_param,
    ),
    Case(
        "negative reg",
        fit_with({"reg": -1.0}),
        ValueError,
        "reg",
        applies=lambda s: s.name == "SharedProjection",
    ),
    Case(
        "reg for an unknown modality",
        fit_with({"reg": {"a": 0.1, "zz": 0.1}}),
        ValueError,
        "reg as a dict",
        applies=lambda s: s.name == "SharedProjection",
    ),
    Case(
        "output names no modality",
        fit_with({"output": "zz"}),
        ValueError,
        "output='zz'",
        applies=lambda s: s.name == "SharedProjection",
    ),
    # -- dtypes and shapes ------------------------------------------------------
    Case(
        "complex numbers",
        fit_with(X=lambda: frame().to_numpy() * (1 + 1j), params={"modalities": AB}),
        ValueError,
        "[Cc]omplex",
    ),
    Case(
        "strings where numbers belong",
        fit_with(X=with_values(lambda d: d.__setitem__("a__1", "word"))),
        ValueError,
        "could not convert string to float",
    ),
    Case(
        "1-D input",
        fit_with(X=lambda: frame().to_numpy()[:, 0], params={"modalities": AB}),
        ValueError,
        "Expected 2D array",
    ),
    Case(
        "sparse input where centring needs dense",
        fit_with(
            X=lambda: sparse.csr_matrix(frame().to_numpy()), params={"modalities": AB}
        ),
        ValueError,
        "center=False",
        applies=lambda s: not s.sparse_ok,
    ),
    # -- awkward but valid data: finite answers -----------------------------------
    Case(
        "constant columns",
        fit_finite(with_values(lambda d: d.__setitem__("a__1", 3.0)), {"reg": 0.1}),
        applies=lambda s: s.name == "SharedProjection",
    ),
    Case(
        "constant columns",
        fit_finite(with_values(lambda d: d.__setitem__("a__1", 3.0))),
        applies=lambda s: s.name != "SharedProjection",
    ),
    Case(
        "duplicate columns",
        fit_finite(with_values(lambda d: d.__setitem__("b__2", d["b__1"]))),
    ),
    Case(
        "an all-zero modality",
        fit_finite(
            with_values(lambda d: d.__setitem__(["b__0", "b__1", "b__2"], 0.0)),
            {"reg": 0.1},
        ),
        # A rank-0 modality needs a ridge in a shared projection; with reg=0
        # it is a clear error (test_n_components_above_rank_...).
        applies=lambda s: s.projects,
    ),
    Case(
        "an all-zero modality",
        fit_finite(with_values(lambda d: d.__setitem__(["b__0", "b__1", "b__2"], 0.0))),
        applies=lambda s: not s.projects,
    ),
    Case(
        "features 1e8 times apart",
        fit_finite(with_values(lambda d: d.__setitem__("a__0", d["a__0"] * 1e8))),
    ),
]

PAIRS = [
    pytest.param(subject, case, id=f"{subject.name}-{case.name}")
    for case in CASES
    for subject in SUBJECTS
    if case.applies(subject)
]


def test_the_catalogue_is_large():
    assert len(PAIRS) >= 40


@pytest.mark.parametrize("subject, case", PAIRS)
def test_bad_input(subject, case):
    if case.error is None:
        case.run(subject)
    else:
        with pytest.raises(case.error, match=case.match):
            case.run(subject)


def test_n_components_above_rank_without_reg_is_a_clear_error():
    data = np.array(frame())
    data[:, 1] = 2 * data[:, 0]  # modality "a" has rank 2
    data[:, 2] = -data[:, 0]  # ... now rank 1
    with pytest.raises(ValueError, match="n_components=2.*rank 1.*reg > 0"):
        SharedProjection(2, modalities=AB, reg=0.0).fit(data)
    # With a ridge the block is full rank again: a finite answer.
    model = SharedProjection(2, modalities=AB, reg=0.1).fit(data)
    assert np.isfinite(model.transform(data)).all()


# == retrieval and metrics ===========================================================
# Functions rather than estimators: each case calls one public function of
# skcrossmodal.retrieval / skcrossmodal.metrics (or a scorer) on a small
# fitted projection's data, and must raise the exact exception type with a
# message naming the argument and the fix; no argument may change.


def _retrieval_data():
    data = np.array(frame())
    model = SharedProjection(2, modalities=AB).fit(data)
    return model, data


def _with_missing(rows, columns):
    def make():
        _, data = _retrieval_data()
        data = data.copy()
        data[np.ix_(rows, columns)] = np.nan
        return data

    return make


def _call(function, *args, **kwargs):
    """The case's call, with every argument checked unchanged afterwards."""

    def run():
        model, data = _retrieval_data()
        values = [arg(model, data) if callable(arg) else arg for arg in args]
        named = {
            key: value(model, data) if callable(value) else value
            for key, value in kwargs.items()
        }
        before = [digest(value) for value in [*values, *named.values()]]
        try:
            function(*values, **named)
        finally:
            after = [digest(value) for value in [*values, *named.values()]]
            assert after == before, f"{function} modified its input"

    return run


def _scorer(*args, **options):
    def call(model, X, *rest, **kwargs):
        return make_retrieval_scorer(*args, **options)(model, X, *rest, **kwargs)

    return call


MODEL = lambda model, data: model  # noqa: E731
X = lambda model, data: data  # noqa: E731
SCORES = np.arange(6.0).reshape(2, 3)
TINY_AND_ONE = np.array([[1e-300, 0.0], [1.0, 0.0]])
ONES = np.ones((5, 2))

RETRIEVAL_CASES = [
    (
        "metric: y_query too short",
        ValueError,
        r"y_query has 1 labels, but there are 2 rows in y_score: pass one label",
        _call(recall_at_k, [0], [0, 1, 2], SCORES),
    ),
    (
        "metric: y_gallery too long",
        ValueError,
        r"y_gallery has 4 labels, but there are 3 columns in y_score",
        _call(mean_average_precision, [0, 1], [0, 1, 2, 3], SCORES),
    ),
    (
        "metric: 2-D labels",
        ValueError,
        r"y_query has shape \(2, 2\)",
        _call(median_rank, np.zeros((2, 2)), [0, 1, 2], SCORES),
    ),
    (
        "metric: one label array only",
        ValueError,
        "or neither",
        _call(median_rank, [0, 1], None, SCORES),
    ),
    (
        "embeddings: y_query too short",
        ValueError,
        r"y_query has 4 labels, but there are 5 rows in Z_query",
        _call(evaluate_embeddings, ONES, ONES, [0, 1, 2, 3], [0, 1, 2, 3, 4]),
    ),
    (
        "embeddings: k=0",
        ValueError,
        "`k` must be an int >= 1",
        _call(evaluate_embeddings, ONES, ONES, k=0),
    ),
    (
        "embeddings: batch_size=0",
        ValueError,
        "`batch_size` must be an int >= 1",
        _call(rank_embeddings, ONES, ONES, k=1, batch_size=0),
    ),
    (
        "embeddings: k above the gallery",
        ValueError,
        "larger than the gallery",
        _call(rank_embeddings, ONES, ONES[:3], k=4),
    ),
    (
        "embeddings: infinity",
        ValueError,
        "Z_gallery contains infinity",
        _call(rank_embeddings, ONES, np.full((3, 2), np.inf)),
    ),
    (
        "embeddings: euclidean squares underflow on both sides",
        ValueError,
        r"float64 can rank by euclidean distance: row 0 of Z_query.*metric='cosine'",
        _call(rank_embeddings, TINY_AND_ONE, TINY_AND_ONE, metric="euclidean", k=1),
    ),
    (
        "embeddings: euclidean distances beyond float64",
        ValueError,
        "exceed the largest float64.*return_distance=False",
        _call(
            rank_embeddings,
            np.array([[1e308]]),
            np.array([[-1e308]]),
            metric="euclidean",
            k=1,
        ),
    ),
    (
        "rank: unknown modality",
        ValueError,
        "'audio' is not one of",
        _call(rank, MODEL, X, query_modality="audio", gallery_modality="b"),
    ),
    (
        "rank: modality None",
        ValueError,
        "`gallery_modality` must be a modality name",
        _call(rank, MODEL, X, query_modality="a", gallery_modality=None),
    ),
    (
        "rank: query row missing its modality (the caller's row number)",
        ValueError,
        "Row 3 of X_query does not carry modality 'a'.*select the rows",
        _call(
            rank,
            MODEL,
            lambda m, d: _with_missing([3, 9], [0, 1, 2])(),
            query_modality="a",
            gallery_modality="b",
        ),
    ),
    (
        "rank: gallery row missing its modality",
        ValueError,
        "Row 7 of X_gallery does not carry modality 'b'",
        _call(
            rank,
            MODEL,
            X,
            lambda m, d: _with_missing([7], [3, 4, 5])(),
            query_modality="a",
            gallery_modality="b",
        ),
    ),
    (
        "evaluate_retrieval: y_gallery without X_gallery",
        ValueError,
        "do not pass y_gallery",
        _call(
            evaluate_retrieval,
            MODEL,
            X,
            query_modality="a",
            gallery_modality="b",
            y_query=np.zeros(N_SAMPLES),
            y_gallery=np.zeros(N_SAMPLES),
        ),
    ),
    (
        "scorer: y too short",
        ValueError,
        f"y has {N_SAMPLES - 1} entries, but X has {N_SAMPLES} rows: pass one y",
        _call(_scorer(), MODEL, X, np.zeros(N_SAMPLES - 1)),
    ),
    (
        "scorer: sample_weight too long",
        ValueError,
        f"sample_weight has {N_SAMPLES + 1} entries, but X has {N_SAMPLES} rows",
        _call(_scorer(), MODEL, X, sample_weight=np.ones(N_SAMPLES + 1)),
    ),
    (
        "scorer: sample_weight (queries are not weighted)",
        ValueError,
        "does not weight queries.*without sample_weight",
        _call(_scorer(), MODEL, X, sample_weight=np.ones(N_SAMPLES)),
    ),
    (
        "scorer: label relevance without y",
        ValueError,
        "needs y",
        _call(_scorer(relevance="label"), MODEL, X),
    ),
]


def test_the_retrieval_catalogue():
    assert len(RETRIEVAL_CASES) >= 20


@pytest.mark.parametrize(
    "error, match, run",
    [pytest.param(*case[1:], id=case[0]) for case in RETRIEVAL_CASES],
)
def test_bad_retrieval_input(error, match, run):
    with pytest.raises(error, match=match) as caught:
        run()
    assert caught.type is error
