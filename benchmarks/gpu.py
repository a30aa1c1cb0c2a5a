"""SharedProjection's closed form on a GPU (torch CUDA) against numpy on the CPU.

    python benchmarks/gpu.py                       # 1 000 000 rows, 512 + 512, k=10
    python benchmarks/gpu.py --n 10000000 --skip-numpy

Same data for both: float32, two modalities sharing 10 latent signals. The
GPU fit is ``SharedProjection(...).fit`` on the torch array under
``sklearn.config_context(array_api_dispatch=True)`` (the sums and the solve
in torch, on the device; SCIPY_ARRAY_API=1 is set for scikit-learn's check
before anything imports scipy), timed after a warm-up fit
(CUDA context, cuBLAS handles) with ``torch.cuda.synchronize()``; each
number is the median of ``--repeats`` fits. Rows:

* numpy CPU: ``SharedProjection(...).fit(X)`` on the numpy copy;
* torch CUDA, float64 sums: the default (the device has float64);
* torch CUDA, float32 sums: what a device without float64 (Apple MPS) runs,
  to show the price of float64 on this card;
* GPU floor: ``X.T @ X`` in float32 on the device, the least any exact
  closed form must do.

The last column is the largest difference of the canonical correlations from
the numpy fit's.

Where torch is not installed, or has no CUDA device, it says so, times the
torch CPU path against numpy on a smaller problem instead, and exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

# scikit-learn dispatches to array API inputs only with this set, and scipy
# reads it when first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np  # noqa: E402
import sklearn  # noqa: E402

from skcrossmodal import SharedProjection, _statistics  # noqa: E402


def median_time(function, repeats, synchronize=lambda: None):
    times, result = [], None
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        result = function()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def make_data(torch, n_samples, width, n_latent, device, seed=0):
    """Two float32 modalities sharing ``n_latent`` signals, made on ``device``."""
    generator = torch.Generator(device=device).manual_seed(seed)
    strengths = torch.logspace(0.5, -0.5, n_latent, device=device)
    X = torch.empty((n_samples, 2 * width), dtype=torch.float32, device=device)
    loadings = [
        torch.randn(n_latent, width, generator=generator, device=device) / n_latent**0.5
        for _ in range(2)
    ]
    step = 1 << 16
    for start in range(0, n_samples, step):
        stop = min(start + step, n_samples)
        latent = (
            torch.randn(stop - start, n_latent, generator=generator, device=device)
            * strengths
        )
        for m in range(2):
            noise = torch.randn(stop - start, width, generator=generator, device=device)
            X[start:stop, m * width : (m + 1) * width] = latent @ loadings[m] + noise
    return X


def run(torch, device, n_samples, width, k, reg, repeats, skip_numpy):
    modalities = {"a": np.arange(width), "b": np.arange(width, 2 * width)}
    is_cuda = str(device).startswith("cuda")
    synchronize = torch.cuda.synchronize if is_cuda else (lambda: None)
    X = make_data(torch, n_samples, width, 10, device)
    synchronize()
    gib = X.numel() * 4 / 2**30
    print(
        f"n={n_samples:,}, two modalities of {width} features, k={k}, "
        f"reg={reg}, float32 ({gib:.2f} GiB), device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if is_cuda else "")
    )

    rows = []
    reference = None
    if not skip_numpy:
        X_numpy = X.cpu().numpy()
        estimator = SharedProjection(k, modalities=modalities, reg=reg)
        seconds, _ = median_time(lambda: estimator.fit(X_numpy), repeats)
        reference = estimator.canonical_correlations_
        rows.append(("numpy CPU, SharedProjection.fit", seconds, 0.0))
        del X_numpy

    def fit(rows=X):
        estimator = SharedProjection(k, modalities=modalities, reg=reg)
        with sklearn.config_context(array_api_dispatch=True):
            return estimator.fit(rows)

    fit(X[: min(n_samples, 4096)])
    seconds, result = median_time(fit, repeats, synchronize)
    rows.append((f"torch {device}, float64 sums", seconds, _gap(result, reference)))

    original = _statistics.accumulation_dtype
    _statistics.accumulation_dtype = lambda xp, device: xp.float32
    try:
        seconds, result = median_time(fit, repeats, synchronize)
    finally:
        _statistics.accumulation_dtype = original
    rows.append((f"torch {device}, float32 sums", seconds, _gap(result, reference)))

    seconds, _ = median_time(lambda: X.T @ X, repeats, synchronize)
    rows.append((f"floor: X.T @ X float32 on {device}", seconds, float("nan")))

    base = rows[0][1]
    print(f"{'':42s} {'seconds':>9s} {'speed-up':>9s} {'max |d corr|':>13s}")
    for name, seconds, gap in rows:
        print(f"{name:42s} {seconds:9.3f} {base / seconds:8.1f}x {gap:13.1e}")
    print(f"(median of {repeats}; speed-up against the first row)")


def _gap(result, reference):
    if reference is None:
        return float("nan")
    correlations = np.asarray(result.canonical_correlations_.cpu())
    return float(np.abs(correlations - reference).max())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="rows")
    parser.add_argument("--width", type=int, default=512, help="per modality")
    parser.add_argument("--k", type=int, default=10, help="n_components")
    parser.add_argument("--reg", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--skip-numpy", action="store_true", help="no CPU baseline (for 1e7 rows)"
    )
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("no GPU available: torch is not installed (pip install torch).")
        print("Nothing to time; install torch to time the array API path.")
        return 0
    if torch.cuda.is_available():
        run(
            torch,
            torch.device("cuda"),
            args.n,
            args.width,
            args.k,
            args.reg,
            args.repeats,
            args.skip_numpy,
        )
        return 0
    print(
        "no GPU available (torch has no CUDA device): timing the torch CPU "
        "path against numpy on a smaller problem instead."
    )
    n_samples = min(args.n, 100_000)
    width = min(args.width, 128)
    run(torch, torch.device("cpu"), n_samples, width, args.k, args.reg, 3, False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
