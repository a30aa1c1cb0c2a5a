"""Pickle and joblib round trips, and the warning for another version's model."""

import io
import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skcrossmodal
from skcrossmodal import (
    ConcatFusion,
    CrossModalTransferClassifier,
    CrossModalTransferRegressor,
    LateFusionClassifier,
    LateFusionRegressor,
    SharedProjection,
    WeightedFusion,
    make_modality_transformer,
)
from skcrossmodal.compose import ModalityBranch, ModalityColumnTransformer
from skcrossmodal.exceptions import InconsistentVersionWarning

EVEN_ODD = {"even": slice(0, None, 2), "odd": slice(1, None, 2)}


def fitted_estimators():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    X[:, 1::2] += X[:, ::2]
    labels = (X[:, 0] > 0).astype(int)
    return X, [
        SharedProjection(2, modalities=EVEN_ODD, reg="auto").fit(X),
        WeightedFusion(modalities=EVEN_ODD).fit(X),
        ConcatFusion("mfa", modalities=EVEN_ODD).fit(X),
        LateFusionClassifier(modalities=EVEN_ODD).fit(X, labels),
        LateFusionRegressor(modalities=EVEN_ODD).fit(X, X[:, 0]),
        CrossModalTransferClassifier(SharedProjection(1, modalities=EVEN_ODD)).fit(
            X, labels
        ),
        CrossModalTransferRegressor(SharedProjection(1, modalities=EVEN_ODD)).fit(
            X, X[:, 0]
        ),
    ]


def outputs(estimator, X):
    """What a fitted estimator computes: transform, or predictions."""
    if hasattr(estimator, "transform"):
        return estimator.transform(X)
    return estimator.predict(X)


def test_pickle_and_joblib_round_trips_are_exact_and_silent():
    X, estimators = fitted_estimators()
    for estimator in estimators:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            unpickled = pickle.loads(pickle.dumps(estimator))
            buffer = io.BytesIO()
            joblib.dump(estimator, buffer)
            buffer.seek(0)
            from_joblib = joblib.load(buffer)
        for loaded in (unpickled, from_joblib):
            np.testing.assert_array_equal(outputs(loaded, X), outputs(estimator, X))


@pytest.mark.parametrize("saved_version", ["0.0.1", None])
def test_model_from_another_version_warns_clearly(saved_version):
    X, estimators = fitted_estimators()
    for estimator in estimators:
        state = estimator.__getstate__()
        assert state["_skcrossmodal_version"] == skcrossmodal.__version__
        if saved_version is None:
            del state["_skcrossmodal_version"]
        else:
            state["_skcrossmodal_version"] = saved_version
        clone = type(estimator).__new__(type(estimator))
        with pytest.warns(
            InconsistentVersionWarning, match="refit the model"
        ) as record:
            clone.__setstate__(state)
        assert record[0].message.saved_version == saved_version
        assert record[0].message.current_version == skcrossmodal.__version__
        np.testing.assert_array_equal(outputs(clone, X), outputs(estimator, X))


# -- skops: a format that does not run code when loaded ---------------------------

# skops refuses every type it does not know unless the caller trusts it. These
# are the only types a skcrossmodal model adds to scikit-learn's and numpy's:
# its own estimator classes (module and name as type(...) gives them).
SKCROSSMODAL_TYPES = {
    f"{cls.__module__}.{cls.__qualname__}"
    for cls in (
        ConcatFusion,
        CrossModalTransferClassifier,
        CrossModalTransferRegressor,
        LateFusionClassifier,
        LateFusionRegressor,
        SharedProjection,
        WeightedFusion,
        ModalityBranch,
        ModalityColumnTransformer,
    )
}

# The fitted SharedProjection keeps its modality blocks as slices whose bounds
# are numpy ints (skcrossmodal/_statistics.py, CovarianceAccumulator.__init__:
# `slice(stop - w, stop)` with `stops` from np.cumsum), which skops cannot
# write (its slice node is JSON). The fix, `slice(int(stop - w), int(stop))`,
# belongs to that module; strict, so this test fails once it is fixed.
_INT64_SLICES = pytest.mark.xfail(
    strict=True,
    raises=TypeError,
    reason="CovarianceAccumulator.blocks holds slices of np.int64 (skops: JSON)",
)


def skops_estimators():
    X, estimators = fitted_estimators()
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)])
    frame.iloc[:5, :3] = np.nan  # rows missing the first modality
    labels = (X[:, 0] > 0).astype(int)
    branches = make_modality_transformer(
        ("a", StandardScaler(), ["x0", "x1", "x2"]),
        ("b", StandardScaler(), ["x3", "x4", "x5"]),
    )
    pipeline = make_pipeline(branches, LateFusionClassifier()).fit(frame, labels)
    cases = [(estimator, X) for estimator in estimators]
    cases.append((ModalityBranch(StandardScaler()).fit(frame), frame))
    cases.append((pipeline, frame))
    return cases


_CASE_NAMES = [
    "SharedProjection",
    "WeightedFusion",
    "ConcatFusion",
    "LateFusionClassifier",
    "LateFusionRegressor",
    "CrossModalTransferClassifier",
    "CrossModalTransferRegressor",
    "ModalityBranch",
    "pipeline",
]
_WITH_PROJECTION = {
    "SharedProjection",
    "CrossModalTransferClassifier",
    "CrossModalTransferRegressor",
}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(i, marks=_INT64_SLICES if name in _WITH_PROJECTION else ())
        for i, name in enumerate(_CASE_NAMES)
    ],
    ids=_CASE_NAMES,
)
def test_skops_round_trip_trusting_only_skcrossmodal_types(case, tmp_path):
    sio = pytest.importorskip("skops.io")
    estimator, X = skops_estimators()[case]
    path = tmp_path / "model.skops"
    sio.dump(estimator, path)
    untrusted = set(sio.get_untrusted_types(file=path))
    # Nothing beyond the declared skcrossmodal classes needs trusting.
    assert untrusted <= SKCROSSMODAL_TYPES
    assert type(estimator).__module__.split(".")[0] != "skcrossmodal" or (
        f"{type(estimator).__module__}.{type(estimator).__qualname__}" in untrusted
    )
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        sio.load(path)  # refuses unknown types unless they are trusted
    loaded = sio.load(path, trusted=sorted(untrusted))
    np.testing.assert_array_equal(outputs(loaded, X), outputs(estimator, X))
