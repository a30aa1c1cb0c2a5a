"""The audio modality: raw sound to a fixed-width feature block."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from scipy import signal
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array

from . import _audio_features as _af
from ._dtypes import check_numeric_features
from ._memory import check_allocation

__all__ = ["AudioFeaturizer"]

_FEATURES = ("logmel", "mfcc")
_POOLINGS = tuple(_af.POOLINGS)


class AudioFeaturizer(TransformerMixin, BaseEstimator):
    r"""Pooled log-mel and MFCC features of audio clips, one row per clip.

    Turns a sequence of clips of any lengths (waveforms or WAV files) into a
    fixed-width block: frame-level log-mel energies and MFCCs (and their
    deltas), pooled over the frames of each clip (mean, standard deviation,
    ...). It is to sound what :class:`~sklearn.feature_extraction.text.TfidfVectorizer`
    is to text, so it can be one branch of a
    :class:`~sklearn.compose.ColumnTransformer` (see
    :func:`~skcrossmodal.compose.make_modality_transformer`) that reads one
    column of clips. It learns nothing: ``fit`` only checks the parameters,
    and each clip's features depend on that clip alone.

    **Frames and power spectrum.** The clip :math:`x` (resampled to
    ``sample_rate`` if needed, then pre-emphasised,
    :math:`x_n \leftarrow x_n - a\, x_{n-1}` with :math:`a` =
    ``preemphasis``) is cut into frames of :math:`L` samples (``frame_length``
    seconds) every :math:`H` samples (``hop_length`` seconds); frame :math:`t`
    starts at sample :math:`tH` and the last frame is zero-padded. Each frame
    is multiplied by the window :math:`w` and transformed
    (:class:`scipy.signal.ShortTimeFFT`, FFT length :math:`N` = ``n_fft``):

    .. math::

        P_t(k) = \frac{1}{N}\Big|\sum_{n=0}^{L-1} w_n\, x_{tH+n}\,
        e^{-2\pi i k n / N}\Big|^2, \qquad k = 0, \dots, N/2.

    **Mel filterbank.** The mel scale (O'Shaughnessy; HTK's) is
    :math:`m(f) = 2595 \log_{10}(1 + f / 700)`. ``n_mels`` + 2 edges
    :math:`f_0 < \dots < f_{M+1}` are equally spaced in mel from ``fmin`` to
    ``fmax``, and band :math:`j = 1, \dots, M` is the triangle

    .. math::

        W_j(f) = \max\Big(0, \min\Big(\frac{f - f_{j-1}}{f_j - f_{j-1}},
        \frac{f_{j+1} - f}{f_{j+1} - f_j}\Big)\Big),

    evaluated at the bin frequencies :math:`f = k\, f_s / N` (peak 1, no area
    normalisation). The log-mel energies are
    :math:`E_t(j) = \log \max\big(\sum_k W_j(k f_s/N)\, P_t(k),\ \varepsilon\big)`
    with :math:`\varepsilon` = ``log_floor`` (natural logarithm).

    **MFCCs** are the orthonormal DCT-II of the log-mel energies
    (:func:`scipy.fft.dct`, ``norm="ortho"``), first ``n_mfcc`` kept:

    .. math::

        c_t(q) = s_q \sum_{j=0}^{M-1} E_t(j)\,
        \cos\Big(\frac{\pi q (2j + 1)}{2M}\Big), \quad
        s_0 = \sqrt{1/M},\ s_{q>0} = \sqrt{2/M}.

    **Deltas** (``deltas`` = 1 or 2) are the regression slopes
    :math:`d_t = \sum_{n=1}^{2} n\,(c_{t+n} - c_{t-n}) / 10` over five
    frames, edge frames repeated; ``deltas=2`` adds the deltas of the deltas.
    **Pooling** reduces each frame-level feature to the statistics in
    ``pooling`` over the frames of the clip.

    The conventions (HTK mel scale, power divided by :math:`N`, frames
    starting at sample 0, triangles of peak 1) are those of
    python_speech_features, against which the test suite checks the log-mel
    energies, MFCCs and deltas on real speech. One difference:
    python_speech_features rounds each band edge down to an FFT bin, while the
    triangles here are evaluated at the exact bin frequencies; the two agree
    more closely as ``n_fft`` grows (to within 0.1 in log energy, most
    values within 0.01, at ``n_fft=4096`` and 8 kHz).

    Parameters
    ----------
    sample_rate : int, default=16000
        The rate (Hz) of the waveforms given as arrays, and the rate at which
        the features are computed: WAV files and ``(waveform, rate)`` pairs at
        another rate are resampled to it (:func:`scipy.signal.resample_poly`).
    frame_length : float, default=0.025
        Frame (window) length in seconds; rounded to whole samples.
    hop_length : float, default=0.010
        Step between frame starts in seconds; rounded to whole samples.
    n_fft : int or None, default=None
        FFT length; None means the smallest power of two at least the frame
        length. Must not be smaller than the frame length.
    window : {"hann", "hamming", "blackman", "boxcar"}, default="hann"
        The analysis window (periodic, :func:`scipy.signal.get_window`).
    n_mels : int, default=40
        Number of mel bands :math:`M`.
    n_mfcc : int, default=13
        Number of cepstral coefficients kept (at most ``n_mels``).
    fmin : float, default=0.0
        Lower edge of the lowest mel band, in Hz.
    fmax : float or None, default=None
        Upper edge of the highest mel band, in Hz; None means
        ``sample_rate / 2``.
    preemphasis : float in [0, 1), default=0.97
        Pre-emphasis coefficient :math:`a`; 0 turns it off.
    log_floor : float, default=1e-10
        :math:`\varepsilon`, the floor of the mel energies before the log
        (silence would otherwise give :math:`-\infty`).
    features : tuple of {"logmel", "mfcc"}, default=("logmel", "mfcc")
        The frame-level features, in this order.
    deltas : {0, 1, 2}, default=1
        Add the first (1) or first and second (2) deltas of the frame-level
        features before pooling.
    pooling : tuple of {"mean", "std", "min", "max"}, default=("mean", "std")
        The statistics over frames, in this order. ``"std"`` is the population
        standard deviation (0 for a one-frame clip).
    dtype : {None, numpy.float32, numpy.float64}, default=None
        The output dtype. None: float32 when every clip is a float32 array
        (and for a 2-D float32 array), float64 otherwise. Features are always
        computed in float64 and cast at the end.
    n_jobs : int or None, default=None
        Clips are featurised in parallel with :mod:`joblib`; None means 1
        unless in a :func:`joblib.parallel_backend` context, -1 means all
        processors. The result does not depend on it.

    See Also
    --------
    skcrossmodal.compose.make_modality_transformer : Route a column of clips
        to this transformer, next to text and image branches.

    Notes
    -----
    **Input.** ``X`` is a sequence of clips: a list, a 1-D object array, a
    pandas Series or a one-column DataFrame (what a ColumnTransformer passes
    for a column given as ``"audio"`` or ``["audio"]``). Each clip is a 1-D
    array of samples at ``sample_rate`` (integer PCM is scaled to [-1, 1)),
    a ``(waveform, rate)`` pair, or a path to a WAV file (read with
    :func:`scipy.io.wavfile.read`; several channels are averaged). A 2-D
    numeric array is read as equal-length clips, one per row. Clips shorter
    than one frame are zero-padded to one frame.

    **scikit-learn's estimator checks** run on it with 2-D numeric arrays
    (rows as clips). Those that cannot apply to raw audio, where the number
    of samples of a clip is not a number of features, are listed in the
    test suite (``tests/test_audio.py``) with the reason: it sets no
    ``n_features_in_`` or ``feature_names_in_``, because clips of any
    length can follow clips of any other.

    Examples
    --------
    >>> import numpy as np
    >>> from skcrossmodal.audio import AudioFeaturizer
    >>> rate = 8000
    >>> t = np.arange(rate // 2) / rate
    >>> clips = [np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 1000 * t[:3000])]
    >>> featurizer = AudioFeaturizer(sample_rate=rate, n_mels=20, deltas=0)
    >>> X = featurizer.fit_transform(clips)
    >>> X.shape
    (2, 66)
    >>> featurizer.get_feature_names_out()[[0, 20, 33, 53]].tolist()
    ['logmel0_mean', 'mfcc0_mean', 'logmel0_std', 'mfcc0_std']

    The loudest mel band of each clip is the one around its tone:

    >>> centres = featurizer.mel_frequencies()
    >>> [float(centres[i].round(-1)) for i in X[:, :20].argmax(axis=1)]
    [400.0, 1030.0]
    """

    _parameter_constraints: dict = {
        "sample_rate": [Interval(Integral, 1, None, closed="left")],
        "frame_length": [Interval(Real, 0, None, closed="neither")],
        "hop_length": [Interval(Real, 0, None, closed="neither")],
        "n_fft": [Interval(Integral, 1, None, closed="left"), None],
        "window": [StrOptions({"hann", "hamming", "blackman", "boxcar"})],
        "n_mels": [Interval(Integral, 1, None, closed="left")],
        "n_mfcc": [Interval(Integral, 1, None, closed="left")],
        "fmin": [Interval(Real, 0, None, closed="left")],
        "fmax": [Interval(Real, 0, None, closed="neither"), None],
        "preemphasis": [Interval(Real, 0, 1, closed="left")],
        "log_floor": [Interval(Real, 0, None, closed="neither")],
        "features": [tuple, list],
        "deltas": [Interval(Integral, 0, 2, closed="both")],
        "pooling": [tuple, list],
        "dtype": [None, type],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        *,
        sample_rate=16000,
        frame_length=0.025,
        hop_length=0.010,
        n_fft=None,
        window="hann",
        n_mels=40,
        n_mfcc=13,
        fmin=0.0,
        fmax=None,
        preemphasis=0.97,
        log_floor=1e-10,
        features=_FEATURES,
        deltas=1,
        pooling=("mean", "std"),
        dtype=None,
        n_jobs=None,
    ):
        self.sample_rate = sample_rate
        self.frame_length = frame_length
        self.hop_length = hop_length
        self.n_fft = n_fft
        self.window = window
        self.n_mels = n_mels
        self.n_mfcc = n_mfcc
        self.fmin = fmin
        self.fmax = fmax
        self.preemphasis = preemphasis
        self.log_floor = log_floor
        self.features = features
        self.deltas = deltas
        self.pooling = pooling
        self.dtype = dtype
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Check the parameters and the clips; nothing is learned.

        Parameters
        ----------
        X : sequence of clips or None
            See the Notes; when given, every clip is read and checked.
        y : None
            Ignored.

        Returns
        -------
        self : AudioFeaturizer
            This transformer.
        """
        self._settings()
        if X is not None:
            for index, item in enumerate(_clips(X)):
                _af.read_clip(item, index, self.sample_rate)
        return self

    def transform(self, X):
        """Featurise each clip.

        Parameters
        ----------
        X : sequence of clips
            A list, 1-D object array, pandas Series or one-column DataFrame
            of 1-D waveforms, ``(waveform, rate)`` pairs or WAV paths, or a
            2-D numeric array with one clip per row.

        Returns
        -------
        X_new : ndarray of shape (n_clips, n_features_out)
            The pooled features, named by :meth:`get_feature_names_out`.
        """
        self._validate_params()
        settings = self._settings()
        items = _clips(X)
        if self.n_jobs in (None, 1):
            results = [_featurise(item, i, settings) for i, item in enumerate(items)]
        else:
            results = Parallel(n_jobs=self.n_jobs)(
                delayed(_featurise)(item, i, settings) for i, item in enumerate(items)
            )
        dtype = self.dtype
        if dtype is None:
            float32 = all(input_dtype == np.float32 for _, input_dtype in results)
            dtype = np.float32 if float32 else np.float64
        return np.vstack([row for row, _ in results]).astype(dtype, copy=False)

    def fit_transform(self, X, y=None):
        """Featurise each clip (``fit`` learns nothing, so this reads X once).

        Parameters
        ----------
        X : sequence of clips
            As in :meth:`transform`.
        y : None
            Ignored.

        Returns
        -------
        X_new : ndarray of shape (n_clips, n_features_out)
            The pooled features, named by :meth:`get_feature_names_out`.
        """
        return self.transform(X)

    def get_feature_names_out(self, input_features=None):
        """Names of the output features, ``<feature>_<statistic>``.

        For example ``"mfcc3_mean"`` or ``"delta_logmel12_std"``.

        Parameters
        ----------
        input_features : None
            Ignored: the input is raw audio, which has no feature names.

        Returns
        -------
        feature_names_out : ndarray of str objects
            One name per output column.
        """
        self._validate_params()
        settings = self._settings()
        names = _af.frame_feature_names(
            settings["features"], self.n_mels, self.n_mfcc, self.deltas
        )
        return np.asarray(
            [f"{name}_{stat}" for stat in settings["pooling"] for name in names],
            dtype=object,
        )

    def mel_frequencies(self):
        """Centre frequencies (Hz) of the mel bands, lowest first.

        Returns
        -------
        centres : ndarray of shape (n_mels,)
            :math:`f_1, \\dots, f_M` in the notation above.
        """
        self._validate_params()
        fmin, fmax = self._band_edges()
        edges = _af.mel_to_hz(
            np.linspace(_af.hz_to_mel(fmin), _af.hz_to_mel(fmax), self.n_mels + 2)
        )
        return edges[1:-1]

    def __sklearn_is_fitted__(self):
        # Stateless: transform needs nothing from fit.
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _band_edges(self):
        nyquist = self.sample_rate / 2
        fmax = nyquist if self.fmax is None else float(self.fmax)
        if fmax > nyquist:
            raise ValueError(
                f"fmax={self.fmax} is above the Nyquist frequency "
                f"sample_rate / 2 = {nyquist:g} Hz."
            )
        if not self.fmin < fmax:
            raise ValueError(f"fmin={self.fmin} must be below fmax ({fmax:g} Hz).")
        return float(self.fmin), fmax

    def _settings(self):
        """Check the parameters together and precompute what each clip needs."""
        features = _check_choice(self.features, _FEATURES, "features")
        pooling = _check_choice(self.pooling, _POOLINGS, "pooling")
        if self.dtype not in (None, np.float32, np.float64):
            raise ValueError(
                "dtype must be None, numpy.float32 or numpy.float64, got "
                f"{self.dtype!r}."
            )
        if "mfcc" in features and self.n_mfcc > self.n_mels:
            raise ValueError(
                f"n_mfcc={self.n_mfcc} must not exceed n_mels={self.n_mels}: "
                "the DCT of n_mels energies has n_mels coefficients."
            )
        win_length = _round_half_up(self.frame_length * self.sample_rate)
        hop_length = _round_half_up(self.hop_length * self.sample_rate)
        if win_length < 1 or hop_length < 1:
            raise ValueError(
                f"frame_length={self.frame_length} and hop_length={self.hop_length} "
                f"s must each last at least one sample at {self.sample_rate} Hz."
            )
        n_fft = self.n_fft
        if n_fft is None:
            n_fft = 1 << (win_length - 1).bit_length()
        elif n_fft < win_length:
            raise ValueError(
                f"n_fft={n_fft} is shorter than a frame ({win_length} samples = "
                f"frame_length * sample_rate); use n_fft >= {win_length} or None."
            )
        fmin, fmax = self._band_edges()
        # The filterbank (n_mels x bins) and one frame's FFT, before either
        # is allocated (numpy would name a shape, not the parameter).
        check_allocation(
            8.0 * self.n_mels * (n_fft // 2 + 1) + 32.0 * n_fft + 8.0 * win_length,
            f"AudioFeaturizer(n_mels={self.n_mels}, n_fft={n_fft}, "
            f"frame_length={self.frame_length} s at sample_rate="
            f"{self.sample_rate})",
            "Lower n_mels or n_fft (a frame of frame_length * sample_rate "
            "samples sets the default n_fft).",
        )
        return {
            "features": features,
            "pooling": pooling,
            "window": signal.get_window(self.window, win_length, fftbins=True),
            "hop_length": hop_length,
            "n_fft": n_fft,
            "filterbank": _af.mel_filterbank(
                self.n_mels, n_fft, self.sample_rate, fmin, fmax
            ),
            "preemphasis": float(self.preemphasis),
            "log_floor": float(self.log_floor),
            "n_mfcc": self.n_mfcc,
            "deltas": self.deltas,
            "sample_rate": self.sample_rate,
        }


def _round_half_up(value):
    return int(np.floor(value + 0.5))


def _check_choice(values, allowed, name):
    if isinstance(values, str):
        values = (values,)
    values = tuple(values)
    unknown = [value for value in values if value not in allowed]
    if not values or unknown or len(set(values)) != len(values):
        raise ValueError(
            f"{name} must be a non-empty tuple of distinct values from "
            f"{list(allowed)}, got {values!r}."
        )
    return values


def _clips(X):
    """The clips of X as a list (see AudioFeaturizer's Notes)."""
    # One DataFrame column of objects (arrays, paths, pairs): its items.
    # Numeric columns fall through to the table of equal-length clips.
    if (
        hasattr(X, "iloc")
        and hasattr(X, "columns")
        and X.shape[1] == 1
        and getattr(X.dtypes.iloc[0], "kind", "O") not in "iufcb"
    ):
        X = X.iloc[:, 0]
    if hasattr(X, "iloc") and not hasattr(X, "columns"):  # a pandas Series
        X = X.to_numpy()
    if isinstance(X, str | bytes):
        raise ValueError(
            "X must be a sequence of clips; to featurise one file, pass [path]."
        )
    if isinstance(X, list | tuple) or (
        isinstance(X, np.ndarray) and X.ndim == 1 and X.dtype.kind in "OUS"
    ):
        items = list(X)
        if not items:
            raise ValueError("X holds no clips (0 samples); at least 1 is needed.")
        return items
    # Anything else is a table of equal-length clips, one per row; check_array
    # gives scikit-learn's messages for sparse, complex, 1-D or empty input.
    check_numeric_features(X)
    try:
        table = check_array(X, dtype=(np.float64, np.float32))
    except ValueError as exc:
        raise ValueError(
            "X must be a sequence of clips (list, 1-D object array, Series, "
            f"one-column DataFrame) or a 2-D array with one clip per row. {exc}"
        ) from exc
    return list(table)


def _featurise(item, index, settings):
    waveform, dtype = _af.read_clip(item, index, settings["sample_rate"])
    return _af.clip_features(waveform, settings), dtype
