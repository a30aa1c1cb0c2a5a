"""The speech demo: audio, text and images in one shared space.

``python -m skcrossmodal demo --dataset speech`` runs it. Two settings, both
on real recordings of one human voice (:func:`~skcrossmodal.datasets.load_speech`):

1. **Audio and text, instance level.** Each of the 182 spoken words is paired
   with its own transcript. A :class:`~skcrossmodal.SharedProjection` learns
   a shared space from the training words, without labels; held-out
   recordings then retrieve their transcripts among all held-out
   transcripts, and word categories learned from text alone are predicted
   from audio alone.
2. **Three modalities, class level.** The 1797 handwritten digits of
   scikit-learn's ``load_digits`` (8x8 images, one per row: instance level)
   are paired with the transcript and the recording of their digit ("seven"
   and its clip: class level, since the data hold one recording per digit).
   Each row's clip is that recording with its own random speed, gain and
   noise (synthetic variation of the real clip). The modalities are fused
   (:class:`~skcrossmodal.ConcatFusion`, :class:`~skcrossmodal.WeightedFusion`),
   projected together, audio retrieves text and images, and digit labels
   learned from images alone are predicted from audio alone.

Every number is printed next to its exact chance level.
"""

from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np

from ._demo import _step

TEXT_COMPONENTS = 40
AUDIO_COMPONENTS = 40
SHARED_COMPONENTS = 20
DIGIT_COMPONENTS = 9
SAMPLE_RATE = 8000


def chance_recall_at_k(y_query, y_gallery, k):
    """Expected recall@k (a relevant item in the top k) of a random ranking.

    A query with ``R`` relevant items among ``N`` misses them all with
    probability ``C(N - R, k) / C(N, k)`` (hypergeometric). With
    ``y_query = y_gallery = None`` (paired relevance, ``R = 1``) it is
    ``k / N``.
    """
    if y_query is None:
        return min(k, len(y_gallery)) / len(y_gallery)
    y_gallery = np.asarray(y_gallery)
    n = len(y_gallery)
    values = []
    for label in np.asarray(y_query):
        relevant = int(np.sum(y_gallery == label))
        values.append(1 - math.comb(n - relevant, k) / math.comb(n, k))
    return float(np.mean(values))


def chance_average_precision(y_query, y_gallery):
    """Expected mean average precision of a random ranking.

    A relevant item at a uniformly random position ``p`` has each of the
    other ``R - 1`` relevant items above it with probability
    ``(p - 1) / (N - 1)``, so ``E[AP] = (H_N + (R - 1)(N - H_N) / (N - 1)) / N``
    with ``H_N`` the ``N``-th harmonic number.
    """
    y_gallery = np.asarray(y_gallery)
    n = len(y_gallery)
    harmonic = float(np.sum(1.0 / np.arange(1, n + 1)))
    labels = np.arange(n) if y_query is None else np.asarray(y_query)
    values = []
    for label in labels:
        relevant = 1 if y_query is None else int(np.sum(y_gallery == label))
        values.append((harmonic + (relevant - 1) * (n - harmonic) / (n - 1)) / n)
    return float(np.mean(values))


def perturb(clip, rng):
    """The clip at a random speed (x0.85 to x1.15), gain and noise (0-20 dB SNR)."""
    from scipy.signal import resample_poly

    speed = rng.uniform(0.85, 1.15)
    clip = resample_poly(clip, 100, round(100 * speed))
    clip = clip * 10 ** (rng.uniform(-12, 0) / 20)
    rms = np.sqrt(np.mean(clip**2))
    noise = rng.normal(size=clip.shape) * rms * 10 ** (-rng.uniform(0, 20) / 20)
    return clip + noise


def digit_rows(speech, seed):
    """load_digits images with their digit's transcript and (perturbed) clip."""
    import pandas as pd
    from sklearn.datasets import load_digits

    digits = load_digits()
    names = list(speech.name)
    index = {d: names.index(f"digits/{d}") for d in range(10)}
    rng = np.random.default_rng(seed)
    y = digits.target
    frame = pd.DataFrame(digits.data, columns=digits.feature_names)
    frame.insert(0, "text", [str(speech.text[index[d]]) for d in y])
    clips = [perturb(speech.audio[index[d]], rng) for d in y]
    frame.insert(1, "audio", pd.Series(clips, dtype=object))
    return frame, y


