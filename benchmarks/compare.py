#!/usr/bin/env python
"""skcrossmodal next to scikit-learn, cca-zoo and mvlearn, on the same problems.

One invocation fits the same synthetic problems with

* skcrossmodal ``SharedProjection`` (this repository, current interpreter);
* scikit-learn ``cross_decomposition.CCA`` (current interpreter; two views);
* cca-zoo ``RidgeCCA`` (two views) and ``MCCA`` (three views);
* mvlearn ``MCCA`` (two and three views);

and prints, for each problem, each library's fit time, peak memory and
held-out canonical correlations as ratios to skcrossmodal, and the fit time as
a multiple of the Gram-matrix floor (numpy's ``X.T @ X`` on the stacked views:
one symmetric BLAS pass, the least an exact closed form must do).

Environments
------------
cca-zoo and mvlearn pin versions that clash with each other and with this
repository (mvlearn 0.5.0 fails on scikit-learn >= 1.6), so each runs in its
own virtual environment, created once from ``benchmarks/envs/<name>.txt``
(plus ``<name>.nodeps.txt``, installed with ``--no-deps``) under
``benchmarks/.venvs/`` and reused while those files are unchanged. A library
whose environment or import fails is reported with the reason.

Measurement
-----------
Every fit runs in a fresh worker process (this file with ``--worker``, in the
library's environment). The worker generates the data from a seed with the
numpy-only generator in ``_common.py`` (same numbers in every environment),
then times the fit: the median of 3 runs when one run takes under 5 s, else one
run. Peak memory is the resident high-water mark during the fit minus the
resident set before it (``_common.PeakMemory`` explains why not tracemalloc).
Held-out correlations are computed the same way for every library, from its
fitted weights and means (scikit-learn: its ``transform``), on held-out rows
from the same generator. A fit that runs past the time budget or the memory cap
is stopped, shown as ``> budget`` / ``> memory``, and the library skips every
larger problem.

Every library gets the same ridge. skcrossmodal adds ``reg * I`` to each
view's covariance (divided by n). cca-zoo blends
``(1 - c) * cov_{n-1} + c * I`` and mvlearn ``(1 - r) * X'X + r * I``, which
have the same solutions for ``c = reg * n / (n - 1 + reg * n)`` and
``r = reg * n / (1 + reg * n)``; a check on a small problem (printed first)
shows the held-out correlations agree to ~1e-12. scikit-learn's CCA has no
ridge: it runs unregularised (NIPALS, tol 1e-6), and is checked against
skcrossmodal with ``reg=0``.

Usage::

    python benchmarks/compare.py --quick          # < 2 minutes once the envs exist
    python benchmarks/compare.py                  # all sizes (tens of minutes)
    python benchmarks/compare.py --from-json F --plot docs/_static/benchmarks.png
"""

from __future__ import annotations

import argparse
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

# name -> where it runs (None: this interpreter), what it fits, view counts.
LIBRARIES = {
    "floor": {"env": None, "label": "floor: X.T @ X", "views": (2, 3)},
    "skcrossmodal": {
        "env": None,
        "label": "skcrossmodal SharedProjection",
        "views": (2, 3),
    },
    "sklearn": {"env": None, "label": "scikit-learn CCA", "views": (2,)},
    "cca-zoo": {"env": "cca-zoo", "label": "cca-zoo RidgeCCA/MCCA", "views": (2, 3)},
    "mvlearn": {"env": "mvlearn", "label": "mvlearn MCCA", "views": (2, 3)},
}
REFERENCE = "skcrossmodal"

FULL_GRID = {
    "n": [20_000, 200_000],
    "width": [100, 800],
    "k": [10, 50],
    "views": [2, 3],
}
QUICK_GRID = {"n": [20_000], "width": [100], "k": [10], "views": [2, 3]}
CHECK_PROBLEM = {"n": 5_000, "width": 20, "k": 5, "n_test": 5_000}
CHECK_REG = 0.1


# =============================================================================
# Worker: runs inside a library's environment, one fit problem per process.
# =============================================================================


def _library_floor(spec):
    def fit(X):
        return X.T @ X

    return {"layout": "stacked", "fit": fit, "project": None, "version": "numpy"}


