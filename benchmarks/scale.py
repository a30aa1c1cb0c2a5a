"""Scale: streaming memory, the gradient solver on wide sparse text, and Dask.

    python benchmarks/scale.py              # (a), (b) and (c), each in a fresh process
    python benchmarks/scale.py --part a     # one part
    python benchmarks/scale.py --part b --quick   # smaller sizes, for a smoke run
    python benchmarks/scale.py --blas-threads 1   # on a busy machine (see below)

(a) ``partial_fit`` over 5 000 000 rows x two modalities of 256 features,
    generated batch by batch: peak memory. Target: under 300 MB.
(b) ``GradientSharedProjection`` (the gradient solver) on a sparse tf-idf
    text modality of 100 000 words with a dense 300-feature modality:
    memory, time and held-out top-k correlation sum; on a 20 000-word
    version where the closed form also runs, the gradient's held-out sum as
    a fraction of the closed form's.
    Target: at least 0.95.
(c) ``fit`` on a Dask array on a ``distributed.LocalCluster`` with 1 and 2
    workers, against the in-memory fit of the same data.

Memory
------
Two numbers per measurement, because neither alone is the whole story:

* the resident high-water mark (``VmHWM``) during the measured block minus
  the resident set just before it (``_common.PeakMemory``, reset through
  ``/proc/self/clear_refs``): everything the process touched, BLAS/LAPACK
  workspace and allocator slack included;
* ``tracemalloc``'s peak: every numpy buffer and Python object allocated in
  the block (numpy reports its buffers to tracemalloc), but not the memory
  that BLAS, LAPACK or OpenBLAS threads allocate themselves.

The process's total peak (imports included: Python, numpy, scipy and
scikit-learn are about 160 MB resident before any data) is printed too. The
measuring processes run with ``MALLOC_MMAP_THRESHOLD_=131072`` (see
``_child_environment``).

Threads
-------
On a machine shared with other jobs, OpenBLAS with more than one thread
spin-waits: here a 256 x 256 ``eigh`` took 1.2 s on two threads under a load
average of 5, 16 ms on one. ``--blas-threads 1`` limits BLAS (threadpoolctl)
in every process the benchmark starts; the header says which BLAS ran and
the load. Dask's workers run one BLAS thread each whatever the flag
(``distributed`` sets ``OPENBLAS_NUM_THREADS=1`` in its worker processes).

The closed form at 20 000 words
-------------------------------
``SharedProjection``'s closed form keeps several ``D x D`` float64 arrays
while it finalises the statistics (3.3 GB each at D = 20 300), more than this
24 GB machine shared with other jobs can give. Part (b) therefore computes
the exact two-view ridge CCA the memory-lean way: the text Gram matrix in row
blocks, an in-place Cholesky of ``C_tt + reg I``, ``C_tt^-1 C_ty``, and the
300 x 300 eigenproblem; the same maths, one ``D x D`` array. Before that it
checks, on a 2 000-word version, that this reference and
``SharedProjection``'s closed form give the same correlations.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
import warnings

import numpy as np
from scipy import linalg, sparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    PeakMemory,
    blas_info,
    correlated_views,
    describe_blas,
    format_bytes,
    heldout_correlations,
    machine_info,
    rss_bytes,
    time_repeats,
)

from skcrossmodal import GradientSharedProjection, SharedProjection  # noqa: E402


class Measured:
    """PeakMemory and tracemalloc around one block, and its wall time."""

    def __enter__(self):
        self._peak = PeakMemory().__enter__()
        tracemalloc.start()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc_info):
        self.seconds = time.perf_counter() - self.start
        _, self.traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        self._peak.__exit__(*exc_info)
        self.resident = self._peak.bytes
        self.reset_worked = self._peak.reset_worked
        return False

    def line(self):
        note = "" if self.reset_worked else " (high-water mark not reset)"
        return (
            f"{self.seconds:.1f} s; extra resident peak "
            f"{format_bytes(self.resident)}{note}; tracemalloc peak "
            f"{format_bytes(self.traced)}"
        )


def process_peak():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


# -- (a) streaming ---------------------------------------------------------------


def part_a(args):
    n_rows = 200_000 if args.quick else 5_000_000
    width, batch, n_latent = 256, 10_000, 10
    widths = (width, width)
    modalities = {"a": slice(0, width), "b": slice(width, 2 * width)}
    print(
        f"(a) partial_fit over {n_rows:,} rows x 2 modalities of {width} features, "
        f"batches of {batch:,} rows generated one at a time "
        f"({format_bytes(batch * 2 * width * 8)} each; the whole X would be "
        f"{format_bytes(n_rows * 2 * width * 8)})"
    )
    print(f"    resident before: {format_bytes(rss_bytes())} (imports)")
    model = SharedProjection(n_latent, modalities=modalities, reg=1e-3)
    n_batches = n_rows // batch
    with Measured() as measured:
        for part in range(n_batches):
            X = correlated_views(batch, widths, n_latent, seed=1, part=part)
            model.partial_fit(X)
            del X
    print(f"    partial_fit: {measured.line()}")
    print(
        f"    process peak resident (imports included): {format_bytes(process_peak())}"
        f"; {n_rows / measured.seconds:,.0f} rows/s including generation and a "
        "solve after every batch"
    )
    print(f"    first correlations: {np.round(model.canonical_correlations_[:4], 6)}")
    # Sanity: the first 20 batches streamed equal fit on their concatenation.
    few = [correlated_views(batch, widths, n_latent, seed=1, part=p) for p in range(20)]
    streamed = SharedProjection(n_latent, modalities=modalities, reg=1e-3)
    for X in few:
        streamed.partial_fit(X)
    full = SharedProjection(n_latent, modalities=modalities, reg=1e-3).fit(
        np.vstack(few)
    )
    difference = np.max(
        np.abs(streamed.canonical_correlations_ - full.canonical_correlations_)
        / full.canonical_correlations_
    )
    print(
        f"    check: 20 batches streamed vs fit on their concatenation, max "
        f"relative difference of the correlations {difference:.1e}"
    )


# -- (b) gradient on sparse text -------------------------------------------------


def text_and_image(n_samples, vocabulary, *, n_latent=8, n_topics=60, seed=0):
    """Paired sparse tf-idf text and a dense 300-feature 'image' modality.

    ``n_latent`` signals (strengths 2 down to 0.5) drive each document's
    mixture of topics; a document draws ~80 words, half from a Zipf
    background over the whole vocabulary and half from its topics (each a
    Zipf over its own random 1/20 of the vocabulary); the counts become
    sublinear tf-idf, rows of unit norm (``TfidfTransformer``). The image
    modality is a linear map of the same signals plus a 10-dimensional
    nuisance and unit noise.
    """
    from sklearn.feature_extraction.text import TfidfTransformer

    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_samples, n_latent)) * np.geomspace(
        2.0, 0.5, n_latent
    )
    logits = latent @ (rng.standard_normal((n_latent, n_topics)) * 0.6)
    theta = np.exp(logits - logits.max(axis=1, keepdims=True))
    theta /= theta.sum(axis=1, keepdims=True)
    background = 1.0 / np.arange(1, vocabulary + 1) ** 1.05
    topic_size = max(vocabulary // 20, 50)
    topic_zipf = 1.0 / np.arange(1, topic_size + 1) ** 0.9
    lengths = rng.poisson(80, n_samples)
    topical = rng.binomial(lengths, 0.5)
    background_docs = np.repeat(np.arange(n_samples), lengths - topical)
    docs = [background_docs]
    words = [_draw(rng, background, background_docs.size)]
    per_topic = rng.multinomial(topical, theta)
    for topic in range(n_topics):
        subset = rng.choice(vocabulary, topic_size, replace=False)
        topic_docs = np.repeat(np.arange(n_samples), per_topic[:, topic])
        docs.append(topic_docs)
        words.append(subset[_draw(rng, topic_zipf, topic_docs.size)])
    docs, words = np.concatenate(docs), np.concatenate(words)
    counts = sparse.csr_matrix(
        (np.ones(docs.size), (docs, words)), shape=(n_samples, vocabulary)
    )
    counts.sum_duplicates()
    text = TfidfTransformer(sublinear_tf=True).fit_transform(counts).tocsr()
    image = (
        latent @ (rng.standard_normal((n_latent, 300)) / np.sqrt(n_latent))
        + 0.5 * rng.standard_normal((n_samples, 10)) @ rng.standard_normal((10, 300))
        + rng.standard_normal((n_samples, 300))
    )
    return text, image


def _draw(rng, weights, size):
    cdf = np.cumsum(weights / weights.sum())
    return np.minimum(np.searchsorted(cdf, rng.random(size)), len(weights) - 1)


def text_problem(vocabulary, n_train, n_test, seed=0):
    text, image = text_and_image(n_train + n_test, vocabulary, seed=seed)
    X = sparse.hstack([text, sparse.csr_matrix(image)], format="csr")
    modalities = {"text": slice(0, vocabulary), "image": slice(vocabulary, None)}
    train_text = text[:n_train]
    variance = (
        np.asarray(train_text.multiply(train_text).mean(axis=0)).ravel()
        - np.asarray(train_text.mean(axis=0)).ravel() ** 2
    )
    # reg = the mean text-feature variance: the best held-out sum of the
    # closed form among 0.1x, 1x and 10x on the 5 000-word version.
    reg = {"text": float(variance.mean()), "image": 0.01}
    return X[:n_train], X[n_train:], modalities, reg


def heldout_sum(X_test, modalities, weights):
    projections = [
        np.asarray(X_test[:, cols] @ weights[m]) for m, cols in modalities.items()
    ]
    return float(np.sum(heldout_correlations(projections)))


def exact_ridge_cca(X, modalities, reg, k, block_rows=1000):
    """Two-view ridge CCA with one D x D array (see the module docstring).

    Returns the correlations and the weights of each view.
    """
    text = X[:, modalities["text"]].tocsc()
    image = X[:, modalities["image"]].toarray()
    n = X.shape[0]
    mean_t = np.asarray(text.mean(axis=0)).ravel()
    mean_y = image.mean(axis=0)
    d = text.shape[1]
    gram = np.empty((d, d))
    text_t = text.T.tocsr()
    for start in range(0, d, block_rows):
        stop = min(start + block_rows, d)
        rows = (text_t[start:stop] @ text).toarray() / n
        rows -= np.outer(mean_t[start:stop], mean_t)
        rows[:, start:stop] += reg["text"] * np.eye(stop - start)
        gram[start:stop] = rows
    factor = linalg.cho_factor(
        gram.T, lower=False, overwrite_a=True, check_finite=False
    )
    c_ty = np.asarray(text_t @ image) / n - np.outer(mean_t, mean_y)
    solved = linalg.cho_solve(factor, c_ty, check_finite=False)
    del factor, gram
    c_yy = np.cov(image.T, bias=True) + reg["image"] * np.eye(image.shape[1])
    values, vectors = linalg.eigh(c_yy)
    whiten_y = vectors / np.sqrt(values)
    middle = whiten_y.T @ c_ty.T @ solved @ whiten_y
    squared, u = linalg.eigh(middle)
    order = np.argsort(squared)[::-1][:k]
    rho = np.sqrt(np.clip(squared[order], 0, None))
    w_y = whiten_y @ u[:, order]
    w_t = solved @ w_y / rho
    return rho, {"text": w_t, "image": w_y}


def part_b(args):
    """Run (b)'s measurements, each in a fresh process, and compare them."""
    k = 8
    n_train, n_test = (8_000, 2_000) if args.quick else (40_000, 10_000)
    wide = 20_000 if args.quick else 100_000
    compared = 5_000 if args.quick else 20_000
    print(
        f"(b) GradientSharedProjection, k={k}: sparse tf-idf text + dense 300-feature "
        f"image, {n_train:,} training and {n_test:,} held-out rows"
    )
    common = dict(k=k, n_train=n_train, n_test=n_test)
    check = run_step(args, "check", vocabulary=2_000, **common)
    print(
        "    check: memory-lean exact ridge CCA vs SharedProjection closed form "
        f"(2 000 words): max |difference| of the correlations "
        f"{check['difference']:.1e}"
    )
    exact = run_step(args, "exact", vocabulary=compared, **common)
    print(
        f"    {compared:,} words, X {exact['x_bytes']}: closed form (exact ridge "
        f"CCA): {exact['line']}; held-out correlation sum {exact['heldout']:.4f}"
    )
    for rate in args.learning_rates:
        ours = run_step(args, "gradient", vocabulary=compared, rate=rate, **common)
        print(
            f"    {compared:,} words: gradient (learning_rate={rate}): "
            f"{ours['line']}; {ours['epochs']} epochs; held-out sum "
            f"{ours['heldout']:.4f} = {ours['heldout'] / exact['heldout']:.4f} of "
            f"the closed form's; training sum {ours['train']:.4f} vs "
            f"{exact['train']:.4f}"
        )
    ours = run_step(args, "gradient", vocabulary=wide, rate=None, **common)
    print(
        f"    {wide:,} words, X {ours['x_bytes']} (a D x D float64 matrix would "
        f"be {ours['dxd']}): gradient: {ours['line']}; {ours['epochs']} epochs; "
        f"held-out correlation sum {ours['heldout']:.4f}; process peak resident "
        f"{ours['process_peak']}"
    )