def _only(F, modality):
    """The rows of F with every modality but ``modality`` missing (NaN)."""
    F = F.copy()
    F.loc[:, ~F.columns.str.startswith(modality + "__")] = np.nan
    return F


def _columns(F, *modalities):
    return F[[c for c in F.columns if c.split("__")[0] in modalities]]


def run_speech_demo(seed=0):
    from threadpoolctl import threadpool_limits

    # Small matrices: one BLAS thread is as fast and shares the cores well.
    with threadpool_limits(limits=1):
        return _run(seed)


def _run(seed):
    try:
        import pandas as pd
    except ImportError:
        raise SystemExit(
            "The speech demo routes DataFrame columns (text, audio, pixels) "
            "through a ColumnTransformer, and pandas is not installed. "
            "`pip install 'skcrossmodal[demo]'` adds it."
        ) from None
    from sklearn.compose import make_column_selector
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.dummy import DummyClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .audio import AudioFeaturizer
    from .compose import make_modality_transformer
    from .datasets import load_speech
    from .fusion import ConcatFusion, WeightedFusion
    from .projection import SharedProjection
    from .retrieval import evaluate_retrieval
    from .transfer import CrossModalTransferClassifier

    rows = []

    def report(task, value, chance, baseline=np.nan):
        rows.append(
            {
                "task": task,
                "skcrossmodal": value,
                "baseline": baseline,
                "chance": chance,
            }
        )

    total = 5
    with _step(1, total, "loading the bundled speech (182 spoken words, 8 kHz)"):
        speech = load_speech(as_frame=True)
        words, y_words = speech.data[["text", "audio"]], speech.target.to_numpy()
    seconds = sum(len(clip) for clip in words["audio"]) / SAMPLE_RATE
    print(
        f"      {len(words)} clips, {seconds:.0f} s of one voice, "
        f"{len(np.unique(y_words))} word categories"
    )

    with _step(2, total, "featurising the clips (log-mel + MFCC statistics)"):
        featurizer = AudioFeaturizer(sample_rate=SAMPLE_RATE)
        tracemalloc.start()
        start = time.perf_counter()
        featurizer.transform(words["audio"])
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(
        f"      {featurizer.get_feature_names_out().size} features per clip; "
        f"{elapsed:.2f} s for {seconds:.0f} s of audio "
        f"({seconds / elapsed:.0f}x real time), peak memory {peak / 2**20:.1f} MiB"
    )

    features = make_modality_transformer(
        (
            "text",
            make_pipeline(
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True
                ),
                TruncatedSVD(TEXT_COMPONENTS, random_state=seed),
            ),
            "text",
        ),
        (
            "audio",
            make_pipeline(
                AudioFeaturizer(sample_rate=SAMPLE_RATE),
                StandardScaler(),
                PCA(AUDIO_COMPONENTS, random_state=seed),
            ),
            "audio",
        ),
    )
    with _step(3, total, "audio <-> text, instance level (held-out words)"):
        train, test = train_test_split(
            np.arange(len(y_words)), test_size=0.3, random_state=seed, stratify=y_words
        )
        F_train = features.fit_transform(words.iloc[train])
        F_test = features.transform(words.iloc[test])
        projection = SharedProjection(SHARED_COMPONENTS, reg="auto").fit(F_train)
        found = evaluate_retrieval(
            projection,
            F_test,
            query_modality="audio",
            gallery_modality="text",
            k=(1, 5),
        )
        n_test = len(test)
        for k in (1, 5):
            report(
                f"audio->text recall@{k} (own transcript, {n_test} words)",
                found[f"recall@{k}"],
                chance_recall_at_k(None, np.arange(n_test), k),
            )
        report(
            "audio->text mAP (own transcript)",
            found["mean_average_precision"],
            chance_average_precision(None, np.arange(n_test)),
        )
        transfer = CrossModalTransferClassifier(
            SharedProjection(SHARED_COMPONENTS, reg="auto"),
            LogisticRegression(max_iter=3000),
        ).fit(
            pd.concat([F_train, _only(F_train, "text")], ignore_index=True),
            np.concatenate([np.full(len(train), -1), y_words[train]]),
        )
        audio_own = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        audio_own.fit(_columns(F_train, "audio"), y_words[train])
        majority = DummyClassifier().fit(F_train, y_words[train])
        report(
            "word category from audio, labels from text only (accuracy)",
            transfer.score(_only(F_test, "audio"), y_words[test]),
            majority.score(F_test, y_words[test]),
            audio_own.score(_columns(F_test, "audio"), y_words[test]),
        )

    with _step(4, total, "three modalities: digit images + transcripts + clips"):
        frame, y = digit_rows(speech, seed)
        train, test = train_test_split(
            np.arange(len(y)), test_size=0.5, random_state=seed, stratify=y
        )
        three = make_modality_transformer(
            ("text", TfidfVectorizer(), "text"),
            ("image", PCA(20, random_state=seed), make_column_selector("^pixel_")),
            (
                "audio",
                make_pipeline(
                    AudioFeaturizer(sample_rate=SAMPLE_RATE),
                    StandardScaler(),
                    PCA(20, random_state=seed),
                ),
                "audio",
            ),
        )
        F_train = three.fit_transform(frame.iloc[train])
        F_test = three.transform(frame.iloc[test])
        y_train, y_test = y[train], y[test]
        majority = DummyClassifier().fit(F_train, y_train).score(F_test, y_test)
        # The transcript names the digit, so the fusions use image + audio.
        accuracy = {}
        for name, fusion in (
            ("image only", None),
            ("audio only", None),
            ("ConcatFusion", ConcatFusion()),
            (
                "WeightedFusion",
                WeightedFusion(align="shared", n_components=DIGIT_COMPONENTS, reg=0.1),
            ),
        ):
            if fusion is None:
                modality = name.split()[0]
                model = make_pipeline(
                    StandardScaler(), LogisticRegression(max_iter=3000)
                )
                X_fit, X_eval = _columns(F_train, modality), _columns(F_test, modality)
            else:
                model = make_pipeline(fusion, LogisticRegression(max_iter=3000))
                X_fit = _columns(F_train, "image", "audio")
                X_eval = _columns(F_test, "image", "audio")
            accuracy[name] = model.fit(X_fit, y_train).score(X_eval, y_test)
        best_single = max(accuracy["image only"], accuracy["audio only"])
        for name in ("image only", "audio only"):
            report(f"digit from {name} (accuracy)", accuracy[name], majority)
        for name in ("ConcatFusion", "WeightedFusion"):
            report(
                f"digit from image + audio, {name} (accuracy)",
                accuracy[name],
                majority,
                best_single,
            )

        projection = SharedProjection(DIGIT_COMPONENTS, reg=0.1).fit(F_train)
        for gallery in ("text", "image"):
            found = evaluate_retrieval(
                projection,
                F_test,
                query_modality="audio",
                gallery_modality=gallery,
                y_query=y_test,
                k=(1,),
            )
            report(
                f"audio->{gallery} recall@1 (same digit)",
                found["recall@1"],
                chance_recall_at_k(y_test, y_test, 1),
            )
            report(
                f"audio->{gallery} mAP (same digit)",
                found["mean_average_precision"],
                chance_average_precision(y_test, y_test),
            )

    with _step(5, total, "transfer: digit labels on images only, predict from audio"):
        transfer = CrossModalTransferClassifier(
            SharedProjection(DIGIT_COMPONENTS, reg=0.1),
            LogisticRegression(max_iter=3000),
        ).fit(
            pd.concat([F_train, _only(F_train, "image")], ignore_index=True),
            np.concatenate([np.full(len(train), -1), y_train]),
        )
        report(
            "digit from audio, labels from images only (accuracy)",
            transfer.score(_only(F_test, "audio"), y_test),
            majority,
            accuracy["audio only"],
        )

    table = pd.DataFrame(rows).set_index("task")
    print()
    print(table.to_string(float_format=lambda v: f"{v:.3f}", na_rep="-"))
    print(
        "\nchance: the exact expected score of a random ranking (retrieval) or "
        "the majority class (accuracy).\nbaseline: a classifier trained on the "
        "target modality's own labels (transfer), the better single modality "
        "(fusion)."
    )
    return 0
