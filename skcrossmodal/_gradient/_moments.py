"""The gradient solver's statistics: the one accumulator, and the first pass.

The solver needs covariances twice: of each narrow modality once (for its
whitener), and of the ``M q`` projections after every epoch (for the small
closed form on their span). Both come from :func:`covariance_accumulator`,
the one accumulator of :mod:`.._statistics`, as ``fit`` uses.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .._modalities import raise_infinite
from .._namespace import to_numpy
from .._statistics import CovarianceAccumulator


def covariance_accumulator(modalities):
    """Sums for the covariance of dense rows (stacked columns), with
    ``update(rows)``, ``n_samples_seen`` and ``finalize().covariance``.

    ``modalities`` maps a name to its columns in the rows given to
    ``update``; a NaN block marks a modality missing in a row and the
    covariance is pairwise complete (the rows of array API X are complete:
    see :func:`raise_non_finite_array_api`).
    """
    n_columns = sum(len(indices) for indices in modalities.values())
    return CovarianceAccumulator(modalities, n_columns)


def raise_non_finite_array_api(xp, X):
    """The gradient solver's error for NaN or infinity in array API X.

    Its device rows keep no presence masks (one per batch would cost a
    device sync): a missing modality is refused there, unlike numpy rows
    and unlike the closed form, which sums array API rows pairwise complete.
    """
    if bool(xp.any(xp.isinf(X))):
        raise_infinite()
    if bool(xp.any(xp.isnan(X))):
        raise ValueError(
            "X contains NaN. Missing modalities (a modality block of NaN in a "
            "row) are not supported yet by the gradient solver for array API "
            f"inputs ({xp.__name__}); only complete data is. Use "
            "SharedProjection (closed form), which uses every row for every "
            "statistic it can inform in any namespace, fit on the rows that "
            "carry every modality, or convert X to a numpy array."
        )
    raise ValueError(
        "The sums over X overflowed: its values are too large for the "
        "accumulation dtype. Rescale X (e.g. StandardScaler) first."
    )


class Moments:
    """What the first pass found (numpy): ``counts`` (M, M) rows carrying
    both modalities, per modality ``mean`` and ``variance`` vectors, and
    ``covariance`` (``d_m x d_m``, or None where not asked)."""

    def __init__(self, counts, mean, variance, covariance):
        self.counts = counts
        self.mean = mean
        self.variance = variance
        self.covariance = covariance


def first_pass(data, rows, whiten):
    """Pair counts, per-feature means and variances, merged batch by batch.

    Per-feature variances only (``O(D)``, a diagonal): a modality 10^5
    features wide has no room for its covariance. Each batch's mean and
    centred sum of squares are merged with Chan et al.'s update, so large
    offsets do not cost digits. Modalities marked in ``whiten`` also get
    their full covariance from :func:`covariance_accumulator`. The sums are
    taken in ``data.xp`` (on the device); the results, ``O(D)`` vectors and
    ``d_m x d_m`` matrices, are returned as numpy.

    Parameters
    ----------
    data : Rows
    rows : ndarray of int
        The training rows.
    whiten : list of bool
        Per modality: also accumulate its covariance.

    Returns
    -------
    Moments
    """
    xp = data.xp
    n_modalities = len(data.widths)
    counts = np.zeros((n_modalities, n_modalities))
    seen = np.zeros(n_modalities)
    mean = [data.to_device(np.zeros(w)) for w in data.widths]
    squares = [data.to_device(np.zeros(w)) for w in data.widths]
    accumulators = [
        covariance_accumulator({"m": np.arange(w)}) if small else None
        for w, small in zip(data.widths, whiten)
    ]
    for chunk in data.chunks(rows):
        blocks, present = data.get(chunk)
        presence = present.astype(np.float64)
        counts += presence.T @ presence
        for m, block in enumerate(blocks):
            carried = present[:, m]
            c = int(carried.sum())
            if c == 0:
                continue
            # (Rows are dropped on the host only: array API X is complete.)
            block = block if carried.all() else block[carried]
            if accumulators[m] is not None:  # narrow: dense is O(batch D)
                accumulators[m].update(
                    block.toarray() if sparse.issparse(block) else block
                )
            if sparse.issparse(block):
                batch_mean = np.asarray(block.sum(axis=0)).ravel() / c
                batch_squares = np.asarray(block.multiply(block).sum(axis=0)).ravel()
                batch_squares = np.maximum(batch_squares - c * batch_mean**2, 0.0)
            else:
                batch_mean = xp.sum(block, axis=0) / c
                batch_squares = xp.sum((block - batch_mean) ** 2, axis=0)
            delta = batch_mean - mean[m]
            total = seen[m] + c
            mean[m] = mean[m] + delta * float(c / total)
            squares[m] = (
                squares[m] + batch_squares + delta**2 * float(seen[m] * c / total)
            )
            seen[m] = total
    variance = [
        np.asarray(to_numpy(s), dtype=np.float64) / max(n, 1)
        for s, n in zip(squares, seen)
    ]
    mean = [np.asarray(to_numpy(m), dtype=np.float64) for m in mean]
    covariance = [
        None
        if acc is None or acc.n_samples_seen < 2
        else np.array(to_numpy(acc.finalize().covariance), dtype=np.float64)
        for acc in accumulators
    ]
    return Moments(counts, mean, variance, covariance)