def run_step(args, step, **params):
    """Run one measurement of (b) in a fresh process; return its results."""
    command = [sys.executable, __file__, "--step", json.dumps([step, params])]
    if args.blas_threads:
        command += ["--blas-threads", str(args.blas_threads)]
    output = subprocess.run(
        command, check=True, capture_output=True, text=True, env=_child_environment()
    )
    for line in output.stdout.splitlines():
        if line.startswith(_RESULT):
            return json.loads(line[len(_RESULT) :])
    raise RuntimeError(f"step {step} printed no result:\n{output.stdout}")


_RESULT = "@result "


def step_b(step, params):
    k, vocabulary = params["k"], params["vocabulary"]
    X_train, X_test, modalities, reg = text_problem(
        vocabulary, params["n_train"], params["n_test"]
    )
    result = {"x_bytes": format_bytes(_sparse_bytes(X_train))}
    if step == "check":
        closed = SharedProjection(k, modalities=modalities, reg=reg).fit(X_train)
        rho, _ = exact_ridge_cca(X_train, modalities, reg, k)
        result["difference"] = float(
            np.max(np.abs(rho - closed.canonical_correlations_))
        )
    elif step == "exact":
        with Measured() as measured:
            rho, weights = exact_ridge_cca(X_train, modalities, reg, k)
        result.update(train=float(rho.sum()), line=measured.line())
        result["heldout"] = heldout_sum(X_test, modalities, weights)
    else:
        model = GradientSharedProjection(
            k, modalities=modalities, reg=reg, random_state=0
        )
        if params["rate"] is not None:
            model.set_params(learning_rate=params["rate"])
        with Measured() as measured, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X_train)
        result.update(
            train=float(model.canonical_correlations_.sum()),
            line=measured.line(),
            epochs=model.n_iter_,
            heldout=heldout_sum(X_test, modalities, model.weights_),
            process_peak=format_bytes(process_peak()),
            dxd=format_bytes(8.0 * X_train.shape[1] ** 2),
        )
    print(_RESULT + json.dumps(result))


