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
    SharedProjectionCV,
    WeightedFusion,
    make_modality_transformer,
)
from skcrossmodal.audio import AudioFeaturizer
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

# skops refuses every type it does not know unless the caller trusts it. A
# skcrossmodal model adds to scikit-learn's and numpy's types only its own
# classes: its estimators, and the private classes that hold their fitted
# state (e.g. the shared space of a SharedProjection).
SKCROSSMODAL_ESTIMATORS = {
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
        SharedProjectionCV,
        AudioFeaturizer,
    )
}


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
    cv_model = SharedProjectionCV([0.1, 1.0], n_components=1, modalities=EVEN_ODD)
    cases.append((cv_model.fit(X), X))
    clips = np.random.default_rng(1).normal(size=(10, 100))
    featurizer = AudioFeaturizer(sample_rate=100, frame_length=0.05, hop_length=0.02)
    cases.append((featurizer.fit(clips), clips))
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
    "SharedProjectionCV",
    "AudioFeaturizer",
]
_KNOWN_FAILURES = {}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(i, marks=_KNOWN_FAILURES.get(name, ()))
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
    # Nothing but skcrossmodal's own classes needs trusting.
    assert all(name.startswith("skcrossmodal.") for name in untrusted), untrusted
    own = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    assert own in untrusted or own not in SKCROSSMODAL_ESTIMATORS
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        sio.load(path)  # refuses unknown types unless they are trusted
    loaded = sio.load(path, trusted=sorted(untrusted))
    np.testing.assert_array_equal(outputs(loaded, X), outputs(estimator, X))
