"""Loader for the bundled speech data set (Asterisk's English prompts)."""

from __future__ import annotations

import json

import numpy as np
from sklearn.utils import Bunch

from ._loaders import _check_bool, _import_pandas, _load_descr, _load_npz

_SUBSETS = ("words", "all")


def load_speech(*, subset="words", as_frame=False, return_X_y=False):
    """Load real human speech with transcripts: the Asterisk English prompts.

    568 recordings of one professional voice (Allison Smith, for the
    Asterisk telephone system; 8 kHz, 16-bit), each with its exact
    transcript and one of 10 categories. The 182 short words (numbers,
    ordinals, months, weekdays, letters, symbols, the NATO alphabet, ...)
    ship with their waveforms; all 568 clips ship with their pooled log-mel
    and MFCC features (:class:`~skcrossmodal.audio.AudioFeaturizer` with
    ``sample_rate=8000``, its other parameters at their defaults). Audio and
    text are two modalities of the same utterance.

    ============== ================================================
    Clips          182 (``subset="words"``) or 568 (``"all"``)
    Classes        8 (words) or 10 (all), unbalanced
    Audio          8000 Hz mono, 0.5 to 1.5 s (words), float64
    Features       212 per clip, float32
    Text           str, the transcript, e.g. ``"seven"``
    ============== ================================================

    Read more in ``DESCR``. The recordings are CC-BY-SA-3.0 (Allison Smith,
    Digium, Inc.); the bundled copy (trimmed clips and features derived
    from them) is under the same licence, see ``DESCR`` and
    ``skcrossmodal/datasets/data/LICENSES.md``.

    Parameters
    ----------
    subset : {"words", "all"}, default="words"
        ``"words"``: the 182 clips of the ``digits``, ``letters`` and
        ``phonetic`` folders, with their waveforms. ``"all"``: every clip,
        including 371 phrases and 15 non-speech clips (tones, silence); the
        features are there for all, the waveforms only for the words.
    as_frame : bool, default=False
        If True, ``data`` is a pandas DataFrame with a ``"text"`` column, an
        ``"audio"`` column (the waveforms, as objects; ``subset="words"``
        only) and the 212 feature columns; ``target`` is a Series and
        ``frame`` is ``data`` with ``"target"`` appended. A
        :class:`~sklearn.compose.ColumnTransformer` can send ``"audio"`` to
        an :class:`~skcrossmodal.audio.AudioFeaturizer` and ``"text"`` to a
        text vectoriser.
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (n_clips, 212), dtype float32, or DataFrame
            The bundled features, named by ``feature_names``.
        target : ndarray of shape (n_clips,), dtype int64, or Series
            Category codes, indices into ``target_names``.
        target_names : ndarray of str of shape (10,)
            ``number``, ``ordinal``, ``month``, ``weekday``, ``letter``,
            ``symbol``, ``nato``, ``other word``, ``phrase``, ``non-speech``.
        text : ndarray of str of shape (n_clips,)
            The transcripts.
        name : ndarray of str of shape (n_clips,)
            The prompt's name in Asterisk, e.g. ``"digits/7"``.
        audio : ndarray of object of shape (n_clips,) or None
            The trimmed waveforms, float64 in [-1, 1) at ``sample_rate``;
            None for ``subset="all"``.
        sample_rate : int
            8000.
        duration : ndarray of shape (n_clips,), dtype float32
            Length of the original (untrimmed) recording, in seconds.
        feature_names : list of str
            Names of the feature columns (``"mfcc0_mean"``, ...).
        feature_params : dict
            The :class:`~skcrossmodal.audio.AudioFeaturizer` parameters that
            computed ``data`` from the trimmed clips.
        frame : DataFrame or None
            ``data`` and ``target`` together; None unless ``as_frame=True``.
        DESCR : str
            Description, source, licence and attribution.

    (data, target) : tuple if ``return_X_y`` is True
        ``data`` and ``target`` as described above.

    See Also
    --------
    skcrossmodal.audio.AudioFeaturizer : Featurise the waveforms yourself.

    Examples
    --------
    >>> from skcrossmodal.datasets import load_speech
    >>> speech = load_speech()
    >>> speech.data.shape, len(speech.audio), speech.sample_rate
    ((182, 212), 182, 8000)
    >>> i = list(speech.name).index("digits/7")
    >>> str(speech.text[i]), str(speech.target_names[speech.target[i]])
    ('seven', 'number')
    >>> round(len(speech.audio[i]) / speech.sample_rate, 2)
    0.78
    >>> load_speech(subset="all").data.shape
    (568, 212)
    """
    if subset not in _SUBSETS:
        raise ValueError(f"`subset` must be one of {list(_SUBSETS)}, got {subset!r}.")
    as_frame = _check_bool(as_frame, "as_frame")
    return_X_y = _check_bool(return_X_y, "return_X_y")
    arrays = _load_npz("speech.npz")

    offsets = arrays["audio_offsets"]
    n_words = len(offsets) - 1
    rows = slice(0, n_words) if subset == "words" else slice(None)
    data = arrays["features"][rows]
    target = arrays["target"][rows].astype(np.int64)
    text = arrays["text"][rows]
    feature_names = [str(name) for name in arrays["feature_names"]]

    audio = None
    if subset == "words":
        pcm = arrays["audio"]
        audio = np.empty(n_words, dtype=object)
        for i in range(n_words):
            audio[i] = pcm[offsets[i] : offsets[i + 1]].astype(np.float64) / 32768.0

    frame = None
    if as_frame:
        pd = _import_pandas("load_speech")
        columns = {"text": text}
        if audio is not None:
            columns["audio"] = audio
        data = pd.concat(
            [
                pd.DataFrame(columns),
                pd.DataFrame(data, columns=feature_names),
            ],
            axis=1,
        )
        target = pd.Series(target, name="target")
        frame = pd.concat([data, target], axis=1)
        feature_names = [*columns, *feature_names]

    if return_X_y:
        return data, target

    return Bunch(
        data=data,
        target=target,
        target_names=arrays["target_names"],
        text=text,
        name=arrays["name"][rows],
        audio=audio,
        sample_rate=int(arrays["sample_rate"]),
        duration=arrays["duration"][rows],
        feature_names=feature_names,
        feature_params=json.loads(arrays["feature_params"].item()),
        frame=frame,
        DESCR=_load_descr("speech.rst", arrays["source"].item()),
    )
