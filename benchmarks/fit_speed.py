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

    # Interleaved in a rotating order over the repeats, so every method sees
    # the same background load; the median is the typical run, the minimum
    # the least disturbed.
    model = SharedProjection(args.k, modalities=modalities, reg=1e-3)
    methods = {
        "numpy X.T @ X (floor)": lambda: X.T @ X,
        "skcrossmodal SharedProjection": lambda: model.fit(X),
        f"partial_fit x{args.batches}, solve deferred": lambda: stream(False),
        f"partial_fit x{args.batches}, solve every batch": lambda: stream(True),
    }
    for method in methods.values():  # warm-up: imports, first touch
        method()
    times = {name: [] for name in methods}
    names = list(methods)
    for repeat in range(args.repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            times[name] += run_times(methods[name], 1)
    floor = statistics.median(times[names[0]])
    ours = statistics.median(times[names[1]])
    print(
        f"ratio of minima {min(times[names[1]]) / min(times[names[0]]):.2f}, "
        f"of medians {ours / floor:.2f} ({args.repeats} interleaved runs)"
    )
    rows = [(name, statistics.median(values)) for name, values in times.items()]
    mins = {name: min(values) for name, values in times.items()}

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

    print(f"\n{'method':<40}{'median s':>10}{'min s':>10}{'x floor':>9}{'x fit':>7}")
    for name, seconds in rows:
        low = f"{mins[name]:>10.3f}" if name in mins else f"{'':>10}"
        print(
            f"{name:<40}{seconds:>10.3f}{low}{seconds / floor:>9.2f}"
            f"{seconds / ours:>7.2f}"
        )


if __name__ == "__main__":
    main()
