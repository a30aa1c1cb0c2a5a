r"""The Eckhart-Young CCA loss of a mini-batch of representations, and its gradient.

For the representations :math:`Z_1, ..., Z_M` (``k`` columns each) of the
same rows, with :math:`A = \sum_{m \neq l} \mathrm{Cov}(Z_m, Z_l)` and
:math:`B = \sum_m \mathrm{Cov}(Z_m, Z_m)`, the Eckhart-Young loss of Chapman,
Aguila and Wells (ICLR 2024) is

.. math::  L = -2\,\mathrm{tr}(A) + \mathrm{tr}(B B).

Its minimum over linear maps of the representations is reached when their
span is that of the top ``k`` generalised eigenvectors of :math:`(A, B)`
(the canonical directions), where :math:`L = -\sum_j \lambda_j^2`. ``A``
enters linearly and ``B`` quadratically, so a mini-batch estimate is
unbiased when ``A`` is estimated on the whole batch and the two factors of
``B B`` on its two disjoint halves (independent rows: the expectation of
the product is the product of the expectations). Each covariance is centred
with its own rows' mean and divided by ``rows - 1``, which is unbiased too.
"""

from __future__ import annotations

import numpy as np


def _halves(n_rows):
    half = n_rows // 2
    return slice(0, half), slice(half, n_rows)


def ey_loss_and_gradients(Z):
    """Loss and d loss / d Z_m of one mini-batch.

    Parameters
    ----------
    Z : list of ndarray of shape (n_rows, k)
        One representation per modality, of the same ``n_rows >= 4`` rows.

    Returns
    -------
    loss : float
    gradients : list of ndarray of shape (n_rows, k)
    """
    halves = _halves(Z[0].shape[0])
    centred, sizes, within, cross_trace = [], [], [], 0.0
    for rows in halves:
        parts = [z[rows] - z[rows].mean(axis=0) for z in Z]
        size = parts[0].shape[0] - 1
        total = sum(parts)
        # tr(sum_{m != l} Z_m' Z_l) = ||sum_m Z_m||^2 - sum_m ||Z_m||^2.
        cross_trace += (
            np.vdot(total, total) - sum(np.vdot(p, p) for p in parts)
        ) / size
        within.append(sum(p.T @ p for p in parts) / size)
        centred.append((parts, total))
        sizes.append(size)
    # A is the mean of the two halves' estimates: -2 tr(A) = -cross_trace.
    loss = -cross_trace + float(np.vdot(within[0], within[1]))

    gradients = [np.empty_like(z) for z in Z]
    for h, rows in enumerate(halves):
        parts, total = centred[h]
        other = within[1 - h]
        for m, part in enumerate(parts):
            # The gradient of each half has zero column means already (it is
            # linear in centred arrays), so the centring needs no backward.
            gradients[m][rows] = (2.0 / sizes[h]) * (part @ other - (total - part))
    return float(loss), gradients
