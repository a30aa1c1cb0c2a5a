"""Shared helpers for the benchmarks: data, timing, peak memory, BLAS info.

This module must import with numpy alone (plus threadpoolctl when it is
there): ``compare.py`` runs it inside each library's own virtual environment,
so that every library sees exactly the same synthetic data.

Timing
------
``time_repeats`` runs a callable, and repeats it (median of 3 by default) only
when one run is cheap: a fit of a minute is timed once, and the report says
how many runs each number is the median of.

Peak memory
-----------
``PeakMemory`` measures the extra resident memory a block of code needs: the
process's resident-set high-water mark (``VmHWM``) during the block, minus the
resident set just before it. ``tracemalloc`` would miss most of it: it sees
only allocations made through Python's allocator, not BLAS/LAPACK work
buffers, OpenBLAS thread buffers or memory that compiled extensions allocate
with ``malloc`` directly. The high-water mark counts every page the process
touched. Before the block the mark is reset (writing ``5`` to
``/proc/self/clear_refs``, Linux >= 4.0), so the peak of earlier work, such
as generating the data, does not hide the block's own peak. Where the reset is
not allowed the class falls back to ``resource.getrusage().ru_maxrss``, which
is only right when the block's peak is the highest of the process so far
(``reset_worked`` then says False). Run each measured fit in a fresh process:
freed memory that the allocator keeps is then not reused silently from an
earlier fit.
"""

from __future__ import annotations

import gc
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np

# Rows generated at a time: keeps the generator's temporaries small next to
# the data, so generating 4 GB of data does not need 8 GB.
_GENERATION_CHUNK = 8192


# -- synthetic data ------------------------------------------------------------


def correlated_views_parameters(widths, n_latent, seed):
    """Loadings, latent scales and means of ``correlated_views`` data."""
    rng = np.random.default_rng([seed, 0])
    # Latent strengths fall geometrically, so the canonical correlations are
    # distinct (about 0.95 down to 0.2 for unit noise) and every library's
    # components can be compared one by one.
    strengths = np.geomspace(3.0, 0.3, n_latent) if n_latent > 1 else np.ones(1)
    loadings = [
        rng.standard_normal((n_latent, width)) / np.sqrt(n_latent) for width in widths
    ]
    means = [rng.normal(scale=2.0, size=width) for width in widths]
    return strengths, loadings, means


def correlated_views(
    n_samples,
    widths,
    n_latent,
    *,
    seed=0,
    part=0,
    layout="stacked",
    dtype=np.float64,
    offset=0.0,
):
    """Views that share ``n_latent`` latent signals, plus unit Gaussian noise.

    Row block ``c`` of part ``part`` is drawn from its own generator
    ``default_rng([seed, 1 + part, c])``, so the same arguments give the same
    numbers in any environment and in either layout; use another ``part`` for
    held-out rows.

    Parameters
    ----------
    n_samples : int
    widths : sequence of int
        Width of each view.
    n_latent : int
        Number of shared latent signals.
    seed, part : int
    layout : {"stacked", "views"}
        ``"stacked"``: one C-ordered (n_samples, sum(widths)) array, the views
        side by side. ``"views"``: a list of C-ordered arrays, one per view.
    dtype : numpy dtype
    offset : float
        Added to every column (on top of its mean, which is of order 1):
        ``1e8`` makes every mean ~1e8 standard deviations from zero, which
        sends skcrossmodal's accumulator down its shifted (chunk-copy) path.

    Returns
    -------
    ndarray or list of ndarray
    """
    strengths, loadings, means = correlated_views_parameters(widths, n_latent, seed)
    edges = np.concatenate([[0], np.cumsum(widths)])
    if layout == "stacked":
        out = np.empty((n_samples, edges[-1]), dtype=dtype)
        targets = [out[:, a:b] for a, b in zip(edges[:-1], edges[1:])]
    elif layout == "views":
        out = [np.empty((n_samples, width), dtype=dtype) for width in widths]
        targets = out
    else:
        raise ValueError(f"layout must be 'stacked' or 'views', got {layout!r}.")
    for chunk, start in enumerate(range(0, n_samples, _GENERATION_CHUNK)):
        stop = min(start + _GENERATION_CHUNK, n_samples)
        rng = np.random.default_rng([seed, 1 + part, chunk])
        latent = rng.standard_normal((stop - start, n_latent)) * strengths
        for target, loading, mean in zip(targets, loadings, means):
            block = rng.standard_normal((stop - start, loading.shape[1]))
            block += latent @ loading
            block += mean
            if offset:
                block += offset
            target[start:stop] = block
    return out


def block_slices(widths):
    """``[slice(0, w0), slice(w0, w0 + w1), ...]``."""
    edges = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def heldout_correlations(projections):
    """Per-component held-out canonical correlation of several projections.

    For each component, the Pearson correlation between the projections of
    each pair of views, averaged over the pairs (for two views: the
    correlation itself). This is the one way every library's result is scored.

    Parameters
    ----------
    projections : list of ndarray of shape (n_samples, n_components)

    Returns
    -------
    ndarray of shape (n_components,)
    """
    standardised = []
    for projection in projections:
        centred = projection - projection.mean(axis=0)
        norms = np.linalg.norm(centred, axis=0)
        standardised.append(centred / np.where(norms > 0, norms, 1.0))
    pairs = [
        np.sum(standardised[a] * standardised[b], axis=0)
        for a in range(len(standardised))
        for b in range(a + 1, len(standardised))
    ]
    return np.mean(pairs, axis=0)


