"""One BLAS thread for a block of code, safe when blocks run concurrently.

threadpoolctl's limit is process-wide (it sets OpenBLAS's pool size) and a
plain ``threadpool_limits`` context restores what it saw on entry. Two fits
in threads (GridSearchCV's threading backend) then interleave badly: the
second enters while the first holds the limit, saves "1 thread" as the
original, and restores it after the first has left -- the process keeps one
BLAS thread for good. Here the holders are counted: the first to enter
applies the limit, the last to leave restores the caller's setting. Every
one-thread block of skcrossmodal goes through :func:`one_blas_thread`.
"""

from __future__ import annotations

import contextlib
import threading

_lock = threading.Lock()
_holders = 0
_limiter = None
_controller = None


@contextlib.contextmanager
def one_blas_thread():
    """Run the block with one BLAS thread; restore the caller's limit when the
    last concurrent holder leaves. The controller is built once (scanning
    the loaded libraries costs milliseconds), as scikit-learn does."""
    global _holders, _limiter, _controller
    with _lock:
        if _holders == 0:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            _limiter = _controller.limit(limits=1, user_api="blas")
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                _limiter.restore_original_limits()
                _limiter = None
