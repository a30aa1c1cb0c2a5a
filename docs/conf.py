"""Sphinx configuration for the skcrossmodal documentation.

Build (warnings are errors, as in CI)::

    pip install ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

Nothing is fetched from the network at build time: no intersphinx, and the
figures are drawn by the example code itself (matplotlib's plot directive).
Nor when the pages are viewed: MathJax is served from the build's own
``_static/mathjax`` (shipped by the sphinx-mathjax-offline package of the
[docs] extra), so the equations render offline.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

# The example figures are many small fits. Two OpenBLAS thread pools (numpy's
# and scipy's) on a small or busy machine make such fits several times slower
# than one thread (see the performance notes), so the build runs single
# threaded. This must happen before numpy is imported.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# Build from a source checkout even when the package is not installed.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import skcrossmodal  # noqa: E402

project = "skcrossmodal"
author = "skcrossmodal developers"
copyright = "skcrossmodal developers, BSD-3-Clause"
release = skcrossmodal.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    # Copies MathJax 3 into _static/mathjax: no CDN (its module name has
    # dashes; Sphinx imports it by that name).
    "sphinx-mathjax-offline",
    "numpydoc",
    "matplotlib.sphinxext.plot_directive",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
language = "en"
default_role = "literal"
pygments_style = "sphinx"

# -- API reference -------------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_member_order = "groupwise"
autodoc_typehints = "none"
# numpydoc renders the docstrings; the class pages list their methods through
# autodoc's :members: (see _templates/autosummary/class.rst), so numpydoc
# does not add a second table of members.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
# Docstring style is checked by the test suite's doctests and by review, not
# by the docs build.
numpydoc_validation_checks: set[str] = set()

# -- Runnable examples with figures --------------------------------------------
# Every ``.. plot::`` block is executed at build time and its figure embedded:
# an example that stops working breaks the (warnings-as-errors) build.
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]
plot_pre_code = "import numpy as np\nimport matplotlib.pyplot as plt\n"
plot_rcparams = {
    "figure.figsize": (7.0, 3.6),
    "figure.constrained_layout.use": True,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 9,
}
plot_apply_rcparams = True

# -- HTML ------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"skcrossmodal {release}"
html_theme_options = {
    "description": "scikit-learn compatible cross-modal learning",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "230px",
    "show_relbars": True,
}
html_sidebars = {
    "**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]
}
html_show_sourcelink = False


# -- Hooks ---------------------------------------------------------------------
_REQUEST_METHOD = re.compile(r"^set_\w+_request$")
# "of shape (n_features_in_,)": a bare name ending in "_" is a reST hyperlink
# reference, which docutils rejects ("Unknown target name"). scikit-learn
# writes (`n_features_in_`,); until every docstring does, quote it here.
_BARE_FITTED_NAME = re.compile(r"\((n_features_in_|n_components_|n_samples_seen_),\)")


def _skip_member(app, what, name, obj, skip, options):
    # scikit-learn's metadata-routing setters (set_fit_request, ...) are
    # generated boilerplate documented by scikit-learn, whose glossary they
    # cite; they are left out of the class pages.
    if _REQUEST_METHOD.match(name):
        return True
    return None


def _quote_fitted_names(app, what, name, obj, options, lines):
    lines[:] = [_BARE_FITTED_NAME.sub(r"(``\1``,)", line) for line in lines]


def setup(app):
    # The SVG output draws glyphs from the font data inside its script; the
    # CommonHTML output (the extension's default) needs web fonts that the
    # package does not ship.
    app.config.mathjax_path = "mathjax/tex-svg.js"
    app.connect("autodoc-skip-member", _skip_member)
    # Before numpydoc (priority 500) turns the docstring into reST.
    app.connect("autodoc-process-docstring", _quote_fitted_names, priority=100)
