"""The code in the documentation runs, and says what it claims.

The ``>>>`` examples of the user guide are doctests, run here with the rest of
the suite (the figures of ``docs/examples`` are run by the Sphinx build,
which needs matplotlib: ``pip install ".[docs]"``). The ``code-block`` snippets
that are not run (Dask, a cluster) must at least be valid Python.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import re
from pathlib import Path

import pytest
import scipy.linalg  # noqa: F401  (load scipy's BLAS before limiting its threads)
from threadpoolctl import threadpool_limits

DOCS = Path(__file__).resolve().parent.parent / "docs"
RST_FILES = sorted(
    path
    for path in DOCS.rglob("*.rst")
    if not path.is_relative_to(DOCS / "_build")
    and not path.is_relative_to(DOCS / "generated")
    and not path.is_relative_to(DOCS / "_templates")
)
WITH_DOCTESTS = [path for path in RST_FILES if ">>> " in path.read_text("utf-8")]

_CODE_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)\.\. code-block:: python\n(?:(?P=indent)[ \t]+:.*\n)*\n"
    r"(?P<body>(?:(?P=indent)[ \t]+.*\n|[ \t]*\n)+)",
    re.MULTILINE,
)


def _name(path):
    return str(path.relative_to(DOCS))


def test_docs_were_found():
    names = {_name(path) for path in RST_FILES}
    assert {"index.rst", "api.rst", "user_guide/shared_projection.rst"} <= names
    assert len(WITH_DOCTESTS) >= 5


@pytest.mark.parametrize("path", WITH_DOCTESTS, ids=_name)
def test_doctests_in_rst(path):
    # Many small fits: one BLAS thread is faster than two competing pools
    # (see docs/user_guide/performance.rst).
    with threadpool_limits(limits=1):
        result = _run_doctests(path)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {path}"


def _run_doctests(path):
    return doctest.testfile(
        str(path),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        raise_on_error=False,
        verbose=False,
        report=True,
        encoding="utf-8",
    )


def _python_code_blocks(text):
    for match in _CODE_BLOCK.finditer(text):
        lines = match.group("body").splitlines()
        indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
        margin = min(indents)
        yield "\n".join(line[margin:] for line in lines).strip("\n")


@pytest.mark.parametrize("path", RST_FILES, ids=_name)
def test_code_blocks_are_valid_python(path):
    for block in _python_code_blocks(path.read_text("utf-8")):
        ast.parse(block)


def test_code_block_pattern_finds_blocks():
    text = (
        "Intro.\n\n.. code-block:: python\n   :caption: x\n\n   a = 1\n\n"
        "   b = a + 1\n\nAfter.\n"
    )
    assert list(_python_code_blocks(text)) == ["a = 1\n\nb = a + 1"]


def _api_entries():
    """(module, name) for every autosummary entry of docs/api.rst."""
    module, in_autosummary, entries = None, False, []
    for line in (DOCS / "api.rst").read_text("utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith(".. currentmodule::"):
            module = stripped.split("::")[1].strip()
            in_autosummary = False
        elif stripped.startswith(".. autosummary::"):
            in_autosummary = True
        elif in_autosummary and line.startswith("   ") and stripped:
            if not stripped.startswith(":"):
                entries.append((module, stripped))
        elif in_autosummary and stripped and not line.startswith(" "):
            in_autosummary = False
    return entries


def test_api_reference_lists_every_public_name():
    entries = _api_entries()
    documented = {name for _, name in entries}
    for module_name in sorted({module for module, _ in entries}):
        module = importlib.import_module(module_name)
        public = {name for name in getattr(module, "__all__", []) if name[0] != "_"}
        assert public <= documented, (
            f"{module_name}.__all__ has {sorted(public - documented)}, which "
            "docs/api.rst does not list"
        )
    for module_name, name in entries:
        assert hasattr(importlib.import_module(module_name), name), (
            f"docs/api.rst lists {module_name}.{name}, which does not exist"
        )
