"""The gradient solver's parameters: their constraints and their docs.

``GradientSharedProjection`` takes them, and so does the deprecated
``SharedProjection(solver="gradient")``; both read them from here, so the
two cannot drift apart.
"""

from __future__ import annotations

import textwrap
from numbers import Integral, Real

from sklearn.utils._param_validation import Interval, StrOptions

PARAMETER_CONSTRAINTS = {
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="left")],
    "batch_size": [
        Interval(Integral, 2, None, closed="left"),
        StrOptions({"auto"}),
    ],
    "learning_rate": [Interval(Real, 0, None, closed="neither")],
    "random_state": ["random_state"],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
    "verbose": ["verbose"],
}

# (numpydoc name and type line, description)
_DOCS = (
    (
        "max_iter : int, default=200",
        "The most epochs (passes over the training rows).",
    ),
    (
        "tol : float >= 0, default=1e-4",
        """\
After every epoch the sum of the correlations reachable in the span
found, and the loss, are computed exactly on the training rows (with
``early_stopping``: on the validation rows). When the correlation
sum has not risen by more than ``tol`` and the loss has not fallen
by more than ``tol`` times its size for 2 epochs in a row, the
learning rate is divided by 5; for ``n_iter_no_change`` epochs in a
row, training stops. The weights of the epoch with the best
correlation sum are kept.""",
    ),
    (
        'batch_size : int or "auto", default="auto"',
        """\
Rows per mini-batch (each split in two halves for an unbiased
quadratic term). ``"auto"`` is ``n_samples // 10`` clipped to
[32, 4096] (about 10 steps per epoch).""",
    ),
    (
        "learning_rate : float > 0, default=0.03",
        """\
Adam's initial step size (see ``tol``). The weights are optimised in
preconditioned coordinates where every entry is of order one (see
Notes), so the default suits data of any scale and width.""",
    ),
    (
        "random_state : int, RandomState instance or None, default=None",
        """\
The initial weights, the order of the rows in each epoch and the
validation split. An int gives reproducible fits.""",
    ),
    (
        "early_stopping : bool, default=False",
        """\
Hold out ``validation_fraction`` of the rows and judge progress (see
``tol``) by their correlation sum instead of the training rows'. The
held-out rows are not used to fit.""",
    ),
    (
        "validation_fraction : float in (0, 1), default=0.1",
        "The share of rows held out with ``early_stopping=True``.",
    ),
    (
        "n_iter_no_change : int, default=5",
        "Epochs without improvement before training stops.",
    ),
    (
        "verbose : int, default=0",
        """\
Print after every epoch the mean mini-batch loss, the correlation
sum on the training rows (with ``early_stopping``: on the validation
rows), the learning rate and the time so far.""",
    ),
)


def parameters_doc(condition=None):
    """The numpydoc entries of the gradient solver's parameters.

    ``condition``, when given, opens every description (e.g.
    ``'``solver="gradient"`` only.'``) for an estimator where they apply
    to one solver only.
    """
    entries = []
    for header, description in _DOCS:
        if condition is not None:
            description = f"{condition}\n{description}"
        entries.append(f"{header}\n{textwrap.indent(description, '    ')}")
    return "\n\n".join(entries)
