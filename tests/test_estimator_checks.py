"""scikit-learn's own estimator checks on every public estimator.

The checks feed plain numpy arrays of many widths, so the estimators get
``modalities={"even": slice(0, None, 2), "odd": slice(1, None, 2)}``: it
splits any X with at least 2 columns into two modalities, so fit, transform
and score really run; with 1 column the "odd" modality is empty and the error
says "1 feature(s)", which the checks accept.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skcrossmodal import SharedProjection

EVEN_ODD = {"even": slice(0, None, 2), "odd": slice(1, None, 2)}

ESTIMATORS = [
    SharedProjection(n_components=1, modalities=EVEN_ODD),
    SharedProjection(n_components=1, modalities=EVEN_ODD, reg="auto", scale=True),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible(estimator, check):
    check(estimator)