def _library_skcrossmodal(spec):
    from _common import block_slices

    import skcrossmodal
    from skcrossmodal import SharedProjection

    names = [f"m{i}" for i in range(spec["views"])]
    modalities = dict(zip(names, block_slices([spec["width"]] * spec["views"])))

    def fit(X):
        return SharedProjection(
            n_components=spec["k"], modalities=modalities, reg=spec["reg"]
        ).fit(X)

    def project(model, views):
        return [(V - model.means_[m]) @ model.weights_[m] for m, V in zip(names, views)]

    return {
        "layout": "stacked",
        "fit": fit,
        "project": project,
        "version": getattr(skcrossmodal, "__version__", "?"),
        "model": f"SharedProjection(reg={spec['reg']:g}) from "
        f"{Path(skcrossmodal.__file__).parent}",
    }


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


def _library_cca_zoo(spec):
    import importlib.metadata

    from cca_zoo.linear import MCCA, RidgeCCA

    n, reg = spec["n"], spec["reg"]
    # cca-zoo: (1 - c) * cov_{n-1} + c * I  is proportional to
    # cov_n + reg * I  for  c = reg * n / (n - 1 + reg * n).
    shrinkage = reg * n / (n - 1 + reg * n)
    model_class = RidgeCCA if spec["views"] == 2 else MCCA

    def fit(views):
        return model_class(n_components=spec["k"], shrinkage=shrinkage).fit(views)

    def project(model, views):
        return [(V - mu) @ W for V, mu, W in zip(views, model.means_, model.weights_)]

    return {
        "layout": "views",
        "fit": fit,
        "project": project,
        "version": importlib.metadata.version("cca-zoo"),
        "model": f"{model_class.__name__}(shrinkage={shrinkage:.6g})",
    }


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


_LIBRARY_SETUP = {
    "floor": _library_floor,
    "skcrossmodal": _library_skcrossmodal,
    "sklearn": _library_sklearn,
    "cca-zoo": _library_cca_zoo,
    "mvlearn": _library_mvlearn,
}


def worker_main():
    """Read one problem as JSON on stdin, fit it, print ``RESULT <json>``."""
    sys.path.insert(0, str(HERE))
    spec = json.loads(sys.stdin.read())
    result = {"ok": False}
    try:
        result.update(_worker_run(spec))
        result["ok"] = True
    except Exception as exc:  # reported, not raised: the parent prints why
        result["error"] = f"{type(exc).__name__}: {exc}"
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def _worker_run(spec):
    import numpy as np
    import scipy
    from _common import (
        PeakMemory,
        blas_info,
        correlated_views,
        heldout_correlations,
        time_repeats,
    )

    start = time.perf_counter()
    library = _LIBRARY_SETUP[spec["library"]](spec)
    import_seconds = time.perf_counter() - start

    widths = [spec["width"]] * spec["views"]
    start = time.perf_counter()
    train = correlated_views(
        spec["n"], widths, spec["k"], seed=spec["seed"], layout=library["layout"]
    )
    test = None
    if library["project"] is not None:
        test = correlated_views(
            spec["n_test"], widths, spec["k"], seed=spec["seed"], part=1, layout="views"
        )
    generate_seconds = time.perf_counter() - start
    if spec.get("blas_threads"):
        from threadpoolctl import threadpool_limits

        # Kept alive until the worker exits; applies to every BLAS loaded.
        limits = threadpool_limits(limits=spec["blas_threads"])  # noqa: F841

    fitted = {}
    cpu_times = []

    def fit_once():
        cpu_start = time.process_time()
        fitted["model"] = library["fit"](train)
        cpu_times.append(time.process_time() - cpu_start)

    def announce():
        # The parent enforces the time budget from this line.
        fitted.pop("model", None)
        sys.stderr.write("FIT_START\n")
        sys.stderr.flush()

    with PeakMemory() as peak:
        median, times = time_repeats(
            fit_once,
            repeats=spec["repeats"],
            cheap_seconds=spec["cheap_seconds"],
            before_each=announce,
        )
    sys.stderr.write("FIT_DONE\n")
    sys.stderr.flush()

    out = {
        "seconds": median,
        "times": times,
        "cpu_seconds": statistics.median(cpu_times),
        "peak_bytes": peak.bytes,
        "peak_reset": peak.reset_worked,
        "data_bytes": sum(
            a.nbytes for a in (train if isinstance(train, list) else [train])
        ),
        "import_seconds": import_seconds,
        "generate_seconds": generate_seconds,
        "version": library["version"],
        "model": library.get("model"),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "blas": blas_info(),
    }
    try:
        import sklearn

        out["sklearn"] = sklearn.__version__
    except ImportError:
        out["sklearn"] = None
    if library["project"] is not None:
        projections = [np.asarray(p) for p in library["project"](fitted["model"], test)]
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


