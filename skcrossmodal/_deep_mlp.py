"""A multi-layer perceptron encoder with a hand-written backward pass, and Adam.

Written against the array API: the same code trains on numpy (the default,
no deep learning framework needed), torch (CPU or GPU), CuPy, ... whatever
namespace the weights live in. One ``Encoder`` per modality: standardised
input, ``len(hidden_layer_sizes)`` hidden layers with one activation, and a
linear output layer (a CCA objective is invariant to invertible linear maps
of the output, so no output non-linearity is wanted).

numpy keeps two local fast paths (in-place ReLU, ``vdot``): the array API has
no ``out=`` arguments, and these save a full-size temporary per layer.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.externals.array_api_compat import array_namespace, is_numpy_namespace
from sklearn.externals.array_api_compat import device as array_device

from ._namespace import accumulation_dtype, to_namespace

ACTIVATIONS = ("identity", "logistic", "tanh", "relu")


def _activate(xp, name, z):
    """The activation of ``z`` (a fresh array the caller owns: may be reused)."""
    if name == "identity":
        return z
    if name == "logistic":
        # 0.5 (1 + tanh(z / 2)) is the logistic function without exp overflow.
        return 0.5 * (1.0 + xp.tanh(0.5 * z))
    if name == "tanh":
        return xp.tanh(z)
    if is_numpy_namespace(xp):
        return np.maximum(z, 0, out=z)
    return xp.where(z > 0, z, xp.zeros_like(z))


def _derivative(xp, name, h):
    """d activation / d input, from the activation's output ``h``."""
    if name == "identity":
        return None  # multiply by one: skipped
    if name == "logistic":
        return h * (1 - h)
    if name == "tanh":
        return 1 - h * h
    return xp.astype(h > 0, h.dtype)


def sum_of_squares(xp, a):
    """sum(a * a) as a 0-d array of ``xp`` (a float for numpy); no host sync."""
    if is_numpy_namespace(xp):
        return float(np.vdot(a, a))
    return xp.sum(a * a)


def _glorot(rng, sizes, activation, xp, dtype, device):
    """Glorot-uniform weights and biases of layers of ``sizes`` (numpy's
    draws from ``rng``, moved to ``xp``'s ``device`` in ``dtype``, a name)."""
    dtype = getattr(xp, str(np.dtype(dtype)))
    factor = 2.0 if activation == "logistic" else 6.0
    coefs, intercepts = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = math.sqrt(factor / (fan_in + fan_out))
        weights = rng.uniform(-bound, bound, (fan_in, fan_out))
        coefs.append(to_namespace(xp, weights, dtype, device))
        bias = rng.uniform(-bound, bound, fan_out)
        intercepts.append(to_namespace(xp, bias, dtype, device))
    return coefs, intercepts


