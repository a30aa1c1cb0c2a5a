"""Test-session set-up shared by every test file."""

import pytest
import sklearn
from threadpoolctl import threadpool_limits
from xp_testing import NAMESPACES, require


@pytest.fixture(autouse=True, scope="session")
def one_blas_thread():
    """Run BLAS on one thread.

    The tests fit many tiny models; on a shared 2-core machine BLAS threads
    only add contention (a 40x3 LogisticRegression fit measured 0.13 s with
    the default threads and 0.01 s with one).
    """
    with threadpool_limits(limits=1):
        yield


# Session scope: a name, nothing to set up again (and hypothesis tests may
# take it).
@pytest.fixture(scope="session", params=NAMESPACES)
def namespace(request):
    """The name of an array namespace (``xp_testing.NAMESPACES``): the test
    runs once per namespace, skipped where that one is not installed.

    A subset: ``@pytest.mark.parametrize("namespace",
    ARRAY_API_NAMESPACES, indirect=True)``.
    """
    require(request.param)
    return request.param


@pytest.fixture
def scipy_array_api_flag(monkeypatch):
    """What scikit-learn checks before it dispatches to array API inputs.

    scikit-learn refuses to dispatch unless SCIPY_ARRAY_API=1, which scipy
    reads when first imported, long before any test. The library calls no
    scipy function on array API arrays (array_api_strict's "device1" would
    refuse any conversion to numpy), so the variable is set for
    scikit-learn's check only; test_array_api_dispatch.py runs scikit-learn's
    own checks in a fresh interpreter where it is set before the import.
    """
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


@pytest.fixture
def dispatch(scipy_array_api_flag):
    """sklearn's ``array_api_dispatch``, on for the test's duration."""
    with sklearn.config_context(array_api_dispatch=True):
        yield
