"""From accumulated sums to means and a pairwise-complete block covariance.

The second half of ``_statistics``: :class:`~._statistics.CovarianceAccumulator`
keeps shifted, weighted sums; :func:`block_covariance` turns them into the
means and the covariance of the stacked modalities (in the sums' namespace),
and :class:`BlockCovariance` also answers the Ledoit-Wolf shrinkage intensity
from the fourth-moment sums.

With ``z`` the shifted rows (missing blocks zeroed), ``w`` the row weights,
``p_rl`` whether row ``r`` carries modality ``l`` and ``l(i)`` the modality
of column ``i``, the sums are ``G = sum_r w_r z_r z_r^T``, ``S[i, l] =
sum_r w_r p_rl z_ri`` and ``N[m, l] = sum_r w_r p_rm p_rl``. Entry ``(i, j)``
of the covariance is then ``(G - A - A^T + N delta delta^T) / N`` with
``delta_i = S[i, l(i)] / N[l(i), l(i)]`` (the shifted mean over the rows that
carry ``l(i)``) and ``A[i, j] = S[i, l(j)] delta_j``: block ``(m, l)`` is
centred with each modality's own mean and divided by the weight of the rows
that carry both.
"""

from __future__ import annotations

import numpy as np

from ._batch_sums import xp_diagonal
from ._namespace import array_namespace, to_numpy

# Bytes per band of rows of the D x D covariance (numpy): a few temporaries
# of this size live at once.
_BAND_BYTES = 4 * 2**20


def check_pair_counts(counts, names):
    """Raise if a modality has < 2 rows or a pair of modalities never meets.

    Parameters
    ----------
    counts : ndarray of shape (n_modalities, n_modalities)
        Rows carrying both modalities ``m`` and ``l``.
    names : list of str
        Modality names, in the same order.
    """
    for position, name in enumerate(names):
        if counts[position, position] < 2:
            raise ValueError(
                f"Modality {name!r} is present in "
                f"{int(counts[position, position])} row(s); at least 2 are "
                "needed to estimate its covariance."
            )
    never_together = np.argwhere(counts == 0)
    if never_together.size:
        m, l = never_together[0]
        raise ValueError(
            f"Modalities {names[m]!r} and {names[l]!r} are never "
            "present in the same row, so nothing links them. Provide rows "
            "that carry both (paired data)."
        )


def block_covariance(acc, consume=False):
    """The :class:`BlockCovariance` of an accumulator's sums (see module doc).

    With ``consume``, numpy sums without fourth moments (which Ledoit-Wolf
    reads from the Gram) build the covariance in the Gram's buffer.
    """
    check_pair_counts(acc.pair_rows, acc.names)
    owner = acc.block_of_column
    if isinstance(acc.gram, np.ndarray):
        counts = acc.pair_counts
        delta = acc.sum_given[np.arange(len(owner)), owner] / np.diag(counts)[owner]
        out = acc.gram if consume and not acc.fourth_moments else None
        covariance = _numpy_covariance(
            acc.gram, acc.sum_given, counts, owner, delta, out=out
        )
        counts = counts.copy()
    else:
        covariance, delta = _xp_covariance(acc, owner)
        counts = acc.pair_counts
    mean = acc.shift + delta
    covariance = _constant_columns_zeroed(covariance, mean)
    return BlockCovariance(
        names=acc.names,
        blocks=acc.blocks,
        columns=acc.columns,
        mean=mean,
        covariance=covariance,
        counts=counts,
        row_counts=acc.pair_rows.copy(),
        n_samples=acc.n_rows,
        accumulator=acc,
        delta=delta,
    )


# A column whose spread is within this many units of rounding of its own
# level (its mean) is constant: float64 cannot tell its values apart.
_CONSTANT_ULPS = 8