class Encoder:
    """Weights of one modality's MLP and its forward / backward passes.

    ``shift`` and ``scale`` standardise the input (per-feature mean and
    standard deviation of the training rows, or one scale per modality;
    scale 1 where a feature is constant), so one learning rate suits
    modalities of any units; they are kept in the device's widest float
    (float64 where it has one), where the input is standardised before it
    is cast to the weights' dtype. Every array is of one namespace and
    device, those of the data it trains on. ``shift`` and ``scale`` None give
    a network that takes its input as it is (a DCCAE decoder, see
    ``Encoder.decoder``).
    """

    def __init__(self, coefs, intercepts, shift, scale, activation):
        self.coefs = coefs
        self.intercepts = intercepts
        self.shift = shift
        self.scale = scale
        self.activation = activation
        self.xp = array_namespace(coefs[0])

    @classmethod
    def initialise(
        cls, rng, shift, scale, hidden, n_out, activation, dtype, xp=None, device=None
    ):
        """Glorot-uniform weights, as MLPClassifier draws them.

        The draws are numpy's (``rng``), then moved to ``xp``'s ``device`` in
        ``dtype`` (a dtype name): one ``random_state`` gives the same initial
        network in every namespace.
        """
        xp = array_namespace(np.empty(0)) if xp is None else xp
        sizes = [int(shift.shape[0]), *hidden, n_out]
        coefs, intercepts = _glorot(rng, sizes, activation, xp, dtype, device)
        # The standardisation runs in the device's widest float (see forward).
        wide = accumulation_dtype(xp, device)
        return cls(
            coefs,
            intercepts,
            to_namespace(xp, shift, wide, device),
            to_namespace(xp, scale, wide, device),
            activation,
        )

    @classmethod
    def decoder(cls, rng, n_in, hidden, n_out, activation, dtype, xp=None, device=None):
        """A network without input standardisation (``shift`` and ``scale``
        None), drawn as ``initialise`` draws: DCCAE's decoder, from an
        encoder's output (already in ``dtype``) back to its standardised
        input."""
        xp = array_namespace(np.empty(0)) if xp is None else xp
        sizes = [int(n_in), *hidden, n_out]
        coefs, intercepts = _glorot(rng, sizes, activation, xp, dtype, device)
        return cls(coefs, intercepts, None, None, activation)

    @property
    def params(self):
        return [*self.coefs, *self.intercepts]

    @property
    def hidden_sizes(self):
        """Widths of the hidden layers, input to output."""
        return tuple(int(W.shape[1]) for W in self.coefs[:-1])

    @property
    def n_out(self):
        return int(self.coefs[-1].shape[1])

    def standardise(self, X):
        """The first layer's input: ``X`` standardised, in the weights' dtype
        (a decoder's input, an encoder's output, as it is)."""
        if self.shift is None:
            return X
        xp = self.xp
        # Standardised in shift's (wide) dtype, then cast: casting X to
        # float32 first would lose a small spread around a large mean (an
        # offset of 1e8 leaves steps of 8) and overflow beyond ~3e38.
        wide = xp.astype(X, self.shift.dtype, copy=False)
        return xp.astype((wide - self.shift) / self.scale, self.coefs[0].dtype)

    def forward(self, X, keep=False):
        """Output for rows ``X`` (same namespace and device, any float dtype);
        with ``keep`` also every layer's output."""
        return self.propagate(self.standardise(X), keep)

    def propagate(self, h, keep=False):
        """``forward`` from the first layer's input ``h`` (``standardise``'s
        output, or a masked copy of it in training: input dropout)."""
        xp = self.xp
        layers = [h]
        last = len(self.coefs) - 1
        for i, (W, b) in enumerate(zip(self.coefs, self.intercepts)):
            h = h @ W
            h += b
            if i < last:
                h = _activate(xp, self.activation, h)
            layers.append(h)
        return (h, layers) if keep else h

    def backward(self, layers, grad_out, alpha, input_gradient=False):
        """Gradients of (loss + alpha/2 * sum ||W||^2) for every parameter.

        ``layers`` as ``forward(keep=True)`` returned them and ``grad_out`` the
        loss's gradient with respect to the output. The order is that of
        ``params``: every weight matrix, then every intercept. With
        ``input_gradient``, returns ``(gradients, d loss / d input)``: a
        decoder's input is an encoder's output, trained through it.
        """
        xp = self.xp
        coef_grads = [None] * len(self.coefs)
        intercept_grads = [None] * len(self.coefs)
        delta = grad_out
        for i in range(len(self.coefs) - 1, -1, -1):
            coef_grads[i] = layers[i].T @ delta
            if alpha:
                coef_grads[i] += alpha * self.coefs[i]
            intercept_grads[i] = xp.sum(delta, axis=0)
            if i > 0:
                delta = delta @ self.coefs[i].T
                derivative = _derivative(xp, self.activation, layers[i])
                if derivative is not None:
                    delta *= derivative
        grads = [*coef_grads, *intercept_grads]
        if input_gradient:
            return grads, delta @ self.coefs[0].T
        return grads

    def penalty(self):
        """sum ||W||^2 over the weight matrices (not the intercepts), as a
        float for numpy and a 0-d array elsewhere (read once an epoch)."""
        return sum(sum_of_squares(self.xp, W) for W in self.coefs)


def dropout_mask(generator, shape, rate, like):
    """Inverted dropout's multiplier: 0 with probability ``rate``, else
    ``1 / (1 - rate)`` (so each entry's expectation is unchanged), drawn by
    numpy's ``generator`` and returned in the namespace, dtype and device of
    ``like`` (one seed gives the same masks everywhere)."""
    kept = generator.random(shape, dtype=np.float32) >= rate
    xp = array_namespace(like)
    mask = kept.astype(np.float32) * np.float32(1.0 / (1.0 - rate))
    return to_namespace(xp, mask, like.dtype, array_device(like))


class Adam:
    """Adam (Kingma and Ba, 2015) on a flat list of arrays, updated in place."""

    def __init__(self, params, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.learning_rate = learning_rate
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.t = 0
        xp = array_namespace(params[0])
        self.first = [xp.zeros_like(p) for p in params]
        self.second = [xp.zeros_like(p) for p in params]

    @property
    def device(self):
        return array_device(self.first[0])

    def step(self, params, grads):
        self.t += 1
        xp = array_namespace(params[0])
        # The bias corrections folded into one step size, as in the paper. A
        # Python float: a numpy float64 scalar would promote float32 to float64.
        rate = (
            self.learning_rate
            * math.sqrt(1 - self.beta2**self.t)
            / (1 - self.beta1**self.t)
        )
        for p, g, m, v in zip(params, grads, self.first, self.second):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * (g * g)
            p -= rate * m / (xp.sqrt(v) + self.epsilon)
