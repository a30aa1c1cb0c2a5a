"""skcrossmodal: scikit-learn compatible cross-modal learning.

Fuse modalities, project them into one shared space, and carry what was
learned on one modality over to another, with ordinary scikit-learn
estimators that take one 2-D ``X``.
"""

from ._projection_cv import SharedProjectionCV
from ._version import __version__
from .compose import ModalityBranch, make_modality_transformer
from .deep import DeepSharedProjection
from .fusion import (
    ConcatFusion,
    LateFusionClassifier,
    LateFusionRegressor,
    WeightedFusion,
)
from .gradient import GradientSharedProjection
from .projection import SharedProjection
from .transfer import CrossModalTransferClassifier, CrossModalTransferRegressor

__all__ = [
    "ConcatFusion",
    "CrossModalTransferClassifier",
    "CrossModalTransferRegressor",
    "DeepSharedProjection",
    "GradientSharedProjection",
    "LateFusionClassifier",
    "LateFusionRegressor",
    "ModalityBranch",
    "SharedProjection",
    "SharedProjectionCV",
    "WeightedFusion",
    "make_modality_transformer",
    "__version__",
]
