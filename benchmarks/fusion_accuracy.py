"""5-fold CV accuracy of single modalities against the fusion estimators.

Data: the UCI Multiple Features digits (2000 handwritten digits, six views:
Fourier coefficients, profile correlations, Karhunen-Loeve coefficients,
pixel averages, Zernike moments, morphological features) through
``skcrossmodal.datasets.load_multiple_features()`` when that loader is
importable; otherwise scikit-learn's 8x8 digits split into two "modalities",
the left and the right half of each image.

Every model starts with a ``StandardScaler`` (per feature) and ends with the
same ``LogisticRegression``, so the rows differ only in how the modalities are
used:

- each modality alone;
- all columns concatenated, without block scaling (for reference);
- ``ConcatFusion`` (frobenius and mfa block scaling);
- ``WeightedFusion`` with equal weights after a per-modality PCA
  (``align="pca"``) or a shared projection (``align="shared"``), each to the
  narrowest modality's width;
- ``LateFusionClassifier``: soft vote and stacking of one scaled logistic
  regression per modality.

Run::

    python benchmarks/fusion_accuracy.py [--data auto|mfeat|digits] [--n-jobs 1]

BLAS runs single-threaded (threadpoolctl), since the machines these numbers
come from are shared and thread oversubscription only adds noise.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_info, threadpool_limits

from skcrossmodal.fusion import (
    ConcatFusion,
    LateFusionClassifier,
    WeightedFusion,
)


def load_views(which="auto"):
    """Return X, y, views (name -> column indices) and a description."""
    if which in ("auto", "mfeat"):
        try:
            from skcrossmodal.datasets import load_multiple_features
        except ImportError:
            if which == "mfeat":
                raise
        else:
            bunch = load_multiple_features()
            X = np.asarray(bunch.data, dtype=np.float64)
            every_column = np.arange(X.shape[1])
            # views hold slices or index lists: as int indices either way.
            views = {
                name: every_column[columns] for name, columns in bunch.views.items()
            }
            return X, np.asarray(bunch.target), views, "UCI Multiple Features"
    X, y = load_digits(return_X_y=True)
    column = np.arange(64) % 8
    views = {
        "left": np.flatnonzero(column < 4),
        "right": np.flatnonzero(column >= 4),
    }
    return X, y, views, "sklearn digits, left/right image halves"


def logreg():
    return LogisticRegression(max_iter=2000)


def models(views):
    narrowest = min(len(columns) for columns in views.values())
    single = {
        f"single: {name}": make_pipeline(
            FunctionTransformer(lambda X, c=columns: X[:, c]),
            StandardScaler(),
            logreg(),
        )
        for name, columns in views.items()
    }
    fused = {
        "concat, no block scaling": make_pipeline(StandardScaler(), logreg()),
        "ConcatFusion(frobenius)": make_pipeline(
            StandardScaler(), ConcatFusion("frobenius", modalities=views), logreg()
        ),
        "ConcatFusion(mfa)": make_pipeline(
            StandardScaler(), ConcatFusion("mfa", modalities=views), logreg()
        ),
        f"WeightedFusion(align='pca', k={narrowest})": make_pipeline(
            StandardScaler(),
            ConcatFusion("frobenius", modalities=views),
            WeightedFusion(modalities=views, align="pca", random_state=0),
            StandardScaler(),
            logreg(),
        ),
        f"WeightedFusion(align='shared', k={narrowest}, reg='auto')": make_pipeline(
            StandardScaler(),
            WeightedFusion(modalities=views, align="shared", reg="auto"),
            StandardScaler(),
            logreg(),
        ),
        "LateFusionClassifier(soft_vote)": LateFusionClassifier(
            make_pipeline(StandardScaler(), logreg()), modalities=views
        ),
        "LateFusionClassifier(stacking)": LateFusionClassifier(
            make_pipeline(StandardScaler(), logreg()),
            modalities=views,
            method="stacking",
        ),
    }
    return single, fused


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["auto", "mfeat", "digits"], default="auto")
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args(argv)

    X, y, views, description = load_views(args.data)
    widths = {name: len(columns) for name, columns in views.items()}
    print(f"data: {description}, X {X.shape}, {len(np.unique(y))} classes")
    print(f"modalities (width): {widths}")
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    single, fused = models(views)

    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        blas = sorted(
            {f"{info['internal_api']} {info['version']}" for info in threadpool_info()}
        )
        print(f"BLAS (1 thread): {', '.join(blas)}")
        print("\n| model | 5-fold CV accuracy (mean ± std) | time (s) |")
        print("|---|---|---|")
        results = {}
        for name, model in {**single, **fused}.items():
            start = time.perf_counter()
            scores = cross_val_score(model, X, y, cv=cv, n_jobs=args.n_jobs)
            seconds = time.perf_counter() - start
            results[name] = scores.mean()
            print(
                f"| {name} | {scores.mean():.4f} ± {scores.std():.4f} | "
                f"{seconds:.1f} |",
                flush=True,
            )

    best_single = max(results[name] for name in single)
    best_fused = max(fused, key=results.get)
    print(
        f"\nbest single modality: {best_single:.4f}; best fused: {best_fused} "
        f"{results[best_fused]:.4f} "
        f"({'beats' if results[best_fused] > best_single else 'does NOT beat'} "
        "the best single modality)"
    )


if __name__ == "__main__":
    main()
