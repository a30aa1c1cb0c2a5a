"""Fit time of SharedProjection against the Gram-matrix floor and sklearn's CCA.

    python benchmarks/fit_speed.py                # n=200 000, 400 + 400, k=10
    python benchmarks/fit_speed.py --n 20000 --repeats 5
    python benchmarks/fit_speed.py --width 800 --k 20 --sklearn-max-n 0  # streaming

The floor is numpy's ``X.T @ X`` on the already stacked X: one symmetric BLAS
pass, the least any exact closed form must do. Times are medians over
``--repeats`` runs (sklearn's CCA once, it is slow); the table prints ratios
to the floor. The machine is shared and noisy: compare ratios from one run,
not seconds across runs.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from _common import run_times
from sklearn.cross_decomposition import CCA

from skcrossmodal import SharedProjection


def median_time(function, repeats):
    return statistics.median(run_times(function, repeats))


def blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(
        f"{p['internal_api']} {p['version']} ({p['num_threads']} threads, "
        f"{p.get('architecture')}) from {p['prefix']}"
        for p in threadpool_info()
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--width", type=int, default=400, help="features per modality")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=20, help="partial_fit batches")
    parser.add_argument(
        "--sklearn-max-n",
        type=int,
        default=200_000,
        help="skip sklearn's CCA above this n (it takes minutes)",
    )
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    latent = rng.normal(size=(args.n, args.k))
    X = np.hstack(
        [
            latent @ rng.normal(size=(args.k, args.width))
            + rng.normal(size=(args.n, args.width))
            for _ in range(2)
        ]
    )
    modalities = {"a": slice(0, args.width), "b": slice(args.width, 2 * args.width)}
    print(f"n={args.n}, two modalities of {args.width} features, k={args.k}")
    print(f"BLAS: {blas_info()}")

    # Interleaved, so both see the same background load; the minimum is the
    # least disturbed run, the median the typical one.
    model = SharedProjection(args.k, modalities=modalities, reg=1e-3)
    floor_times, our_times = [], []
    for _ in range(args.repeats):
        floor_times += run_times(lambda: X.T @ X, 1)
        our_times += run_times(lambda: model.fit(X), 1)
    floor = statistics.median(floor_times)
    ours = statistics.median(our_times)
    print(
        f"ratio of minima {min(our_times) / min(floor_times):.2f}, "
        f"of medians {ours / floor:.2f} ({args.repeats} interleaved runs)"
    )
    rows = [("numpy X.T @ X (floor)", floor), ("skcrossmodal SharedProjection", ours)]

    # Streaming the same rows in --batches batches: solving after every
    # batch, and deferring the solve to the last one (solve=False).
    batches = np.array_split(np.arange(args.n), args.batches)

    def stream(solve_each):
        streamed = SharedProjection(args.k, modalities=modalities, reg=1e-3)
        for i, rows_i in enumerate(batches):
            last = i == len(batches) - 1
            streamed.partial_fit(
                X[rows_i[0] : rows_i[-1] + 1], solve=solve_each or last
            )
        return streamed

    for label, solve_each in [("every batch", True), ("deferred", False)]:
        seconds = median_time(lambda solve_each=solve_each: stream(solve_each), 1)
        rows.append((f"partial_fit x{args.batches}, solve {label}", seconds))

    if args.n <= args.sklearn_max_n:
        cca = CCA(n_components=args.k, scale=False)
        x, y = X[:, modalities["a"]], X[:, modalities["b"]]
        theirs = median_time(lambda: cca.fit(x, y), 1)
        rows.append(("sklearn CCA (1 run)", theirs))
        scores = cca.transform(x, y)
        sk_corr = [
            np.corrcoef(scores[0][:, j], scores[1][:, j])[0, 1] for j in range(2)
        ]
        print(
            "first correlations: skcrossmodal "
            f"{np.round(model.canonical_correlations_[:2], 6)}, sklearn "
            f"{np.round(sk_corr, 6)}"
        )

    print(f"\n{'method':<32}{'seconds':>10}{'x floor':>10}")
    for name, seconds in rows:
        print(f"{name:<32}{seconds:>10.3f}{seconds / floor:>10.2f}")


if __name__ == "__main__":
    main()
