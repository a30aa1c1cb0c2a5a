"""TransferSplit: tune a transfer on the target modality, checked by brute force."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import make_column_selector
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline

from skcrossmodal import SharedProjection, make_modality_transformer
from skcrossmodal.model_selection import TransferSplit
from skcrossmodal.transfer import CrossModalTransferClassifier

PIXELS = [f"px{i}" for i in range(6)]


def raw_frame(n=150, seed=0):
    """Rows 0-59 paired (unlabelled), 60-104 text only (labelled), 105-149
    pixels only (labelled: the target rows), and a few unlabelled ones."""
    rng = np.random.default_rng(seed)
    words = np.array(["red", "green", "blue"])
    label = rng.integers(0, 3, size=n)
    noisy = np.where(rng.random(n) < 0.3, rng.integers(0, 3, size=n), label)
    text = [f"{words[c]} item{rng.integers(0, 20)}" for c in noisy]
    pixels = rng.normal(size=(n, 6)) + 1.2 * np.eye(6)[label]
    frame = pd.DataFrame(pixels, columns=PIXELS)
    frame.insert(0, "text", pd.Series(text, dtype=object))
    frame.loc[105:, "text"] = None
    frame.loc[60:104, PIXELS] = np.nan
    y = label.copy()
    y[:60] = -1
    y[[106, 120]] = -1  # target rows without a label: never tested
    return frame, y


def pipeline():
    return make_pipeline(
        make_modality_transformer(
            (
                "text",
                make_pipeline(TfidfVectorizer(), TruncatedSVD(4, random_state=0)),
                "text",
            ),
            ("image", PCA(4, random_state=0), PIXELS),
        ),
        CrossModalTransferClassifier(
            SharedProjection(n_components=2, reg=0.1),
            LogisticRegression(),
        ),
    )


def test_splits_test_on_labelled_target_rows_and_never_train_on_them():
    frame, y = raw_frame()
    cv = TransferSplit("text", PIXELS, n_splits=4)
    target_rows = np.setdiff1d(np.arange(105, 150), [106, 120])
    seen_test = []
    for train, test in cv.split(frame, y):
        assert np.isin(test, target_rows).all()
        assert not np.isin(train, target_rows).any()
        seen_test.append(test)
        # Every split keeps 3/4 of the other rows for training.
        assert abs(len(train) - 0.75 * (150 - target_rows.size)) <= 1
    np.testing.assert_array_equal(np.sort(np.concatenate(seen_test)), target_rows)
    assert cv.get_n_splits() == 4
    # The same rows from a column selector or from positions in an array.
    by_selector = TransferSplit(
        "text", make_column_selector(pattern="^px"), n_splits=4
    ).split(frame, y)
    for (a_train, a_test), (b_train, b_test) in zip(cv.split(frame, y), by_selector):
        np.testing.assert_array_equal(a_test, b_test)
        np.testing.assert_array_equal(a_train, b_train)


def test_grid_search_with_transfer_split_matches_a_brute_force_loop():
    frame, y = raw_frame()
    grid = {"crossmodaltransferclassifier__estimator__C": [0.01, 1.0, 100.0]}
    cv = TransferSplit("text", PIXELS, n_splits=3)
    search = GridSearchCV(pipeline(), grid, cv=cv).fit(frame, y)

    # Brute force: the folds written out by hand, each model scored on the
    # labelled rows that carry only the image.
    target = np.setdiff1d(np.arange(105, 150), [106, 120])
    pool = np.setdiff1d(np.arange(150), target)
    pool_folds = np.array_split(pool, 3)
    target_folds = np.array_split(target, 3)
    expected = []
    for C in grid["crossmodaltransferclassifier__estimator__C"]:
        scores = []
        for k in range(3):
            train = np.setdiff1d(pool, pool_folds[k])
            model = clone(pipeline()).set_params(
                crossmodaltransferclassifier__estimator__C=C
            )
            model.fit(frame.iloc[train], y[train])
            test = target_folds[k]
            scores.append(np.mean(model.predict(frame.iloc[test]) == y[test]))
        expected.append(np.mean(scores))
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], expected)
    assert search.best_params_ == {
        "crossmodaltransferclassifier__estimator__C": grid[
            "crossmodaltransferclassifier__estimator__C"
        ][int(np.argmax(expected))]
    }
    # The images predicted from text labels: above chance (1/3).
    assert max(expected) > 0.45


def test_shuffle_is_reproducible_and_covers_the_target_rows():
    frame, y = raw_frame(seed=1)
    cv = TransferSplit("text", PIXELS, n_splits=3, shuffle=True, random_state=0)
    first = [test for _, test in cv.split(frame, y)]
    second = [test for _, test in cv.split(frame, y)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert np.concatenate(first).size == 43
    scores = cross_val_score(pipeline(), frame, y, cv=cv)
    assert scores.shape == (3,)


def test_without_y_every_target_row_is_tested_and_nan_marks_unlabelled():
    X = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, np.nan], [np.nan, 4.0], [np.nan, 5.0]])
    tests = [t for _, t in TransferSplit([0], [1], n_splits=2).split(X)]
    np.testing.assert_array_equal(np.concatenate(tests), [3, 4])
    y = np.array([np.nan, 1.0, -1.0, 2.0, np.nan])
    with pytest.raises(ValueError, match="1 test"):
        list(TransferSplit([0], [1], n_splits=2).split(X, y))
    splits = TransferSplit([0], [1], n_splits=2, unlabelled=np.nan)
    with pytest.raises(ValueError, match="1 test"):
        list(splits.split(X, y))  # row 4's NaN is unlabelled either way


@pytest.mark.parametrize(
    "params, X, message",
    [
        ({"source": "nope", "target": [1]}, "frame", "`source` does not select"),
        ({"source": [0], "target": [1], "n_splits": 1}, "array", "n_splits must be"),
        ({"source": [0], "target": [1], "n_splits": 9}, "array", "lower n_splits"),
    ],
)
def test_bad_parameters_say_what_to_change(params, X, message):
    frame, y = raw_frame()
    X = frame if X == "frame" else frame[PIXELS[:2]].to_numpy()
    with pytest.raises(ValueError, match=message):
        list(TransferSplit(**params).split(X, y))
