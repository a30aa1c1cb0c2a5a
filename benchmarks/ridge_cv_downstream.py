"""The ridge SharedProjectionCV chooses without labels, judged downstream on
the bundled data sets, beside reg="auto" and every fixed ridge of the grid.

Usage::

    python benchmarks/ridge_cv_downstream.py               # 5 splits per data set
    python benchmarks/ridge_cv_downstream.py --seeds 1     # quicker

Protocol, per data set and per random stratified split: each modality's
features are prepared on the training rows only, without labels (digits:
the ``fou`` and ``kar`` views as they are; emoji: character 2-4-gram TF-IDF
of the names then ``TruncatedSVD(100)``, and ``PCA(100)`` of the pixels;
speech, all 568 clips: the 212 bundled audio features, and character 2-4-gram
TF-IDF of the transcripts then ``TruncatedSVD(50)``). The shared space
(``scale=True``, ``n_components`` below) is fitted on the training rows
without labels: by :class:`SharedProjectionCV` over the grid plus ``"auto"``
(5-fold held-out correlation), and by :class:`SharedProjection` with every
candidate. A ``LogisticRegression`` on the training rows' shared
coordinates (``output="mean"``, both modalities) then predicts the category
of the test rows. Reported: the test error of the chosen ridge, of
``reg="auto"``, and of the best fixed ridge (known only from the test
labels), averaged over the splits.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skcrossmodal import SharedProjection, SharedProjectionCV
from skcrossmodal.datasets import load_emoji, load_multiple_features, load_speech

GRID = [1e-3, 1e-2, 0.1, 1.0, 10.0]


def text_features(width):
    return make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)),
        TruncatedSVD(width, random_state=0),
    )


def digits(seed):
    bunch = load_multiple_features(views=["fou", "kar"])
    train, test = train_test_split(
        np.arange(len(bunch.target)),
        train_size=300,
        test_size=1500,
        stratify=bunch.target,
        random_state=seed,
    )
    X = bunch.data
    return X[train], X[test], bunch.target[train], bunch.target[test], bunch.views


def emoji(seed):
    bunch = load_emoji()
    train, test = train_test_split(
        np.arange(len(bunch.target)),
        test_size=0.5,
        stratify=bunch.target,
        random_state=seed,
    )
    text = text_features(100).fit(bunch.text[train])
    pixels = PCA(100, random_state=0).fit(bunch.data[train] / 255.0)

    def prepare(rows):
        return np.hstack(
            [
                text.transform(bunch.text[rows]),
                pixels.transform(bunch.data[rows] / 255.0),
            ]
        )

    views = {"text": slice(0, 100), "image": slice(100, 200)}
    return prepare(train), prepare(test), bunch.target[train], bunch.target[test], views


def speech(seed):
    bunch = load_speech(subset="all")
    train, test = train_test_split(
        np.arange(len(bunch.target)),
        test_size=0.5,
        stratify=bunch.target,
        random_state=seed,
    )
    text = text_features(50).fit(bunch.text[train])
    audio = bunch.data.astype(np.float64)

    def prepare(rows):
        return np.hstack([audio[rows], text.transform(bunch.text[rows])])

    width = audio.shape[1]
    views = {"audio": slice(0, width), "text": slice(width, width + 50)}
    return prepare(train), prepare(test), bunch.target[train], bunch.target[test], views


DATASETS = {"digits": (digits, 9), "emoji": (emoji, 8), "speech": (speech, 9)}


def test_error(projection, X_train, X_test, y_train, y_test):
    model = make_pipeline(
        projection, StandardScaler(), LogisticRegression(max_iter=5000)
    )
    return 100.0 * (1.0 - model.fit(X_train, y_train).score(X_test, y_test))


def run(name, seeds):
    load, k = DATASETS[name]
    chosen, chosen_errors, fixed = [], [], {reg: [] for reg in GRID + ["auto"]}
    start = time.perf_counter()
    for seed in range(seeds):
        X_train, X_test, y_train, y_test, views = load(seed)
        search = SharedProjectionCV(
            GRID + ["auto"], n_components=k, modalities=views, scale=True
        ).fit(X_train)
        chosen.append(search.best_reg_)
        for reg in fixed:
            projection = SharedProjection(k, modalities=views, scale=True, reg=reg)
            fixed[reg].append(test_error(projection, X_train, X_test, y_train, y_test))
        chosen_errors.append(fixed[search.best_reg_][-1])
    means = {reg: float(np.mean(errors)) for reg, errors in fixed.items()}
    best = min(GRID, key=means.get)
    print(
        f"{name}: n_train {len(y_train)}, k={k}, {seeds} split(s), "
        f"{time.perf_counter() - start:.0f} s; chosen {chosen}"
    )
    print(
        f"  test error: chosen {np.mean(chosen_errors):.1f} %, reg='auto' "
        f"{means['auto']:.1f} %, best fixed reg={best:g} {means[best]:.1f} %"
    )
    print(
        "  every candidate: "
        + ", ".join(f"{reg!r} {error:.1f} %" for reg, error in means.items()),
        flush=True,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    for name in args.datasets:
        run(name, args.seeds)


if __name__ == "__main__":
    main()
