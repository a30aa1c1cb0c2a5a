"""What every estimator whose result is a shared space has in common.

``transform``, ``score`` and ``get_feature_names_out`` read the fitted
:class:`~skcrossmodal._shared_space.SharedSpace` (``self._space``), and
``_set_fitted`` sets the public attributes and that space together, so every
solver (closed form, streamed, cross-validated, gradient) exposes the same
fitted model the same way.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import TransformerMixin
from sklearn.utils._array_api import check_same_namespace
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted

from ._base import validate_modal_data
from ._closed_form import _diagonal, check_reg, reg_values, solve_statistics
from ._namespace import array_namespace
from ._shared_space import SharedSpace
from ._solvers import solver_threads


def shared_feature_names(estimator, input_features, n_components):
    """``"<estimator>0"``, ... (``"<modality>__<estimator>0"``, ... with
    ``output="concat"``): the output names of any shared-space estimator."""
    _check_feature_names_in(estimator, input_features, generate_names=False)
    prefix = type(estimator).__name__.lower()
    names = [f"{prefix}{j}" for j in range(n_components)]
    if estimator.output == "concat":
        names = [f"{m}__{name}" for m in estimator.modalities_ for name in names]
    return np.asarray(names, dtype=object)


class SharedSpaceMixin(TransformerMixin):
    """transform / score / feature names of a fitted shared space.

    The estimator has ``n_components``, ``output`` and ``modalities`` (and
    ``reg``) parameters and calls ``_set_fitted`` at the end of ``fit``.
    """

    def transform(self, X):
        """Project X into the shared space.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Rows with at least one modality present.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components) or \
                (n_samples, n_modalities * n_components)
            See ``output``. Same float dtype as X.
        """
        check_is_fitted(self)
        X = validate_modal_data(self, X, reset=False)
        check_same_namespace(
            X, self, attribute="canonical_correlations_", method="transform"
        )
        space = self._space
        projections, present = space.project(X)
        return space.combine(projections, present, self.output)

    def score(self, X, y=None):
        """Mean held-out canonical correlation.

        The Pearson correlation between the projections of each pair of
        modalities, on the rows that carry both, averaged over pairs and
        components. Higher is better, so ``GridSearchCV`` can tune ``reg``
        and ``n_components`` without labels. A pair that no row carries
        together, or a component constant on the rows, cannot be measured:
        it is left out with a warning, and the score is NaN when nothing
        can be measured.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Held-out rows.
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        X = validate_modal_data(self, X, reset=False)
        check_same_namespace(
            X, self, attribute="canonical_correlations_", method="score"
        )
        projections, present = self._space.project(X)
        return self._space.score(projections, present)

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns.

        ``"sharedprojection0"``, ... ; with ``output="concat"``,
        ``"<modality>__sharedprojection0"``, ... so that a further
        skcrossmodal step with ``modalities=None`` finds the modalities again.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Only checked against the fitted feature names.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        return shared_feature_names(self, input_features, self._space.n_components)

    def _check_params_against_modalities(self):
        names = list(self.modalities_)
        narrowest = min(names, key=lambda name: len(self.modalities_[name]))
        if self.n_components > len(self.modalities_[narrowest]):
            raise ValueError(
                f"n_components={self.n_components} is larger than modality "
                f"{narrowest!r}, which has {len(self.modalities_[narrowest])} "
                "feature(s). Choose n_components <= the narrowest modality's width."
            )
        if self.output not in ("mean", "concat") and self.output not in names:
            raise ValueError(
                f"output={self.output!r} is not 'mean', 'concat' or a modality "
                f"name; modalities are {names}."
            )
        if hasattr(self, "reg"):
            check_reg(self.reg, names)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # NaN is only meaningful as a whole missing modality block, not
        # anywhere, so the estimator does not claim scikit-learn's allow_nan.
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _fit_closed_form(self, accumulator, reg, *, consume=False):
        """The closed form from ``accumulator``'s statistics with ``reg`` (a
        number, ``"auto"`` or a dict), then the fitted attributes, set
        together at the end (``SharedProjection`` and its CV refit alike).
        ``consume``: the accumulator is not kept (see ``finalize``)."""
        names = list(self.modalities_)
        blocks = accumulator.blocks
        with solver_threads(len(accumulator.columns)):
            stats = accumulator.finalize(consume=consume)
            loadings = LoadingsSource(stats.covariance, blocks)
            solution = solve_statistics(
                stats,
                reg_values(reg, names),
                names=names,
                blocks=blocks,
                n_components=self.n_components,
                scale=self.scale,
                solver="eigh" if self.solver == "eigh" else "svd",
            )
        self.reg_ = dict(zip(names, solution.reg))
        self.shrinkage_ = dict(zip(names, solution.shrinkage))
        std = solution.std
        return self._set_fitted(
            solution.correlations,
            {name: solution.weights[b, :] for name, b in zip(names, blocks)},
            {name: stats.mean[b] for name, b in zip(names, blocks)},
            {name: (None if std is None else std[b]) for name, b in zip(names, blocks)},
            accumulator.n_samples_seen,
            loadings,
        )

    def _set_fitted(self, correlations, weights, means, scale, n_seen, loadings):
        """Set the fitted attributes from per-modality dicts."""
        self.canonical_correlations_ = correlations
        self.weights_ = weights
        self.means_ = means
        self.scale_ = scale
        self.n_samples_seen_ = n_seen
        if loadings is None:
            self.__dict__.pop("loadings_", None)
        else:
            self.loadings_ = loadings.of(weights, list(self.modalities_))
        # The same arrays as the public attributes (a pickle stores them once).
        self._space = SharedSpace(self.modalities_, means, weights, correlations)
        self._n_features_out = (
            self.n_components * len(weights)
            if self.output == "concat"
            else self.n_components
        )
        return self


class LoadingsSource:
    """The within-modality covariance blocks, copied before the solver
    overwrites the covariance, for the structure correlations."""

    def __init__(self, covariance, blocks):
        self.blocks = [covariance[b, b] * 1.0 for b in blocks]

    def of(self, weights, names):
        """``corr(x_j, z_c)`` for every feature ``j`` of a modality and
        component ``c`` of its own projection ``z = (x - mu) W``."""
        loadings = {}
        for name, block in zip(names, self.blocks):
            xp = array_namespace(block)
            W = xp.astype(weights[name], block.dtype)
            covariance_xz = block @ W
            variance_x = _diagonal(xp, block)
            variance_z = xp.sum(W * covariance_xz, axis=0)
            denominator = (
                xp.sqrt(
                    xp.where(variance_x > 0, variance_x, xp.zeros_like(variance_x))
                )[:, None]
                * xp.sqrt(
                    xp.where(variance_z > 0, variance_z, xp.zeros_like(variance_z))
                )[None, :]
            )
            safe = xp.where(denominator > 0, denominator, xp.ones_like(denominator))
            values = xp.where(
                denominator > 0, covariance_xz / safe, xp.zeros_like(covariance_xz)
            )
            loadings[name] = xp.clip(values, -1.0, 1.0)
        return loadings
