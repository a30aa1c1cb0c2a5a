"""The catalogue of bad input: every public estimator, every mistake.

Each case is fed to every estimator it applies to. A mistake must raise a
ValueError or TypeError whose message names the parameter (or the data
problem) and says what to do; awkward-but-valid data (constant, duplicate or
all-zero columns) must give finite results. Inputs are hashed before and
after every call: nothing may be modified in place.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils._param_validation import InvalidParameterError

from skcrossmodal import (
    ConcatFusion,
    CrossModalTransferClassifier,
    CrossModalTransferRegressor,
    GradientSharedProjection,
    LateFusionClassifier,
    LateFusionRegressor,
    SharedProjection,
    WeightedFusion,
)
from skcrossmodal.audio import AudioFeaturizer
from skcrossmodal.exceptions import NonNumericFeatureError
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
    """0/1 labels from X's first column (the only one read: a case may put
    something that is not a number in another column)."""
    if hasattr(X, "columns"):  # pandas or polars
        X = X[X.columns[0]]
    values = np.asarray(X)
    values = (values if values.ndim == 1 else values[:, 0]).real.astype(float)
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


def _with_physical_memory(n_bytes, run):
    """``run`` on a machine that reports ``n_bytes`` of physical memory."""

    def patched(subject):
        from skcrossmodal import _closed_form

        real = _closed_form.physical_memory
        _closed_form.physical_memory = lambda: n_bytes
        try:
            run(subject)
        finally:
            _closed_form.physical_memory = real

    return patched


def _dates():
    return pd.date_range("2020-01-01", periods=N_SAMPLES)


def _polars(data):
    pl = pytest.importorskip("polars")
    return pl.DataFrame({name: data[name].to_numpy() for name in data.columns})


def numpy_frame():
    return frame().to_numpy()


CASES = [
    # -- the numerical core: float64's range, reserved names, memory ----------
    # (issue 13: where float64 cannot hold the answer, a clear error)
    Case(
        "values near 1e+200 (their squares overflow)",
        fit_with(X=lambda: frame() * 1e200, params={"reg": 0.1}),
        ValueError,
        "overflowed.*Rescale",
        applies=lambda s: s.projects,
    ),
    Case(
        "values near 1e-161 (their squares underflow)",
        fit_with(X=lambda: frame() * 1e-161, params={"reg": 0.0}),
        ValueError,
        "normal range.*Rescale",
        applies=lambda s: s.projects,
    ),
    Case(
        "a closed form wider than the machine's memory",
        lambda subject: _with_physical_memory(1024, fit_with())(subject),
        MemoryError,
        "GradientSharedProjection",
        applies=lambda s: s.projects,
    ),
    # -- end of the numerical core's block -------------------------------------
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
        NonNumericFeatureError,
        "column 'a__1' of X has dtype str, which is not numeric.*featurise it",
    ),
    # A date column: refused alike in pandas and polars (polars used to turn
    # it into microseconds since 1970), at fit and later (tests/test_dtypes.py
    # covers every estimator and kind of column).
    Case(
        "a datetime column (pandas)",
        fit_with(X=with_values(lambda d: d.__setitem__("a__1", _dates()))),
        NonNumericFeatureError,
        "column 'a__1' of X has dtype datetime64.*days since a reference date",
    ),
    Case(
        "a datetime column (polars)",
        fit_with(
            X=lambda: _polars(with_values(lambda d: d.__setitem__("a__1", _dates()))())
        ),
        NonNumericFeatureError,
        r"column 'a__1' of X has dtype Datetime.*days since a reference date",
    ),
    Case(
        "a datetime column later (polars)",
        fit_then_use(
            lambda: _polars(with_values(lambda d: d.__setitem__("a__1", _dates()))())
        ),
        NonNumericFeatureError,
        r"column 'a__1' of X has dtype Datetime.*days since a reference date",
    ),
    Case(
        "a category column later (pandas)",
        fit_then_use(
            with_values(lambda d: d.__setitem__("b__0", pd.Categorical(labels(d))))
        ),
        NonNumericFeatureError,
        "column 'b__0' of X has dtype category.*OneHotEncoder",
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

# -- transfer estimators: labels, score, array API (block owned by the
# -- pipelines work: issue 17) ---------------------------------------------------


def _is_transfer(subject):
    return subject.name.startswith("CrossModalTransfer")


def _is_transfer_classifier(subject):
    return subject.name == "CrossModalTransferClassifier"


def _text_labels_with_marker(X):
    """A list mixing string labels and the int -1 (unlabelled)."""
    words = np.where(labels(X) == 1, "cat", "dog").astype(object)
    words[::4] = -1
    return list(words)


def fit_list_labels_keeps_the_marker(subject):
    data = frame()
    y = _text_labels_with_marker(data)
    estimator = subject.fit(subject.build(), data, y)
    assert list(estimator.classes_) == ["cat", "dog"]
    assert estimator.n_labelled_samples_ == N_SAMPLES - N_SAMPLES // 4
    assert set(estimator.predict(data)) <= {"cat", "dog"}


def fit_with_labels(make_y):
    def run(subject):
        data = frame()
        subject.fit(subject.build(), data, make_y(data))

    return run


def score_with(y_length=N_SAMPLES, weight_length=None):
    def run(subject):
        data = frame()
        estimator = subject.fit(subject.build(), data)
        y = labels(data)[:y_length].astype(float if subject.regression else int)
        weights = None if weight_length is None else np.ones(weight_length)
        unmodified(estimator.score, data, y, weights)

    return run


TRANSFER_CASES = [
    Case(
        "string labels in a list with the int -1 marker",
        fit_list_labels_keeps_the_marker,
        applies=_is_transfer_classifier,
    ),
    Case(
        "pd.NA among string labels",
        fit_with_labels(
            lambda d: pd.Series(
                np.where(labels(d) == 1, "cat", "dog"), dtype="string"
            ).where(np.arange(N_SAMPLES) % 5 > 0, pd.NA)
        ),
        ValueError,
        r"missing value .* row 0.*replace None/NaN/pd.NA by -1",
        applies=_is_transfer_classifier,
    ),
    Case(
        "None among object labels",
        fit_with_labels(
            lambda d: np.array([None] + ["cat", "dog"] * 19 + ["cat"], dtype=object)
        ),
        ValueError,
        "marks an unlabelled row with the int -1",
        applies=_is_transfer_classifier,
    ),
    Case(
        "NaN among float labels of the classifier",
        fit_with_labels(lambda d: np.where(labels(d) == 1, 1.0, np.nan)),
        ValueError,
        "replace None/NaN/pd.NA by -1",
        applies=_is_transfer_classifier,
    ),
    Case(
        'a string array holding "-1"',
        fit_with_labels(lambda d: np.asarray(_text_labels_with_marker(d), dtype=str)),
        ValueError,
        "Pass an object array",
        applies=_is_transfer_classifier,
    ),
    Case(
        "score with a sample_weight of the wrong length",
        score_with(weight_length=N_SAMPLES - 3),
        ValueError,
        "sample_weight",
        applies=_is_transfer,
    ),
    Case(
        "score with a y of the wrong length",
        score_with(y_length=N_SAMPLES - 3),
        ValueError,
        "inconsistent numbers of samples",
        applies=_is_transfer,
    ),
]

CASES += TRANSFER_CASES

ARRAY_API_SCRIPT = """
import hashlib
import array_api_strict as xp
import numpy as np
import sklearn
from skcrossmodal import SharedProjection
from skcrossmodal.transfer import {cls}

