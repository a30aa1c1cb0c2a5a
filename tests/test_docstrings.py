"""Every public estimator documents each of its parameters.

Some docstrings share text filled in at import (``skcrossmodal._docstrings``);
this checks what ``help()`` and the API pages show: the run-time docstring.
"""

import inspect

import pytest

from skcrossmodal._docstrings import fill_doc
from skcrossmodal._testing import public_estimators

NumpyDocString = pytest.importorskip("numpydoc.docscrape").NumpyDocString


# A ColumnTransformer whose docstring refers to scikit-learn's for its
# (unchanged) parameters.
CLASSES = sorted(
    (
        cls
        for name, cls in public_estimators().items()
        if name != "ModalityColumnTransformer"
    ),
    key=lambda cls: cls.__name__,
)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_parameter_is_documented(cls):
    documented = {
        param.name: " ".join(param.desc).strip()
        for param in NumpyDocString(inspect.getdoc(cls))["Parameters"]
    }
    for name in inspect.signature(cls.__init__).parameters:
        if name == "self":
            continue
        assert documented.get(name), f"{cls.__name__}: {name!r} undocumented"
    assert "{gradient_parameters}" not in cls.__doc__


def test_fill_doc_indents_the_fragment_like_its_line():
    @fill_doc(part="a : int\n    The a.\n\nb : int\n    The b.")
    class Documented:
        r"""Title, with a brace {x}.

        Parameters
        ----------
        {part}

        c : int
            The c; :math:`\mathrm{tr}`.
        """

    doc = NumpyDocString(inspect.getdoc(Documented))
    assert [param.name for param in doc["Parameters"]] == ["a", "b", "c"]
    assert [param.desc for param in doc["Parameters"]][:2] == [["The a."], ["The b."]]
    assert "{x}" in Documented.__doc__ and r"\mathrm{tr}" in Documented.__doc__
