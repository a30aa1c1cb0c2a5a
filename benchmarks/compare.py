#!/usr/bin/env python
"""skcrossmodal next to scikit-learn, cca-zoo, mvlearn and pyrcca, fairly.

One invocation fits the same synthetic problems with

* skcrossmodal ``SharedProjection`` (this repository, current interpreter),
  twice: from the separate arrays a user has (``np.hstack`` inside the timed
  fit, its memory counted), and from one pre-stacked ``X``;
* scikit-learn ``cross_decomposition.CCA`` (current interpreter; two views);
* cca-zoo ``RidgeCCA`` (two views) / ``MCCA`` (three views) with its defaults,
  and ``MCCA(pca=False)`` (two and three views);
* mvlearn ``MCCA`` (two and three views);
* pyrcca ``CCA(kernelcca=False)`` (two and three views; it does not centre,
  so the centring a user must do is inside its timed fit);

and the floor: numpy's ``X.T @ X`` on the pre-stacked views (one symmetric
BLAS pass, the least an exact closed form must do).

Environments
------------
cca-zoo, mvlearn and pyrcca pin versions that clash with each other and with
this repository (mvlearn 0.5.0 fails on scikit-learn >= 1.6; pyrcca 0.2 calls
``scipy.linalg.eigh(eigvals=...)``, removed in scipy 1.14), so each runs in
its own virtual environment, created once from ``benchmarks/envs/<name>.txt``
(plus ``<name>.nodeps.txt``, installed with ``--no-deps``) under
``benchmarks/.venvs/`` and reused while those files are unchanged.

Measurement (what makes the comparison fair)
--------------------------------------------
* Same inputs: the data are generated from a seed by the numpy-only generator
  of ``_common.py`` (bit-identical in every environment) as separate C-ordered
  arrays, one per view; only the floor and skcrossmodal's pre-stacked variant
  get one stacked array, and they are reported apart.
* Same threads: every worker limits every BLAS it loaded to the same number
  of threads with threadpoolctl (``--blas-threads``; default: the cores this
  process may use). skcrossmodal then still narrows its own small dense
  solve to one thread, as it does for a user (DESIGN.md).
* Warm-up and repeats: each library's worker process generates the data,
  fits once untimed (imports, first-touch of memory, BLAS thread start-up),
  then the parent asks every worker for one timed fit per round, libraries in
  a rotating order (round-robin), for ``--repeats`` rounds (>= 3). Reported:
  min / median / max; ratios use medians.
* Settling (``--settle``, default 0): seconds of pause before every timed
  fit. OpenBLAS's worker threads spin for a while after each call before
  they sleep, so a fit started at once shares the cores with the previous
  library's spinning threads (another process): in one process on the
  2-core machine, ``X.T @ X`` at 200 000 x 300 took 0.34-0.40 s right
  after another BLAS library's call against 0.27-0.32 s after a pause. Yet
  runs of this script with ``--settle 0.5`` did not improve the ratios on
  that machine (docs/benchmarks.rst), so the default keeps the protocol of
  the published tables.
* Load: around every timed fit the worker reads ``/proc/stat`` and its own
  CPU time, and records the CPU that *other* processes used during the fit,
  in cores. A fit during which others used more than ``--busy-cores`` is
  rerun (at most ``--max-reruns`` times); the least-loaded attempt counts,
  and the load is printed with every number.
* Memory: the resident high-water mark during the warm-up fit (the first in
  its process) minus the resident set before it (``_common.PeakMemory``);
  later fits reuse pages the allocator kept.
* Held-out correlations are computed the same way for every library, from its
  fitted weights and means (scikit-learn: its ``transform``), on held-out
  rows from the same generator. A fit past the time budget or the memory cap
  is stopped and the library skips every larger problem.

Every library gets the same ridge. skcrossmodal adds ``reg * I`` to each
view's covariance (divided by n). cca-zoo blends
``(1 - c) * cov_{n-1} + c * I``, mvlearn ``(1 - r) * X'X + r * I`` and pyrcca
adds ``r * I`` to ``X'X``; these have the same solutions for
``c = reg * n / (n - 1 + reg * n)``, ``r = reg * n / (1 + reg * n)`` and
``r = reg * n``; a check on a small problem (printed first) shows the
held-out correlations agree. scikit-learn's CCA has no ridge: it runs
unregularised (NIPALS, tol 1e-6), and is checked against skcrossmodal with
``reg=0``.

Besides the shared-latent data, two variants exercise other input paths:
``offset`` (1e8 added to every column: skcrossmodal's shifted chunk-copy
path) and ``float32`` input.

Usage::

    python benchmarks/compare.py --quick          # ~1 minute once the envs exist
    python benchmarks/compare.py                  # all sizes (long)
    python benchmarks/compare.py --from-json F [F ...] --rst out.rst
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENV_SPECS = HERE / "envs"
VENVS = HERE / ".venvs"
RESULTS = HERE / "results"

# name -> where it runs (None: this interpreter), label, view counts, and
# whether it is timed from one pre-stacked X (the second table).
LIBRARIES = {
    "floor": {
        "env": None,
        "label": "floor: X.T @ X",
        "views": (2, 3),
        "stacked": True,
    },
    "skcrossmodal": {
        "env": None,
        "label": "skcrossmodal (hstack + fit)",
        "views": (2, 3),
        "stacked": False,
    },
    "skcrossmodal-stacked": {
        "env": None,
        "label": "skcrossmodal (pre-stacked X)",
        "views": (2, 3),
        "stacked": True,
    },
    "sklearn": {
        "env": None,
        "label": "scikit-learn CCA",
        "views": (2,),
        "stacked": False,
    },
    "cca-zoo": {
        "env": "cca-zoo",
        "label": "cca-zoo RidgeCCA/MCCA",
        "views": (2, 3),
        "stacked": False,
    },
    "cca-zoo-nopca": {
        "env": "cca-zoo",
        "label": "cca-zoo MCCA(pca=False)",
        "views": (2, 3),
        "stacked": False,
    },
    "mvlearn": {
        "env": "mvlearn",
        "label": "mvlearn MCCA",
        "views": (2, 3),
        "stacked": False,
    },
    "pyrcca": {
        "env": "pyrcca",
        "label": "pyrcca CCA",
        "views": (2, 3),
        "stacked": False,
    },
}
REFERENCE = "skcrossmodal"
OURS = ("skcrossmodal", "skcrossmodal-stacked")

FULL_GRID = {
    "n": [20_000, 200_000],
    "width": [100, 800],
    "k": [10, 50],
    "views": [2, 3],
    "variant": ["plain"],
}
QUICK_GRID = {
    "n": [20_000],
    "width": [100],
    "k": [10],
    "views": [2, 3],
    "variant": ["plain"],
}
# Input-path variants, added to every grid at its smallest n and width.
VARIANTS = ("offset", "float32")
CHECK_PROBLEM = {"n": 5_000, "width": 20, "k": 5, "n_test": 5_000}
CHECK_REG = 0.1


# =============================================================================
# Worker: runs inside a library's environment, one problem per process.
# =============================================================================


def _library_floor(spec):
    def fit(X):
        return X.T @ X

    return {"layout": "stacked", "fit": fit, "project": None, "version": "numpy"}


def _library_skcrossmodal(spec, stacked=False):
    import numpy as np
    from _common import block_slices

    import skcrossmodal
    from skcrossmodal import SharedProjection

    names = [f"m{i}" for i in range(spec["views"])]
    modalities = dict(zip(names, block_slices([spec["width"]] * spec["views"])))

    def fit(data):
        # From separate arrays, the stacking a user must do is part of the fit.
        X = data if stacked else np.hstack(data)
        return SharedProjection(
            n_components=spec["k"], modalities=modalities, reg=spec["reg"]
        ).fit(X)

    def project(model, views):
        return [(V - model.means_[m]) @ model.weights_[m] for m, V in zip(names, views)]

    return {
        "layout": "stacked" if stacked else "views",
        "fit": fit,
        "project": project,
        "version": getattr(skcrossmodal, "__version__", "?"),
        "model": f"SharedProjection(reg={spec['reg']:g}) from "
        f"{Path(skcrossmodal.__file__).parent}"
        + (", one stacked X" if stacked else ", np.hstack(views) timed"),
    }


def _library_skcrossmodal_stacked(spec):
    return _library_skcrossmodal(spec, stacked=True)


def _library_sklearn(spec):
    import sklearn
    from sklearn.cross_decomposition import CCA

    if spec["views"] != 2:
        raise NotImplementedError("scikit-learn's CCA takes two views only")

    def fit(views):
        # No ridge parameter: unregularised CCA by NIPALS (defaults max_iter=500,
        # tol=1e-06); scale=False because no other library standardises.
        return CCA(n_components=spec["k"], scale=False).fit(views[0], views[1])

    def project(model, views):
        return list(model.transform(views[0], views[1]))

    return {
        "layout": "views",
        "fit": fit,
        "project": project,
        "version": sklearn.__version__,
    }


def _library_cca_zoo(spec, pca=None):
    import importlib.metadata

    from cca_zoo.linear import MCCA, RidgeCCA

    n, reg = spec["n"], spec["reg"]
    # cca-zoo: (1 - c) * cov_{n-1} + c * I  is proportional to
    # cov_n + reg * I  for  c = reg * n / (n - 1 + reg * n).
    shrinkage = reg * n / (n - 1 + reg * n)
    if pca is None:
        model_class = RidgeCCA if spec["views"] == 2 else MCCA
        options = {}
    else:
        model_class, options = MCCA, {"pca": pca}

    def fit(views):
        return model_class(n_components=spec["k"], shrinkage=shrinkage, **options).fit(
            views
        )

    def project(model, views):
        return [(V - mu) @ W for V, mu, W in zip(views, model.means_, model.weights_)]

    described = ", ".join(
        [f"shrinkage={shrinkage:.6g}"] + [f"pca={pca}"] * bool(options)
    )
    return {
        "layout": "views",
        "fit": fit,
        "project": project,
        "version": importlib.metadata.version("cca-zoo"),
        "model": f"{model_class.__name__}({described})",
    }


def _library_cca_zoo_nopca(spec):
    return _library_cca_zoo(spec, pca=False)


def _library_mvlearn(spec):
    import mvlearn
    from mvlearn.embed import MCCA

    n, reg = spec["n"], spec["reg"]
    # mvlearn: (1 - r) * X'X + r * I  (X'X not divided by n) is proportional to
    # cov_n + reg * I  for  r = reg * n / (1 + reg * n).
    regs = reg * n / (1 + reg * n)

    def fit(views):
        return MCCA(n_components=spec["k"], regs=regs).fit(views)

    def project(model, views):
        return [(V - mu) @ W for V, mu, W in zip(views, model.means_, model.loadings_)]

    return {
        "layout": "views",
        "fit": fit,
        "project": project,
        "version": mvlearn.__version__,
        "model": f"MCCA(regs={regs:.6g})",
    }


def _library_pyrcca(spec):
    import importlib.metadata

    import rcca

    # pyrcca: X'X + r * I with the un-normalised X'X, so r = reg * n. It does
    # not centre: the centring a user must do is timed with the fit.
    ridge = spec["reg"] * spec["n"]

    def fit(views):
        means = [V.mean(axis=0) for V in views]
        model = rcca.CCA(
            reg=ridge, numCC=spec["k"], kernelcca=False, verbose=False
        ).train([V - mu for V, mu in zip(views, means)])
        model.means_ = means
        return model

    def project(model, views):
        return [(V - mu) @ W for V, mu, W in zip(views, model.means_, model.ws)]

    return {
        "layout": "views",
        "fit": fit,
        "project": project,
        "version": importlib.metadata.version("pyrcca"),
        "model": f"CCA(kernelcca=False, reg={ridge:.6g}) on centred views",
    }


_LIBRARY_SETUP = {
    "floor": _library_floor,
    "skcrossmodal": _library_skcrossmodal,
    "skcrossmodal-stacked": _library_skcrossmodal_stacked,
    "sklearn": _library_sklearn,
    "cca-zoo": _library_cca_zoo,
    "cca-zoo-nopca": _library_cca_zoo_nopca,
    "mvlearn": _library_mvlearn,
    "pyrcca": _library_pyrcca,
}


def _send(kind, payload):
    sys.stdout.write(f"{kind} " + json.dumps(payload) + "\n")
    sys.stdout.flush()


def worker_main():
    """Serve one problem: read the spec, then WARMUP / FIT / QUIT commands.

    Every answer is one stdout line ``<KIND> <json>``; ``FIT_START`` and
    ``FIT_DONE`` on stderr let the parent enforce the time budget.
    """
    sys.path.insert(0, str(HERE))
    spec = json.loads(sys.stdin.readline())
    try:
        state = _worker_setup(spec)
    except Exception as exc:  # reported, not raised: the parent prints why
        _send("ERROR", {"error": f"{type(exc).__name__}: {exc}"})
        return
    _send("READY", state["info"])
    for line in sys.stdin:
        command = line.strip()
        try:
            if command == "WARMUP":
                _send("DONE", {"seconds": _warmup(state)})
            elif command == "FIT":
                _send("DONE", _timed_fit(state, spec))
            elif command == "QUIT":
                _send("RESULT", _worker_finish(state, spec))
                return
        except Exception as exc:
            _send("ERROR", {"error": f"{type(exc).__name__}: {exc}"})
            return


def _problem_data(spec, layout, part=0, n=None):
    import numpy as np
    from _common import correlated_views

    return correlated_views(
        n or spec["n"],
        [spec["width"]] * spec["views"],
        spec["k"],
        seed=spec["seed"],
        part=part,
        layout=layout,
        dtype=np.float32 if spec.get("variant") == "float32" else np.float64,
        offset=1e8 if spec.get("variant") == "offset" else 0.0,
    )


def _worker_setup(spec):
    start = time.perf_counter()
    library = _LIBRARY_SETUP[spec["library"]](spec)
    import_seconds = time.perf_counter() - start
    if spec.get("blas_threads"):
        import scipy.linalg  # noqa: F401  (its BLAS loaded, so it is limited too)
        from threadpoolctl import threadpool_limits

        # Kept for the worker's life; applies to every BLAS loaded so far,
        # and the data generation below loads none that is not loaded yet.
        spec["_limits"] = threadpool_limits(limits=spec["blas_threads"])
    start = time.perf_counter()
    train = _problem_data(spec, library["layout"])
    generate_seconds = time.perf_counter() - start
    return {
        "library": library,
        "train": train,
        "model": None,
        "peak": 0,
        "peak_reset": True,
        "info": {
            "import_seconds": import_seconds,
            "generate_seconds": generate_seconds,
        },
    }


def _fit_once(state):
    state["model"] = None
    sys.stderr.write("FIT_START\n")
    sys.stderr.flush()
    start = time.perf_counter()
    state["model"] = state["library"]["fit"](state["train"])
    seconds = time.perf_counter() - start
    sys.stderr.write("FIT_DONE\n")
    sys.stderr.flush()
    return seconds


def _warmup(state):
    """The first fit, untimed in the tables; its peak memory is the one shown.

    After it the allocator keeps freed pages for the next fits, so the
    high-water mark of a later fit shows only what it touched anew.
    """
    from _common import PeakMemory

    with PeakMemory() as peak:
        seconds = _fit_once(state)
    state["peak"] = peak.bytes
    state["peak_reset"] = peak.reset_worked
    return seconds


def _timed_fit(state, spec):
    """One timed fit, rerun while other processes kept the machine busy."""
    from _common import cpu_snapshot, others_load

    attempts = []
    for _ in range(1 + spec["max_reruns"]):
        state["model"] = None
        # Let other processes' BLAS threads stop spinning (module docstring).
        time.sleep(spec.get("settle", 0.0))
        cpu_start = time.process_time()
        before = cpu_snapshot()
        seconds = _fit_once(state)
        after = cpu_snapshot()
        cpu_seconds = time.process_time() - cpu_start
        load = others_load(before, after)
        attempts.append(
            {"seconds": seconds, "cpu_seconds": cpu_seconds, "others_load": load}
        )
        if load is None or load <= spec["busy_cores"]:
            break
    best = min(
        attempts,
        key=lambda a: (a["others_load"] is None, a["others_load"] or 0.0),
    )
    return dict(best, attempts=len(attempts))


def _worker_finish(state, spec):
    import numpy as np
    import scipy
    from _common import blas_info, heldout_correlations

    library = state["library"]
    train = state["train"]
    out = dict(state["info"])
    out.update(
        peak_bytes=state["peak"],
        peak_reset=state["peak_reset"],
        data_bytes=sum(
            a.nbytes for a in (train if isinstance(train, list) else [train])
        ),
        version=library["version"],
        model=library.get("model"),
        numpy=np.__version__,
        scipy=scipy.__version__,
        blas=blas_info(),
    )
    try:
        import sklearn

        out["sklearn"] = sklearn.__version__
    except ImportError:
        out["sklearn"] = None
    if library["project"] is not None and state["model"] is not None:
        test = _problem_data(spec, "views", part=1, n=spec["n_test"])
        projections = [
            np.asarray(p, dtype=float) for p in library["project"](state["model"], test)
        ]
        out["heldout"] = heldout_correlations(projections).tolist()
        if spec.get("return_projections"):
            out["projections"] = [p.tolist() for p in projections]
    return out


# =============================================================================
# Parent: environments, process control, tables.
# =============================================================================


def _requirement_files(name):
    files = [ENV_SPECS / f"{name}.txt"]
    nodeps = ENV_SPECS / f"{name}.nodeps.txt"
    return files + ([nodeps] if nodeps.exists() else [])


def ensure_env(name, log):
    """Create (once) the venv of ``name``; return (python path, None) or (None, why)."""
    files = _requirement_files(name)
    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    for path in files:
        digest.update(path.read_bytes())
    stamp_value = digest.hexdigest()
    venv = VENVS / name
    python = venv / "bin" / "python"
    stamp = venv / ".requirements-sha256"
    install_log = venv.parent / f"{name}-install.log"
    if python.exists() and stamp.exists() and stamp.read_text() == stamp_value:
        return str(python), None

    log(f"creating the {name} environment in {venv} (once; log: {install_log}) ...")
    VENVS.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [base, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "-r", str(files[0])],
    ]
    if len(files) > 1:
        steps.append(
            [str(python), "-m", "pip", "install", "--no-deps", "-r", str(files[1])]
        )
    with open(install_log, "w") as handle:
        for command in steps:
            handle.write("$ " + " ".join(command) + "\n")
            handle.flush()
            done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                handle.close()
                tail = [
                    line.strip()
                    for line in install_log.read_text().splitlines()
                    if line.strip() and not line.startswith("WARNING")
                ][-3:]
                return None, f"environment install failed: {' | '.join(tail)}"
    stamp.write_text(stamp_value)
    return str(python), None


class Worker:
    """One library's worker process for one problem, driven by commands."""

    def __init__(self, python, spec, *, budget, memory_cap):
        from _common import rss_bytes

        self._rss = rss_bytes
        self.budget, self.memory_cap = budget, memory_cap
        env = dict(os.environ)
        # The repository root first: "skcrossmodal" is this checkout, not
        # whichever copy the interpreter has installed.
        env["PYTHONPATH"] = os.pathsep.join(
            [str(HERE), str(HERE.parent)]
            + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        self.process = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.fit_start = None
        self.stderr = []
        self.lines = []
        self.killed = None
        self.peak_rss = 0
        self._threads = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.info = self._ask(json.dumps(spec), ("READY",))

    def _read_stderr(self):
        for line in self.process.stderr:
            if line.startswith("FIT_START"):
                self.fit_start = time.monotonic()
            elif line.startswith("FIT_DONE"):
                self.fit_start = None
            else:
                self.stderr.append(line)

    def _read_stdout(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def _ask(self, command, kinds):
        """Send one command; wait for its answer, enforcing budget and cap."""
        if self.killed or self.process.poll() is not None:
            return {"ok": False, "killed": self.killed, "error": self._why()}
        count = len(self.lines)
        try:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        except OSError:
            return {"ok": False, "error": self._why()}
        started = time.monotonic()
        while len(self.lines) <= count:
            if self.process.poll() is not None and len(self.lines) <= count:
                time.sleep(0.2)
                if len(self.lines) <= count:
                    return {"ok": False, "error": self._why()}
            time.sleep(0.02)
            rss = self._rss(self.process.pid) or 0
            self.peak_rss = max(self.peak_rss, rss)
            fit_start = self.fit_start
            if rss > self.memory_cap:
                self.killed = "memory"
            elif fit_start is not None and time.monotonic() - fit_start > self.budget:
                self.killed = "budget"
            elif time.monotonic() - started > self.budget + 600:
                self.killed = "budget"  # stuck outside a fit (generating data)
            if self.killed:
                self.close()
                return {"ok": False, "killed": self.killed}
        kind, _, payload = self.lines[count].partition(" ")
        answer = json.loads(payload)
        if kind not in kinds:
            return {"ok": False, "error": answer.get("error", kind)}
        answer["ok"] = True
        return answer

    def _why(self):
        tail = "".join(self.stderr).strip().splitlines()[-3:]
        return f"worker exited with {self.process.poll()}: {' | '.join(tail)}"

    def warmup(self):
        return self._ask("WARMUP", ("DONE",))

    def fit(self):
        return self._ask("FIT", ("DONE",))

    def finish(self):
        result = self._ask("QUIT", ("RESULT",))
        self.close()
        return result

    def close(self):
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for thread in self._threads:
            thread.join(timeout=5)


def run_one(python, spec, *, budget, memory_cap):
    """Set up, warm up, one timed fit and the result, in one fresh worker.

    The result carries the timed fit under ``"fit"`` and the warm-up time.
    """
    worker = Worker(python, spec, budget=budget, memory_cap=memory_cap)
    if not worker.info.get("ok"):
        worker.close()
        return worker.info
    warm = worker.warmup()
    done = worker.fit() if warm.get("ok") else warm
    if not done.get("ok"):
        worker.close()
        return done
    result = worker.finish()
    result.update(fit=done, warmup_seconds=warm["seconds"])
    return result


def _dominates(small, large):
    # Same number of views and variant only.
    return (
        small["views"] == large["views"]
        and small.get("variant") == large.get("variant")
        and all(small[key] <= large[key] for key in ("n", "width", "k"))
    )


def problem_name(problem):
    widths = "+".join([str(problem["width"])] * problem["views"])
    variant = problem.get("variant", "plain")
    tail = "" if variant == "plain" else f" [{variant}]"
    return f"n={problem['n']:,} widths={widths} k={problem['k']}{tail}"


def _problems(args):
    grid = QUICK_GRID if args.quick else FULL_GRID
    grid = {key: getattr(args, key, None) or values for key, values in grid.items()}
    problems = [
        {"n": n, "width": w, "k": k, "views": m, "variant": "plain"}
        for m, n, w, k in itertools.product(
            sorted(grid["views"]),
            sorted(grid["n"]),
            sorted(grid["width"]),
            sorted(grid["k"]),
        )
        if k <= w
    ]
    if not args.no_variants:
        n, width, k = min(grid["n"]), min(grid["width"]), min(grid["k"])
        for variant in VARIANTS:
            problems.append(
                {"n": n, "width": width, "k": k, "views": 2, "variant": variant}
            )
    return problems


def run_benchmarks(args, log):
    machine = _machine()
    log(_describe_machine(machine))
    pythons, unavailable = {}, {}
    for name in args.libraries:
        env = LIBRARIES[name]["env"]
        if env is None:
            pythons[name] = sys.executable
            continue
        python, why = ensure_env(env, log)
        if python is None:
            unavailable[name] = why
        else:
            pythons[name] = python
    memory_cap = _memory_cap(args.memory_cap_gb)
    log(
        f"BLAS threads {args.blas_threads} in every library; one warm-up fit, then "
        f"{args.repeats} timed fits per library, round-robin"
        + (f", each after a {args.settle:g} s pause" if args.settle else "")
        + f"; a fit is rerun (at "
        f"most {args.max_reruns}x) when other processes used > {args.busy_cores:g} "
        f"cores; fit budget {args.budget:g} s; memory cap {memory_cap / 1e9:.1f} GB "
        f"per worker; ridge reg={args.reg:g} everywhere (scikit-learn CCA: none)."
    )
    common = {
        "blas_threads": args.blas_threads,
        "seed": args.seed,
        "busy_cores": args.busy_cores,
        "max_reruns": args.max_reruns,
        "settle": args.settle,
    }
    results = {
        "machine": machine,
        "command": args.command_line,
        "settings": {
            "budget_s": args.budget,
            "memory_cap_bytes": memory_cap,
            "repeats": args.repeats,
            "reg": args.reg,
            "seed": args.seed,
            "n_test": args.n_test,
            "blas_threads": args.blas_threads,
            "busy_cores": args.busy_cores,
            "max_reruns": args.max_reruns,
            "settle_s": args.settle,
            "warmup": 1,
        },
        "unavailable": unavailable,
        "environments": {},
        "check": None,
        "problems": [],
    }
    if not args.no_check:
        results["check"] = agreement_check(pythons, common, args, memory_cap, log)

    failed = {name: [] for name in pythons}
    for problem in _problems(args):
        log(f"\n== {problem_name(problem)} ==")
        entry = {"problem": problem, "runs": {}, "loadavg": [os.getloadavg()[0]]}
        pending = []
        for name in args.libraries:
            if problem["views"] not in LIBRARIES[name]["views"]:
                entry["runs"][name] = {"ok": False, "na": "two views only"}
                continue
            if name in unavailable:
                entry["runs"][name] = {"ok": False, "error": unavailable[name]}
                continue
            blocker = next(
                ((p, kind) for p, kind in failed[name] if _dominates(p, problem)), None
            )
            if blocker is not None:
                blocker, kind = blocker
                entry["runs"][name] = {
                    "ok": False,
                    "killed": kind,
                    "skipped_after": problem_name(blocker),
                }
                log(f"  {name:20s} skipped: > {kind} at {problem_name(blocker)}")
                continue
            pending.append(
                (
                    name,
                    dict(
                        problem,
                        library=name,
                        reg=args.reg,
                        n_test=args.n_test,
                        **common,
                    ),
                )
            )
        runs = _run_round_robin(pending, pythons, args, memory_cap, log)
        for name, run in runs.items():
            entry["runs"][name] = run
            if run.get("killed"):
                failed[name].append((problem, run["killed"]))
            if run.get("ok"):
                results["environments"].setdefault(
                    name,
                    {
                        "python": pythons[name],
                        "version": run["version"],
                        "numpy": run["numpy"],
                        "scipy": run["scipy"],
                        "sklearn": run["sklearn"],
                        "blas": run["blas"],
                    },
                )
        entry["loadavg"].append(os.getloadavg()[0])
        results["problems"].append(entry)
    return results


def _run_round_robin(pending, pythons, args, memory_cap, log):
    """Warm up every library, then one timed fit each per round, rotating.

    The workers of one problem live side by side when their data fit in
    memory together (each holds its own copy); otherwise each round starts a
    fresh worker per library (data generated and warmed up again).
    """
    from _common import available_memory_bytes

    if not pending:
        return {}
    problem = pending[0][1]
    itemsize = 4 if problem.get("variant") == "float32" else 8
    data_bytes = problem["n"] * problem["width"] * problem["views"] * itemsize
    available = available_memory_bytes() or 0
    together = data_bytes * 2.5 * len(pending) < 0.6 * available
    fits = {name: [] for name, _ in pending}
    warmups, final, workers, last = {}, {}, {}, {}
    if together:
        for name, spec in pending:
            worker = Worker(
                pythons[name], spec, budget=args.budget, memory_cap=memory_cap
            )
            warm = worker.warmup() if worker.info.get("ok") else worker.info
            if not warm.get("ok"):
                worker.close()
                final[name] = warm
                log("  " + _one_line(name, warm, args.budget))
            else:
                workers[name] = worker
                warmups[name] = warm["seconds"]
    order = [name for name, _ in pending if name not in final]
    specs = dict(pending)
    for round_index in range(args.repeats):
        shift = round_index % max(len(order), 1)
        for name in order[shift:] + order[:shift]:
            if name in final:
                continue
            if together:
                done = workers[name].fit()
            else:
                done = run_one(
                    pythons[name],
                    specs[name],
                    budget=args.budget,
                    memory_cap=memory_cap,
                )
                if done.get("ok"):
                    last[name] = done
                    warmups.setdefault(name, done["warmup_seconds"])
                    done = done["fit"]
            if not done.get("ok"):
                final[name] = done
                if name in workers:
                    workers[name].close()
                log("  " + _one_line(name, done, args.budget))
                continue
            fits[name].append(done)
    for name in order:
        if name in final:
            continue
        result = workers[name].finish() if together else last[name]
        if not result.get("ok"):
            final[name] = result
            continue
        timed = fits[name]
        times = [fit["seconds"] for fit in timed]
        result.update(
            seconds=statistics.median(times),
            times=times,
            loads=[fit.get("others_load") for fit in timed],
            attempts=[fit.get("attempts", 1) for fit in timed],
            cpu_seconds=statistics.median(fit["cpu_seconds"] for fit in timed),
            warmup_seconds=warmups.get(name),
            workers="one per library" if together else "fresh per round",
        )
        result.pop("fit", None)
        final[name] = result
        log("  " + _one_line(name, result, args.budget))
    return final


def agreement_check(pythons, common, args, memory_cap, log):
    """Fit one small problem everywhere; compare correlations and directions."""
    import numpy as np

    log(
        f"\nagreement check: n={CHECK_PROBLEM['n']:,}, widths {CHECK_PROBLEM['width']} "
        f"per view, k={CHECK_PROBLEM['k']}, reg={CHECK_REG} (0 for scikit-learn CCA)"
    )
    rows = []
    for views in (2, 3):
        base = dict(
            CHECK_PROBLEM,
            **common,
            views=views,
            return_projections=True,
            variant="plain",
        )
        references = {}
        for reg in (CHECK_REG, 0.0):
            if views == 3 and reg == 0.0:
                continue
            references[reg] = run_one(
                pythons[REFERENCE],
                dict(base, library=REFERENCE, reg=reg),
                budget=args.budget,
                memory_cap=memory_cap,
            )
        for name in args.libraries:
            if name in ("floor",) + OURS or name not in pythons:
                continue
            if views not in LIBRARIES[name]["views"]:
                continue
            reg = 0.0 if name == "sklearn" else CHECK_REG
            run = run_one(
                pythons[name],
                dict(base, library=name, reg=reg),
                budget=args.budget,
                memory_cap=memory_cap,
            )
            ref = references[reg]
            row = {"library": name, "views": views, "reg": reg}
            if run.get("ok") and ref.get("ok"):
                row["max_abs_diff_heldout"] = float(
                    np.max(np.abs(np.subtract(run["heldout"], ref["heldout"])))
                )
                # 1 - |corr| between the library's and skcrossmodal's held-out
                # projections, worst view and component: 0 = same directions.
                worst = 0.0
                for mine, theirs in zip(run["projections"], ref["projections"]):
                    a = np.asarray(mine) - np.mean(mine, axis=0)
                    b = np.asarray(theirs) - np.mean(theirs, axis=0)
                    cosine = np.abs(np.sum(a * b, axis=0)) / (
                        np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
                    )
                    worst = max(worst, float(np.max(1.0 - cosine)))
                row["direction_gap"] = worst
            else:
                row["error"] = run.get("error") or ref.get("error") or run.get("killed")
            rows.append(row)
            log("  " + _check_line(row))
    return rows


def _bytes(value):
    from _common import format_bytes

    return format_bytes(value)


def _machine():
    from _common import machine_info

    info = machine_info()
    info["loadavg_start"] = os.getloadavg()
    return info


def _describe_machine(machine):
    memory = machine.get("memory_bytes")
    return (
        f"machine: {machine['cpu']}, {machine['cores']} cores, "
        f"{(memory or 0) / 2**30:.0f} GiB, {machine['os']}, "
        f"Python {machine['python']}; "
        f"load average at start {machine['loadavg_start'][0]:.2f}"
        + (f"; BLAS env {machine['blas_env']}" if machine.get("blas_env") else "")
    )


def _memory_cap(requested_gb):
    from _common import available_memory_bytes

    cap = requested_gb * 1e9
    available = available_memory_bytes()
    if available is not None:
        cap = min(cap, available - 1e9)
    return cap


# -- report ----------------------------------------------------------------------


def _ratio(value, reference):
    if value is None or reference in (None, 0):
        return None
    return value / reference


def _fmt(value, digits=3, suffix=""):
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}{suffix}"
    return f"{value:.{digits}g}{suffix}"


def _check_line(row):
    label = f"{row['library']:8s} {row['views']} views reg={row['reg']:g}:"
    if "error" in row:
        return f"{label} could not run ({row['error']})"
    return (
        f"{label} max |held-out r - skcrossmodal's| = "
        f"{row['max_abs_diff_heldout']:.1e}, 1 - |cos| of projections = "
        f"{row['direction_gap']:.1e}"
    )


def _describe_blas(info):
    from _common import describe_blas

    return describe_blas(info)


def _one_line(name, run, budget):
    if run.get("ok"):
        mean_r = statistics.fmean(run["heldout"]) if run.get("heldout") else None
        corr = f" held-out r {mean_r:.4f}" if mean_r is not None else ""
        loads = [load for load in run.get("loads", []) if load is not None]
        load = f" others {max(loads):.2f} cores" if loads else ""
        times = run.get("times", [run.get("seconds", 0.0)])
        return (
            f"{name:20s} median {run['seconds']:8.3f} s (min {min(times):.3f}, max "
            f"{max(times):.3f}; warm-up {run.get('warmup_seconds') or 0:.3f}) peak "
            f"{_bytes(run['peak_bytes'])}{corr}{load}"
        )
    return f"{name:20s} {_status(run, budget)} {run.get('error') or ''}".rstrip()


def _status(run, budget):
    if run.get("na"):
        return "n/a"
    if run.get("killed") == "budget":
        return f"> {budget:g} s"
    if run.get("killed") == "memory":
        return "> memory cap"
    return "failed"


def table_rows(results):
    """One dict per (problem, library) with absolute values and ratios.

    ``floor_ratio``: median time over the floor's median. ``other_ratio``:
    median time over the fastest *other* library's median (the libraries
    that are neither skcrossmodal nor the floor) on the same problem.
    """
    budget = results["settings"]["budget_s"]
    rows = []
    for entry in results["problems"]:
        runs = entry["runs"]
        ref = runs.get(REFERENCE, {})
        floor = runs.get("floor", {})
        floor_time = floor.get("seconds") if floor.get("ok") else None
        ref_r = (
            statistics.fmean(ref["heldout"])
            if ref.get("ok") and ref.get("heldout")
            else None
        )
        others = [
            (run["seconds"], name)
            for name, run in runs.items()
            if name not in OURS + ("floor",) and run.get("ok")
        ]
        fastest_other = min(others) if others else None
        for name in [name for name in LIBRARIES if name in runs]:
            run = runs[name]
            row = {
                "problem": problem_name(entry["problem"]),
                "library": name,
                "label": LIBRARIES[name]["label"],
                "stacked": LIBRARIES[name]["stacked"],
                "status": None,
            }
            if run.get("ok"):
                mean_r = (
                    statistics.fmean(run["heldout"]) if run.get("heldout") else None
                )
                times = run["times"]
                loads = [load for load in run.get("loads", []) if load is not None]
                row.update(
                    seconds=run["seconds"],
                    min=min(times),
                    max=max(times),
                    runs=len(times),
                    reruns=sum(run.get("attempts", [1])) - len(times),
                    load=max(loads) if loads else None,
                    peak=run["peak_bytes"],
                    mean_r=mean_r,
                    floor_ratio=_ratio(run["seconds"], floor_time),
                    other_ratio=(
                        _ratio(run["seconds"], fastest_other[0])
                        if fastest_other and name != fastest_other[1]
                        else None
                    ),
                    fastest_other=fastest_other[1] if fastest_other else None,
                    r_ratio=_ratio(mean_r, ref_r),
                )
            else:
                row["status"] = _status(run, budget)
                row["why"] = (
                    run.get("na")
                    or run.get("error")
                    or (
                        f"after {run['skipped_after']}"
                        if run.get("skipped_after")
                        else None
                    )
                )
            rows.append(row)
    return rows


def _conditions(results):
    settings = results["settings"]
    machine = results["machine"]
    loads = [
        load
        for entry in results["problems"]
        for run in entry["runs"].values()
        for load in run.get("loads", []) or []
        if load is not None
    ]
    averages = [value for entry in results["problems"] for value in entry["loadavg"]]
    text = (
        f"BLAS threads: {settings['blas_threads']} in every library (threadpoolctl); "
        f"warm-up: {settings['warmup']} untimed fit per library and problem; "
        f"repeats: {settings['repeats']} timed fits per library, round-robin "
        "(rotating order)"
        + (
            f", each after a {settings['settle_s']:g} s pause"
            if settings.get("settle_s")
            else ""
        )
        + f"; a fit was rerun (at most {settings['max_reruns']}x) when "
        f"other processes used more than {settings['busy_cores']:g} cores during it. "
        f"Other processes' CPU during the timed fits: "
    )
    if loads:
        text += (
            f"median {statistics.median(loads):.2f}, max {max(loads):.2f} cores "
            f"(of {machine['cores']}); "
        )
    else:
        text += "not measured; "
    if averages:
        text += f"load average {min(averages):.1f} to {max(averages):.1f}."
    return text


def print_report(results, out=sys.stdout):
    write = out.write
    write("\n" + "=" * 100 + "\n")
    write(_describe_machine(results["machine"]) + "\n")
    write(f"command: {results['command']}\n")
    settings = results["settings"]
    write(
        f"ridge reg={settings['reg']:g} on cov/n in every library (converted to "
        "cca-zoo's shrinkage, mvlearn's regs, pyrcca's reg; scikit-learn CCA has no "
        f"ridge); held-out rows: {settings['n_test']:,}; fit budget "
        f"{settings['budget_s']:g} s; memory cap "
        f"{settings['memory_cap_bytes'] / 1e9:.1f} GB.\n"
    )
    write(_conditions(results) + "\n")
    for name, env in results["environments"].items():
        write(
            f"env {name:20s} {env['version']:>8s}  numpy {env['numpy']} scipy "
            f"{env['scipy']} scikit-learn {env['sklearn']}  BLAS: "
            f"{_describe_blas(env['blas'])}\n"
        )
    models = {}
    for entry in results["problems"]:
        for name, run in entry["runs"].items():
            if run.get("model"):
                models.setdefault(name, set()).add(run["model"])
    for name, used in models.items():
        write(f"    {name:20s} {'; '.join(sorted(used))}\n")
    for name, why in results["unavailable"].items():
        write(f"env {name:20s} CANNOT RUN: {why}\n")
    if results.get("check"):
        write("\nagreement check (small problem, see docstring):\n")
        for row in results["check"]:
            write("  " + _check_line(row) + "\n")

    header = (
        f"{'library':30s} {'median s':>9s} {'min':>8s} {'max':>8s} {'x floor':>8s} "
        f"{'x best other':>12s} {'peak mem':>9s} {'held-out r':>10s} "
        f"{'others cores':>12s} {'reruns':>6s}"
    )
    for stacked, title in (
        (False, "TABLE 1: from separate arrays (what a user has)"),
        (True, "TABLE 2: from one pre-stacked X (libraries that take one)"),
    ):
        write(f"\n{title}\n")
        current = None
        for row in table_rows(results):
            if row["stacked"] != stacked and row["library"] != "floor":
                continue
            if row["problem"] != current:
                current = row["problem"]
                write(f"\n{current}\n{header}\n")
            if row["status"] is None:
                mean_r = "-" if row["mean_r"] is None else f"{row['mean_r']:.4f}"
                load = "-" if row["load"] is None else f"{row['load']:.2f}"
                write(
                    f"{row['label']:30s} {row['seconds']:9.4f} {row['min']:8.4f} "
                    f"{row['max']:8.4f} {_fmt(row['floor_ratio']):>8s} "
                    f"{_fmt(row['other_ratio']):>12s} {_bytes(row['peak']):>9s} "
                    f"{mean_r:>10s} {load:>12s} {row['reruns']:6d}\n"
                )
            else:
                why = f"  ({row['why']})" if row.get("why") else ""
                write(f"{row['label']:30s} {row['status']:>9s}{why}\n")
    slower = not_fastest(results)
    write("\n")
    if slower:
        write(
            "problems where skcrossmodal (from separate arrays) is NOT the fastest:\n"
        )
        for problem, name, ratio in slower:
            write(f"  {problem}: {name} takes {ratio:.2f}x skcrossmodal's time\n")
    else:
        write(
            "skcrossmodal (from separate arrays) was the fastest library on every "
            "problem that ran.\n"
        )


def not_fastest(results):
    found = []
    for row in table_rows(results):
        if row["library"] != REFERENCE or row["status"] is not None:
            continue
        if row["other_ratio"] is not None and row["other_ratio"] > 1.0:
            found.append(
                (row["problem"], row["fastest_other"], 1.0 / row["other_ratio"])
            )
    return found


def rst_table(results):
    """RST list-tables for docs/benchmarks.rst: time and memory per problem."""
    rows = table_rows(results)
    problems = []
    for row in rows:
        if row["problem"] not in problems:
            problems.append(row["problem"])
    out = []
    for stacked, title in (
        (False, "from separate arrays (skcrossmodal's np.hstack timed)"),
        (True, "from one pre-stacked X"),
    ):
        lines = [
            f".. list-table:: fit time {title}: median s [min-max], "
            "x floor, x fastest other library",
            "   :header-rows: 1",
            "",
            "   * - problem",
            "     - library",
            "     - median s [min - max]",
            "     - x floor",
            "     - x fastest other",
            "     - peak memory",
            "     - others' CPU (cores, max)",
        ]
        for problem in problems:
            for row in rows:
                if row["problem"] != problem:
                    continue
                if row["stacked"] != stacked and row["library"] != "floor":
                    continue
                lines.append(f"   * - {problem}")
                lines.append(f"     - {row['label']}")
                if row["status"] is None:
                    lines.append(
                        f"     - {row['seconds']:.3g} "
                        f"[{row['min']:.3g} - {row['max']:.3g}]"
                    )
                    lines.append(f"     - {_fmt(row['floor_ratio'])}")
                    lines.append(f"     - {_fmt(row['other_ratio'])}")
                    lines.append(f"     - {_bytes(row['peak'])}")
                    lines.append(
                        "     - -"
                        if row["load"] is None
                        else f"     - {row['load']:.2f}"
                    )
                else:
                    why = f" ({row['why']})" if row.get("why") else ""
                    lines.append(f"     - {row['status']}{why}")
                    lines.extend(["     -"] * 4)
        out.append("\n".join(lines))
    deviations = [
        abs(row["r_ratio"] - 1.0) for row in rows if row.get("r_ratio") is not None
    ]
    if deviations:
        out.append(
            "Held-out canonical correlations (mean over the k components) of every "
            "library that ran are within a factor "
            f"1 +/- {max(deviations):.1e} of skcrossmodal's."
        )
    out.append(_conditions(results))
    return "\n\n".join(out) + "\n"


def plot_results(results, path, title=None):
    """Fit time and peak memory per problem and library (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    problems = [
        f"n={e['problem']['n']:,}\n"
        + "+".join([str(e["problem"]["width"])] * e["problem"]["views"])
        + f"\nk={e['problem']['k']}"
        + (
            f"\n[{e['problem']['variant']}]"
            if e["problem"].get("variant", "plain") != "plain"
            else ""
        )
        for e in results["problems"]
    ]
    names = [n for n in LIBRARIES if any(n in e["runs"] for e in results["problems"])]
    budget = results["settings"]["budget_s"]
    cap_mb = results["settings"]["memory_cap_bytes"] / 1e6
    fig, axes = plt.subplots(2, 1, figsize=(max(10, 0.95 * len(problems) + 3), 10))
    width = 0.8 / max(len(names), 1)
    positions = np.arange(len(problems))
    for panel, (ax, key, label) in enumerate(
        zip(axes, ("seconds", "peak_bytes"), ("fit time (s)", "peak memory (MB)"))
    ):
        for i, name in enumerate(names):
            values, hatched = [], []
            for entry in results["problems"]:
                run = entry["runs"].get(name, {})
                if run.get("skipped_after"):
                    values.append(np.nan)
                    hatched.append(False)
                elif run.get("ok"):
                    value = run[key] if key == "seconds" else run[key] / 1e6
                    values.append(max(value, 1e-3))
                    hatched.append(False)
                elif run.get("killed") == "budget" and key == "seconds":
                    values.append(budget)
                    hatched.append(True)
                elif run.get("killed") == "memory" and key == "peak_bytes":
                    values.append(cap_mb)
                    hatched.append(True)
                else:
                    values.append(np.nan)
                    hatched.append(False)
            bars = ax.bar(
                positions + (i - (len(names) - 1) / 2) * width,
                values,
                width,
                label=LIBRARIES[name]["label"],
            )
            for bar, hatch in zip(bars, hatched):
                if hatch:
                    bar.set_hatch("//")
                    bar.set_alpha(0.45)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.set_xticks(positions)
        ax.set_xticklabels(problems, fontsize=7)
        ax.grid(axis="y", alpha=0.3)
        for boundary in positions[:-1] + 0.5:
            ax.axvline(boundary, color="0.85", linewidth=0.6)
        if panel == 0:
            ax.set_title(
                (title + "\n" if title else "")
                + f"hatched: stopped at the {budget:g} s budget or the "
                f"{cap_mb / 1e3:.0f} GB memory cap; missing: not applicable or "
                "skipped after a smaller problem was stopped",
                fontsize=9,
            )
            ax.legend(
                fontsize=8,
                ncol=min(len(names), 4),
                loc="lower center",
                bbox_to_anchor=(0.5, 1.12),
                frameon=False,
            )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def merge_results(runs):
    """Saved runs reported as one: the first run's machine, settings and
    agreement check, every run's problems, environments and command."""
    merged = dict(runs[0])
    merged["problems"] = [problem for run in runs for problem in run["problems"]]
    merged["environments"] = {}
    for run in runs:
        for name, environment in run.get("environments", {}).items():
            merged["environments"].setdefault(name, environment)
    merged["command"] = "\n         ".join(run["command"] for run in runs)
    return merged


def _plot_anywhere(results_path, plot_path, log):
    """Plot here if matplotlib imports, else in a benchmark venv that has it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        for name in ("mvlearn", "cca-zoo"):
            python = VENVS / name / "bin" / "python"
            if not python.exists():
                continue
            done = subprocess.run(
                [
                    str(python),
                    str(Path(__file__).resolve()),
                    "--from-json",
                    str(results_path),
                    "--plot",
                    str(plot_path),
                    "--no-report",
                ],
                capture_output=True,
                text=True,
            )
            if done.returncode == 0:
                log(f"plot written to {plot_path} (with {python})")
                return
        log("no matplotlib here or in the benchmark environments: no plot")
        return
    plot_results(json.loads(Path(results_path).read_text()), plot_path)
    log(f"plot written to {plot_path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="n=20,000, width 100, k=10, two and three views, plus the variants",
    )
    parser.add_argument("--n", type=int, nargs="+", help="override the grid's n")
    parser.add_argument("--width", type=int, nargs="+", help="per-view widths")
    parser.add_argument("--k", type=int, nargs="+", help="n_components values")
    parser.add_argument("--views", type=int, nargs="+", help="numbers of views")
    parser.add_argument(
        "--libraries", nargs="+", default=list(LIBRARIES), choices=list(LIBRARIES)
    )
    parser.add_argument("--reg", type=float, default=1e-3, help="ridge on cov/n")
    parser.add_argument(
        "--budget", type=float, help="seconds per fit (default 120; quick 20)"
    )
    parser.add_argument("--memory-cap-gb", type=float, default=12.0)
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed fits per library (>= 3)"
    )
    parser.add_argument(
        "--busy-cores",
        type=float,
        default=0.5,
        help="rerun a fit during which other processes used more CPU than this",
    )
    parser.add_argument("--max-reruns", type=int, default=2)
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="seconds of pause before every timed fit, for other processes' "
        "BLAS threads to stop spinning (default 0: none)",
    )
    parser.add_argument(
        "--no-variants",
        action="store_true",
        help="leave out the offset (1e8) and float32 problems",
    )
    parser.add_argument("--n-test", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--blas-threads",
        type=int,
        help="BLAS threads in every library (threadpoolctl; default: the cores "
        "this process may use)",
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip the agreement check"
    )
    parser.add_argument(
        "--json", help="write results here (default benchmarks/results/)"
    )
    parser.add_argument(
        "--from-json",
        nargs="+",
        help="report/plot saved results, run nothing; several files (runs of "
        "different problems) are reported as one, with every run's command",
    )
    parser.add_argument("--plot", help="write the figure here (PNG)")
    parser.add_argument("--title", help="first line of the figure's title")
    parser.add_argument("--rst", help="write the RST results table here")
    parser.add_argument("--no-report", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main()
        return 0

    sys.path.insert(0, str(HERE))

    def log(message):
        print(message, flush=True)

    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (min / median / max of 3 or more)")
    if args.blas_threads is None:
        from _common import machine_info

        args.blas_threads = machine_info()["cores"]
    if args.from_json:
        results_path = Path(args.from_json[0])
        results = merge_results(
            [json.loads(Path(path).read_text()) for path in args.from_json]
        )
    else:
        if args.budget is None:
            args.budget = 20.0 if args.quick else 120.0
        if REFERENCE not in args.libraries:
            args.libraries.insert(0, REFERENCE)
        if "floor" not in args.libraries:
            args.libraries.insert(0, "floor")
        args.command_line = "python benchmarks/compare.py " + " ".join(
            sys.argv[1:] if argv is None else argv
        )
        start = time.monotonic()
        results = run_benchmarks(args, log)
        results["wall_seconds"] = time.monotonic() - start
        results["machine"]["loadavg_end"] = os.getloadavg()
        RESULTS.mkdir(exist_ok=True)
        results_path = Path(
            args.json or RESULTS / f"compare-{'quick' if args.quick else 'full'}.json"
        )
        results_path.write_text(json.dumps(results, indent=1))
        log(f"\nresults: {results_path} (wall time {results['wall_seconds']:.0f} s)")
    if not args.no_report:
        print_report(results)
    if args.rst:
        Path(args.rst).write_text(rst_table(results))
    if args.plot:
        if args.from_json:
            plot_results(results, args.plot, title=args.title)
        else:
            _plot_anywhere(results_path, args.plot, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
