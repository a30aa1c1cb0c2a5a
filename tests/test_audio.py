"""Tests for skcrossmodal.audio.AudioFeaturizer.

The features are checked against python_speech_features (installed with the
``test`` extra), an independent implementation, on the real speech bundled
with ``load_speech``: its framing, power spectrum, log mel filterbank
energies, MFCCs and deltas, configured like ours (frame 25 ms, hop 10 ms,
periodic Hann window, pre-emphasis off, same ``n_fft``, mel range and number
of bands).

The one convention that differs: python_speech_features rounds each band
edge down to an FFT bin (``floor((n_fft + 1) f / sample_rate)``), ours
evaluates the triangles at the exact bin frequencies. The difference shrinks
as the bins get finer, so the agreement is checked at ``n_fft=4096`` (bins of
2 Hz at 8 kHz), and the test of the shrinking shows that the residual is that
rounding and nothing else.
"""

from __future__ import annotations

import numpy as np
import pytest
import python_speech_features as psf
from scipy import signal
from scipy.io import wavfile

from skcrossmodal._audio_features import (
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
    power_spectrogram,
)
from skcrossmodal.audio import AudioFeaturizer
from skcrossmodal.datasets import load_speech

RATE = 8000
EPS = np.finfo(np.float64).eps


def hann(n):
    return signal.get_window("hann", n, fftbins=True)


@pytest.fixture(scope="module")
def clips():
    """The 182 real word clips (one voice, 8 kHz)."""
    return list(load_speech().audio)


def reference_frames(x, n_fft, n_mels=26, n_mfcc=13):
    """Frame-level log-mel, MFCC and their deltas from python_speech_features."""
    energies, _ = psf.fbank(x, RATE, 0.025, 0.01, n_mels, n_fft, 0, None, 0, hann)
    logmel = np.log(energies)
    mfcc = psf.mfcc(
        x, RATE, 0.025, 0.01, n_mfcc, n_mels, n_fft, 0, None, 0, 0, False, hann
    )
    frames = np.hstack([logmel, mfcc])
    return np.hstack([frames, psf.delta(frames, 2)])


def matching_featurizer(n_fft, **params):
    return AudioFeaturizer(
        sample_rate=RATE,
        n_fft=n_fft,
        n_mels=26,
        n_mfcc=13,
        window="hann",
        preemphasis=0.0,
        log_floor=EPS,
        **params,
    )


# ------------------------------------------------ against python_speech_features


def test_power_spectrum_matches_reference(clips):
    window = hann(200)
    for x in clips[::10]:
        frames = psf.sigproc.framesig(x, 200, 80, hann)
        expected = psf.sigproc.powspec(frames, 256)
        got = power_spectrogram(x, window, 80, 256)
        assert got.shape == expected.shape
        np.testing.assert_allclose(
            got, expected, rtol=1e-9, atol=1e-12 * expected.max()
        )


def test_power_spectrum_matches_scipy_short_time_fft(clips):
    window = hann(200)
    stft = signal.ShortTimeFFT(window, hop=80, fs=RATE, mfft=256)
    for x in [*clips[::20], np.ones(150), np.arange(7.0)]:
        got = power_spectrogram(x, window, 80, 256)
        # ShortTimeFFT centres slice p on sample p * hop; k_offset moves the
        # slices to start there instead. It needs half a window of samples.
        padded = np.concatenate([x, np.zeros(max(0, 200 - len(x)))])
        spectrum = stft.stft(padded, p0=0, p1=len(got), k_offset=stft.m_num_mid)
        expected = np.abs(spectrum.T) ** 2 / 256
        np.testing.assert_allclose(
            got, expected, rtol=1e-9, atol=1e-12 * expected.max()
        )
    # The number of frames: enough to cover the clip, no more.
    assert len(power_spectrogram(np.ones(200), window, 80, 256)) == 1
    assert len(power_spectrogram(np.ones(201), window, 80, 256)) == 2
    assert len(power_spectrogram(np.ones(360), window, 80, 256)) == 3


def test_mel_scale_matches_reference():
    hz = np.linspace(0, 8000, 33)
    np.testing.assert_allclose(hz_to_mel(hz), psf.hz2mel(hz), rtol=1e-12)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz, atol=1e-9)
    # The scale is anchored so that 1000 Hz is (almost exactly) 1000 mel.
    assert abs(hz_to_mel(1000.0) - 1000.0) < 0.02


