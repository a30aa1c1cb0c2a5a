"""SharedProjectionCV: the ridge chosen by held-out correlation, from one pass."""

from __future__ import annotations

import itertools
import math
import time
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.model_selection import check_cv
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import VersionedPickleMixin, restore_on_error, validate_modal_data
from ._closed_form import (
    any_auto,
    check_memory,
    check_reg,
    is_auto,
    reg_values,
    solve_statistics,
)
from ._dask import is_dask_collection, validate_dask_data
from ._fold_statistics import (
    FoldStream,
    accumulate_targets,
    folds_from_targets,
    split_targets,
    stream_splits,
)
from ._namespace import array_namespace
from ._solvers import solver_threads
from ._space_estimator import SharedSpaceMixin
from ._statistics import CovarianceAccumulator


class SharedProjectionCV(
    VersionedPickleMixin, SharedSpaceMixin, TransformerMixin, BaseEstimator
):
    """Shared projection whose ridge is chosen by cross-validated correlation.

    The held-out canonical correlation (:meth:`SharedProjection.score`) needs
    no labels, so the ridge can be tuned without any. ``GridSearchCV`` over
    ``SharedProjection(reg=...)`` does it with ``n_folds x n_candidates``
    passes over X. The sufficient statistics are sums over rows, so this
    estimator makes **one** pass: it accumulates the statistics of each
    fold's held-out rows; the training statistics of a fold are the merge of
    the other folds'. For every candidate and fold it solves from the
    training statistics and scores on the held-out fold's statistics (the
    correlation of each pair of modalities' projections, per component,
    computed from the fold's covariance: no second pass either), then refits
    from the total statistics with the candidate of best mean score. As
    scikit-learn's ``RidgeCV`` does for ridge regression.

    Parameters
    ----------
    regs : array-like of (float >= 0 or "auto") or dict, \
            default=(1e-3, 1e-2, 1e-1, 1.0, 10.0, "auto")
        The candidate ridges, each used for every modality (``"auto"`` is
        the Ledoit-Wolf ridge of ``SharedProjection``). A dict maps each
        modality name to its own list, and every combination is a
        candidate (their product).
    n_components : int, default=2
        Dimension of the shared space.
    modalities : dict or None, default=None
        As in :class:`~skcrossmodal.SharedProjection`.
    scale : bool, default=False
        As in :class:`~skcrossmodal.SharedProjection`.
    output : {"mean", "concat"} or str, default="mean"
        As in :class:`~skcrossmodal.SharedProjection`.
    solver : {"auto", "eigh", "svd"}, default="auto"
        As in :class:`~skcrossmodal.SharedProjection` (exact solvers).
    cv : int, cross-validation generator or iterable, default=5
        As in ``GridSearchCV``: an int is ``KFold(cv)``. Splitters whose
        test folds partition the rows (``KFold``, ``GroupKFold`` with
        ``groups``, ``StratifiedKFold``, ...) take the one-pass route; any
        other splitter is accumulated split by split (still one pass, with
        ``2 x n_splits`` accumulators). :meth:`partial_fit` needs an int
        (the number of folds), and assigns the rows of a stream to folds
        by the rule documented there.
    refit_rule : {"best", "one_standard_error"}, default="best"
        ``"best"``: the candidate of highest mean held-out score.
        ``"one_standard_error"``: the most regularised candidate (largest
        total ridge) whose mean score is within one standard error of the
        best, a choice that generalises more safely on small data.
    verbose : int, default=0
        Print the score of each candidate as it is computed.

    Attributes
    ----------
    reg_ : dict of str -> float
        The ridge used in the refit, per modality (for ``"auto"``, the
        Ledoit-Wolf value on all rows).
    best_reg_ : float, str or dict
        The chosen candidate, as given in ``regs``.
    best_index_ : int
        Its position in ``cv_results_["params"]``.
    best_score_ : float
        Its mean held-out score.
    cv_results_ : dict of arrays
        As ``GridSearchCV``'s: ``params``, ``param_reg``,
        ``split<i>_test_score``, ``mean_test_score``, ``std_test_score``,
        ``rank_test_score``, and ``mean_test_score_per_component`` (shape
        ``(n_candidates, n_components)``: the held-out correlation of each
        component, which shows where components stop generalising; the
        score is their mean).
    shrinkage_, weights_, means_, canonical_correlations_, scale_, \
    loadings_, modalities_, n_samples_seen_, n_features_in_, \
    feature_names_in_ :
        As in :class:`~skcrossmodal.SharedProjection`, for the refit.

    See Also
    --------
    SharedProjection : The estimator refitted with the chosen ridge.
    sklearn.linear_model.RidgeCV : The same idea for ridge regression.

    Notes
    -----
    **Dask and streams.** ``fit`` accepts a Dask array (the ``dask`` extra):
    each row chunk splits its rows among the folds and sums them where it
    lives, the per-chunk sums are merged fold by fold, and the result equals
    the in-memory fit with the same splitter. :meth:`partial_fit` keeps the
    sums of each fold across batches (memory ``n_splits x D x D``); a
    stream's folds cannot be ``KFold``'s contiguous blocks (its length is
    unknown), so row ``i`` of the stream goes to fold ``i % cv``, or, with
    ``groups``, the ``j``-th distinct group to fold ``j % cv``. That equals
    ``fit`` with ``cv=PredefinedSplit(test_fold)`` for those folds.

    With complete rows the fold scores equal ``SharedProjection.score`` on
    the held-out rows (up to rounding). With missing modalities they come
    from the fold's pairwise-complete covariance, where each modality is
    centred by its own mean over the rows that carry it; ``score`` centres a
    pair by its mean over the rows that carry both, so the two can differ
    slightly.

    Examples
    --------
    >>> import numpy as np
    >>> from skcrossmodal import SharedProjectionCV
    >>> rng = np.random.default_rng(0)
    >>> latent = rng.normal(size=(400, 2))
    >>> text = latent @ rng.normal(size=(2, 30)) + 2 * rng.normal(size=(400, 30))
    >>> image = latent @ rng.normal(size=(2, 20)) + 2 * rng.normal(size=(400, 20))
    >>> X = np.hstack([text, image])
    >>> model = SharedProjectionCV(
    ...     [0.01, 0.1, 1.0, 10.0],
    ...     modalities={"text": slice(0, 30), "image": slice(30, 50)},
    ... ).fit(X)
    >>> model.transform(X).shape
    (400, 2)
    >>> sorted(model.cv_results_)[:3]
    ['mean_test_score', 'mean_test_score_per_component', 'param_reg']

    The same choice from a stream of batches: row ``i`` goes to fold
    ``i % 5``, which ``PredefinedSplit`` reproduces in memory.

    >>> from sklearn.model_selection import PredefinedSplit
    >>> stream = SharedProjectionCV(
    ...     [0.01, 0.1, 1.0, 10.0],
    ...     modalities={"text": slice(0, 30), "image": slice(30, 50)},
    ... )
    >>> *batches, last = np.array_split(X, 4)
    >>> for batch in batches:
    ...     stream = stream.partial_fit(batch, solve=False)  # sums only
    >>> stream = stream.partial_fit(last)  # sums, cross-validates, refits
    >>> in_memory = SharedProjectionCV(
    ...     [0.01, 0.1, 1.0, 10.0],
    ...     modalities={"text": slice(0, 30), "image": slice(30, 50)},
    ...     cv=PredefinedSplit(np.arange(400) % 5),
    ... ).fit(X)
    >>> stream.best_reg_ == in_memory.best_reg_
    True
    >>> bool(np.allclose(stream.cv_results_["mean_test_score"],
    ...                  in_memory.cv_results_["mean_test_score"]))
    True
    """

    _parameter_constraints: dict = {
        "regs": ["array-like", dict],
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "modalities": [dict, None],
        "scale": ["boolean"],
        "output": [str],
        "solver": [StrOptions({"auto", "eigh", "svd"})],
        "cv": ["cv_object"],
        "refit_rule": [StrOptions({"best", "one_standard_error"})],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        regs=(1e-3, 1e-2, 1e-1, 1.0, 10.0, "auto"),
        *,
        n_components=2,
        modalities=None,
        scale=False,
        output="mean",
        solver="auto",
        cv=5,
        refit_rule="best",
        verbose=0,
    ):
        self.regs = regs
        self.n_components = n_components
        self.modalities = modalities
        self.scale = scale
        self.output = output
        self.solver = solver
        self.cv = cv
        self.refit_rule = refit_rule
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, groups=None):
        """Score every candidate ridge by cross-validation, refit the best.

        ``fit`` keeps the model, not the per-fold ``D x D`` sums: a later
        ``partial_fit`` starts a new stream (see :meth:`partial_fit`).

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame, dask array} of shape \
                (n_samples, n_features)
            The modalities side by side (NaN blocks: missing modalities). A
            Dask array is summed chunk by chunk where it lives (its row
            chunk sizes must be known), with the result of the in-memory
            fit.
        y : array-like of shape (n_samples,), default=None
            Only passed to the splitter (e.g. ``StratifiedKFold``).
        groups : array-like of shape (n_samples,), default=None
            Group labels for the splitter (e.g. ``GroupKFold``).

        Returns
        -------
        self : SharedProjectionCV
        """
        with restore_on_error(self):
            self.__dict__.pop("_stream", None)
            dask_input = is_dask_collection(X)
            if dask_input:
                validate_dask_data(self, X, reset=True)
            else:
                X = validate_modal_data(self, X, reset=True)
            names = list(self.modalities_)
            candidates = self._candidates(names)
            self._check_params_against_modalities()
            n_rows = X.shape[0]
            if not np.isfinite(n_rows):
                raise ValueError(
                    "The Dask array's number of rows is unknown; call "
                    "`X.compute_chunk_sizes()` first."
                )
            # Splitters only count rows (and read y, groups): a Dask X is
            # stood in for by an empty array of as many rows.
            rows = np.empty((int(n_rows), 0)) if dask_input else X
            splits = list(check_cv(self.cv).split(rows, y, groups))
            targets, partition = split_targets(splits, int(n_rows))
            if dask_input and not partition:
                # The refit's statistics in the same pass.
                targets.append(np.arange(int(n_rows)))
            base = self._new_accumulator(candidates)
            sums = accumulate_targets(X, targets, base)
            total = sums.pop() if dask_input and not partition else None
            folds = folds_from_targets(sums, partition)
            if total is None and not partition:  # another splitter: one more pass
                total = folds[0][1].empty_like().update(X)
            return self._select_and_refit(folds, candidates, names, total)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, groups=None, *, solve=True):
        """Add a batch of rows to the per-fold statistics, and choose again.

        A stream's total number of rows is unknown, so its folds cannot be
        ``KFold``'s contiguous blocks: ``cv`` must be an int (the number of
        folds, ``n_splits``) and the rows are assigned as they come,
        reproducibly:

        - without ``groups``, row ``i`` of the stream (counted from 0
          across every batch since the first ``partial_fit``) goes to fold
          ``i % n_splits``;
        - with ``groups`` (one label per row, for every batch), the ``j``-th
          distinct group of the stream (in order of first appearance) goes
          to fold ``j % n_splits``, with all its rows, whichever batch they
          come in.

        The result equals ``fit`` on all the batches with
        ``cv=PredefinedSplit(test_fold)``, ``test_fold`` being the folds the
        rule gives. Memory is ``n_splits`` sums of ``D x D``, never
        ``O(n)``. A batch that is refused (infinity, partial NaN, a row
        without any modality, groups given for some batches only) leaves
        the statistics and the fitted model as they were. ``partial_fit``
        after ``fit`` starts a new stream, with a warning. Dask batches are
        summed chunk by chunk.

        Each solve costs ``n_splits x n_candidates`` small ``D x D`` solves:
        over many small batches pass ``solve=False`` for all but the last.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame, dask array} of shape \
                (n_samples, n_features)
            One batch of rows.
        y : None
            Ignored.
        groups : array-like of shape (n_samples,), default=None
            Group labels of the batch's rows (hashable values): rows of a
            group share a fold across the whole stream.
        solve : bool, default=True
            Cross-validate and refit after adding the batch. With ``False``
            only the statistics grow; the fitted attributes (if any) stay
            those of the last call that solved. Solving needs rows in every
            fold.

        Returns
        -------
        self : SharedProjectionCV
        """
        stream = getattr(self, "_stream", None)
        if stream is None and hasattr(self, "canonical_correlations_"):
            warnings.warn(
                "partial_fit after fit starts a new stream from this batch: "
                "fit keeps only the model, not the per-fold D x D sums it came "
                "from. To stream, call partial_fit for every batch, the first "
                "included.",
                UserWarning,
                stacklevel=2,
            )
        with restore_on_error(self):
            n_splits = stream_splits(self.cv)
            first = stream is None
            dask_input = is_dask_collection(X)
            if not first:
                if n_splits != stream.n_splits:
                    raise ValueError(
                        f"cv={self.cv!r}, but this partial_fit stream has "
                        f"{stream.n_splits} folds: keep cv between batches, or "
                        "call fit to start again."
                    )
                for sums in stream.sums:
                    sums.check_compatible(X, method="partial_fit")
            if dask_input:
                validate_dask_data(self, X, reset=first)
            else:
                X = validate_modal_data(self, X, reset=first)
            if first:
                names = list(self.modalities_)
                candidates = self._candidates(names)
                self._check_params_against_modalities()
                stream = FoldStream(n_splits, None)
                base = self._new_accumulator(candidates)
            else:
                base = stream.sums[0]
            if dask_input and groups is not None:
                groups = np.asarray(groups)
            self._stream = stream.add(X, groups, base)
        if not solve:
            return self
        with restore_on_error(self):
            return self._solve_stream()

        # -- internals ----------------------------------------------------------

    def _new_accumulator(self, candidates):
        check_memory(self.n_features_in_)
        return CovarianceAccumulator(
            self.modalities_,
            self.n_features_in_,
            fourth_moments=any(any_auto(c) for c in candidates),
        )

    def _solve_stream(self):
        stream = self._stream
        names = list(self.modalities_)
        candidates = self._candidates(names)
        if any(any_auto(c) for c in candidates) and not stream.sums[0].fourth_moments:
            raise ValueError(
                "regs now has 'auto', but this partial_fit stream began without "
                "it, so its statistics lack the fourth moments Ledoit-Wolf "
                "needs: call fit, or start the stream again with 'auto' in regs."
            )
        short = [f for f, sums in enumerate(stream.sums) if sums.n_rows < 2]
        if short:
            raise ValueError(
                f"Fold(s) {short} of the {stream.n_splits} hold fewer than 2 rows "
                f"after {stream.n_rows} rows: every fold needs rows before the "
                "ridge can be cross-validated. The batch was added to the "
                "statistics: call partial_fit with more rows (solve=False "
                "until then)."
            )
        folds = folds_from_targets(stream.sums, True)
        return self._select_and_refit(folds, candidates, names, None)

    def _select_and_refit(self, folds, candidates, names, total):
        """Score the candidates on ``folds``, choose, refit from ``total``
        (the merge of the folds when None)."""
        scores, per_component, ridges = self._cross_validate(folds, candidates, names)
        best = self._choose(scores, ridges, candidates)
        if total is None:
            total = folds[0][1].empty_like()
            for _, held_out in folds:
                total.merge(held_out)
        self._fit_closed_form(total, candidates[best])
        self.cv_results_ = _results(candidates, scores, per_component)
        self.best_index_ = int(best)
        self.best_reg_ = candidates[best]
        self.best_score_ = float(np.nanmean(scores[best]))
        return self

    def _candidates(self, names):
        if isinstance(self.regs, dict):
            unknown = set(self.regs) - set(names)
            absent = set(names) - set(self.regs)
            if unknown or absent:
                raise ValueError(
                    f"regs as a dict needs one list of candidates per modality "
                    f"{names}; unknown: {sorted(unknown)}, missing: "
                    f"{sorted(absent)}."
                )
            lists = [_as_list(self.regs[name]) for name in names]
            candidates = [
                dict(zip(names, combo)) for combo in itertools.product(*lists)
            ]
        else:
            candidates = _as_list(self.regs)
        if not candidates:
            raise ValueError("regs is empty: give at least one candidate ridge.")
        for candidate in candidates:
            values = candidate.values() if isinstance(candidate, dict) else [candidate]
            for value in values:
                if not (
                    is_auto(value)
                    or (
                        isinstance(value, Real)
                        and not isinstance(value, bool)
                        and value >= 0
                    )
                ):
                    raise ValueError(
                        f"Every candidate in regs must be a float >= 0 or "
                        f"'auto', got {value!r}."
                    )
        return [
            candidate if isinstance(candidate, dict | str) else float(candidate)
            for candidate in candidates
        ]

    def _cross_validate(self, folds, candidates, names):
        n_folds = len(folds)
        scores = np.full((len(candidates), n_folds), np.nan)
        per_component = np.full((len(candidates), n_folds, self.n_components), np.nan)
        ridges = np.zeros((len(candidates), n_folds))
        template = folds[0][1]
        blocks = template.blocks
        solver = "eigh" if self.solver == "eigh" else "svd"
        start = time.perf_counter()
        for f, (train, held_out) in enumerate(folds):
            if train is None:
                train = template.empty_like()
                for g, (_, other) in enumerate(folds):
                    if g != f:
                        train.merge(other)
            with solver_threads(len(template.columns)):
                held_out_covariance = held_out.finalize().covariance
                for c, candidate in enumerate(candidates):
                    solution = solve_statistics(
                        train.finalize(),
                        reg_values(candidate, names),
                        names=names,
                        blocks=blocks,
                        n_components=self.n_components,
                        scale=self.scale,
                        solver=solver,
                    )
                    correlations = held_out_correlations(
                        solution.weights, held_out_covariance, blocks
                    )
                    per_component[c, f] = np.nanmean(correlations, axis=0)
                    scores[c, f] = _mean_defined(correlations)
                    ridges[c, f] = sum(solution.reg)
                    if self.verbose:
                        print(
                            f"[SharedProjectionCV] fold {f + 1}/{n_folds} "
                            f"reg={candidate!r}: held-out correlation "
                            f"{scores[c, f]:.4f} "
                            f"({time.perf_counter() - start:.1f} s)"
                        )
        return scores, per_component, ridges

    def _choose(self, scores, ridges, candidates):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
            means = np.nanmean(scores, axis=1)
        if np.all(np.isnan(means)):
            raise ValueError(
                "No candidate ridge could be scored: no held-out fold has rows "
                "that carry two modalities with varying projections. Use fewer "
                "folds, or more paired rows."
            )
        best = int(np.nanargmax(means))
        if self.refit_rule == "best":
            return best
        n_folds = scores.shape[1]
        error = np.nanstd(scores[best]) / math.sqrt(n_folds)
        eligible = np.flatnonzero(means >= means[best] - error)
        total_ridge = ridges.mean(axis=1)
        return int(eligible[np.argmax(total_ridge[eligible])])

    def _check_params_against_modalities(self):
        names = list(self.modalities_)
        super()._check_params_against_modalities()
        for candidate in self._candidates(names):
            check_reg(candidate, names)


