"""make_modality_transformer: modality names even through sparse text branches."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skcrossmodal import SharedProjection, make_modality_transformer
from skcrossmodal.compose import ModalityBranch
from skcrossmodal.transfer import CrossModalTransferClassifier


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


# -- missing modalities in raw input: ModalityBranch --------------------------------


def test_branch_fits_on_present_rows_and_writes_nan_elsewhere():
    rng = np.random.default_rng(1)
    pixels = rng.normal(size=(40, 6))
    pixels[[3, 10, 11, 30]] = np.nan  # rows without the image
    before = pixels.copy()
    branch = ModalityBranch(PCA(2, random_state=0))
    out = branch.fit_transform(pixels)
    present = ~np.isnan(before).all(axis=1)
    # Independent: PCA fitted on the present rows alone.
    reference = PCA(2, random_state=0).fit(before[present])
    np.testing.assert_allclose(out[present], reference.transform(before[present]))
    assert np.isnan(out[~present]).all()
    np.testing.assert_allclose(branch.transform(pixels)[present], out[present])
    assert branch.n_present_ == 36
    np.testing.assert_array_equal(pixels, before)  # input untouched


def test_branch_text_none_nan_na_and_empty_strings():
    pd_na = pd.NA
    text = pd.Series(["red apple", None, "green pear", np.nan, "", pd_na, "red pear"])
    expected_missing = np.array([0, 1, 0, 1, 0, 1, 0], dtype=bool)
    out = ModalityBranch(TfidfVectorizer()).fit_transform(text).toarray()
    np.testing.assert_array_equal(np.isnan(out).all(axis=1), expected_missing)
    # The empty string is a document without words unless told otherwise.
    assert not np.isnan(out[4]).any()
    branch = ModalityBranch(TfidfVectorizer(), empty_is_missing=True)
    out = branch.fit_transform(text).toarray()
    np.testing.assert_array_equal(
        np.isnan(out).all(axis=1), expected_missing | (np.arange(7) == 4)
    )
    vocabulary = TfidfVectorizer().fit(["red apple", "green pear", "red pear"])
    np.testing.assert_allclose(
        out[[0, 2, 6]],
        vocabulary.transform(["red apple", "green pear", "red pear"]).toarray(),
    )


def test_branch_passes_y_of_the_present_rows():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 5))
    y = (X[:, 2] > 0).astype(int)
    X[:4] = np.nan
    branch = ModalityBranch(SelectKBest(f_classif, k=2)).fit(X, y)
    reference = SelectKBest(f_classif, k=2).fit(X[4:], y[4:])
    np.testing.assert_array_equal(
        branch.transformer_.get_support(), reference.get_support()
    )


def test_branch_with_no_present_row_says_so():
    with pytest.raises(ValueError, match="no row of X carries this modality"):
        ModalityBranch(StandardScaler()).fit(np.full((5, 2), np.nan))


def test_rows_with_partial_nan_are_passed_to_the_transformer():
    X = np.array([[1.0, np.nan], [2.0, 3.0], [np.nan, np.nan], [4.0, 5.0]])
    out = ModalityBranch(SimpleImputer()).fit_transform(X)
    np.testing.assert_allclose(out[0], [1.0, 4.0])  # imputed, not missing
    assert np.isnan(out[2]).all()


# -- one pipeline from raw data with missing modalities ---------------------------


def raw_frame(n=120, seed=0):
    """A text column (None in some rows) and 8 'pixels' (NaN in others)."""
    rng = np.random.default_rng(seed)
    words = np.array(["red", "green", "blue"])
    label = rng.integers(0, 3, size=n)
    text = [f"{words[c]} thing {rng.integers(0, 9)}" for c in label]
    pixels = rng.normal(size=(n, 8)) + 2.0 * np.eye(8)[label]
    frame = pd.DataFrame(pixels, columns=[f"px{i}" for i in range(8)])
    frame.insert(0, "text", pd.Series(text, dtype=object))
    frame.loc[:19, "text"] = None  # 20 rows: image only
    frame.loc[20:39, frame.columns[1:]] = np.nan  # 20 rows: text only
    return frame, label


def raw_pipeline(text_branch=None, **kwargs):
    pixels = [f"px{i}" for i in range(8)]
    if text_branch is None:
        text_branch = make_pipeline(TfidfVectorizer(), TruncatedSVD(3, random_state=0))
    return make_pipeline(
        make_modality_transformer(
            ("text", text_branch, "text"),
            ("image", PCA(4, random_state=0), pixels),
            **kwargs,
        ),
        CrossModalTransferClassifier(SharedProjection(n_components=2, reg=0.1)),
    )


def test_one_pipeline_from_raw_frame_predicts_any_subset_of_modalities():
    frame, label = raw_frame()
    before = frame.copy()
    y = label.copy()
    y[40:] = -1  # the paired rows are unlabelled; labels on one modality each
    model = raw_pipeline().fit(frame, y)
    pd.testing.assert_frame_equal(frame, before)

    # Independent featurisation by hand: each featuriser fitted on the rows
    # that carry its modality, NaN blocks elsewhere, explicit modalities.
    has_text = frame["text"].notna().to_numpy()
    has_image = frame["px0"].notna().to_numpy()
    svd = make_pipeline(TfidfVectorizer(), TruncatedSVD(3, random_state=0))
    pca = PCA(4, random_state=0)
    text_block = np.full((len(frame), 3), np.nan)
    image_block = np.full((len(frame), 4), np.nan)
    text_block[has_text] = svd.fit_transform(frame.loc[has_text, "text"])
    image_block[has_image] = pca.fit_transform(frame.loc[has_image].iloc[:, 1:])
    by_hand = CrossModalTransferClassifier(
        SharedProjection(
            n_components=2,
            reg=0.1,
            modalities={"text": slice(0, 3), "image": slice(3, 7)},
        )
    ).fit(np.hstack([text_block, image_block]), y)
    np.testing.assert_allclose(
        model.predict_proba(frame),
        by_hand.predict_proba(np.hstack([text_block, image_block])),
        rtol=1e-6,
        atol=1e-8,
    )

    # One modality alone: a frame with only its columns is the same as the
    # full frame with the other modality missing.
    image_only = frame.iloc[40:].drop(columns="text")
    with_none = frame.iloc[40:].assign(text=None)
    np.testing.assert_array_equal(model.predict(image_only), model.predict(with_none))
    text_only = frame.iloc[40:][["text"]]
    np.testing.assert_allclose(
        model.predict_proba(text_only),
        model.predict_proba(
            frame.iloc[40:].assign(**dict.fromkeys(frame.columns[1:], np.nan))
        ),
    )
    # The modality signals are strong: each alone predicts well above chance.
    assert np.mean(model.predict(image_only) == label[40:]) > 0.8
    assert np.mean(model.predict(text_only) == label[40:]) > 0.8


def test_sparse_text_branch_under_name_routing():
    frame, label = raw_frame(seed=3)
    pixels = [f"px{i}" for i in range(8)]
    # sparse_threshold=1: sparse output whatever the density of this small X.
    features = make_modality_transformer(
        ("text", TfidfVectorizer(), "text"),
        ("image", PCA(4, random_state=0), pixels),
        sparse_threshold=1.0,
    )
    out = features.fit_transform(frame)
    assert all(isinstance(dtype, pd.SparseDtype) for dtype in out.dtypes)
    assert [c.split("__")[0] for c in out.columns].count("image") == 4
    dense = out.sparse.to_dense().to_numpy()
    n_text = out.shape[1] - 4
    # The rows without text are NaN in the whole text block, even in sparse X.
    assert np.isnan(dense[:20, :n_text]).all()
    assert not np.isnan(dense[20:, :n_text]).any()

    model = SharedProjection(n_components=2, reg=0.5).fit(out)  # modalities=None
    assert list(model.modalities_) == ["text", "image"]
    reference = SharedProjection(
        n_components=2,
        reg=0.5,
        modalities={"text": slice(0, n_text), "image": slice(n_text, None)},
    ).fit(dense)
    np.testing.assert_allclose(
        model.canonical_correlations_, reference.canonical_correlations_, rtol=1e-8
    )
    np.testing.assert_allclose(
        np.abs(model.transform(out)), np.abs(reference.transform(dense)), atol=1e-8
    )

    y = label.copy()
    y[40:] = -1
    clf = raw_pipeline(TfidfVectorizer(), sparse_threshold=1.0).fit(frame, y)
    assert clf.predict(frame.iloc[40:][pixels]).shape == (len(frame) - 40,)


def test_absent_columns_of_a_part_of_a_branch_are_an_error():
    frame, _ = raw_frame()
    model = raw_pipeline()[0].fit(frame)
    with pytest.raises(ValueError, match="may be left out only all together"):
        model.transform(frame.drop(columns=["px0"]))
    plain = make_modality_transformer(
        ("a", StandardScaler(), ["px0"]),
        ("b", StandardScaler(), ["px1"]),
        handle_missing=False,
    ).fit(frame)
    with pytest.raises(ValueError, match="only when the branch is a ModalityBranch"):
        plain.transform(frame[["px0"]])


def test_polars_output_and_sparse_polars_error():
    pl = pytest.importorskip("polars")
    frame, _ = raw_frame()
    dense = raw_pipeline()[0].set_output(transform="polars")
    out = dense.fit_transform(frame)
    assert isinstance(out, pl.DataFrame)
    assert out.columns == list(dense.get_feature_names_out())
    pandas_out = raw_pipeline()[0].fit_transform(frame)
    np.testing.assert_allclose(out.to_numpy(), pandas_out.to_numpy())
    sparse_text = make_modality_transformer(
        ("text", TfidfVectorizer(), "text"),
        ("image", PCA(4), [f"px{i}" for i in range(8)]),
        sparse_threshold=1.0,
    ).set_output(transform="polars")
    with pytest.raises(ValueError, match="polars cannot hold"):
        sparse_text.fit_transform(frame)


def test_missing_rows_reads_every_kind_of_missing_value():
    from scipy import sparse

    from skcrossmodal._missing_rows import missing_rows

    cells = np.array([np.zeros(3), None, pd.NA, "x", np.nan, pd.NaT, " "], dtype=object)
    np.testing.assert_array_equal(
        missing_rows(cells), [False, True, True, False, True, True, False]
    )
    np.testing.assert_array_equal(
        missing_rows(cells, empty_is_missing=True),
        [False, True, True, False, True, True, True],
    )
    mixed = pd.DataFrame({"a": [1.0, None, 3.0], "b": ["x", None, None]})
    np.testing.assert_array_equal(missing_rows(mixed), [False, True, False])
    # Sparse: implicit zeros are present values; a row is missing when
    # every column is stored as NaN.
    X = sparse.csr_matrix(np.array([[0.0, 0.0], [np.nan, np.nan], [np.nan, 1.0]]))
    np.testing.assert_array_equal(missing_rows(X), [False, True, False])
