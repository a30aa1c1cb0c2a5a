"""Batched ranking speed, and what the numpy-only branches of _ranking buy.

    python benchmarks/ranking_speed.py                 # 20 000 x 20 000, k=10
    python benchmarks/ranking_speed.py --n 5000 --generic

``rank_embeddings`` (cosine and euclidean, top ``k``) and
``evaluate_embeddings`` (every query's full ranking: mAP, recall@k, median
rank) on Gaussian embeddings, best of ``--repeats``. ``--generic`` also
times the same calls with the numpy-only branches switched off (the code
every other array namespace runs, on numpy through array_api_compat): the
running top ``k``'s partition filter, the quicksort row order and the
reused product buffer.
"""

import argparse

import numpy as np
from _common import run_times

from skcrossmodal import _ranking
from skcrossmodal.retrieval import evaluate_embeddings, rank_embeddings


def best(function, repeats):
    return min(run_times(function, repeats))


def measure(Z_query, Z_gallery, y, k, repeats):
    n_eval = min(2000, Z_query.shape[0])
    return {
        "rank cosine": best(lambda: rank_embeddings(Z_query, Z_gallery, k=k), repeats),
        "rank euclidean": best(
            lambda: rank_embeddings(Z_query, Z_gallery, metric="euclidean", k=k),
            repeats,
        ),
        f"evaluate ({n_eval} queries)": best(
            lambda: evaluate_embeddings(Z_query[:n_eval], Z_gallery, y[:n_eval], y),
            repeats,
        ),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="queries = gallery")
    parser.add_argument("--d", type=int, default=16, help="embedding width")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--generic", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    Z_query = rng.normal(size=(args.n, args.d))
    Z_gallery = rng.normal(size=(args.n, args.d))
    y = rng.integers(0, 50, size=args.n)
    print(f"{args.n} x {args.n}, d={args.d}, k={args.k}, best of {args.repeats}")
    results = {"numpy branches": measure(Z_query, Z_gallery, y, args.k, args.repeats)}
    if args.generic:
        is_numpy = _ranking.is_numpy
        _ranking.is_numpy = lambda xp: False
        try:
            results["generic code"] = measure(
                Z_query, Z_gallery, y, args.k, args.repeats
            )
        finally:
            _ranking.is_numpy = is_numpy
    for label, timings in results.items():
        for name, seconds in timings.items():
            print(f"{label:>15}  {name:<28} {seconds:7.2f} s")


if __name__ == "__main__":
    main()