def _constant_columns_zeroed(covariance, mean):
    """Zero the row and column of every column that is constant relative to
    its own level.

    A constant column of value ``c`` is shifted by the rounded mean of its
    first rows, which can differ from ``c`` by an ulp: its centred values are
    then a constant ``d`` ~ ``eps c``, its variance cancels to 0, but its
    covariances keep rounding noise ~ ``eps d |z_j|`` -- entries that break
    ``|C_ij| <= sqrt(C_ii C_jj)`` and, after the equilibration, swamp the
    whitened problem (a 1e100-unit column of 3s made a 5-feature modality
    "rank 1"). The decision is relative to the column's level and to
    float64, never an absolute floor: spread <= 8 eps |mean|.
    """
    xp = array_namespace(covariance)
    eps = xp.finfo(covariance.dtype).eps
    variance = xp_diagonal(xp, covariance)
    floor = (_CONSTANT_ULPS * eps * xp.abs(mean)) ** 2
    constant = variance <= floor
    if not bool(xp.any(constant)):
        return covariance
    keep = xp.astype(~constant, covariance.dtype)
    return covariance * keep[:, None] * keep[None, :]


def _numpy_covariance(gram_upper, sum_given, counts, owner, delta, out=None):
    """The covariance built a band of rows at a time.

    ``gram_upper`` has its upper triangle filled (BLAS ``syrk``). Each band
    computes its entries on and above the diagonal and mirrors them below, so
    the result is exactly symmetric and the only memory besides it is one
    band (about 4 MB): ``D x D`` temporaries would cost ``8 D^2`` bytes each,
    800 MB at ``D = 10 000``. ``out`` may be ``gram_upper`` itself: a band is
    copied before its rows are written, and its mirror goes below the
    diagonal, which no later band reads.
    """
    n_columns = len(owner)
    covariance = np.empty((n_columns, n_columns)) if out is None else out
    band = max(16, _BAND_BYTES // (8 * n_columns))
    # Every row carries every modality (the common case): one divisor N and
    # S[i, l] = N delta_i for every l, so the entry is G / N - delta delta^T,
    # a third of the general formula's passes over the band.
    complete = np.all(counts == counts[0, 0]) and np.all(sum_given == sum_given[:, :1])
    for start in range(0, n_columns, band):
        stop = min(start + band, n_columns)
        rows, right = slice(start, stop), slice(start, None)
        gram = np.array(gram_upper[rows, right])
        square = gram[:, : stop - start]  # the diagonal square: upper only
        square[...] = symmetrized(square)
        if complete:
            gram /= counts[0, 0]
            gram -= np.outer(delta[rows], delta[right])  # symmetric: exact
            covariance[rows, right] = gram
            covariance[stop:, rows] = gram[:, stop - start :].T
            continue
        n_pair = counts[np.ix_(owner[rows], owner[right])]
        given = sum_given[rows][:, owner[right]] * delta[right]
        given_t = (sum_given[right][:, owner[rows]] * delta[rows]).T
        values = gram - given - given_t + n_pair * np.outer(delta[rows], delta[right])
        values /= n_pair
        square = values[:, : stop - start]
        square[...] = (square + square.T) / 2
        covariance[rows, right] = values
        covariance[stop:, rows] = values[:, stop - start :].T
    return covariance


def _xp_covariance(acc, owner):
    """The same formula in the sums' namespace, with ``D x D`` temporaries
    (the gram there is kept full, not as a triangle)."""
    gram, sum_given, counts = acc.gram, acc.sum_given, acc.pair_counts
    xp = array_namespace(gram)
    dev = acc.device
    owner_index = xp.asarray(owner, device=dev)
    n_blocks = counts.shape[0]
    one_hot = xp.asarray(
        np.arange(n_blocks)[None, :] == owner[:, None], dtype=gram.dtype, device=dev
    )
    own_sums = xp.sum(sum_given * one_hot, axis=1)
    own_counts = xp.take(
        xp.sum(counts * xp.eye(n_blocks, dtype=gram.dtype, device=dev), axis=1),
        owner_index,
    )
    delta = own_sums / own_counts
    n_pair = xp.take(xp.take(counts, owner_index, axis=0), owner_index, axis=1)
    given = xp.take(sum_given, owner_index, axis=1) * delta[None, :]
    values = gram - given - given.T + n_pair * (delta[:, None] * delta[None, :])
    values = values / n_pair
    return (values + values.T) / 2, delta


def symmetrized(upper):
    """The symmetric matrix whose upper triangle is ``upper``'s (numpy)."""
    return np.triu(upper) + np.triu(upper, 1).T


class BlockCovariance:
    """Means and pairwise-complete covariance of the stacked modalities.

    Attributes
    ----------
    names : list of str
    blocks : list of slice
        Each modality's columns in the stacked order.
    columns : ndarray of int
        X's columns in the stacked order.
    mean : array of shape (n_columns,)
        Each column's (weighted) mean over the rows carrying its modality.
    covariance : array of shape (n_columns, n_columns)
        Symmetric; block ``(m, l)`` over the rows carrying both.
    counts : array of shape (n_modalities, n_modalities)
        Weight of the rows carrying both ``m`` and ``l`` (their number when
        unweighted): the divisor of each block.
    row_counts : ndarray of int64
        Number of rows (of positive weight) carrying both.
    n_samples : int
        Rows of positive weight added.

    ``mean``, ``covariance`` and ``counts`` are in the accumulator's
    namespace and on its device.
    """

    def __init__(
        self,
        *,
        names,
        blocks,
        columns,
        mean,
        covariance,
        counts,
        row_counts,
        n_samples,
        accumulator,
        delta,
    ):
        self.names = names
        self.blocks = blocks
        self.columns = columns
        self.mean = mean
        self.covariance = covariance
        self.counts = counts
        self.row_counts = row_counts
        self.n_samples = n_samples
        self._accumulator = accumulator
        self._delta = delta

    def ledoit_wolf_shrinkage(self, position, scale):
        """Ledoit-Wolf shrinkage intensity of one modality's covariance.

        Computed on the host in float64 from the modality's ``d_m x d_m``
        blocks, whatever the accumulator's namespace.

        Parameters
        ----------
        position : int
            The modality's position.
        scale : array of shape (n_features_m,)
            Divide each feature by this before shrinking (standardisation).

        Returns
        -------
        shrinkage : float in [0, 1]
            The same number as ``sklearn.covariance.ledoit_wolf_shrinkage`` on
            the modality's rows and scaled columns (on the rows repeated
            ``sample_weight`` times for integer weights).
        target : float
            The mean variance, towards which the shrinkage pulls.
        """
        acc = self._accumulator
        if not acc.fourth_moments:
            raise RuntimeError("Fourth moments were not accumulated.")
        block = self.blocks[position]
        n = float(to_numpy(self.counts)[position, position])
        n_features = block.stop - block.start
        scale = np.asarray(to_numpy(scale), dtype=np.float64)
        weights = 1.0 / scale**2
        covariance = np.asarray(to_numpy(self.covariance[block, block]), np.float64)
        covariance = covariance / np.outer(scale, scale)
        trace = np.trace(covariance)
        mu = trace / n_features
        if n_features == 1:
            return 0.0, mu

        def host(array):
            return np.asarray(to_numpy(array), dtype=np.float64)

        # Sum over rows of w ||(x - mean) / scale||^4, expanded around the
        # shifted sums (u: weighted squares, v: weighted cross term, c: const).
        delta = host(self._delta[block])
        gram = symmetrized(host(acc.gram[block, block]))
        sums = host(acc.sum_given[block, position])
        weighted_delta = weights * delta
        c = float(weighted_delta @ delta)
        sum_u2 = weights @ symmetrized(host(acc.square_gram[position])) @ weights
        sum_uv = weights @ host(acc.square_cross[position]) @ weighted_delta
        sum_u = weights @ np.diag(gram)
        sum_v2 = weighted_delta @ gram @ weighted_delta
        sum_v = weighted_delta @ sums
        fourth = (
            sum_u2 - 4 * sum_uv + 2 * c * sum_u + 4 * sum_v2 - 4 * c * sum_v + n * c**2
        )
        squared_norm = np.sum(covariance**2)
        beta = (fourth / n - squared_norm) / (n_features * n)
        delta_lw = (squared_norm - 2 * mu * trace + n_features * mu**2) / n_features
        beta = min(beta, delta_lw)
        shrinkage = 0.0 if beta <= 0 else beta / delta_lw
        return float(shrinkage), float(mu)
