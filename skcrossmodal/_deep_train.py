"""The mini-batch training loop of ``DeepSharedProjection``.

Kept apart from the estimator so that ``deep.py`` holds the public API and
its validation only. Every function here takes plain numpy arrays and the
estimator's parameters; none reads or sets estimator attributes.
"""

from __future__ import annotations

import time

import numpy as np

from ._closed_form import feature_scales
from ._deep_loss import ey_loss_and_gradients
from ._deep_mlp import Adam, Encoder

# Rows encoded at a time outside training: bounds the memory of transform to
# this many rows times the widest layer, whatever n_samples.
CHUNK_ROWS = 4096


def input_statistics(X, indices, rows, dtype):
    """Per-feature mean and standard deviation of X[rows][:, indices].

    A constant feature (a constant pixel, say) keeps scale 1: dividing by ~0
    would blow up the rounding noise of a feature that carries nothing.
    Constancy is judged against the feature's own level (the shared
    ``feature_scales``), never an absolute floor: the former
    ``1e-12 * max(largest std, 1)`` left every feature of data in units of
    1e-19 unscaled, and the encoders' outputs constant ("rank 0").
    """
    block = X[rows][:, indices].astype(np.float64)
    mean = block.mean(axis=0)
    std = feature_scales(np, block.var(axis=0), mean)
    return mean.astype(dtype), std.astype(dtype)


def encode(encoders, modalities, X, present):
    """Every modality's representation side by side, NaN where missing."""
    blocks = []
    for position, (name, indices) in enumerate(modalities.items()):
        encoder = encoders[name]
        n_out = encoder.coefs[-1].shape[1]
        out = np.full((X.shape[0], n_out), np.nan, dtype=encoder.coefs[0].dtype)
        rows = np.flatnonzero(present[:, position])
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[start : start + CHUNK_ROWS]
            out[chunk] = encoder.forward(X[chunk][:, indices])
        blocks.append(out)
    return np.hstack(blocks)


def split_validation(rng, rows, fraction):
    """(training rows, validation rows), both sorted, at least 4 training."""
    order = rng.permutation(rows)
    n_val = max(2, int(round(fraction * len(order))))
    if len(order) - n_val < 4:
        raise ValueError(
            f"early_stopping with validation_fraction={fraction} leaves "
            f"{len(order) - n_val} training rows; at least 4 are needed. Give "
            "more rows or set early_stopping=False."
        )
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def batches(rng, rows, batch_size):
    """Shuffled batches of ``rows``, each of at least ``min(batch_size, n)``
    rows (the remainder is spread over the batches, so none is too small for
    the two halves of the loss)."""
    order = rng.permutation(rows)
    n_batches = max(1, len(order) // batch_size)
    return np.array_split(order, n_batches)


def run_epoch(encoders, optimizer, modalities, X, rows, rng, batch_size, alpha):
    """One pass of Adam over ``rows``; returns the mean mini-batch loss.

    The loss of a batch is the Eckhart-Young loss plus
    ``alpha / (2 * batch rows) * sum ||W||^2``, MLPClassifier's weight decay.
    """
    names = list(modalities)
    params = [p for name in names for p in encoders[name].params]
    total, seen = 0.0, 0
    for batch in batches(rng, rows, batch_size):
        outputs, layers = [], []
        for name in names:
            out, kept = encoders[name].forward(X[batch][:, modalities[name]], True)
            outputs.append(out)
            layers.append(kept)
        loss, grads_out = ey_loss_and_gradients(outputs)
        decay = alpha / len(batch)
        grads = []
        for name, kept, grad_out in zip(names, layers, grads_out):
            grads.extend(encoders[name].backward(kept, grad_out, decay))
            loss += 0.5 * decay * encoders[name].penalty()
        optimizer.step(params, grads)
        total += loss * len(batch)
        seen += len(batch)
    return total / seen


def new_optimizer(encoders, learning_rate):
    return Adam([p for e in encoders.values() for p in e.params], learning_rate)


def train(
    encoders,
    optimizer,
    modalities,
    X,
    train_rows,
    *,
    rng,
    batch_size,
    alpha,
    max_iter,
    tol,
    n_iter_no_change,
    validation_score,
    adaptive,
    verbose,
):
    """Epochs until ``max_iter`` or no progress; returns the training record.

    ``validation_score`` is ``None`` (progress is then a fall of the mean
    training loss by more than ``tol``, as in MLPClassifier) or a callable
    returning the held-out correlation of the current encoders (progress is
    then a rise by more than ``tol``, and the encoders of the best epoch are
    restored at the end). With ``adaptive``, each time two epochs in a row
    make no progress the learning rate is divided by 5 (MLPClassifier's
    ``learning_rate="adaptive"``).
    """
    record = {"loss_curve": [], "validation_scores": [], "converged": False}
    best, best_params, stale = None, None, 0
    start = time.perf_counter()
    for epoch in range(max_iter):
        loss = run_epoch(
            encoders, optimizer, modalities, X, train_rows, rng, batch_size, alpha
        )
        record["loss_curve"].append(loss)
        # As MLPClassifier: progress is measured against the best so far
        # plus tol, and the best is kept whether or not it beat it by tol.
        if validation_score is None:
            stale = (
                0
                if best is None or loss < best - tol * max(abs(best), 1.0)
                else stale + 1
            )
            best = loss if best is None else min(best, loss)
            message = f"loss {loss:.6f}"
        else:
            score = validation_score()
            record["validation_scores"].append(score)
            stale = 0 if best is None or score > best + tol else stale + 1
            if best is None or score > best:
                best = score
                best_params = [p.copy() for e in encoders.values() for p in e.params]
            message = f"loss {loss:.6f}, validation correlation {score:.4f}"
        if adaptive and stale and stale % 2 == 0:
            optimizer.learning_rate /= 5.0
        if verbose:
            elapsed = time.perf_counter() - start
            print(
                f"Epoch {epoch + 1}: {message}, learning rate "
                f"{optimizer.learning_rate:.2g}, {elapsed:.1f} s",
                flush=True,
            )
        if stale >= n_iter_no_change:
            record["converged"] = True
            break
    record["n_epochs"] = epoch + 1
    if best_params is not None:
        current = [p for e in encoders.values() for p in e.params]
        for target, saved in zip(current, best_params):
            target[...] = saved
        record["best_validation_score"] = best
    return record


def build_encoders(rng, X, modalities, rows, hidden, n_out, activation, dtype):
    encoders = {}
    for name, indices in modalities.items():
        shift, scale = input_statistics(X, indices, rows[name], dtype)
        encoders[name] = Encoder.initialise(
            rng, shift, scale, hidden, n_out, activation, dtype
        )
    return encoders
