"""Docstring text that public estimators share, filled in at import.

A class docstring holds a line ``{name}`` (alone on its line) where a
fragment goes; :func:`fill_doc` replaces that line by the fragment, indented
like it. ``help()``, numpydoc/sphinx and the doctests all read ``__doc__``
at run time, so they see the full text. The line is replaced as a whole
rather than with ``str.format``, so the braces of the LaTeX in raw
docstrings need no escaping.
"""

from __future__ import annotations

import textwrap


def fill_doc(**fragments):
    """Class decorator: replace each ``{name}`` line of the docstring."""

    def decorate(cls):
        if cls.__doc__ is None:  # python -OO strips docstrings
            return cls
        lines = []
        for line in cls.__doc__.split("\n"):
            key = line.strip()
            if key.startswith("{") and key.endswith("}") and key[1:-1] in fragments:
                indent = line[: len(line) - len(line.lstrip())]
                fragment = textwrap.indent(fragments[key[1:-1]], indent)
                lines.append(fragment)
            else:
                lines.append(line)
        cls.__doc__ = "\n".join(lines)
        return cls

    return decorate
