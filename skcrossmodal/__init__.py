"""skcrossmodal: scikit-learn compatible cross-modal learning.

Fuse modalities, project them into one shared space, and carry what was
learned on one modality over to another, with ordinary scikit-learn
estimators that take one 2-D ``X``.
"""

from ._version import __version__
from .compose import make_modality_transformer
from .projection import SharedProjection

__all__ = ["SharedProjection", "make_modality_transformer", "__version__"]