def _as_list(values):
    """A candidate or a sequence of them, as a list (strings stay whole)."""
    if isinstance(values, str) or not np.iterable(values):
        return [values]
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def held_out_correlations(weights, covariance, blocks):
    """Correlation of each pair of modalities' projections, per component.

    From the held-out rows' covariance ``C`` (the projections' covariance is
    ``W_m^T C_ml W_l``): ``corr_j = (W_m^T C_ml W_l)_jj /
    sqrt((W_m^T C_mm W_m)_jj (W_l^T C_ll W_l)_jj)``, exactly the Pearson
    correlation of the projections of those rows. A constant projection
    (variance at the rounding level of its terms) gives NaN.

    Returns
    -------
    correlations : array of shape (n_pairs, n_components)
    """
    xp = array_namespace(weights, covariance)
    parts = [weights[b, :] for b in blocks]
    covariance_w = [covariance[:, b] @ part for b, part in zip(blocks, parts)]
    eps = float(xp.finfo(covariance.dtype).eps)
    variances, defined = [], []
    for m, (b, part) in enumerate(zip(blocks, parts)):
        variance = xp.sum(part * covariance_w[m][b, :], axis=0)
        # The size of the terms the variance sums: a variance at their
        # rounding level is a constant projection, whatever the units.
        magnitude = xp.sum(
            xp.abs(part) * (xp.abs(covariance[b, b]) @ xp.abs(part)), axis=0
        )
        variances.append(variance)
        defined.append(variance > 64 * eps * magnitude)
    rows = []
    for m, l in itertools.combinations(range(len(blocks)), 2):
        cross = xp.sum(parts[m] * covariance_w[l][blocks[m], :], axis=0)
        both = defined[m] & defined[l]
        denominator = xp.sqrt(
            xp.where(both, variances[m] * variances[l], xp.ones_like(cross))
        )
        nan = xp.full_like(cross, float("nan"))
        rows.append(xp.where(both, cross / denominator, nan))
    return xp.stack(rows, axis=0)


def _mean_defined(correlations):
    values = np.asarray(correlations, dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def _results(candidates, scores, per_component):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(scores, axis=1)
        stds = np.nanstd(scores, axis=1)
        component_means = np.nanmean(per_component, axis=1)
    order = np.argsort(-np.where(np.isnan(means), -np.inf, means), kind="stable")
    ranks = np.empty(len(candidates), dtype=np.int32)
    ranks[order] = np.arange(1, len(candidates) + 1)
    results = {
        "params": [{"reg": candidate} for candidate in candidates],
        "param_reg": np.ma.MaskedArray(np.empty(len(candidates), dtype=object)),
    }
    for i, candidate in enumerate(candidates):
        results["param_reg"][i] = candidate
    for f in range(scores.shape[1]):
        results[f"split{f}_test_score"] = scores[:, f]
    results["mean_test_score"] = means
    results["std_test_score"] = stds
    results["rank_test_score"] = ranks
    results["mean_test_score_per_component"] = component_means
    return results