def test_filterbank_matches_brute_force_triangles():
    n_mels, n_fft, fmin, fmax = 10, 64, 100.0, 3500.0
    bank = mel_filterbank(n_mels, n_fft, RATE, fmin, fmax)
    low, high = 2595 * np.log10(1 + fmin / 700), 2595 * np.log10(1 + fmax / 700)
    edges = [700 * (10 ** ((low + i * (high - low) / (n_mels + 1)) / 2595) - 1)
             for i in range(n_mels + 2)]  # fmt: skip
    for m in range(n_mels):
        for k in range(n_fft // 2 + 1):
            f = k * RATE / n_fft
            a, b, c = edges[m], edges[m + 1], edges[m + 2]
            if a < f <= b:
                expected = (f - a) / (b - a)
            elif b < f < c:
                expected = (c - f) / (c - b)
            else:
                expected = 0.0
            assert bank[m, k] == pytest.approx(expected, abs=1e-12)


def test_log_mel_frames_agree_with_reference(clips):
    """Frame-level log-mel energies, all 182 clips, n_fft=4096.

    Tolerance (natural log units; a clip's energies span about 20): median
    absolute difference below 0.01, 95th percentile below 0.1, every frame
    and band within 0.5.
    """
    n_fft = 4096
    bank = mel_filterbank(26, n_fft, RATE, 0.0, RATE / 2)
    differences = []
    for x in clips:
        ours = np.log(
            np.maximum(power_spectrogram(x, hann(200), 80, n_fft) @ bank.T, EPS)
        )
        reference = reference_frames(x, n_fft)[:, :26]
        assert ours.shape == reference.shape
        differences.append(np.abs(ours - reference).ravel())
    differences = np.concatenate(differences)
    assert np.median(differences) < 0.01
    assert np.percentile(differences, 95) < 0.1
    assert differences.max() < 0.5


def pooled_reference(clips, n_fft):
    rows = []
    for x in clips:
        frames = reference_frames(x, n_fft)
        rows.append(np.concatenate([frames.mean(axis=0), frames.std(axis=0)]))
    return np.array(rows)


def test_pooled_features_agree_with_reference(clips):
    """Mean and std over frames of log-mel, MFCC and deltas, all clips.

    Tolerance: 0.1 for log-mel and MFCC statistics (whose values are about
    10 in size: 1 %), 0.01 for the delta statistics (about 1).
    """
    featurizer = matching_featurizer(4096, deltas=1, pooling=("mean", "std"))
    ours = featurizer.fit_transform(clips)
    reference = pooled_reference(clips, 4096)
    names = featurizer.get_feature_names_out()
    assert ours.shape == reference.shape == (len(clips), 2 * 2 * (26 + 13))
    is_delta = np.array([name.startswith("delta_") for name in names])
    difference = np.abs(ours - reference)
    assert difference[:, ~is_delta].max() < 0.1
    assert difference[:, is_delta].max() < 0.01


def test_disagreement_is_the_reference_rounding_band_edges(clips):
    """Coarser FFT bins, larger rounding of the edges, larger difference."""
    errors = {}
    for n_fft in (512, 4096):
        ours = matching_featurizer(
            n_fft, deltas=0, features=("logmel",), pooling=("mean",)
        ).transform(clips[::4])
        reference = pooled_reference(clips[::4], n_fft)[:, :26]
        errors[n_fft] = np.abs(ours - reference[:, :26]).mean()
    assert errors[4096] < errors[512] / 4


# ------------------------------------------------------------- behaviour


def tone(frequency, seconds=0.5, rate=RATE, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def test_pure_tone_lands_in_its_mel_band():
    featurizer = AudioFeaturizer(
        sample_rate=RATE, n_fft=1024, n_mels=24, features=("logmel",), deltas=0,
        pooling=("mean",), preemphasis=0.0,
    )  # fmt: skip
    centres = featurizer.mel_frequencies()
    # The centres themselves come from the mel scale (independent formula).
    edges = mel_to_hz(np.linspace(0, 2595 * np.log10(1 + 4000 / 700), 26))
    np.testing.assert_allclose(centres, edges[1:-1])
    bands = [2, 7, 12, 20]
    X = featurizer.fit_transform([tone(centres[band]) for band in bands])
    assert X.argmax(axis=1).tolist() == bands
    # and the tone's band holds far more energy than a band far away
    for row, band in zip(X, bands):
        assert row[band] - row[(band + 10) % 24] > 5


def test_resampling_matches_a_clip_made_at_the_target_rate():
    featurizer = AudioFeaturizer(sample_rate=RATE)
    native = featurizer.transform([tone(440.0), tone(1200.0)])
    from_16k = featurizer.transform(
        [(tone(440.0, rate=16000), 16000), (tone(1200.0, rate=16000), 16000)]
    )
    # Same sound: the features agree up to the resampling filter's effect.
    scale = np.abs(native).mean()
    assert np.abs(native - from_16k).mean() < 0.02 * scale
    # and the pair input is exactly resample_poly then featurise.
    direct = featurizer.transform([signal.resample_poly(tone(440.0, rate=16000), 1, 2)])
    np.testing.assert_array_equal(from_16k[:1], direct)


def test_float32_in_float32_out(clips):
    X64 = AudioFeaturizer(sample_rate=RATE).transform(clips[:5])
    X32 = AudioFeaturizer(sample_rate=RATE).transform(
        [x.astype(np.float32) for x in clips[:5]]
    )
    assert X64.dtype == np.float64
    assert X32.dtype == np.float32
    np.testing.assert_allclose(X32, X64, rtol=1e-4, atol=1e-4 * np.abs(X64).max())
    forced = AudioFeaturizer(sample_rate=RATE, dtype=np.float32).transform(clips[:2])
    assert forced.dtype == np.float32
    mixed = AudioFeaturizer(sample_rate=RATE).transform(
        [clips[0].astype(np.float32), clips[1]]
    )
    assert mixed.dtype == np.float64


def test_n_jobs_gives_the_same_features(clips):
    serial = AudioFeaturizer(sample_rate=RATE).transform(clips[:12])
    parallel = AudioFeaturizer(sample_rate=RATE, n_jobs=2).transform(clips[:12])
    np.testing.assert_array_equal(serial, parallel)


def test_deterministic_and_input_untouched(clips):
    inputs = [x.copy() for x in clips[:4]]
    featurizer = AudioFeaturizer(sample_rate=RATE)
    first = featurizer.fit_transform(inputs)
    np.testing.assert_array_equal(first, featurizer.transform(inputs))
    for before, after in zip(clips[:4], inputs):
        np.testing.assert_array_equal(before, after)


def test_wav_paths(tmp_path, clips):
    pcm = (np.asarray(clips[0]) * 32768).round().astype(np.int16)
    mono = tmp_path / "mono.wav"
    wavfile.write(mono, RATE, pcm)
    stereo = tmp_path / "stereo.wav"
    wavfile.write(stereo, RATE, np.stack([pcm, pcm // 2], axis=1))
    high = tmp_path / "high.wav"
    wavfile.write(high, 16000, signal.resample_poly(pcm / 32768, 2, 1))
    featurizer = AudioFeaturizer(sample_rate=RATE)
    X = featurizer.transform([str(mono), mono, stereo, high])
    expected = featurizer.transform(
        [
            pcm / 32768,
            pcm / 32768,
            (pcm / 32768 + (pcm // 2) / 32768) / 2,
            (signal.resample_poly(pcm / 32768, 2, 1), 16000),
        ]
    )
    np.testing.assert_allclose(X, expected, rtol=1e-12, atol=1e-12)


def test_containers_and_names(clips):
    pd = pytest.importorskip("pandas")
    featurizer = AudioFeaturizer(sample_rate=RATE)
    expected = featurizer.transform(clips[:3])
    series = pd.Series(clips[:3], dtype=object)
    for X in (tuple(clips[:3]), np.array(clips[:3] + [None], dtype=object)[:3],
              series, series.to_frame("audio")):  # fmt: skip
        np.testing.assert_array_equal(featurizer.transform(X), expected)
    names = featurizer.get_feature_names_out()
    assert len(names) == expected.shape[1] == (40 + 13) * 2 * 2
    assert len(set(names)) == len(names)
    assert names[0] == "logmel0_mean" and names[-1] == "delta_mfcc12_std"
    for deltas, pooling in [(0, ("max",)), (2, ("mean", "std", "min", "max"))]:
        small = AudioFeaturizer(
            sample_rate=RATE, n_mels=8, n_mfcc=4, deltas=deltas, pooling=pooling
        )
        width = (8 + 4) * (deltas + 1) * len(pooling)
        assert small.transform(clips[:2]).shape == (2, width)
        assert len(small.get_feature_names_out()) == width


def test_set_output_pandas_keeps_the_index_and_names(clips):
    pd = pytest.importorskip("pandas")
    series = pd.Series(clips[:3], index=[5, 6, 7], dtype=object)
    featurizer = AudioFeaturizer(sample_rate=RATE).set_output(transform="pandas")
    out = featurizer.fit_transform(series)
    assert list(out.index) == [5, 6, 7]
    assert list(out.columns) == list(featurizer.get_feature_names_out())
    np.testing.assert_array_equal(
        out.to_numpy(), AudioFeaturizer(sample_rate=RATE).transform(clips[:3])
    )


def test_short_and_silent_clips():
    featurizer = AudioFeaturizer(sample_rate=RATE)
    X = featurizer.transform([np.zeros(10), np.zeros(RATE), np.ones(3)])
    assert np.all(np.isfinite(X))
    # silence is the log floor everywhere, with no spread
    names = featurizer.get_feature_names_out()
    logmel_mean = np.array(
        [n.startswith("logmel") and n.endswith("_mean") for n in names]
    )
    np.testing.assert_allclose(X[0, logmel_mean], np.log(1e-10))


@pytest.mark.parametrize(
    "params, X, message",
    [
        ({"fmax": 5000}, None, "fmax=5000 is above the Nyquist"),
        ({"fmin": 3000, "fmax": 2000}, None, "fmin=3000 must be below fmax"),
        ({"n_mfcc": 50}, None, "n_mfcc=50 must not exceed n_mels=40"),
        ({"n_fft": 64}, None, "n_fft=64 is shorter than a frame"),
        ({"features": ("mfcc", "chroma")}, None, "features must be"),
        ({"pooling": ()}, None, "pooling must be"),
        ({"dtype": np.int32}, None, "dtype must be None"),
        ({"window": "kaiser"}, None, "'window' parameter"),
        ({"preemphasis": 1.0}, None, "'preemphasis' parameter"),
        ({}, [], "X holds no clips"),
        ({}, np.zeros(100), "Expected 2D array"),
        ({}, "a.wav", "to featurise one file, pass"),
        ({}, [np.array([0.0, np.nan])], r"X\[0\]: the waveform contains NaN"),
        ({}, [np.zeros(5), np.array([])], r"X\[1\]: the waveform is empty"),
        ({}, [np.zeros((2, 5))], r"X\[0\]: a waveform must be 1-D"),
        ({}, [(np.zeros(5), -1)], r"X\[0\]: a tuple must be \(waveform, sample_rate\)"),
        ({}, ["/nonexistent/clip.wav"], r"X\[0\]: cannot read WAV file"),
        ({}, [np.array([1j, 2j])], r"X\[0\]: a waveform must be real numbers"),
    ],
)
def test_bad_input_messages(params, X, message):
    featurizer = AudioFeaturizer(sample_rate=RATE, **params)
    with pytest.raises(ValueError, match=message):
        featurizer.fit_transform([np.zeros(100)] if X is None else X)


# -------------------------------------------- a branch of a ColumnTransformer


def three_modality_frame(n_rows=120):
    """load_digits images with the spoken and written name of their digit.

    Image rows are instances; the clip and the transcript are those of the
    row's digit (class-level pairing).
    """
    pd = pytest.importorskip("pandas")
    from sklearn.datasets import load_digits

    digits = load_digits()
    speech = load_speech()
    names = list(speech.name)
    clip = {d: speech.audio[names.index(f"digits/{d}")] for d in range(10)}
    text = {d: str(speech.text[names.index(f"digits/{d}")]) for d in range(10)}
    y = digits.target[:n_rows]
    frame = pd.DataFrame(digits.data[:n_rows], columns=digits.feature_names)
    frame.insert(0, "text", [text[d] for d in y])
    frame.insert(1, "audio", pd.Series([clip[d] for d in y], dtype=object))
    return frame, y


def test_column_transformer_text_image_audio_under_grid_search():
    from sklearn.compose import make_column_selector
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skcrossmodal import SharedProjection
    from skcrossmodal.compose import make_modality_transformer

    frame, _ = three_modality_frame()
    features = make_modality_transformer(
        ("text", make_pipeline(
            TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 2)),
            TruncatedSVD(4, random_state=0)), "text"),
        ("image", PCA(4, random_state=0), make_column_selector("^pixel_")),
        ("audio", make_pipeline(
            AudioFeaturizer(sample_rate=RATE), StandardScaler(),
            PCA(4, random_state=0)), "audio"),
    )  # fmt: skip
    pipeline = make_pipeline(features, SharedProjection(2, reg=0.1))
    Z = pipeline.fit_transform(frame)
    assert Z.shape == (len(frame), 2)
    projection = pipeline[-1]
    assert sorted(projection.modalities_) == ["audio", "image", "text"]
    # make_modality_transformer wraps each branch in a ModalityBranch (rows
    # without the modality get NaN); the fitted branch is its transformer_.
    audio = pipeline[0].named_transformers_["audio"].transformer_
    assert audio[0].get_feature_names_out()[0] == "logmel0_mean"

    cv = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(pipeline, frame, cv=cv)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    # Image and audio/text share the digit: the held-out correlation is high.
    assert scores.mean() > 0.5
    search = GridSearchCV(pipeline, {"sharedprojection__reg": [0.01, 1.0]}, cv=cv).fit(
        frame
    )
    assert search.best_params_["sharedprojection__reg"] in (0.01, 1.0)
    assert np.isfinite(search.best_score_)


# ------------------------------------------------------------ the speech demo


def brute_force_chance(y_query, y_gallery, metric):
    """Average of the metric over every ordering of the gallery."""
    import itertools

    from skcrossmodal.metrics import mean_average_precision, recall_at_k

    n = len(y_gallery)
    values = []
    for order in itertools.permutations(range(n)):
        scores = np.tile(-np.asarray(order, dtype=float), (len(y_query), 1))
        if metric == "map":
            values.append(mean_average_precision(y_query, y_gallery, scores))
        else:
            values.append(recall_at_k(y_query, y_gallery, scores, k=metric))
    return np.mean(values)


def test_demo_chance_levels_are_exact():
    from skcrossmodal._demo_speech import (
        chance_average_precision,
        chance_recall_at_k,
    )

    y_gallery = np.array([0, 0, 1, 2, 2, 2])
    y_query = np.array([0, 1, 2, 2])
    for k in (1, 2, 4):
        assert chance_recall_at_k(y_query, y_gallery, k) == pytest.approx(
            brute_force_chance(y_query, y_gallery, k)
        )
    assert chance_average_precision(y_query, y_gallery) == pytest.approx(
        brute_force_chance(y_query, y_gallery, "map")
    )
    # paired relevance: one relevant item each
    paired = np.arange(5)
    assert chance_recall_at_k(None, paired, 2) == pytest.approx(2 / 5)
    assert chance_average_precision(None, paired) == pytest.approx(
        brute_force_chance(paired, paired, "map")
    )


def test_speech_demo_runs_and_beats_chance(capsys):
    pytest.importorskip("pandas")
    from skcrossmodal.__main__ import main

    assert main(["demo", "--dataset", "speech"]) == 0
    out = capsys.readouterr().out
    table = {}
    for line in out.splitlines():
        parts = line.rsplit(maxsplit=3)
        if len(parts) == 4 and parts[-1].replace(".", "").isdigit():
            table[parts[0].strip()] = float(parts[1]), float(parts[3])
    retrieval = [task for task in table if "recall@1" in task]
    transfer = [task for task in table if "labels from" in task]
    assert len(retrieval) == 3 and len(transfer) == 2
    for task in retrieval:
        value, chance = table[task]
        assert value > 3 * chance, task
    for task in transfer:
        value, chance = table[task]
        assert value > chance + 0.1, task