def run_worker(python, spec, *, budget, memory_cap):
    """Run one worker; enforce the fit time budget and the memory cap."""
    from _common import rss_bytes

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    process = subprocess.Popen(
        [python, str(Path(__file__).resolve()), "--worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    state = {"fit_start": None, "stderr": [], "stdout": []}

    def read_stderr():
        for line in process.stderr:
            if line.startswith("FIT_START"):
                state["fit_start"] = time.monotonic()
            elif line.startswith("FIT_DONE"):
                state["fit_start"] = None
            else:
                state["stderr"].append(line)

    def read_stdout():
        for line in process.stdout:
            state["stdout"].append(line)

    readers = [
        threading.Thread(target=read_stderr, daemon=True),
        threading.Thread(target=read_stdout, daemon=True),
    ]
    for reader in readers:
        reader.start()
    process.stdin.write(json.dumps(spec))
    process.stdin.close()

    killed = None
    started = time.monotonic()
    peak_rss = 0
    while process.poll() is None:
        time.sleep(0.05)
        rss = rss_bytes(process.pid) or 0
        peak_rss = max(peak_rss, rss)
        fit_start = state["fit_start"]
        if rss > memory_cap:
            killed = "memory"
        elif fit_start is not None and time.monotonic() - fit_start > budget:
            killed = "budget"
        elif time.monotonic() - started > budget + 600:
            killed = "budget"  # stuck outside the fit (e.g. generating data)
        if killed:
            process.kill()
            process.wait()
            break
    for reader in readers:
        reader.join(timeout=5)
    if killed:
        return {"ok": False, "killed": killed, "peak_rss": peak_rss}
    for line in state["stdout"]:
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            result["peak_rss"] = peak_rss
            return result
    tail = "".join(state["stderr"]).strip().splitlines()[-3:]
    return {
        "ok": False,
        "error": f"worker exited with {process.returncode}: {' | '.join(tail)}",
    }


def _dominates(small, large):
    # Same number of views only: cca-zoo fits another model for three views.
    return small["views"] == large["views"] and all(
        small[key] <= large[key] for key in ("n", "width", "k")
    )


def problem_name(problem):
    widths = "+".join([str(problem["width"])] * problem["views"])
    return f"n={problem['n']:,} widths={widths} k={problem['k']}"


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
        f"fit time budget {args.budget:g} s; memory cap {memory_cap / 1e9:.1f} GB per "
        f"worker; median of {args.repeats} runs when a run takes < "
        f"{args.cheap_seconds:g} s, else 1 run; ridge reg={args.reg:g} everywhere "
        "(scikit-learn CCA: none)."
    )

    common = {
        "blas_threads": args.blas_threads,
        "repeats": args.repeats,
        "cheap_seconds": args.cheap_seconds,
        "seed": args.seed,
    }
    results = {
        "machine": machine,
        "command": args.command_line,
        "settings": {
            "budget_s": args.budget,
            "memory_cap_bytes": memory_cap,
            "repeats": args.repeats,
            "cheap_seconds": args.cheap_seconds,
            "reg": args.reg,
            "seed": args.seed,
            "n_test": args.n_test,
            "blas_threads": args.blas_threads,
        },
        "unavailable": unavailable,
        "environments": {},
        "check": None,
        "problems": [],
    }

    if not args.no_check:
        results["check"] = agreement_check(pythons, common, args, memory_cap, log)

    grid = QUICK_GRID if args.quick else FULL_GRID
    grid = {key: getattr(args, key) or values for key, values in grid.items()}
    problems = [
        {"n": n, "width": w, "k": k, "views": m}
        for m, n, w, k in itertools.product(
            sorted(grid["views"]),
            sorted(grid["n"]),
            sorted(grid["width"]),
            sorted(grid["k"]),
        )
        if k <= w
    ]
    failed = {name: [] for name in pythons}
    for problem in problems:
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
                log(f"  {name:13s} skipped: > {kind} at {problem_name(blocker)}")
                continue
            spec = dict(
                problem, library=name, reg=args.reg, n_test=args.n_test, **common
            )
            pending.append((name, spec))
        # With --rounds R, every library runs R times in alternation and the
        # run with the median time is kept: a drift in the machine's load then
        # hits every library alike.
        attempts = {name: [] for name, _ in pending}
        for _ in range(args.rounds):
            for name, spec in pending:
                if attempts[name] and not attempts[name][-1].get("ok"):
                    continue
                run = run_worker(
                    pythons[name], spec, budget=args.budget, memory_cap=memory_cap
                )
                attempts[name].append(run)
                log("  " + _one_line(name, run, args.budget))
        for name, runs in attempts.items():
            run = _median_run(runs)
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


def _median_run(runs):
    """The run whose time is the median over rounds; a failure if any failed."""
    failures = [run for run in runs if not run.get("ok")]
    if failures:
        return failures[-1]
    seconds = [run["seconds"] for run in runs]
    middle = statistics.median_low(seconds)
    run = dict(runs[seconds.index(middle)])
    run["round_seconds"] = seconds
    return run


def agreement_check(pythons, common, args, memory_cap, log):
    """Fit one small problem everywhere; compare correlations and directions."""
    import numpy as np

    log(
        f"\nagreement check: n={CHECK_PROBLEM['n']:,}, widths {CHECK_PROBLEM['width']} "
        f"per view, k={CHECK_PROBLEM['k']}, reg={CHECK_REG} (0 for scikit-learn CCA)"
    )
    rows = []
    for views in (2, 3):
        base = dict(CHECK_PROBLEM, **common, views=views, return_projections=True)
        base["repeats"] = 1
        references = {}
        for reg in (CHECK_REG, 0.0):
            if views == 3 and reg == 0.0:
                continue
            ref = run_worker(
                pythons[REFERENCE],
                dict(base, library=REFERENCE, reg=reg),
                budget=args.budget,
                memory_cap=memory_cap,
            )
            references[reg] = ref
        for name in args.libraries:
            if name in (REFERENCE, "floor") or name not in pythons:
                continue
            if views not in LIBRARIES[name]["views"]:
                continue
            reg = 0.0 if name == "sklearn" else CHECK_REG
            run = run_worker(
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


def _check_line(row):
    label = f"{row['library']:8s} {row['views']} views reg={row['reg']:g}:"
    if "error" in row:
        return f"{label} could not run ({row['error']})"
    return (
        f"{label} max |held-out r - skcrossmodal's| = "
        f"{row['max_abs_diff_heldout']:.1e}, 1 - |cos| of projections = "
        f"{row['direction_gap']:.1e}"
    )


def _one_line(name, run, budget):
    if run.get("ok"):
        mean_r = statistics.fmean(run["heldout"]) if run.get("heldout") else None
        corr = f" held-out r {mean_r:.4f}" if mean_r is not None else ""
        return (
            f"{name:13s} {run['seconds']:8.3f} s (runs {len(run['times'])}) peak "
            f"{_bytes(run['peak_bytes'])}{corr}"
        )
    return f"{name:13s} {_status(run, budget)}"


def _status(run, budget):
    if run.get("na"):
        return "n/a"
    if run.get("killed") == "budget":
        return f"> {budget:g} s"
    if run.get("killed") == "memory":
        return "> memory cap"
    return "failed"


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


def table_rows(results):
    """One dict per (problem, library) with absolute values and ratios."""
    budget = results["settings"]["budget_s"]
    rows = []
    for entry in results["problems"]:
        runs = entry["runs"]
        ref = runs.get(REFERENCE, {})
        floor = runs.get("floor", {})
        ref_time = ref.get("seconds") if ref.get("ok") else None
        ref_peak = ref.get("peak_bytes") if ref.get("ok") else None
        ref_r = statistics.fmean(ref["heldout"]) if ref.get("ok") else None
        floor_time = floor.get("seconds") if floor.get("ok") else None
        for name in [name for name in LIBRARIES if name in runs]:
            run = runs[name]
            row = {
                "problem": problem_name(entry["problem"]),
                "library": name,
                "label": LIBRARIES[name]["label"],
                "status": None,
            }
            if run.get("ok"):
                mean_r = (
                    statistics.fmean(run["heldout"]) if run.get("heldout") else None
                )
                row.update(
                    seconds=run["seconds"],
                    runs=len(run["times"]),
                    peak=run["peak_bytes"],
                    mean_r=mean_r,
                    time_ratio=_ratio(run["seconds"], ref_time),
                    floor_ratio=_ratio(run["seconds"], floor_time),
                    peak_ratio=_ratio(run["peak_bytes"], ref_peak),
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


def print_report(results, out=sys.stdout):
    write = out.write
    write("\n" + "=" * 100 + "\n")
    write(_describe_machine(results["machine"]) + "\n")
    write(f"command: {results['command']}\n")
    settings = results["settings"]
    write(
        f"ridge reg={settings['reg']:g} on cov/n in every library (converted to "
        "cca-zoo's shrinkage and mvlearn's regs; scikit-learn CCA has no ridge);"
        f" held-out rows: {settings['n_test']:,}; "
        f"fit budget {settings['budget_s']:g} s;"
        f" memory cap {settings['memory_cap_bytes'] / 1e9:.1f} GB.\n"
        f"time: median of {settings['repeats']} runs if one run < "
        f"{settings['cheap_seconds']:g} s, else 1 run ('runs' column). peak: resident"
        " high-water mark during the fit minus resident memory before it.\n"
        + (
            f"BLAS limited to {settings['blas_threads']} thread(s) in every library.\n"
            if settings.get("blas_threads")
            else ""
        )
    )
    for name, env in results["environments"].items():
        write(
            f"env {name:13s} {env['version']:>8s}  numpy {env['numpy']} scipy "
            f"{env['scipy']} scikit-learn {env['sklearn']}  BLAS: "
            f"{_describe_blas(env['blas'])}\n"
        )
    models = {}
    for entry in results["problems"]:
        for name, run in entry["runs"].items():
            if run.get("model"):
                models.setdefault(name, set()).add(run["model"])
    for name, used in models.items():
        write(f"    {name:13s} {'; '.join(sorted(used))}\n")
    for name, why in results["unavailable"].items():
        write(f"env {name:13s} CANNOT RUN: {why}\n")
    if results.get("check"):
        write("\nagreement check (small problem, see docstring):\n")
        for row in results["check"]:
            write("  " + _check_line(row) + "\n")

    header = (
        f"{'library':30s} {'fit s':>9s} {'x skcm':>7s} {'x floor':>8s} "
        f"{'peak mem':>10s} {'x skcm':>7s} {'held-out r':>10s} {'x skcm':>8s} "
        f"{'runs':>4s}"
    )
    loads = {
        problem_name(entry["problem"]): entry.get("loadavg")
        for entry in results["problems"]
    }
    current = None
    for row in table_rows(results):
        if row["problem"] != current:
            current = row["problem"]
            load = loads.get(current)
            load = f"   (load average {load[0]:.1f} -> {load[1]:.1f})" if load else ""
            write(f"\n{current}{load}\n{header}\n")
        if row["status"] is None:
            mean_r = "-" if row["mean_r"] is None else f"{row['mean_r']:.4f}"
            r_ratio = "-" if row["r_ratio"] is None else f"{row['r_ratio']:.5f}"
            write(
                f"{row['label']:30s} {row['seconds']:9.3f} "
                f"{_fmt(row['time_ratio']):>7s} "
                f"{_fmt(row['floor_ratio']):>8s} {_bytes(row['peak']):>10s} "
                f"{_fmt(row['peak_ratio']):>7s} {mean_r:>10s} {r_ratio:>8s} "
                f"{row['runs']:4d}\n"
            )
        else:
            why = f"  ({row['why']})" if row.get("why") else ""
            write(f"{row['label']:30s} {row['status']:>9s}{why}\n")
    slower = not_fastest(results)
    write("\n")
    if slower:
        write("problems where skcrossmodal is NOT the fastest library:\n")
        for problem, name, ratio in slower:
            write(f"  {problem}: {name} takes {ratio:.2f}x skcrossmodal's time\n")
    else:
        write("skcrossmodal was the fastest library on every problem that ran.\n")


def _describe_blas(info):
    from _common import describe_blas

    return describe_blas(info)


def not_fastest(results):
    found = []
    for row in table_rows(results):
        if row["library"] in (REFERENCE, "floor") or row["status"] is not None:
            continue
        if row["time_ratio"] is not None and row["time_ratio"] < 1.0:
            found.append((row["problem"], row["label"], row["time_ratio"]))
    return found


def _cell_time(run, budget, reference=None):
    if not run:
        return ""
    if run.get("skipped_after"):
        return "skipped"
    if not run.get("ok"):
        return _status(run, budget)
    ratio = _ratio(run["seconds"], reference)
    text = f"{run['seconds']:.3g} s"
    return text if ratio is None else f"{text} ({_fmt(ratio)}x)"


def _cell_memory(run, budget, reference=None):
    if not run:
        return ""
    if not run.get("ok"):
        return "> cap" if run.get("killed") == "memory" else "-"
    ratio = _ratio(run["peak_bytes"], reference)
    text = _bytes(run["peak_bytes"])
    return text if ratio is None else f"{text} ({_fmt(ratio)}x)"


def rst_table(results):
    """Two RST list-tables (fit time, peak memory) for docs/benchmarks.rst.

    One row per problem, one column per library; each cell gives the value
    and, in brackets, its ratio to skcrossmodal's (floor: skcrossmodal's
    time as a multiple of the floor).
    """
    budget = results["settings"]["budget_s"]
    names = [
        name
        for name in LIBRARIES
        if any(name in entry["runs"] for entry in results["problems"])
    ]
    out = []
    for title, cell in (("fit time", _cell_time), ("peak memory", _cell_memory)):
        header = ["problem"] + [
            "floor (skcm / floor)" if name == "floor" else LIBRARIES[name]["label"]
            for name in names
        ]
        lines = [
            f".. list-table:: {title} (ratio to skcrossmodal in brackets)",
            "   :header-rows: 1",
            "",
        ]
        rows = [header]
        for entry in results["problems"]:
            runs = entry["runs"]
            ref = runs.get(REFERENCE, {})
            key = "seconds" if cell is _cell_time else "peak_bytes"
            ref_value = ref.get(key) if ref.get("ok") else None
            row = [problem_name(entry["problem"])]
            for name in names:
                run = runs.get(name, {})
                if name == "floor" and cell is _cell_time:
                    text = _cell_time(run, budget)
                    if run.get("ok") and ref_value is not None:
                        text += f" ({ref_value / run['seconds']:.2f}x)"
                    row.append(text)
                elif name == REFERENCE:
                    row.append(cell(run, budget))
                else:
                    row.append(cell(run, budget, ref_value))
            rows.append(row)
        for row in rows:
            lines.append(f"   * - {row[0]}")
            lines.extend(f"     - {value}" for value in row[1:])
        out.append("\n".join(lines))
    deviations = [
        abs(row["r_ratio"] - 1.0)
        for row in table_rows(results)
        if row.get("r_ratio") is not None
    ]
    if deviations:
        out.append(
            "Held-out canonical correlations (mean over the k components) of every "
            "library that ran are within a factor "
            f"1 +/- {max(deviations):.1e} of skcrossmodal's."
        )
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
        for e in results["problems"]
    ]
    names = [n for n in LIBRARIES if any(n in e["runs"] for e in results["problems"])]
    budget = results["settings"]["budget_s"]
    cap_mb = results["settings"]["memory_cap_bytes"] / 1e6
    fig, axes = plt.subplots(2, 1, figsize=(max(9, 0.95 * len(problems) + 3), 9))
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
                ncol=len(names),
                loc="lower center",
                bbox_to_anchor=(0.5, 1.12),
                frameon=False,
            )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
        "--quick", action="store_true", help="n=20,000, width 100, k=10"
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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every library this many times, alternating; keep the median",
    )
    parser.add_argument("--cheap-seconds", type=float, default=5.0)
    parser.add_argument("--n-test", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--blas-threads",
        type=int,
        help="limit every BLAS to this many threads (threadpoolctl), all libraries",
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip the agreement check"
    )
    parser.add_argument(
        "--json", help="write results here (default benchmarks/results/)"
    )
    parser.add_argument("--from-json", help="report/plot saved results, run nothing")
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

    if args.from_json:
        results_path = Path(args.from_json)
        results = json.loads(results_path.read_text())
    else:
        if args.budget is None:
            args.budget = 20.0 if args.quick else 120.0
        if REFERENCE not in args.libraries:
            args.libraries.insert(0, REFERENCE)
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
