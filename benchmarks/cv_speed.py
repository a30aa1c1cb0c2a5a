"""SharedProjectionCV against GridSearchCV over SharedProjection(reg=...).

    python benchmarks/cv_speed.py                     # 200 000 x (400 + 400)
    python benchmarks/cv_speed.py --n 20000 --width 100

Both see the same folds (KFold(5)) and the same 10 candidate ridges; the
table prints each one's time, the ratio, whether they chose the same ridge
and the largest difference between their mean held-out scores. GridSearchCV
fits each candidate on each fold (n_folds x n_candidates passes over X);
SharedProjectionCV makes one pass and solves 50 small problems. Run on one
BLAS thread for both (threadpoolctl), GridSearchCV with n_jobs=1.
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
        start = time.perf_counter()
        search = GridSearchCV(
            SharedProjection(args.k, modalities=modalities), {"reg": GRID}, cv=cv
        ).fit(X)
        grid = time.perf_counter() - start
    difference = np.max(
        np.abs(
            model.cv_results_["mean_test_score"] - search.cv_results_["mean_test_score"]
        )
    )
    print(f"{'':24s} {'seconds':>10s}")
    print(f"{'SharedProjectionCV':24s} {one_pass:10.2f}")
    print(f"{'GridSearchCV':24s} {grid:10.2f}")
    print(f"speed-up: {grid / one_pass:.1f}x; load after: {os.getloadavg()[0]:.2f}")
    print(
        f"same ridge: {model.best_reg_ == search.best_params_['reg']} "
        f"({model.best_reg_!r}); largest score difference {difference:.1e}"
    )


if __name__ == "__main__":
    main()
