"""set_output(transform="polars"/"pandas") on every skcrossmodal transformer."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.preprocessing import StandardScaler

from skcrossmodal import (
    ConcatFusion,
    GradientSharedProjection,
    SharedProjection,
    SharedProjectionCV,
    WeightedFusion,
)
from skcrossmodal.compose import ModalityBranch, make_modality_transformer

EVEN_ODD = {"even": slice(0, None, 2), "odd": slice(1, None, 2)}


def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6))
    X[:, 1::2] += X[:, ::2]
    X[:4, ::2] = np.nan  # rows missing the "even" modality
    return X


TRANSFORMERS = [
    SharedProjection(2, modalities=EVEN_ODD),
    SharedProjection(2, modalities=EVEN_ODD, output="concat"),
    SharedProjectionCV([0.1, 1.0], n_components=2, modalities=EVEN_ODD, cv=2),
    GradientSharedProjection(2, modalities=EVEN_ODD, random_state=0),
    WeightedFusion(modalities=EVEN_ODD),
    ConcatFusion(modalities=EVEN_ODD),
    ModalityBranch(StandardScaler()),
    make_modality_transformer(
        ("even", StandardScaler(), [0, 2, 4]), ("odd", StandardScaler(), [1, 3, 5])
    ),
]


@pytest.mark.parametrize("container", ["polars", "pandas"])
@pytest.mark.parametrize(
    "transformer",
    TRANSFORMERS,
    ids=[
        "SharedProjection",
        "SharedProjection-concat",
        "SharedProjectionCV",
        "Gradient",
    ]
    + ["WeightedFusion", "ConcatFusion", "ModalityBranch", "ModalityColumnTransformer"],
)
def test_dataframe_output_holds_the_default_output(transformer, container):
    pl = pytest.importorskip("polars") if container == "polars" else None
    X = data()
    default = clone(transformer).set_output(transform="default")
    expected = default.fit(X).transform(X)
    model = clone(transformer).set_output(transform=container)
    out = model.fit(X).transform(X)
    fit_out = clone(transformer).set_output(transform=container).fit_transform(X)
    names = list(model.get_feature_names_out())
    for frame in (out, fit_out):
        if container == "polars":
            assert isinstance(frame, pl.DataFrame)
        else:
            assert isinstance(frame, pd.DataFrame)
        assert list(frame.columns) == names
        np.testing.assert_allclose(frame.to_numpy(), np.asarray(expected), rtol=1e-10)
