"""How `modalities` is read, and the errors each mistake gets."""

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_selector

from skcrossmodal import SharedProjection


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(50, 5))
    columns = ["text__a", "text__b", "image__a", "image__b", "image__c"]
    return pd.DataFrame(data, columns=columns)


def test_none_reads_column_transformer_names(frame):
    model = SharedProjection(1).fit(frame)
    assert list(model.modalities_) == ["text", "image"]
    np.testing.assert_array_equal(model.modalities_["text"], [0, 1])
    np.testing.assert_array_equal(model.modalities_["image"], [2, 3, 4])
    np.testing.assert_array_equal(model.feature_names_in_, frame.columns)


@pytest.mark.parametrize(
    "spec",
    [
        {"t": [0, 1], "i": [2, 3, 4]},
        {"t": slice(0, 2), "i": slice(2, 5)},
        {"t": ["text__a", "text__b"], "i": ["image__a", "image__b", "image__c"]},
        {"t": [True, True, False, False, False], "i": [False, False, True, True, True]},
        {"t": make_column_selector("^text"), "i": make_column_selector("^image")},
        {"t": [-5, -4], "i": [-3, -2, -1]},
    ],
    ids=["ints", "slices", "names", "masks", "callables", "negative"],
)
def test_every_column_transformer_form_resolves_the_same(frame, spec):
    model = SharedProjection(1, modalities=spec).fit(frame)
    np.testing.assert_array_equal(model.modalities_["t"], [0, 1])
    np.testing.assert_array_equal(model.modalities_["i"], [2, 3, 4])


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"t": [0, 1], "i": [2, 3, 9]}, r"modalities\['i'\]"),
        ({"t": ["text__a", "nope"], "i": [2, 3, 4]}, r"modalities\['t'\].*nope"),
        ({"t": [0, 1, 2], "i": [2, 3, 4]}, "overlap.*'t' and 'i'.*image__a"),
        ({"t": [], "i": [0, 1, 2, 3, 4]}, r"modalities\['t'\]. selects no column"),
        ({"t": [0, 1, 2, 3, 4]}, "at least 2 modalities"),
        ({"t": [0, 1], "i": [2, 3]}, "1 column.*in no modality.*image__c"),
        ({"t": [0, 0, 1], "i": [2, 3, 4]}, "same column more than once"),
        ({"": [0, 1], "i": [2, 3, 4]}, "non-empty strings"),
    ],
)
def test_each_mistake_gets_a_clear_error(frame, spec, message):
    with pytest.raises(ValueError, match=message):
        SharedProjection(1, modalities=spec).fit(frame)


def test_no_names_and_no_dict_says_what_to_do():
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValueError, match="has none.*ColumnTransformer"):
        SharedProjection(1).fit(X)


def test_names_without_separator_are_reported(frame):
    bad = frame.rename(columns={"image__c": "c"})
    with pytest.raises(ValueError, match=r"'<modality>__<feature>'.*\['c'\]"):
        SharedProjection(1).fit(bad)


def test_string_columns_need_a_dataframe():
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValueError, match=r"modalities\['a'\].*DataFrame"):
        SharedProjection(1, modalities={"a": ["x"], "b": [2, 3]}).fit(X)


def test_columns_at_transform_must_match_fit(frame):
    model = SharedProjection(1).fit(frame)
    with pytest.raises(ValueError, match="feature names"):
        model.transform(frame[frame.columns[::-1]])
    with (
        pytest.warns(UserWarning, match="does not have valid feature names"),
        pytest.raises(ValueError, match="5 features"),
    ):
        model.transform(frame.to_numpy()[:, :4])


def test_partly_nan_block_is_an_error_and_whole_nan_block_is_missing(frame):
    X = frame.copy()
    X.iloc[3, 0] = np.nan
    with pytest.raises(ValueError, match="only part of modality 'text' in row 3"):
        SharedProjection(1).fit(X)
    X.iloc[3, 1] = np.nan  # now the whole text block: text is missing in row 3
    model = SharedProjection(1).fit(X)
    assert np.isfinite(model.transform(X)).all()


def test_row_with_no_modality_cannot_be_transformed(frame):
    model = SharedProjection(1).fit(frame)
    X = frame.copy()
    X.iloc[7] = np.nan
    with pytest.raises(ValueError, match="Row 7 of X has no modality present"):
        model.transform(X)


def test_infinity_is_rejected(frame):
    X = frame.copy()
    X.iloc[2, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        SharedProjection(1).fit(X)
    model = SharedProjection(1).fit(frame)
    with pytest.raises(ValueError, match="infinity"):
        model.transform(X)
