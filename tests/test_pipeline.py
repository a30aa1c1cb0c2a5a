"""SharedProjection inside the scikit-learn tools users already have."""

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skcrossmodal import SharedProjection


@pytest.fixture(scope="module")
def digits_halves():
    """scikit-learn's 8x8 digits, the left and right image halves as modalities."""
    digits = load_digits()
    columns = [f"r{r}c{c}" for r in range(8) for c in range(8)]
    frame = pd.DataFrame(digits.data, columns=columns)
    left = [name for name in columns if int(name.split("c")[1]) < 4]
    right = [name for name in columns if int(name.split("c")[1]) >= 4]
    return frame, digits.target, left, right


def make_model(left, right):
    branches = ColumnTransformer(
        [("left", StandardScaler(), left), ("right", StandardScaler(), right)]
    ).set_output(transform="pandas")
    return make_pipeline(
        branches,
        SharedProjection(n_components=5, reg=0.1),
        LogisticRegression(max_iter=2000),
    )


def test_column_transformer_names_route_the_modalities(digits_halves):
    frame, y, left, right = digits_halves
    model = make_model(left, right).fit(frame, y)
    projection = model.named_steps["sharedprojection"]
    assert list(projection.modalities_) == ["left", "right"]
    assert len(projection.modalities_["left"]) == len(left)
    # Shared space of two halves of the same digit: strongly correlated.
    assert projection.canonical_correlations_[0] > 0.7
    # Chance is 0.1; the shared space keeps what the labels need.
    assert model.score(frame, y) > 0.7


def test_grid_search_and_cross_val_score(digits_halves):
    frame, y, left, right = digits_halves
    search = GridSearchCV(
        make_model(left, right),
        {
            "sharedprojection__reg": [0.01, 1.0],
            "sharedprojection__n_components": [3, 8],
        },
        cv=3,
    ).fit(frame, y)
    assert set(search.cv_results_["param_sharedprojection__n_components"]) == {3, 8}
    assert search.best_score_ > 0.7
    scores = cross_val_score(make_model(left, right), frame, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.6


def test_unsupervised_grid_search_uses_score(digits_halves):
    """score() is the held-out canonical correlation: no labels needed."""
    frame, _, left, right = digits_halves
    branches = ColumnTransformer(
        [("left", StandardScaler(), left), ("right", StandardScaler(), right)]
    ).set_output(transform="pandas")
    X = branches.fit_transform(frame)
    search = GridSearchCV(
        SharedProjection(n_components=4), {"reg": [1e-3, 1.0, 1e3]}, cv=3
    ).fit(X)
    means = search.cv_results_["mean_test_score"]
    assert np.all((means > 0) & (means <= 1))


def test_clone_and_joblib_round_trip_give_identical_transforms(digits_halves, tmp_path):
    frame, y, left, right = digits_halves
    model = make_model(left, right).fit(frame, y)
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(
        loaded[:-1].transform(frame), model[:-1].transform(frame)
    )
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    refitted = clone(model).fit(frame, y)
    np.testing.assert_array_equal(
        refitted[:-1].transform(frame), model[:-1].transform(frame)
    )


def test_set_output_pandas(digits_halves):
    frame, _, left, right = digits_halves
    branches = ColumnTransformer(
        [("left", StandardScaler(), left), ("right", StandardScaler(), right)]
    ).set_output(transform="pandas")
    X = branches.fit_transform(frame)
    out = (
        SharedProjection(3, output="concat")
        .set_output(transform="pandas")
        .fit_transform(X)
    )
    assert list(out.columns[:2]) == [
        "left__sharedprojection0",
        "left__sharedprojection1",
    ]
    # "<modality>__" names flow on: a second projection finds the modalities.
    again = SharedProjection(2).fit(out)
    assert list(again.modalities_) == ["left", "right"]
