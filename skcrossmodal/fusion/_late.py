"""Late fusion: one estimator per modality, combined by vote or stacking."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import (
    BaseEstimator,
    clone,
    is_classifier,
)
from sklearn.model_selection import check_cv, cross_val_predict
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import (
    _check_sample_weight,
    _check_y,
    check_is_fitted,
    has_fit_parameter,
)

from .._base import VersionedPickleMixin
from .._transfer_checks import refuse_missing_labels
from ._base import ModalInputMixin, error_context, modality_context, refuse_array_api
from ._utils import block_rows, check_weights, row_coefficients


def _fit_one(name, estimator, X, y, sample_weight):
    """Fit one modality's estimator; an error names the modality."""
    with modality_context(name, estimator, "fit"):
        if sample_weight is None:
            return estimator.fit(X, y)
        return estimator.fit(X, y, sample_weight=sample_weight)


class _BaseLateFusion(VersionedPickleMixin, ModalInputMixin, BaseEstimator):
    """Shared fit logic: one estimator per modality on its own columns.

    As scikit-learn's ``_BaseVoting`` and ``_BaseStacking``, the base holds
    all the work; a subclass holds its ``__init__`` (the default of
    ``method`` differs, and ``get_params`` reads the subclass's signature),
    its documented ``fit`` / ``predict`` and these hooks:

    - ``_stack_method``: what is called on every per-modality estimator and
      on ``final_estimator``; ``_method_hint``: how to get an estimator that
      has it;
    - ``_default_estimator()``, ``_default_final_estimator()``;
    - ``_prepare_y(y)`` -> (y, classes or None);
    - ``_missing_fill(classes, y_m, w_m)``: a missing modality's output;
    - ``_encode(classes, values, seen)``: one estimator's output as a 2-D
      float array (columns in ``classes`` order, ``seen`` being the classes
      the estimator saw, None for a regressor);
    - ``_output_shape_tail(classes)``, ``_trim_meta(classes, values)``.
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"]), dict, None],
        "modalities": [dict, None],
        "weights": [dict, None],
        "final_estimator": [HasMethods(["fit"]), None],
        "cv": ["cv_object"],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        estimator=None,
        *,
        modalities=None,
        weights=None,
        method=None,
        final_estimator=None,
        cv=None,
        n_jobs=None,
    ):
        self.estimator = estimator
        self.modalities = modalities
        self.weights = weights
        self.method = method
        self.final_estimator = final_estimator
        self.cv = cv
        self.n_jobs = n_jobs

    def _base_estimators(self, names):
        if isinstance(self.estimator, dict):
            unknown = [key for key in self.estimator if key not in names]
            absent = [name for name in names if name not in self.estimator]
            if unknown or absent:
                raise ValueError(
                    "`estimator` as a dict needs exactly one estimator per "
                    f"modality {names}; unknown: {unknown}, missing: {absent}."
                )
            for name, est in self.estimator.items():
                if not hasattr(est, "fit"):
                    raise TypeError(
                        f"`estimator[{name!r}]` must be an estimator with a fit "
                        f"method, got {type(est).__name__}."
                    )
            return {name: clone(self.estimator[name]) for name in names}
        template = self.estimator
        if template is None:
            template = self._default_estimator()
        return {name: clone(template) for name in names}

    def _final_estimator(self):
        """The unfitted stacking estimator, checked for what predict needs."""
        final = (
            self._default_final_estimator()
            if self.final_estimator is None
            else clone(self.final_estimator)
        )
        if not hasattr(final, self._stack_method):
            raise ValueError(
                f"`final_estimator` ({type(final).__name__}) has no "
                f"{self._stack_method}, which {type(self).__name__}"
                f"(method='stacking') calls on it to predict. " + self._method_hint
            )
        return final

    def _check_base_estimators(self, bases):
        """Every per-modality estimator must have ``_stack_method``."""
        for name, est in bases.items():
            if not hasattr(est, self._stack_method):
                raise ValueError(
                    f"The estimator for modality {name!r} "
                    f"({type(est).__name__}) has no {self._stack_method}, which "
                    "late fusion calls for both methods. " + self._method_hint
                )

    def _check_sample_weight_support(self, estimators, sample_weight):
        """Every estimator that sample_weight goes to must accept it."""
        if sample_weight is None:
            return
        for where, est in estimators.items():
            if not has_fit_parameter(est, "sample_weight"):
                raise TypeError(
                    f"sample_weight was given, but the estimator of {where} "
                    f"({type(est).__name__}) does not accept sample_weight in "
                    "its fit. Use an estimator that does, or fit without "
                    "sample_weight."
                )

    def _fit_late(self, X, y, sample_weight):
        """Validate, fit the per-modality estimators, and stack if asked.

        Everything is checked before anything is fitted, and the fitted
        attributes are set only at the end: a fit that fails leaves a
        previous fit's estimators in place.
        """
        refuse_array_api(self, X, y, sample_weight)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target "
                "y is None."
            )
        X, present = self._validate_blocks(X, reset=True)
        if self._is_classifier():
            # pd.NA would otherwise fail as "boolean value of NA is ambiguous".
            refuse_missing_labels(self, y)
        y = _check_y(y, estimator=self)
        if y.shape[0] != X.shape[0]:
            raise ValueError(
                f"X and y have inconsistent numbers of samples: {X.shape[0]} "
                f"and {y.shape[0]}."
            )
        y, classes = self._prepare_y(y)
        if sample_weight is not None:
            with error_context("sample_weight needs one weight >= 0 per row of X"):
                sample_weight = _check_sample_weight(
                    sample_weight, X, ensure_non_negative=True
                )
        names = list(self.modalities_)
        weights = check_weights(self.weights, names)
        bases = self._base_estimators(names)
        self._check_base_estimators(bases)
        stacking = self.method == "stacking"
        final = self._final_estimator() if stacking else None
        checked = {f"modality {name!r}": est for name, est in bases.items()}
        if stacking:
            checked["final_estimator"] = final
        self._check_sample_weight_support(checked, sample_weight)

        if sample_weight is not None:
            for position, name in enumerate(names):
                if not sample_weight[present[:, position]].sum() > 0:
                    raise ValueError(
                        f"sample_weight is 0 on every row of X that carries "
                        f"modality {name!r}, so nothing can be fitted for it. "
                        "Give some of those rows a positive weight."
                    )

        def subset(position):
            rows = present[:, position]
            cols = self.modalities_[names[position]]
            weight = None if sample_weight is None else sample_weight[rows]
            return block_rows(X, cols, rows), y[rows], weight

        fitted = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_one)(name, bases[name], *subset(position))
            for position, name in enumerate(names)
        )
        fills = {
            name: self._missing_fill(classes, *subset(position)[1:])
            for position, name in enumerate(names)
        }
        if stacking:
            columns = []
            for position, name in enumerate(names):
                X_m, y_m, w_m = subset(position)
                cv = check_cv(self.cv, y_m, classifier=is_classifier(self))
                params = None if w_m is None else {"sample_weight": w_m}
                with modality_context(name, bases[name], "cross_val_predict"):
                    out_of_fold = cross_val_predict(
                        clone(bases[name]),
                        X_m,
                        y_m,
                        cv=cv,
                        method=self._stack_method,
                        n_jobs=self.n_jobs,
                        params=params,
                    )
                rows = present[:, position]
                full = np.empty((X.shape[0],) + self._output_shape_tail(classes))
                # cross_val_predict orders columns by np.unique(y_m).
                seen = np.unique(y_m) if classes is not None else None
                full[rows] = self._encode(classes, out_of_fold, seen)
                columns.append(self._meta_block(classes, fills[name], full, rows))
            with error_context(
                f"The final_estimator ({type(final).__name__}) failed in fit"
            ):
                final = (
                    final.fit(np.hstack(columns), y)
                    if sample_weight is None
                    else final.fit(np.hstack(columns), y, sample_weight=sample_weight)
                )
        if classes is not None:
            self.classes_ = classes
        self.weights_ = dict(zip(names, weights.tolist()))
        self.estimators_ = dict(zip(names, fitted))
        self._fill_ = fills
        if stacking:
            self.final_estimator_ = final
        elif hasattr(self, "final_estimator_"):
            del self.final_estimator_  # from an earlier fit with stacking
        return self

    def _per_modality_outputs(self, X):
        """(list of per-modality outputs on present rows, presence mask)."""
        check_is_fitted(self)
        refuse_array_api(self, X)
        X, present = self._validate_blocks(X, reset=False)
        classes = getattr(self, "classes_", None)
        outputs = []
        for position, (name, cols) in enumerate(self.modalities_.items()):
            rows = present[:, position]
            if rows.any():
                estimator = self.estimators_[name]
                with modality_context(name, estimator, self._stack_method):
                    out = getattr(estimator, self._stack_method)(
                        block_rows(X, cols, rows)
                    )
                seen = getattr(estimator, "classes_", None)
                outputs.append(self._encode(classes, out, seen))
            else:
                outputs.append(None)
        return outputs, present

    def _combined(self, X):
        """Soft-vote / mean output, or the stacked meta-features."""
        outputs, present = self._per_modality_outputs(X)
        names = list(self.modalities_)
        classes = getattr(self, "classes_", None)
        tail = self._output_shape_tail(classes)
        if self.method == "stacking":
            blocks = []
            for position, (name, out) in enumerate(zip(names, outputs)):
                rows = present[:, position]
                full = np.empty((present.shape[0],) + tail)
                if out is not None:
                    full[rows] = out
                blocks.append(self._meta_block(classes, self._fill_[name], full, rows))
            return np.hstack(blocks), True
        weights = np.array([self.weights_[name] for name in names])
        coef = row_coefficients(present, weights, names)
        total = np.zeros((present.shape[0],) + tail)
        for position, out in enumerate(outputs):
            rows = present[:, position]
            if out is None:
                continue
            c = coef[rows, position]
            total[rows] += c.reshape((-1,) + (1,) * (out.ndim - 1)) * out
        return total, False

    def _final_output(self, values, method):
        """``final_estimator_``'s ``method`` on the meta-features."""
        final = self.final_estimator_
        with error_context(
            f"The final_estimator ({type(final).__name__}) failed in {method}"
        ):
            return getattr(final, method)(values)

    def _meta_block(self, classes, fill, values, rows):
        """Meta-features of one modality; the fill value where it is missing."""
        values = np.array(values, dtype=np.float64, copy=True)
        values[~rows] = fill
        return self._trim_meta(classes, values)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if isinstance(self.estimator, dict):
            estimators = list(self.estimator.values())
        else:
            estimators = [
                self._default_estimator() if self.estimator is None else self.estimator
            ]
        tags.input_tags.sparse = all(
            get_tags(est).input_tags.sparse for est in estimators
        )
        return tags


def _align_classes(all_classes, classes, values):
    """Columns of ``values`` (for ``classes``) placed among ``all_classes``."""
    if len(classes) == len(all_classes):
        return values
    full = np.zeros((values.shape[0], len(all_classes)))
    full[:, np.searchsorted(all_classes, classes)] = values
    return full
