"""A column that is not a number is refused by every estimator, in every
container, at fit and at transform/predict/score alike.

scikit-learn's conversion to float depends on the container: a pandas
datetime column raises numpy's promotion error, while the same column in a
polars DataFrame (or a numpy ``datetime64`` array) silently becomes
nanoseconds since 1970. Every public estimator must say the same thing for
both: a :class:`~skcrossmodal.exceptions.NonNumericFeatureError` naming the
column.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone, is_classifier, is_regressor

from skcrossmodal.exceptions import NonNumericFeatureError

pl = pytest.importorskip("polars")


def _every_public_estimator():
    """The one list of every public estimator, from test_estimator_checks.py
    (tests run with --import-mode=importlib: a sibling is loaded by path)."""
    path = Path(__file__).with_name("test_estimator_checks.py")
    spec = importlib.util.spec_from_file_location("_every_estimator", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ESTIMATORS


ESTIMATORS = _every_public_estimator()

N = 30
COLUMNS = ["c0", "c1", "c2", "c3"]


def _data():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(N, 4))
    data[:, 2:] += data[:, :2]
    return data


def _y(estimator):
    y = (_data()[:, 0] > 0).astype(int)
    return y.astype(float) if is_regressor(estimator) else y


WORDS = np.where(np.arange(N) % 2, "x", "y")

# Each builds the non-numeric column that replaces "c1".
PANDAS_COLUMNS = {
    "datetime": lambda: pd.date_range("2020", periods=N),
    "datetime with time zone": lambda: pd.date_range("2020", periods=N, tz="UTC"),
    "timedelta": lambda: pd.to_timedelta(np.arange(N), unit="s"),
    "period": lambda: pd.period_range("2020", periods=N, freq="D"),
    "categorical": lambda: pd.Categorical(WORDS),
    "categorical of numbers": lambda: pd.Categorical(np.arange(N) % 3),
    "string": lambda: pd.Series(WORDS, dtype="string"),
    "object of words": lambda: pd.Series(WORDS, dtype=object),
}
POLARS_COLUMNS = {
    "datetime": lambda: pl.Series(np.arange(N)).cast(pl.Datetime),
    "date": lambda: pl.Series(np.arange(N)).cast(pl.Date),
    "duration": lambda: pl.Series(np.arange(N)).cast(pl.Duration),
    "time": lambda: pl.Series([datetime.time(1, i) for i in range(N)]),
    "categorical": lambda: pl.Series(WORDS).cast(pl.Categorical),
    "enum": lambda: pl.Series(WORDS).cast(pl.Enum(["x", "y"])),
    "string": lambda: pl.Series(WORDS),
    "list": lambda: pl.Series([[1.0]] * N),
}


def _frame(library, kind=None):
    data = _data()
    if library == "pandas":
        X = pd.DataFrame(data, columns=COLUMNS)
        if kind is not None:
            X["c1"] = PANDAS_COLUMNS[kind]()
        return X
    X = pl.from_numpy(data, schema=COLUMNS)
    if kind is not None:
        X = X.with_columns(POLARS_COLUMNS[kind]().alias("c1"))
    return X


def _fit(estimator, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence of the tiny iterative fits
        if is_classifier(estimator) or is_regressor(estimator):
            return estimator.fit(X, _y(estimator))
        return estimator.fit(X)


def _digest(X):
    return hashlib.sha256(pickle.dumps(X)).hexdigest()


# ModalityBranch hands its columns to any transformer, which decides which
# dtypes it takes (a OneHotEncoder branch takes categories): not refused.
CHECKED = [e for e in ESTIMATORS if type(e).__name__ != "ModalityBranch"]
CASES = [("pandas", kind) for kind in PANDAS_COLUMNS] + [
    ("polars", kind) for kind in POLARS_COLUMNS
]


def _id(estimator):
    return type(estimator).__name__


@pytest.mark.parametrize("library, kind", CASES, ids=[f"{a}-{b}" for a, b in CASES])
@pytest.mark.parametrize("estimator", CHECKED, ids=_id)
def test_a_non_numeric_column_is_refused_at_fit(estimator, library, kind):
    X = _frame(library, kind)
    before = _digest(X)
    with pytest.raises(NonNumericFeatureError, match="column 'c1' of X") as caught:
        _fit(clone(estimator), X)
    assert caught.type is NonNumericFeatureError
    assert "To use it" in str(caught.value) or "need numbers" in str(caught.value)
    assert _digest(X) == before


@pytest.mark.parametrize("library, kind", CASES, ids=[f"{a}-{b}" for a, b in CASES])
@pytest.mark.parametrize("estimator", CHECKED, ids=_id)
def test_a_non_numeric_column_is_refused_after_fit(estimator, library, kind):
    """Fitted on numbers, then handed the same frame with a date column: the
    use (transform or predict; score goes through them) is refused too."""
    if type(estimator).__name__ == "AudioFeaturizer":
        pytest.skip("stateless: its fit reads no column")
    fitted = _fit(clone(estimator), _frame(library))
    X = _frame(library, kind)
    use = getattr(fitted, "transform", None) or fitted.predict
    with pytest.raises(NonNumericFeatureError, match="column 'c1' of X"):
        use(X)


@pytest.mark.parametrize("library", ["pandas", "polars"])
@pytest.mark.parametrize("estimator", CHECKED, ids=_id)
def test_numeric_and_bool_columns_of_either_library_give_the_same_answer(
    estimator, library
):
    """The reverse: bool and integer columns are numbers in both libraries,
    and the two frames give numpy's answer."""
    data = _data()
    data[:, 1] = np.arange(N) % 2
    if library == "pandas":
        X = pd.DataFrame(data, columns=COLUMNS).astype({"c1": bool})
    else:
        X = pl.from_numpy(data, schema=COLUMNS).with_columns(pl.col("c1").cast(bool))
    if type(estimator).__name__ == "AudioFeaturizer":
        pytest.skip("raw audio: a bool table is not a clip")
    fitted = _fit(clone(estimator), X)
    reference = _fit(clone(estimator), data)
    use = "transform" if hasattr(fitted, "transform") else "predict"
    np.testing.assert_allclose(
        np.asarray(getattr(fitted, use)(X), dtype=float),
        np.asarray(getattr(reference, use)(data), dtype=float),
        rtol=1e-9,
        atol=1e-12,
    )


@pytest.mark.parametrize(
    "array",
    [
        np.arange(8).astype("datetime64[D]").reshape(2, 4),
        np.arange(8).astype("timedelta64[s]").reshape(2, 4),
        np.array([["1", "2", "3", "4"], ["5", "6", "7", "8"]]),
    ],
    ids=["datetime64", "timedelta64", "unicode"],
)
@pytest.mark.parametrize("estimator", CHECKED, ids=_id)
def test_a_non_numeric_numpy_array_is_refused(estimator, array):
    with pytest.raises(NonNumericFeatureError, match="X has dtype"):
        _fit(clone(estimator), np.tile(array, (10, 1)))