def _sparse_bytes(X):
    return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes


# -- (c) Dask -----------------------------------------------------------------------


def part_c(args):
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster, wait

    n_rows = 200_000 if args.quick else 1_000_000
    chunk, width, k = 100_000, 128, 10
    widths = (width, width)
    modalities = {"a": slice(0, width), "b": slice(width, 2 * width)}
    print(
        f"(c) fit on a Dask array: {n_rows:,} rows x 2 x {width} features "
        f"({format_bytes(n_rows * 2 * width * 8)}), chunks of {chunk:,} rows"
    )
    parts = [
        dask.delayed(correlated_views)(chunk, widths, k, seed=2, part=p)
        for p in range(n_rows // chunk)
    ]
    lazy = da.concatenate(
        [da.from_delayed(p, shape=(chunk, 2 * width), dtype=float) for p in parts]
    )
    X = np.vstack(
        [
            correlated_views(chunk, widths, k, seed=2, part=p)
            for p in range(n_rows // chunk)
        ]
    )
    model = SharedProjection(k, modalities=modalities, reg=1e-3)
    in_memory, times = time_repeats(lambda: model.fit(X))
    expected = model.canonical_correlations_.copy()
    print(
        f"    in memory (numpy, {describe_blas(blas_info())}): {in_memory:.2f} s "
        f"(median of {len(times)})"
    )
    for n_workers in (1, 2):
        with (
            LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            persisted = client.persist(lazy)
            wait(persisted)  # the data lives on the workers before timing
            seconds, times = time_repeats(lambda: model.fit(persisted))  # noqa: B023
            difference = np.max(np.abs(model.canonical_correlations_ - expected))
            threads = client.run(
                lambda: os.environ.get("OPENBLAS_NUM_THREADS", "unset")
            )
            print(
                f"    LocalCluster, {n_workers} worker(s) x 1 thread (BLAS threads "
                f"per worker: {sorted(set(threads.values()))}): {seconds:.2f} s "
                f"(median of {len(times)}), {in_memory / seconds:.2f}x the "
                f"in-memory speed; max |difference| of the correlations "
                f"{difference:.1e}"
            )


def _child_environment():
    """Environment of the measuring processes: large buffers always mmapped.

    glibc raises its mmap threshold after large frees, so buffers freed while
    the data was generated are reused from the heap, and the resident
    high-water mark then misses the measured block's allocations. A fixed
    threshold (128 kB) maps and unmaps every large buffer, so the mark counts
    them.
    """
    environment = dict(os.environ)
    environment.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
    return environment


PARTS = {"a": part_a, "b": part_b, "c": part_c}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["a", "b", "c", "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="limit BLAS to this many threads (threadpoolctl); default: as is",
    )
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument(
        "--learning-rates",
        type=float,
        nargs="+",
        default=[0.03],
        help="(b): learning rates of the gradient solver to compare",
    )
    args = parser.parse_args()
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads, user_api="blas")
    if args.step:
        step, params = json.loads(args.step)
        step_b(step, params)
        return
    if args.part == "all":
        info = machine_info()
        print(
            f"{info['cpu']}, {info['cores']} cores, "
            f"{format_bytes(info['memory_bytes'])}, Python {info['python']}; "
            f"BLAS: {describe_blas(blas_info())}; load average "
            f"{os.getloadavg()[0]:.1f}"
        )
        for part in "abc":
            # A fresh process per part: no part's freed memory or thread
            # pools colour the next one's numbers.
            command = [sys.executable, __file__, "--part", part]
            if args.quick:
                command.append("--quick")
            command += ["--learning-rates", *map(str, args.learning_rates)]
            if args.blas_threads:
                command += ["--blas-threads", str(args.blas_threads)]
            subprocess.run(command, check=True, env=_child_environment())
        return
    PARTS[args.part](args)


if __name__ == "__main__":
    main()
