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

from skcrossmodal import (
    ConcatFusion,
    CrossModalTransferClassifier,
    CrossModalTransferRegressor,
    LateFusionClassifier,
    LateFusionRegressor,
    SharedProjection,
    WeightedFusion,
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
        "output='mean' when a modality is named 'mean'",
        fit_with(
            X=lambda: frame().to_numpy(),
            params={
                "modalities": {"mean": [0, 1, 2], "b": [3, 4, 5]},
                "output": "mean",
            },
        ),
        ValueError,
        "output='mean' is ambiguous.*Rename the modality",
        applies=lambda s: s.name == "SharedProjection",
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
