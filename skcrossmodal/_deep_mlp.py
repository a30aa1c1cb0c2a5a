"""A multi-layer perceptron encoder with a hand-written backward pass, and Adam.

numpy only, so ``DeepSharedProjection`` needs no deep learning framework. One
``Encoder`` per modality: standardised input, ``len(hidden_layer_sizes)``
hidden layers with one activation, and a linear output layer (a CCA objective
is invariant to invertible linear maps of the output, so no output
non-linearity is wanted).
"""

from __future__ import annotations

import numpy as np

# Activations as scikit-learn's MLPClassifier names them. Each backward takes
# the layer's *output* (what forward kept), which is enough for all four.
_ACTIVATIONS = {
    "identity": lambda z: z,
    "logistic": lambda z: 0.5 * (1.0 + np.tanh(0.5 * z)),  # no overflow warning
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0, out=z),
}


def _derivative(name, h):
    """d activation / d input, from the activation's output ``h``."""
    if name == "identity":
        return None  # multiply by one: skipped
    if name == "logistic":
        return h * (1 - h)
    if name == "tanh":
        return 1 - h * h
    return (h > 0).astype(h.dtype)


class Encoder:
    """Weights of one modality's MLP and its forward / backward passes.

    ``shift`` and ``scale`` standardise the input (per-feature mean and
    standard deviation of the training rows, scale 1 where a feature is
    constant), so one learning rate suits modalities of any units.
    """

    def __init__(self, coefs, intercepts, shift, scale, activation):
        self.coefs = coefs
        self.intercepts = intercepts
        self.shift = shift
        self.scale = scale
        self.activation = activation

    @classmethod
    def initialise(cls, rng, shift, scale, hidden, n_out, activation, dtype):
        """Glorot-uniform weights, as MLPClassifier draws them."""
        sizes = [len(shift), *hidden, n_out]
        factor = 2.0 if activation == "logistic" else 6.0
        coefs, intercepts = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coefs.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype))
            intercepts.append(rng.uniform(-bound, bound, fan_out).astype(dtype))
        return cls(
            coefs, intercepts, shift.astype(dtype), scale.astype(dtype), activation
        )

    @property
    def params(self):
        return [*self.coefs, *self.intercepts]

    def forward(self, X, keep=False):
        """Output for rows ``X``; with ``keep`` also every layer's output."""
        dtype = self.coefs[0].dtype
        h = (np.asarray(X, dtype=dtype) - self.shift) / self.scale
        layers = [h]
        last = len(self.coefs) - 1
        for i, (W, b) in enumerate(zip(self.coefs, self.intercepts)):
            h = h @ W
            h += b
            if i < last:
                h = _ACTIVATIONS[self.activation](h)
            layers.append(h)
        return (h, layers) if keep else h

    def backward(self, layers, grad_out, alpha):
        """Gradients of (loss + alpha/2 * sum ||W||^2) for every parameter.

        ``layers`` as ``forward(keep=True)`` returned them and ``grad_out`` the
        loss's gradient with respect to the output. The order is that of
        ``params``: every weight matrix, then every intercept.
        """
        coef_grads = [None] * len(self.coefs)
        intercept_grads = [None] * len(self.coefs)
        delta = grad_out
        for i in range(len(self.coefs) - 1, -1, -1):
            coef_grads[i] = layers[i].T @ delta
            if alpha:
                coef_grads[i] += alpha * self.coefs[i]
            intercept_grads[i] = delta.sum(axis=0)
            if i > 0:
                delta = delta @ self.coefs[i].T
                derivative = _derivative(self.activation, layers[i])
                if derivative is not None:
                    delta *= derivative
        return [*coef_grads, *intercept_grads]

    def penalty(self):
        """sum ||W||^2 over the weight matrices (not the intercepts)."""
        return float(sum(np.vdot(W, W) for W in self.coefs))


class Adam:
    """Adam (Kingma and Ba, 2015) on a flat list of arrays, updated in place."""

    def __init__(self, params, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.learning_rate = learning_rate
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.t = 0
        self.first = [np.zeros_like(p) for p in params]
        self.second = [np.zeros_like(p) for p in params]

    def step(self, params, grads):
        self.t += 1
        # The bias corrections folded into one step size, as in the paper.
        rate = (
            self.learning_rate
            * np.sqrt(1 - self.beta2**self.t)
            / (1 - self.beta1**self.t)
        )
        for p, g, m, v in zip(params, grads, self.first, self.second):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * (g * g)
            p -= (rate * m / (np.sqrt(v) + self.epsilon)).astype(p.dtype, copy=False)
