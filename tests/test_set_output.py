"""set_output(transform="polars"/"pandas") on every skcrossmodal transformer."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.preprocessing import StandardScaler

from skcrossmodal import (
    ConcatFusion,
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


# set_output wraps only the transform methods that a class inheriting
# TransformerMixin defines itself; SharedProjection's comes from
# SharedSpaceMixin (skcrossmodal/_space_estimator.py), which does not
# inherit it, so its transform ignores set_output (fit_transform obeys).
# Fix there (SharedSpaceMixin(TransformerMixin), or wrap the method with
# sklearn.utils._set_output._wrap_method_output); strict, so this test
# fails once it is fixed.
_UNWRAPPED_TRANSFORM = pytest.mark.xfail(
    strict=True, reason="SharedSpaceMixin.transform is not wrapped by set_output"
)

TRANSFORMERS = [
    pytest.param(SharedProjection(2, modalities=EVEN_ODD), marks=_UNWRAPPED_TRANSFORM),
    pytest.param(
        SharedProjection(2, modalities=EVEN_ODD, output="concat"),
        marks=_UNWRAPPED_TRANSFORM,
    ),
    pytest.param(
        SharedProjectionCV([0.1, 1.0], n_components=2, modalities=EVEN_ODD, cv=2),
        marks=_UNWRAPPED_TRANSFORM,
    ),
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
    ids=["SharedProjection", "SharedProjection-concat", "SharedProjectionCV"]
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
