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
from sklearn.externals.array_api_compat import array_namespace, is_numpy_namespace


def _halves(n_rows):
    half = n_rows // 2
    return slice(0, half), slice(half, n_rows)


def _inner(xp, a, b):
    """sum(a * b): numpy's vdot (no temporary), else a 0-d array (no sync)."""
    if is_numpy_namespace(xp):
        return float(np.vdot(a, b))
    return xp.sum(a * b)


def ey_loss_and_gradients(Z):
    """Loss and d loss / d Z_m of one mini-batch, in Z's namespace.

    Parameters
    ----------
    Z : list of arrays of shape (n_rows, k)
        One representation per modality, of the same ``n_rows >= 4`` rows, all
        of one array namespace and device.

    Returns
    -------
    loss : float (numpy) or 0-d array of Z's namespace
        Left on the device so a GPU need not wait for the host every batch;
        ``float(loss)`` reads it.
    gradients : list of arrays of shape (n_rows, k)
    """
    xp = array_namespace(*Z)
    halves = _halves(Z[0].shape[0])
    centred, sizes, within, cross_trace = [], [], [], 0.0
    for rows in halves:
        parts = [z[rows, :] - xp.mean(z[rows, :], axis=0) for z in Z]
        size = parts[0].shape[0] - 1
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        # tr(sum_{m != l} Z_m' Z_l) = ||sum_m Z_m||^2 - sum_m ||Z_m||^2.
        squares = _inner(xp, total, total)
        for part in parts:
            squares = squares - _inner(xp, part, part)
        cross_trace = cross_trace + squares / size
        B = parts[0].T @ parts[0]
        for part in parts[1:]:
            B = B + part.T @ part
        within.append(B / size)
        centred.append((parts, total))
        sizes.append(size)
    # A is the mean of the two halves' estimates: -2 tr(A) = -cross_trace.
    loss = -cross_trace + _inner(xp, within[0], within[1])

    gradients = []
    for m in range(len(Z)):
        pieces = []
        for h in range(2):
            parts, total = centred[h]
            part = parts[m]
            # The gradient of each half has zero column means already (it is
            # linear in centred arrays), so the centring needs no backward.
            pieces.append((2.0 / sizes[h]) * (part @ within[1 - h] - (total - part)))
        gradients.append(xp.concat(pieces, axis=0))
    return loss, gradients
