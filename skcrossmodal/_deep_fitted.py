"""The fitted state of ``DeepSharedProjection``: its arrays and what reads them.

``deep.py`` holds the public API (parameters, ``fit``, ``transform``, ...);
this mixin holds how the fitted state is kept:

* the encoders' weights, intercepts and input standardisation live in the
  array namespace and on the device of the data they were trained on (numpy
  by default; torch, CuPy, ... under ``array_api_dispatch``), so training
  and encoding never copy them; :meth:`_encoders` moves them (a copy, not
  kept) for data of another namespace;
* the final linear CCA (``shared_projection_``) is fitted on the host: its
  input is only ``n_components`` columns per modality, so moving the
  encoders' outputs there costs little, and the numpy closed form handles
  rows with a missing modality, which the array API sums do not yet. Its
  small projection is applied in the data's namespace
  (``SharedSpace.project`` moves its weights), so ``transform`` output stays
  on the device; ``canonical_correlations_`` is kept in the data's namespace,
  as scikit-learn's array API estimators keep their fitted arrays.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.externals.array_api_compat import array_namespace
from sklearn.externals.array_api_compat import device as array_device

from ._base import check_finite_blocks, validate_modal_data
from ._deep_mlp import Encoder
from ._deep_train import build_encoders, encode, take_rows
from ._memory import check_allocation
from ._namespace import (
    accumulation_dtype,
    smallest_square,
    to_namespace,
    to_numpy,
)
from .projection import SharedProjection

# Held-out correlation for early stopping: the linear CCA of the encoders'
# outputs is fitted on at most this many training rows, then scored on the
# validation rows (a subsample keeps it a small part of an epoch's cost).
VALIDATION_FIT_ROWS = 10000


class DeepFittedMixin:
    """Internals of ``DeepSharedProjection`` that read or set fitted arrays."""

    def _validate(self, X, *, reset):
        """(X, presence mask): X validated, in its namespace (under
        ``array_api_dispatch``), the (n, M) mask in the same namespace."""
        X = validate_modal_data(self, X, reset=reset, accept_sparse=False)
        if reset:
            names = list(self.modalities_)
            empty = [name for name in names if len(self.modalities_[name]) == 0]
            if empty:
                raise ValueError(
                    f"Modalities {empty} have 0 feature(s); every modality "
                    "needs at least one column."
                )
            if self.output not in ("mean", "concat") and self.output not in names:
                raise ValueError(
                    f"output={self.output!r} is not 'mean', 'concat' or a "
                    f"modality name; modalities are {names}."
                )
        present = check_finite_blocks(X, self.modalities_)
        self._check_range(X)
        return X, present

    def _check_range(self, X):
        """Refuse X whose values the standardisation cannot hold.

        The encoders standardise their input in the device's widest float
        (``Encoder.forward``): float64 holds any finite float64 X, but where
        the device has only float32, values beyond ~3.4e38 would become
        infinite and values below ~1e-31 lose their digits to the subnormal
        range, and the outputs NaN ("no modality present"). The decision is
        on X's largest magnitude, relative to that dtype's range.
        """
        xp = array_namespace(X)
        wide = accumulation_dtype(xp, array_device(X))
        finfo = np.finfo(np.float64 if wide == xp.float64 else np.float32)
        magnitude = xp.abs(X)
        magnitude = xp.where(xp.isnan(magnitude), xp.zeros_like(magnitude), magnitude)
        largest = float(xp.max(magnitude))
        low, high = smallest_square(finfo.dtype), float(finfo.max)
        if largest > high or 0 < largest < low:
            raise ValueError(
                f"X's values reach {largest:.3g}, outside what {finfo.dtype} "
                "(this device's widest float, in which the encoders standardise "
                f"their input) holds with its precision (about {low:.0e} to "
                f"{high:.1e}). "
                "Rescale X (e.g. StandardScaler, or multiply it by a constant)."
            )

    def _complete_rows(self, present):
        """Numpy indices of the rows carrying every modality (at least 4)."""
        present = to_numpy(present)
        complete = np.flatnonzero(present.all(axis=1))
        if len(complete) < 4:
            raise ValueError(
                f"DeepSharedProjection needs at least 4 rows carrying every "
                f"modality to train its encoders, got {len(complete)}."
            )
        return complete

    def _batch_size(self, n_rows):
        size = 256 if self.batch_size == "auto" else self.batch_size
        return min(size, n_rows)

    def _initialise(self, X, present, rng):
        """Draw new encoders in X's namespace and device."""
        hidden = self._hidden()
        if any(not isinstance(h, Integral) or h < 1 for h in hidden):
            raise ValueError(
                "hidden_layer_sizes must be positive integers, got "
                f"{self.hidden_layer_sizes!r}."
            )
        self._check_network_memory(hidden, X.shape[0])
        present = to_numpy(present)
        rows = {
            name: np.flatnonzero(present[:, position])
            for position, name in enumerate(self.modalities_)
        }
        encoders = build_encoders(
            rng,
            X,
            self.modalities_,
            rows,
            hidden,
            self.n_components,
            self.activation,
            self.dtype,
            input_scaling=self.input_scaling,
        )
        decoders = self._new_decoders(rng, X, encoders) if self.reconstruction else None
        self._set_parameters(encoders, decoders)
        self._optimizer = None

    def _hidden(self):
        hidden = self.hidden_layer_sizes
        return (hidden,) if isinstance(hidden, Integral) else tuple(hidden)

    def _new_decoders(self, rng, X, encoders):
        """DCCAE decoders in X's namespace and device, drawn after the
        encoders: each mirrors its encoder's hidden layers (those it has,
        whatever ``hidden_layer_sizes`` says now: a warm start keeps the
        encoders), from the output of ``n_components`` back to the
        modality's features."""
        xp, dev = array_namespace(X), array_device(X)
        return {
            name: Encoder.decoder(
                rng,
                self.n_components,
                encoders[name].hidden_sizes[::-1],
                len(indices),
                self.activation,
                self.dtype,
                xp=xp,
                device=dev,
            )
            for name, indices in self.modalities_.items()
        }

    def _check_network_memory(self, hidden, n_rows):
        """Refuse, naming hidden_layer_sizes, encoders that cannot fit: the
        weights, their gradients and Adam's two moments (four copies), plus
        one batch's activations and their gradients (decoders' as well with
        ``reconstruction``)."""
        itemsize = np.dtype(self.dtype).itemsize
        n_weights, n_activations = 0, 0
        for columns in self.modalities_.values():
            widths = [len(columns), *hidden, self.n_components]
            networks = [widths, widths[::-1]] if self.reconstruction else [widths]
            for sizes in networks:
                n_weights += sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
                n_activations += sum(sizes)
        check_allocation(
            itemsize * (4 * n_weights + 2 * self._batch_size(n_rows) * n_activations),
            f"hidden_layer_sizes={self.hidden_layer_sizes!r}",
            "Use narrower or fewer hidden layers (or a smaller batch_size).",
        )

    def _set_parameters(self, encoders, decoders=None):
        self.coefs_ = {name: e.coefs for name, e in encoders.items()}
        self.intercepts_ = {name: e.intercepts for name, e in encoders.items()}
        self.input_mean_ = {name: e.shift for name, e in encoders.items()}
        self.input_scale_ = {name: e.scale for name, e in encoders.items()}
        if decoders is None:
            self.__dict__.pop("decoder_coefs_", None)
            self.__dict__.pop("decoder_intercepts_", None)
        else:
            self.decoder_coefs_ = {name: d.coefs for name, d in decoders.items()}
            self.decoder_intercepts_ = {
                name: d.intercepts for name, d in decoders.items()
            }

    def _decoders(self):
        """Decoders over the fitted arrays (shared), or None if there are none."""
        if not hasattr(self, "decoder_coefs_"):
            return None
        return {
            name: Encoder(
                self.decoder_coefs_[name],
                self.decoder_intercepts_[name],
                None,
                None,
                self.activation,
            )
            for name in self.modalities_
        }

    def _encoders(self, X=None):
        """Encoders over the fitted arrays (shared, not copied), or over
        copies moved to X's namespace and device when they differ."""
        encoders = {
            name: Encoder(
                self.coefs_[name],
                self.intercepts_[name],
                self.input_mean_[name],
                self.input_scale_[name],
                self.activation,
            )
            for name in self.modalities_
        }
        if X is None or _same_place(self.coefs_[next(iter(self.coefs_))][0], X):
            return encoders
        xp, dev = array_namespace(X), array_device(X)
        return {name: _moved(e, xp, dev) for name, e in encoders.items()}

    def _train_here(self, X, rng):
        """(encoders, decoders or None) over the fitted arrays, first moved to
        X's namespace and device if they live elsewhere (a warm start or
        ``partial_fit`` on data from elsewhere; Adam's moments, on the old
        device, then start afresh). Decoders are drawn from ``rng`` when
        ``reconstruction`` is turned on for a model fitted without."""
        decoders = self._decoders()
        if not _same_place(next(iter(self.coefs_.values()))[0], X):
            xp, dev = array_namespace(X), array_device(X)
            if decoders is not None:
                decoders = {n: _moved(d, xp, dev) for n, d in decoders.items()}
            self._set_parameters(self._encoders(X), decoders)
            self._optimizer = None
        if not self.reconstruction:
            decoders = None
        elif decoders is None:
            encoders = self._encoders()
            hidden = next(iter(encoders.values())).hidden_sizes
            self._check_network_memory(hidden, X.shape[0])
            decoders = self._new_decoders(rng, X, encoders)
            self._set_parameters(encoders, decoders)
            self._optimizer = None
        return self._encoders(), decoders

    def _slices(self):
        k = self.n_components
        return {
            name: slice(k * m, k * (m + 1)) for m, name in enumerate(self.modalities_)
        }

    def _linear(self):
        return SharedProjection(
            n_components=self.n_components,
            modalities=self._slices(),
            reg=self.reg,
            output=self.output,
        )

    def _held_out_correlation(self, encoders, X, fit_rows, validation_rows):
        """Early stopping's score: the linear CCA of the outputs of
        ``fit_rows``, scored on ``validation_rows`` (both complete)."""
        Z = []
        for rows in (fit_rows, validation_rows):
            block = take_rows(X, rows)
            xp = array_namespace(block)
            present = xp.ones(
                (block.shape[0], len(self.modalities_)),
                dtype=xp.bool,
                device=array_device(block),
            )
            Z.append(to_numpy(encode(encoders, self.modalities_, block, present)))
        return self._linear().fit(Z[0]).score(Z[1])

    def _fit_linear(self, X, present):
        """The final linear CCA, on the host, of every row's outputs."""
        Z = encode(self._encoders(), self.modalities_, X, present)
        self.shared_projection_ = self._linear().fit(to_numpy(Z))
        correlations = self.shared_projection_.canonical_correlations_
        xp, dev = array_namespace(X), array_device(X)
        dtype = accumulation_dtype(xp, dev)
        if correlations.dtype == np.float32:
            dtype = xp.float32
        self.canonical_correlations_ = to_namespace(xp, correlations, dtype, dev)
        self.n_samples_seen_ = self.shared_projection_.n_samples_seen_
        M = len(self.modalities_)
        concat = self.output == "concat"
        self._n_features_out = self.n_components * (M if concat else 1)
        return self

    def _project(self, X, present):
        """Per-modality projections of X's outputs, in X's namespace."""
        Z = encode(self._encoders(X), self.modalities_, X, present)
        space = self.shared_projection_._space
        return space.project(Z, present=present)


def _same_place(array, X):
    return array_namespace(array) is array_namespace(X) and array_device(
        array
    ) == array_device(X)


def _moved(encoder, xp, dev):
    def move(array):
        wide = array.dtype == array_namespace(array).float64
        return to_namespace(xp, array, xp.float64 if wide else xp.float32, dev)

    standardised = encoder.shift is not None
    return Encoder(
        [move(W) for W in encoder.coefs],
        [move(b) for b in encoder.intercepts],
        move(encoder.shift) if standardised else None,
        move(encoder.scale) if standardised else None,
        encoder.activation,
    )


def same_modalities(a, b):
    return (
        a is not None
        and list(a) == list(b)
        and all(np.array_equal(a[name], b[name]) for name in a)
    )


def widths(modalities):
    return {name: len(indices) for name, indices in (modalities or {}).items()}
