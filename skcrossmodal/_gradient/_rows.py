"""Row access for the gradient solver: batches of X split by modality.

The solver reads X many times (an epoch of mini-batches, then a monitoring
pass), always a set of rows at a time and always split by modality. This
module is the only place that knows what X is: a numpy array (read in
place), a scipy sparse matrix (split by modality once), or a dense array of
another array API namespace (torch, CuPy, array_api_strict; batches taken on
its device). Everything above it computes in :attr:`Rows.xp`, the namespace
the batches come in.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.externals.array_api_compat import numpy as numpy_namespace

from .. import _namespace
from .._modalities import (
    check_finite_blocks,
    check_no_infinite,
    check_rows_present,
    presence_mask,
    take_columns,
)
from ._moments import raise_non_finite_array_api

# Rows per batch in the passes that only read the data (moments,
# monitoring): enough for BLAS efficiency, small next to X.
_PASS_BYTES = 32 * 2**20


def on_host(array):
    """A float64 numpy array (the host path's ``to_device``)."""
    return np.asarray(array, dtype=np.float64)


def product(X_m, dense):
    """``X_m @ dense`` as a dense array (scipy sparse @ ndarray is one)."""
    result = X_m @ dense
    return np.asarray(result) if sparse.issparse(X_m) else result


class Rows:
    """Row batches of X, split by modality, with missing blocks zeroed.

    One pass at construction checks for infinity, finds which modalities
    each row carries (an ``(n, M)`` boolean numpy mask, kept) and rejects
    partial NaN blocks, so the epochs skip those checks. Sparse X is split
    once into one matrix per modality (about one copy of X; a modality more
    than half non-zero is stored dense, which is smaller), so that batches
    need no column slicing; dense X is read in place.

    ``xp`` is the namespace the solver computes in: X's own for an array
    API array (whose batches are taken on its device, in the accumulation
    dtype), ``array_api_compat.numpy`` for numpy and scipy sparse X (float64
    batches). An array API X must be complete: its pass only checks that
    every value is finite (one device sync).

    Parameters
    ----------
    X : ndarray, sparse matrix or array API array of shape (n, n_features)
        Validated; never modified.
    modalities : dict of str -> ndarray of int
        Resolved column indices of each modality.
    """

    def __init__(self, X, modalities):
        self.modalities = modalities
        self.columns = list(modalities.values())
        self.widths = [len(c) for c in self.columns]
        self.n_rows = X.shape[0]
        xp = _namespace.get_array_namespace(X)
        self.on_host = xp is None
        if self.on_host:
            self.xp, self.device, self.dtype = numpy_namespace, "cpu", np.float64
        else:
            self.xp, self.device = xp, _namespace.array_device(X)
            # Looked up in _namespace at call time (tests force float32 there).
            self.dtype = _namespace.accumulation_dtype(xp, self.device)
        self.X, self.parts = None, None
        if sparse.issparse(X):
            row_bytes = 12.0 * max(X.nnz / max(X.shape[0], 1), 1.0)
            self.pass_rows = int(max(256, _PASS_BYTES // row_bytes))
            self._split_sparse(X.tocsr())
        else:
            self.X = X
            self.pass_rows = int(max(256, _PASS_BYTES // (8.0 * X.shape[1])))
            if self.on_host:
                self._check_dense(X)
            else:
                self._check_array_api(X)
        check_rows_present(self.present)
        self.has_missing = ~self.present.all(axis=0)

    def _split_sparse(self, X):
        parts, present = [], []
        for (name, columns), width in zip(self.modalities.items(), self.widths):
            part = take_columns(X, columns).tocsr()
            # Our own float64 copy: NaN is zeroed in place below.
            part = part.astype(np.float64, copy=np.shares_memory(part.data, X.data))
            check_no_infinite(part)
            present.append(presence_mask(part, {name: np.arange(width)})[:, 0])
            part.data[np.isnan(part.data)] = 0.0
            if part.nnz > 0.5 * part.shape[0] * part.shape[1]:
                part = part.toarray()
            parts.append(part)
        self.parts = parts
        self.present = np.column_stack(present)

    def _check_dense(self, X):
        # A chunk at a time: the NaN mask of all of X would be X's size.
        self.present = np.vstack(
            [
                check_finite_blocks(X[chunk], self.modalities, first_row=int(chunk[0]))
                for chunk in self.chunks(np.arange(self.n_rows))
            ]
        )

    def _check_array_api(self, X):
        xp = self.xp
        finite = None
        for begin in range(0, self.n_rows, self.pass_rows):
            stop = min(begin + self.pass_rows, self.n_rows)
            ok = xp.all(xp.isfinite(X[begin:stop, :]))
            finite = ok if finite is None else finite & ok
        if not bool(finite):
            # NaN (a missing modality: not supported here) or infinity.
            raise_non_finite_array_api(xp, X)
        self.present = np.ones((self.n_rows, len(self.widths)), dtype=bool)
        # Each modality's columns: a slice when contiguous, else indices
        # copied to the device once (a copy per batch would wait for it).
        self.device_columns = []
        for columns in self.columns:
            columns = np.asarray(columns)
            if columns[-1] - columns[0] + 1 == columns.size:
                self.device_columns.append(slice(int(columns[0]), int(columns[-1]) + 1))
            else:
                self.device_columns.append(xp.asarray(columns, device=self.device))

    def to_device(self, array):
        """A numpy array as an array of the solver's namespace, device, dtype."""
        if self.on_host:
            return on_host(array)
        return _namespace.to_namespace(
            self.xp, np.asarray(array), self.dtype, self.device
        )

    def chunks(self, rows):
        """``rows`` in pieces of ``pass_rows`` (for the read-only passes)."""
        for begin in range(0, len(rows), self.pass_rows):
            yield rows[begin : begin + self.pass_rows]

    def device_index(self, rows):
        """``rows`` (numpy indices) on the device, or None on the host."""
        if self.on_host:
            return None
        return self.xp.asarray(np.asarray(rows), device=self.device)

    def get(self, rows, index=None):
        """Return ([X_m with missing rows zeroed], presence (b, M) bool).

        ``rows`` are numpy indices (drawn on the host); the blocks are in
        ``xp``, on the device. ``index``: ``rows`` already on the device
        (:meth:`device_index`), to save a copy.
        """
        present = self.present[rows]
        if self.parts is not None:
            return [part[rows] for part in self.parts], present
        if not self.on_host:
            xp = self.xp
            if index is None:
                index = self.device_index(rows)
            X = xp.astype(xp.take(self.X, index, axis=0), self.dtype, copy=False)
            return [
                X[:, columns]
                if isinstance(columns, slice)
                else xp.take(X, columns, axis=1)
                for columns in self.device_columns
            ], present
        X = np.asarray(self.X[rows], dtype=np.float64)
        blocks = []
        for m, columns in enumerate(self.columns):
            block = take_columns(X, columns)
            if self.has_missing[m]:
                block = np.where(present[:, m, None], block, 0.0)
            blocks.append(block)
        return blocks, present
