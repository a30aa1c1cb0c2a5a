"""Warnings and errors that skcrossmodal raises."""


class InconsistentVersionWarning(UserWarning):
    """A model is unpickled by a different skcrossmodal version than saved it.

    Attributes
    ----------
    saved_version : str or None
        The version that pickled the model (None for a model pickled before
        versions were recorded).
    current_version : str
        The version that is loading it.
    """

    def __init__(self, *, estimator_name, saved_version, current_version):
        self.estimator_name = estimator_name
        self.saved_version = saved_version
        self.current_version = current_version

    def __str__(self):
        return (
            f"Trying to unpickle {self.estimator_name} saved by skcrossmodal "
            f"{self.saved_version or 'of unknown version'} with skcrossmodal "
            f"{self.current_version}. The fitted attributes may have changed "
            "meaning between versions: refit the model with this version, or "
            f"load it with skcrossmodal=={self.saved_version}."
        )


class NonNumericFeatureError(ValueError, TypeError):
    """X holds a column (or an array) whose dtype is not a number.

    Dates, durations, categories and text have no arithmetic that a
    projection or a fusion could use as they are; converting them silently
    (a date to nanoseconds since 1970, a category to its code) would give a
    number that means nothing to the model. The error names the column and
    says how to encode it. It is a ValueError (scikit-learn's convention for
    bad values in X) and a TypeError (numpy's, for a dtype that cannot be
    cast), so code catching either still catches it.
    """
