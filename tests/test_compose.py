"""make_modality_transformer: modality names even through sparse text branches."""

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skcrossmodal import SharedProjection, make_modality_transformer


def text_and_numbers(n=60, seed=0):
    rng = np.random.default_rng(seed)
    words = np.array(["red", "green", "blue", "apple", "pear", "sky", "sea", "leaf"])
    colour = rng.integers(0, 3, size=n)
    text = [f"{words[c]} {words[3 + rng.integers(0, 5)]}" for c in colour]
    numbers = np.column_stack([colour + rng.normal(0, 0.1, n), rng.normal(size=n)])
    return pd.DataFrame({"text": text, "x0": numbers[:, 0], "x1": numbers[:, 1]})


def test_text_branch_gets_modality_names_where_set_output_fails():
    frame = text_and_numbers()
    branches = [
        (
            "text",
            make_pipeline(TfidfVectorizer(), TruncatedSVD(3, random_state=0)),
            "text",
        ),
        ("numbers", StandardScaler(), ["x0", "x1"]),
    ]
    # The plain route fails: TfidfVectorizer has no set_output.
    try:
        ColumnTransformer(branches).set_output(transform="pandas")
        plain_route_works = True
    except ValueError:
        plain_route_works = False
    assert not plain_route_works

    transformer = make_modality_transformer(*branches)
    out = transformer.fit_transform(frame)
    assert list(out.columns) == [
        "text__truncatedsvd0",
        "text__truncatedsvd1",
        "text__truncatedsvd2",
        "numbers__x0",
        "numbers__x1",
    ]
    # Same numbers as the ColumnTransformer's own (unnamed) output.
    np.testing.assert_allclose(
        out.to_numpy(), ColumnTransformer(branches).fit_transform(frame)
    )
    model = make_pipeline(clone(transformer), SharedProjection(1)).fit(frame)
    assert list(model[-1].modalities_) == ["text", "numbers"]
