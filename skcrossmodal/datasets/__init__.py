"""Small real data sets for cross-modal learning, bundled with the package.

Nothing is downloaded: the data ship inside ``skcrossmodal/datasets/data``
together with their licences (``data/LICENSES.md``).

- :func:`load_emoji`: 1906 emoji, each a text (its name) and a 32x32 image,
  labelled by category (Twemoji, CC-BY 4.0).
- :func:`load_multiple_features`: 2000 handwritten digits described by six
  feature sets (UCI Multiple Features).
- :func:`load_speech`: 568 recordings of one human voice (Asterisk's English
  prompts), each with its transcript; waveforms for the 182 short words
  (CC-BY-SA-3.0).
"""

from ._loaders import load_emoji, load_multiple_features
from ._speech import load_speech

__all__ = ["load_emoji", "load_multiple_features", "load_speech"]
