"""The layering of docs/user_guide/architecture.rst, checked on the source.

Imports are read with ``ast`` from the files (not from ``sys.modules``:
importing any submodule runs ``skcrossmodal/__init__.py``, which imports
every estimator). Only module-level imports count: an import inside a
function runs once both modules are loaded, so it cannot make a cycle at
import time, and it is how an optional dependency is imported lazily.
"""

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest

import skcrossmodal
from skcrossmodal import SharedProjection

PACKAGE = Path(skcrossmodal.__file__).parent

# The numerical core, bottom up; none of it may reach estimator code.
NUMERICAL = {
    "skcrossmodal._namespace",
    "skcrossmodal._modalities",
    "skcrossmodal._statistics",
    "skcrossmodal._numpy_sums",
    "skcrossmodal._batch_sums",
    "skcrossmodal._covariance",
    "skcrossmodal._closed_form",
    "skcrossmodal._solvers",
    "skcrossmodal._conventions",
    "skcrossmodal._shared_space",
}
# Private helpers the core may use, none with an estimator in it: Dask chunk
# sums, the counted one-BLAS-thread limit, the memory check, the exception
# classes.
CORE_HELPERS = {
    "skcrossmodal._dask",
    "skcrossmodal._threads",
    "skcrossmodal._memory",
    "skcrossmodal.exceptions",
}


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported(name):
    """skcrossmodal modules imported at module level by module ``name``,
    and the third-party modules it imports (top-level names)."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    ours, theirs = set(), set()
    stack = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            # "from pkg import sub": the submodule where there is one.
            targets = [
                f"{target}.{alias.name}"
                if f"{target}.{alias.name}" in MODULES
                else target
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target in MODULES:
                ours.add(target)
            elif target.split(".")[0] != "skcrossmodal":
                theirs.add(target)
    return ours, theirs


GRAPH = {name: imported(name)[0] for name in MODULES}


def test_the_module_list_is_complete():
    assert set(MODULES) >= NUMERICAL | CORE_HELPERS
    assert "skcrossmodal.projection" in MODULES


def test_no_import_cycle():
    state, cycles = {}, []

    def visit(name, path):
        state[name] = "open"
        path.append(name)
        for other in sorted(GRAPH[name]):
            if state.get(other) == "open":
                cycles.append(" -> ".join(path[path.index(other) :] + [other]))
            elif other not in state:
                visit(other, path)
        path.pop()
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [])
    assert cycles == []


@pytest.mark.parametrize("name", sorted(NUMERICAL))
def test_numerical_modules_import_no_estimator_code(name):
    reached, frontier = set(), {name}
    while frontier:
        module = frontier.pop()
        reached.add(module)
        frontier |= GRAPH[module] - reached
    assert reached <= NUMERICAL | CORE_HELPERS, sorted(
        reached - NUMERICAL - CORE_HELPERS
    )
    for module in reached:
        _, third_party = imported(module)
        # Estimator machinery: the base classes, validation, fit contexts.
        assert not {"sklearn.base", "sklearn.utils.validation"} & third_party, module


@pytest.mark.parametrize("reg", [0.1, "auto"])
def test_a_fitted_shared_projection_pickles_to_its_model_size(reg):
    """500 + 500 features, k = 10: the weights are 80 KB; the D x D sums
    (8 MB, 16 MB with the Ledoit-Wolf fourth moments) are not kept after
    fit."""
    rng = np.random.default_rng(0)
    n, width = 1500, 500
    latent = rng.normal(size=(n, 10))
    X = np.hstack(
        [
            latent @ rng.normal(size=(10, width)) + rng.normal(size=(n, width))
            for _ in range(2)
        ]
    )
    model = SharedProjection(
        10, modalities={"a": slice(0, width), "b": slice(width, 2 * width)}, reg=reg
    ).fit(X)
    size = len(pickle.dumps(model))
    assert size < 300 * 1024
    # What transform needs is all there.
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(model)).transform(X[:5]), model.transform(X[:5])
    )