rng = np.random.default_rng(0)
data = rng.normal(size=(40, 4))
data[:, 2:] += data[:, :2]
y = (data[:, 0] > 0).astype(float)
model = {cls}(SharedProjection(1, modalities={{"a": [0, 1], "b": [2, 3]}}))
fitted = {cls}(SharedProjection(1, modalities={{"a": [0, 1], "b": [2, 3]}}))
fitted.fit(data, y)
X, Y = xp.asarray(data), xp.asarray(y)
before = hashlib.sha256(np.asarray(X).tobytes()).hexdigest()
with sklearn.config_context(array_api_dispatch=True):
    for call in (lambda: model.fit(X, Y), lambda: fitted.predict(X),
                 lambda: fitted.score(X, Y)):
        try:
            call()
        except TypeError as error:
            message = str(error)
            assert "numpy-only" in message and "X.cpu().numpy()" in message, message
        else:
            raise AssertionError("no TypeError")
assert hashlib.sha256(np.asarray(X).tobytes()).hexdigest() == before
print("ok")
"""


@pytest.mark.parametrize(
    "cls", ["CrossModalTransferClassifier", "CrossModalTransferRegressor"]
)
def test_transfer_says_it_is_numpy_only_under_array_api_dispatch(cls):
    # SCIPY_ARRAY_API must be set before scipy is imported: a fresh
    # interpreter, as in test_array_api_dispatch.py.
    pytest.importorskip("array_api_strict")
    env = dict(os.environ, SCIPY_ARRAY_API="1")
    result = subprocess.run(
        [sys.executable, "-c", ARRAY_API_SCRIPT.format(cls=cls)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


# -- end of the block owned by the pipelines work -----------------------------------

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


# == statistics layer (issue 13 classes 1-2, issue 17 sample_weight) ========
# Cases of the one accumulator (skcrossmodal._statistics), through
# SharedProjection where it already reaches it: a rejected partial_fit batch
# leaves the statistics exactly as they were, whatever the bad row and
# wherever it sits; sparse input with large offsets gives the dense answer;
# bad sample_weight names the parameter. Inputs stay unmodified.

BAD_BATCH_ROWS = [
    ("infinity", lambda X, row: X.__setitem__((row, 4), np.inf), "infinity"),
    (
        "partial NaN",
        lambda X, row: X.__setitem__((row, 1), np.nan),
        "NaN in only part of modality 'a'",
    ),
    ("no modality", lambda X, row: X.__setitem__(row, np.nan), "no modality present"),
    (
        "overflow",
        lambda X, row: X.__setitem__((slice(row - 1, row + 1), 0), [1e200, -1e200]),
        "overflowed",
    ),
]


@pytest.mark.parametrize("row", [1, 300, 599], ids=["first-chunk", "mid", "last"])
@pytest.mark.parametrize(
    "kind, spoil, match", BAD_BATCH_ROWS, ids=[k for k, _, _ in BAD_BATCH_ROWS]
)
@pytest.mark.parametrize("batch_rows", [4, 600], ids=["small", "large"])
def test_rejected_partial_fit_batch_changes_nothing(
    monkeypatch, row, kind, spoil, match, batch_rows
):
    from skcrossmodal import _numpy_sums

    monkeypatch.setattr(_numpy_sums, "_CHUNK_BYTES", 1)  # 256-row chunks
    rng = np.random.default_rng(0)
    good = rng.normal(size=(1000, 6)) + [5, -3, 0, 1, 2, 100]
    row = min(row, batch_rows - 1)
    bad = good[400 : 400 + batch_rows].copy()
    spoil(bad, row)
    streamed = SharedProjection(2, modalities=AB, reg=0.1).partial_fit(good[:400])
    with pytest.raises(ValueError, match=match):
        unmodified(streamed.partial_fit, bad)
    streamed.partial_fit(good[400:])
    expected = SharedProjection(2, modalities=AB, reg=0.1).fit(good)
    np.testing.assert_allclose(
        streamed.canonical_correlations_, expected.canonical_correlations_, rtol=1e-10
    )
    assert streamed.n_samples_seen_ == 1000


@pytest.mark.parametrize("order", ["sparse", "dense-then-sparse", "sparse-then-dense"])
def test_sparse_columns_with_large_offsets_give_the_dense_answer(order):
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(500, 1))
    X = latent @ rng.normal(size=(1, 6)) + rng.normal(size=(500, 6)) + 1e8
    expected = SharedProjection(2, modalities=AB, reg=0.1).fit(X)
    kinds = {
        "sparse": (sparse.csr_matrix, sparse.csr_matrix),
        "dense-then-sparse": (np.asarray, sparse.csr_matrix),
        "sparse-then-dense": (sparse.csr_matrix, np.asarray),
    }[order]
    model = SharedProjection(2, modalities=AB, reg=0.1)
    for kind, batch in zip(kinds, (X[:200], X[200:])):
        unmodified(model.partial_fit, kind(batch))
    np.testing.assert_allclose(
        model.canonical_correlations_, expected.canonical_correlations_, rtol=1e-8
    )


@pytest.mark.parametrize(
    "weights, match",
    [
        (np.full(40, -1.0), "sample_weight must be finite and non-negative; row 0"),
        (np.r_[np.ones(39), np.nan], "sample_weight must be finite .* row 39"),
        (np.ones(39), r"sample_weight has shape \(39,\); expected \(40,\)"),
        (np.ones((40, 2)), r"sample_weight has shape \(40, 2\)"),
    ],
    ids=["negative", "nan", "short", "2-D"],
)
def test_bad_sample_weight_names_the_parameter(weights, match):
    from skcrossmodal._statistics import CovarianceAccumulator

    accumulator = CovarianceAccumulator({"a": [0, 1, 2], "b": [3, 4, 5]}, 6)
    X = np.array(frame())
    with pytest.raises(ValueError, match=match):
        unmodified(accumulator.update, X, weights)
    assert accumulator.n_samples_seen == 0 and accumulator.gram is None


# == end of the statistics layer's cases =====================================


# == fusion: reliability (issue 13) ============================================
#
# Cases the fusion estimators must refuse, each with the exact exception type
# (not a subclass) and a message that names the fix; every array handed in
# (X, y, sample_weight) is hashed before and after the call.


def _late_data():
    X = np.array(frame().to_numpy(), copy=True)
    return X, labels(X)


def _fit_late(estimator, X=None, y=None, sample_weight=None, regression=False):
    data, target = _late_data()
    X = data if X is None else X
    y = (target.astype(float) if regression else target) if y is None else y
    if sample_weight is None:
        return unmodified(estimator.fit, X, y)
    return unmodified(
        lambda X, y, w: estimator.fit(X, y, sample_weight=w), X, y, sample_weight
    )


def _weights_zero_on_b():
    X, _ = _late_data()
    X[:10, 3:] = np.nan  # rows 0-9 miss b ...
    weights = np.zeros(N_SAMPLES)
    weights[:10] = 1.0  # ... and only they weigh
    return X, weights


def _array_api_input():
    xp = pytest.importorskip("array_api_strict")
    X, y = _late_data()
    return xp.asarray(X), y


def _use_after_fit(estimator, X_later, fit_X=None, y=None):
    data, target = _late_data()
    fit_X = data if fit_X is None else fit_X
    if y is None and hasattr(estimator, "predict"):
        y = target
    estimator = (
        unmodified(estimator.fit, fit_X)
        if y is None
        else unmodified(estimator.fit, fit_X, y)
    )
    use = getattr(estimator, "transform", None) or estimator.predict
    return unmodified(use, X_later)


def _run_array_api(estimator):
    import sklearn

    X, y = _array_api_input()
    with sklearn.config_context(array_api_dispatch=True):
        return unmodified(estimator.fit, X, y)


def _all_weights_on_a_row_zero():
    X, _ = _late_data()
    X_later = X.copy()
    X_later[7, 3:] = np.nan  # row 7 carries only "a", of weight 0
    return X_later


def _huge_columns():
    rng = np.random.default_rng(0)
    return rng.uniform(-1.0, 1.0, size=(N_SAMPLES, 50)) * 1.7e308


FUSION_CASES = [
    (
        "stacking final_estimator without predict_proba",
        lambda: _fit_late(
            LateFusionClassifier(
                modalities=AB, method="stacking", final_estimator=LinearSVC()
            )
        ),
        ValueError,
        r"`final_estimator` \(LinearSVC\) has no predict_proba.*"
        r"CalibratedClassifierCV",
    ),
    (
        "stacking final_estimator without predict",
        lambda: _fit_late(
            LateFusionRegressor(
                modalities=AB, method="stacking", final_estimator=StandardScaler()
            ),
            regression=True,
        ),
        ValueError,
        r"`final_estimator` \(StandardScaler\) has no predict.*Use a regressor",
    ),
    (
        "per-modality regressor without predict",
        lambda: _fit_late(
            LateFusionRegressor(StandardScaler(), modalities=AB), regression=True
        ),
        ValueError,
        r"modality 'a' \(StandardScaler\) has no predict.*Use a regressor",
    ),
    (
        "sample_weight of the wrong length (classifier)",
        lambda: _fit_late(
            LateFusionClassifier(modalities=AB), sample_weight=np.ones(5)
        ),
        ValueError,
        r"sample_weight needs one weight >= 0 per row of X.*\(5,\).*\(40,\)",
    ),
    (
        "sample_weight of the wrong length (regressor)",
        lambda: _fit_late(
            LateFusionRegressor(modalities=AB),
            sample_weight=np.ones(N_SAMPLES + 1),
            regression=True,
        ),
        ValueError,
        r"sample_weight needs one weight >= 0 per row of X.*\(41,\)",
    ),
    (
        "negative sample_weight",
        lambda: _fit_late(
            LateFusionClassifier(modalities=AB), sample_weight=-np.ones(N_SAMPLES)
        ),
        ValueError,
        r"sample_weight needs one weight >= 0 per row of X.*[Nn]egative",
    ),
    (
        "sample_weight 0 on every row of a modality",
        lambda: _fit_late(
            LateFusionRegressor(modalities=AB),
            X=_weights_zero_on_b()[0],
            sample_weight=_weights_zero_on_b()[1],
            regression=True,
        ),
        ValueError,
        r"sample_weight is 0 on every row of X that carries modality 'b'.*"
        "positive weight",
    ),
    (
        "ConcatFusion sample_weight of the wrong length",
        lambda: unmodified(
            lambda X, w: ConcatFusion(modalities=AB).fit(X, sample_weight=w),
            _late_data()[0],
            np.ones(3),
        ),
        ValueError,
        r"sample_weight needs one weight >= 0 per row of X.*\(3,\)",
    ),
    (
        "ConcatFusion sample_weight 0 on every row of a modality",
        lambda: unmodified(
            lambda X, w: ConcatFusion(modalities=AB).fit(X, sample_weight=w),
            *_weights_zero_on_b(),
        ),
        ValueError,
        r"sample_weight is 0 on every row of X that carries modality 'b'.*"
        "positive weight",
    ),
    (
        "sample_weight for an estimator without it",
        lambda: _fit_late(
            LateFusionClassifier(KNeighborsClassifier(3), modalities=AB),
            sample_weight=np.ones(N_SAMPLES),
        ),
        TypeError,
        r"sample_weight was given, but the estimator of modality 'a' "
        r"\(KNeighborsClassifier\) does not accept sample_weight",
    ),
    (
        "array API input to late fusion under dispatch",
        lambda: _run_array_api(LateFusionClassifier(modalities=AB)),
        TypeError,
        r"LateFusionClassifier takes numpy arrays.*only, got an array of "
        r"namespace 'array_api_strict'.*Convert the input first",
    ),
    (
        "a sub-estimator's bad parameter names the modality",
        lambda: _fit_late(
            LateFusionClassifier(LogisticRegression(C=-1.0), modalities=AB)
        ),
        InvalidParameterError,
        r"estimator of modality 'a' \(LogisticRegression\) failed in fit.*'C'",
    ),
    (
        "a sub-estimator failing in predict names the modality",
        lambda: _use_after_fit(
            LateFusionClassifier(KNeighborsClassifier(50), modalities=AB),
            _late_data()[0],
        ),
        ValueError,
        r"estimator of modality 'a' \(KNeighborsClassifier\) failed in "
        r"predict_proba.*carry 'a'.*n_neighbors",
    ),
    (
        "a row carrying only weight-0 modalities, late fusion",
        lambda: _use_after_fit(
            LateFusionRegressor(modalities=AB, weights={"a": 0.0, "b": 1.0}),
            _all_weights_on_a_row_zero(),
            y=_late_data()[1] * 1.0,
        ),
        ValueError,
        r"Row 7 of X carries only modalities with weight 0.*positive weight",
    ),
    (
        "ConcatFusion.transform overflowing float64",
        # Fitted in units of 1e-10, then given values of 1e300: the result,
        # about 1e310, is past float64.
        lambda: _use_after_fit(
            ConcatFusion("mfa", modalities=AB),
            _late_data()[0] * 1e300,
            fit_X=_late_data()[0] * 1e-10,
        ),
        ValueError,
        r"centring and scaling X overflows float64.*Check X's units",
    ),
    (
        "ConcatFusion scale beyond float64",
        lambda: unmodified(
            ConcatFusion(modalities={"a": slice(0, 1), "b": slice(1, 50)}).fit,
            _huge_columns(),
        ),
        ValueError,
        r"scale of modality 'b'.*cannot be held in float64.*Rescale",
    ),
    (
        "WeightedFusion(align='shared') passes SharedProjection's refusal on",
        lambda: unmodified(
            WeightedFusion(
                modalities=AB, align="shared", n_components=1, reg={"zz": 0.1}
            ).fit,
            _late_data()[0],
        ),
        ValueError,
        r"^WeightedFusion\(align='shared'\) fits a SharedProjection: reg as a dict",
    ),
]


@pytest.mark.parametrize(
    "run, error, match",
    [pytest.param(*case[1:], id=case[0]) for case in FUSION_CASES],
)
def test_fusion_reliability_catalogue(run, error, match, monkeypatch):
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")  # for the array API case
    with pytest.raises(Exception) as caught:
        run()
    assert type(caught.value) is error, repr(caught.value)
    assert caught.match(match)


# == end of fusion: reliability ================================================


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


# == reliability sweep (issue 13): seams found by an outside-tester sweep ==========
# Each case: the exact exception type, a message that names the parameter and
# the fix, and every array handed in unchanged (``unmodified``).


def _small_machine(n_bytes, run):
    """``run()`` on a machine that reports ``n_bytes`` of physical memory."""

    def patched():
        from skcrossmodal import _memory

        real = _memory.physical_memory
        _memory.physical_memory = lambda: n_bytes
        try:
            return run()
        finally:
            _memory.physical_memory = real

    return patched


def _refit_refused_keeps_model(estimator):
    """Fit, refit on data with infinity: the refit raises and the fitted
    model is byte for byte the previous one."""

    def run():
        X = np.array(frame().to_numpy(), copy=True)
        unmodified(estimator.fit, X)
        before = pickle.dumps(estimator.__dict__)
        bad = X.copy()
        bad[5, 4] = np.inf
        try:
            unmodified(estimator.fit, bad)
        finally:
            assert pickle.dumps(estimator.__dict__) == before
        return estimator

    return run


def _dates_array():
    return np.tile(np.arange(6).astype("datetime64[D]"), (N_SAMPLES, 1))


def _dask_dates():
    da = pytest.importorskip("dask.array")
    return da.from_array(_dates_array(), chunks=(10, 6))


SWEEP_CASES = [
    (
        "LateFusionClassifier: pd.NA among string labels",
        lambda: unmodified(
            LateFusionClassifier(modalities=AB).fit,
            _late_data()[0],
            pd.Series(
                np.where(labels(frame()) == 1, "cat", "dog"), dtype="string"
            ).where(np.arange(N_SAMPLES) % 5 > 0, pd.NA),
        ),
        ValueError,
        r"y has a missing value \(<NA>\) in row 0.*needs a label for every row: "
        "drop the rows",
    ),
    (
        "LateFusionClassifier: None among object labels",
        lambda: unmodified(
            LateFusionClassifier(modalities=AB).fit,
            _late_data()[0],
            np.array(["cat", None] * (N_SAMPLES // 2), dtype=object),
        ),
        ValueError,
        r"y has a missing value \(None\) in row 1",
    ),
    (
        "CrossModalTransferRegressor: string targets",
        lambda: unmodified(
            CrossModalTransferRegressor(SharedProjection(1, modalities=AB)).fit,
            _late_data()[0],
            np.where(labels(frame()) == 1, "cat", "dog").astype(object),
        ),
        ValueError,
        r"y of CrossModalTransferRegressor must hold numbers.*"
        "use CrossModalTransferClassifier",
    ),
    (
        "GradientSharedProjection: a refused refit keeps the previous model",
        _refit_refused_keeps_model(
            GradientSharedProjection(1, modalities=AB, max_iter=3, random_state=0)
        ),
        ValueError,
        "X contains infinity",
    ),
    (
        "a numpy datetime64 array",
        lambda: unmodified(SharedProjection(1, modalities=AB).fit, _dates_array()),
        NonNumericFeatureError,
        r"^X has dtype datetime64\[D\], which is not numeric.*days since a "
        "reference date",
    ),
    (
        "a Dask array of dates",
        lambda: SharedProjection(1, modalities=AB).fit(_dask_dates()),
        NonNumericFeatureError,
        r"Dask array of dtype datetime64\[D\] is not numeric",
    ),
    (
        "a numpy array of numeric strings",
        lambda: unmodified(
            WeightedFusion(modalities=AB).fit, frame().to_numpy().astype(str)
        ),
        NonNumericFeatureError,
        r"^X has dtype <U\d+, which is not numeric.*cast it to float",
    ),
    (
        "rank_embeddings: a batch_size the machine cannot hold",
        _small_machine(
            2**16,
            lambda: unmodified(
                lambda Q, G: rank_embeddings(Q, G, k=1, batch_size=10**9),
                np.ones((50, 2)),
                np.ones((60, 2)),
            ),
        ),
        MemoryError,
        r"Ranking with batch_size=1000000000 \(50 queries.*needs about .* GiB, "
        "more than this machine's.*Lower batch_size, or leave it None",
    ),
    (
        "AudioFeaturizer: an n_mels the machine cannot hold",
        _small_machine(
            2**20,
            lambda: AudioFeaturizer(sample_rate=8000, n_mels=10**4).fit_transform(
                [np.zeros(800)]
            ),
        ),
        MemoryError,
        r"AudioFeaturizer\(n_mels=10000, n_fft=256.*needs about.*Lower n_mels or "
        "n_fft",
    ),
]


@pytest.mark.parametrize(
    "run, error, match",
    [pytest.param(*case[1:], id=case[0]) for case in SWEEP_CASES],
)
def test_reliability_sweep_catalogue(run, error, match):
    with pytest.raises(Exception) as caught:
        run()
    assert type(caught.value) is error, repr(caught.value)
    assert caught.match(match)