# -- timing --------------------------------------------------------------------


def time_repeats(function, *, repeats=3, cheap_seconds=5.0, before_each=None):
    """Median wall time of ``function()``, repeated only while it is cheap.

    The first run is always timed. When it took less than ``cheap_seconds``,
    the function runs ``repeats - 1`` more times and the median is returned.

    Parameters
    ----------
    function : callable
    repeats : int, default=3
    cheap_seconds : float, default=5.0
    before_each : callable or None
        Called (untimed) before every run, e.g. to reset a memory mark.

    Returns
    -------
    median : float
    times : list of float
    """
    times = []
    while True:
        if before_each is not None:
            before_each()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
        if len(times) >= repeats or times[0] >= cheap_seconds:
            return statistics.median(times), times


def run_times(function, repeats):
    """Wall time of each of ``repeats`` runs of ``function()``, every run timed."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


# -- load of other processes -------------------------------------------------------


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_snapshot():
    """(machine busy CPU seconds, this process's CPU seconds, wall), or None.

    From ``/proc/stat`` (every core's user + nice + system + irq + softirq +
    steal time) and ``/proc/self/stat`` (this process's user + system time,
    all its threads); Linux only, in clock ticks (10 ms).
    """
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
        with open("/proc/self/stat") as own:
            own_fields = own.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None
    busy = sum(fields[:3]) + sum(fields[5:8])
    own_ticks = int(own_fields[11]) + int(own_fields[12])
    return busy / _TICKS, own_ticks / _TICKS, time.perf_counter()


def others_load(before, after):
    """Cores' worth of CPU used by *other* processes between two snapshots.

    The machine's busy time minus this process's own CPU time, divided by
    the wall time: 0.0 on an idle machine, 1.0 when other processes kept one
    core busy the whole time. None where /proc is not available. Clock ticks
    are 10 ms, so for a fit of a few tens of milliseconds this is coarse.
    """
    if before is None or after is None:
        return None
    wall = after[2] - before[2]
    if wall <= 0:
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(others, 0.0) / wall


# -- memory ----------------------------------------------------------------------


def _status_kib(field, pid="self"):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes(pid="self"):
    """Current resident set of a process (Linux), or None."""
    value = _status_kib("VmRSS", pid)
    return None if value is None else value * 1024


def available_memory_bytes():
    """``MemAvailable`` from /proc/meminfo, or None."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_rss():
    """Reset this process's resident high-water mark; True if it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def _peak_rss_bytes():
    value = _status_kib("VmHWM")
    if value is not None:
        return value * 1024
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class PeakMemory:
    """Extra resident memory needed by a block of code, in bytes.

    >>> with PeakMemory() as peak:
    ...     _ = np.ones((1000, 1000)).sum()
    >>> peak.bytes >= 0
    True

    See the module docstring for why the resident high-water mark, and not
    tracemalloc, is measured.
    """

    def __enter__(self):
        gc.collect()
        self.reset_worked = reset_peak_rss()
        self.baseline = rss_bytes() or 0
        if not self.reset_worked:
            self.baseline = max(self.baseline, _peak_rss_bytes())
        self.bytes = None
        return self

    def __exit__(self, *exc_info):
        self.bytes = max(_peak_rss_bytes() - self.baseline, 0)
        return False


# -- environment -------------------------------------------------------------------


def blas_info():
    """The BLAS/OpenMP libraries loaded in this process (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl is not installed in this environment"}]
    keys = ("user_api", "internal_api", "version", "num_threads", "architecture")
    found = []
    for pool in threadpool_info():
        entry = {key: pool.get(key) for key in keys}
        entry["library"] = os.path.basename(pool.get("filepath") or "")
        found.append(entry)
    return found


def describe_blas(info):
    """One line: ``openblas 0.3.30 (Haswell, 2 threads) [libscipy_openblas...]``."""
    parts = []
    for pool in info:
        if "error" in pool:
            parts.append(pool["error"])
            continue
        detail = ", ".join(
            str(value)
            for value in (pool.get("architecture"), f"{pool.get('num_threads')} thr")
            if value is not None
        )
        parts.append(
            f"{pool.get('internal_api')} {pool.get('version')} ({detail}) "
            f"[{pool.get('library')}]"
        )
    return "; ".join(parts) or "none loaded"


def machine_info():
    """CPU model, core count, memory and OS of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    total = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    affinity = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    )
    return {
        "cpu": cpu,
        "cores": affinity or os.cpu_count(),
        "memory_bytes": total,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "blas_env": {
            key: os.environ[key]
            for key in (
                "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE",
                "OPENBLAS_NUM_THREADS",
                "OMP_NUM_THREADS",
                "MKL_NUM_THREADS",
            )
            if key in os.environ
        },
    }


def format_bytes(value):
    if value is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f} B"
