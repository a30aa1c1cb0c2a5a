"""SharedProjectionCV against GridSearchCV over SharedProjection(reg=...).

    python benchmarks/cv_speed.py                     # 200 000 x (400 + 400)
    python benchmarks/cv_speed.py --n 20000 --width 100

Both see the same folds (KFold(5)) and the same 10 candidate ridges; the
table prints each one's time, the ratio, whether they chose the same ridge
and the largest difference between their mean held-out scores. GridSearchCV
fits each candidate on each fold (n_folds x n_candidates passes over X);
SharedProjectionCV makes one pass and solves 50 small problems. Run on one
BLAS thread for both (threadpoolctl), GridSearchCV with n_jobs=1.

``--streams`` adds two rows for the same cross-validation out of memory:
``fit`` on a Dask array of 10 row chunks (the synchronous scheduler, so the
same threads), and ``partial_fit`` in 20 batches (``solve=False`` until the
last, folds by the stream rule ``i % 5``), each checked against the
in-memory fit with the same folds (the Dask fit: KFold(5); the stream:
``PredefinedSplit(arange(n) % 5)``, fitted too). ``--no-grid`` skips
GridSearchCV (the slow row).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn.model_selection import GridSearchCV, KFold
from threadpoolctl import threadpool_limits

from skcrossmodal import SharedProjection, SharedProjectionCV

GRID = [1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, "auto"]


def make_data(n, width, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 10)) * np.geomspace(3, 0.3, 10)
    views = [
        latent @ rng.normal(size=(10, width)) + 2.0 * rng.normal(size=(n, width))
        for _ in range(2)
    ]
    return np.hstack(views)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--width", type=int, default=400)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--streams", action="store_true")
    parser.add_argument("--no-grid", action="store_true")
    args = parser.parse_args()
    X = make_data(args.n, args.width)
    modalities = {"a": slice(0, args.width), "b": slice(args.width, 2 * args.width)}
    cv = KFold(5)
    print(
        f"n={args.n}, widths={args.width}+{args.width}, k={args.k}, "
        f"{len(GRID)} candidates, 5 folds, BLAS threads={args.threads}, "
        f"load={os.getloadavg()[0]:.2f}"
    )
    with threadpool_limits(limits=args.threads, user_api="blas"):
        start = time.perf_counter()
        model = SharedProjectionCV(
            GRID, n_components=args.k, modalities=modalities, cv=cv
        ).fit(X)
        one_pass = time.perf_counter() - start
        rows = [("SharedProjectionCV", one_pass, model, model)]
        if args.streams:
            rows += stream_rows(X, modalities, args.k, model)
        if not args.no_grid:
            start = time.perf_counter()
            search = GridSearchCV(
                SharedProjection(args.k, modalities=modalities), {"reg": GRID}, cv=cv
            ).fit(X)
            rows.append(("GridSearchCV", time.perf_counter() - start, search, model))
    print(
        f"{'':34s} {'seconds':>10s} {'x one pass':>10s}  same ridge, max |score diff|"
    )
    for name, seconds, fitted, reference in rows:
        results = fitted.cv_results_
        reg = getattr(fitted, "best_reg_", None) or fitted.best_params_["reg"]
        difference = np.max(
            np.abs(
                results["mean_test_score"] - reference.cv_results_["mean_test_score"]
            )
        )
        print(
            f"{name:34s} {seconds:10.2f} {seconds / one_pass:10.2f}  "
            f"{reg == reference.best_reg_} ({reg!r}), {difference:.1e}"
        )
    print(f"load after: {os.getloadavg()[0]:.2f}")


def stream_rows(X, modalities, k, model):
    """The Dask fit (same folds as ``model``) and a 20-batch partial_fit
    (checked against fit with PredefinedSplit(arange(n) % 5))."""
    import dask
    import dask.array as da
    from sklearn.model_selection import PredefinedSplit

    n = X.shape[0]
    lazy = da.from_array(X, chunks=(-(-n // 10), X.shape[1]))
    with dask.config.set(scheduler="synchronous"):
        start = time.perf_counter()
        on_dask = SharedProjectionCV(
            GRID, n_components=k, modalities=modalities, cv=KFold(5)
        ).fit(lazy)
        dask_seconds = time.perf_counter() - start
    start = time.perf_counter()
    stream = SharedProjectionCV(GRID, n_components=k, modalities=modalities, cv=5)
    batches = np.array_split(np.arange(n), 20)
    for i, rows in enumerate(batches):
        stream.partial_fit(X[rows[0] : rows[-1] + 1], solve=i == len(batches) - 1)
    stream_seconds = time.perf_counter() - start
    same_folds = SharedProjectionCV(
        GRID,
        n_components=k,
        modalities=modalities,
        cv=PredefinedSplit(np.arange(n) % 5),
    ).fit(X)
    return [
        ("fit(Dask array, 10 chunks)", dask_seconds, on_dask, model),
        ("partial_fit (20 batches)", stream_seconds, stream, same_folds),
    ]


if __name__ == "__main__":
    main()
