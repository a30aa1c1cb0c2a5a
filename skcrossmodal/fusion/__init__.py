r"""Fusion of modalities: weighted sums, early fusion and late fusion.

The seed article's first family, :math:`F = \alpha F_{text} + \beta F_{image}
+ \gamma F_{audio}`:

- :class:`WeightedFusion` (transformer): the weighted sum of the modality
  blocks, with an explicit alignment to a common width when widths differ;
- :class:`ConcatFusion` (transformer): early fusion, each block centred and
  scaled so that a wide modality does not drown a narrow one;
- :class:`LateFusionClassifier` and :class:`LateFusionRegressor`: one
  estimator per modality, combined by a weighted vote or by stacking.

All of them read the modalities of X from the ``modalities`` parameter (the
same rule as :class:`~skcrossmodal.SharedProjection`), and a row whose
modality block is all NaN is missing that modality.

Layout: ``_base`` (validation, tags, error context shared by all),
``_utils`` (weights, rows, blocks, the top singular value; one body for
every array namespace), then one module per family.
"""

from ._concat import ConcatFusion
from ._late_classifier import LateFusionClassifier
from ._late_regressor import LateFusionRegressor
from ._weighted import WeightedFusion

__all__ = [
    "ConcatFusion",
    "LateFusionClassifier",
    "LateFusionRegressor",
    "WeightedFusion",
]
