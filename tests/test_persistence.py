"""Pickle and joblib round trips, and the warning for another version's model."""

import io
import pickle
import warnings

import joblib
import numpy as np
import pytest

import skcrossmodal
from skcrossmodal import (
    ConcatFusion,
    CrossModalTransferClassifier,
    CrossModalTransferRegressor,
    LateFusionClassifier,
    LateFusionRegressor,
    SharedProjection,
    WeightedFusion,
)
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
