"""The conventions every solver's answer follows, written once.

From the top eigenpairs ``(r, v)`` of the generalised problem
``C_reg w = r D w`` (see ``_solvers``), every solver (closed form in numpy,
closed form in another array namespace, gradient) reports

* correlations ``(r - 1) / (M - 1)`` for ``M`` modalities (for two, the
  canonical correlations), clipped at 1 with a warning when they pass it by
  more than rounding (a pairwise-complete covariance need not be positive
  semi-definite);
* weights ``v * sqrt(M)``, each component's sign chosen so that the
  largest-magnitude weight of the first modality is positive (as
  ``svd_flip`` does; one modality only, so symmetric data creates no ties
  between modalities). A zero column keeps sign +1.
"""

from __future__ import annotations

import math
import warnings

from ._namespace import array_namespace

# How far past 1 a correlation may come out by rounding alone (a perfect
# correlation, e.g. reg=0 with fewer rows than features).
_ROUNDING_PAST_ONE = 1e-7


def finish(values, vectors, blocks):
    """Correlations and sign-fixed weights from the top eigenpairs.

    Parameters
    ----------
    values : array of shape (k,)
        Top eigenvalues ``r``, descending.
    vectors : array of shape (D, k)
        Their eigenvectors, stacked over the modalities.
    blocks : list of slice
        Each modality's rows of ``vectors``.

    Returns
    -------
    correlations : array of shape (k,)
    weights : array of shape (D, k)
    """
    xp = array_namespace(values, vectors)
    n_modalities = len(blocks)
    correlations = (values - 1.0) / (n_modalities - 1)
    if correlations.shape[0] and float(correlations[0]) > 1.0 + _ROUNDING_PAST_ONE:
        warnings.warn(
            f"The largest canonical correlation came out as "
            f"{float(correlations[0]):.6g}, above 1: the covariance estimated "
            "from rows with missing modalities (each block from the rows that "
            "carry it) is not positive semi-definite, which happens when few "
            "rows carry both modalities compared with their widths. "
            "Correlations are clipped at 1. Increase reg, reduce the widths "
            "(e.g. PCA per modality), or fit on more paired rows.",
            UserWarning,
            stacklevel=5,
        )
    correlations = xp.where(
        correlations > 1.0, xp.ones_like(correlations), correlations
    )
    weights = vectors * math.sqrt(n_modalities)
    return correlations, weights * sign_convention(weights[blocks[0], :])[None, :]


def sign_convention(first):
    """+1/-1 per column: the sign of the column's largest-magnitude entry.

    Parameters
    ----------
    first : array of shape (d, k)
        The first modality's weights (any namespace).

    Returns
    -------
    signs : array of shape (k,), same namespace and dtype
    """
    xp = array_namespace(first)
    largest = xp.argmax(xp.abs(first), axis=0)
    picked = xp.take_along_axis(first, largest[None, :], axis=0)[0, :]
    return xp.where(picked < 0, -xp.ones_like(picked), xp.ones_like(picked))


def equilibration_factors(diagonal):
    """``sqrt(d_i)`` for the diagonal equilibration of a covariance; 1 where
    ``d_i`` is not positive.

    Dividing row and column ``i`` by ``sqrt(d_i)`` gives every feature unit
    variance, so features in wildly different units lose no digits in the
    whitening. Any positive variance is equilibrated, however small: by
    Cauchy-Schwarz ``|C_ij| <= sqrt(d_i d_j)``, so no entry can overflow,
    and an absolute floor (say ``tiny ** 0.25`` ~ 1e-77) would leave a
    feature measured in units of 1e-78 unequilibrated and its digits lost.
    """
    xp = array_namespace(diagonal)
    positive = diagonal > 0
    safe = xp.where(positive, diagonal, xp.ones_like(diagonal))
    return xp.sqrt(safe)
