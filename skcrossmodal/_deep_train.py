"""The mini-batch training loop of ``DeepSharedProjection``.

Kept apart from the estimator so that ``deep.py`` holds the public API and
its validation only. Every function here takes arrays and the estimator's
parameters; none reads or sets estimator attributes. X, the encoders and
every computation share one array namespace and device (numpy, torch, CuPy,
...); row indices (batches, the validation split) are numpy arrays drawn by
numpy's ``RandomState``, so a ``random_state`` gives the same batches in
every namespace, and are moved to X's device once a batch.
"""

from __future__ import annotations

import math
import time

import numpy as np
from sklearn.externals.array_api_compat import array_namespace
from sklearn.externals.array_api_compat import device as array_device

from ._batch_sums import check_spread_representable
from ._closed_form import feature_scales
from ._deep_loss import ey_loss_and_gradients
from ._deep_mlp import Adam, Encoder, dropout_mask, sum_of_squares
from ._modalities import take_columns
from ._namespace import accumulation_dtype, to_numpy

# Rows encoded at a time outside training: bounds the memory of transform to
# this many rows times the widest layer, whatever n_samples.
CHUNK_ROWS = 4096


def take_rows(X, rows):
    """X[rows] for numpy row indices ``rows``, in X's namespace and device."""
    if isinstance(X, np.ndarray):
        return X[rows]
    xp = array_namespace(X)
    return xp.take(X, xp.asarray(rows, device=array_device(X)), axis=0)


def input_statistics(X, indices, rows, dtype, scaling="feature"):
    """Per-feature mean and scale of X[rows][:, indices], as numpy arrays of
    ``dtype`` (summed in float64 where the device has it): each feature's
    standard deviation (``scaling="feature"``), or one number for the whole
    block (``"modality"``), the root mean variance of its features.

    A constant feature (a constant pixel, say) keeps scale 1: dividing by ~0
    would blow up the rounding noise of a feature that carries nothing.
    Constancy is judged against the feature's own level (the shared
    ``feature_scales``), never an absolute floor: the former
    ``1e-12 * max(largest std, 1)`` left every feature of data in units of
    1e-19 unscaled, and the encoders' outputs constant ("rank 0").
    """
    xp = array_namespace(X)
    wide = accumulation_dtype(xp, array_device(X))
    block = xp.astype(take_columns(take_rows(X, rows), indices), wide)
    mean = np.asarray(to_numpy(xp.mean(block, axis=0)), dtype=np.float64)
    variance = np.asarray(to_numpy(xp.var(block, axis=0)), dtype=np.float64)
    # Values differing by less than ~1e-146 have no representable variance
    # (their squares vanish): refused, as SharedProjection refuses them,
    # rather than taken for constants (outputs constant: "rank 0").
    check_spread_representable(xp, block, np.asarray(indices), std=np.sqrt(variance))
    if scaling == "modality":
        # One "feature" whose variance is the mean variance, judged constant
        # against the block's largest level.
        common = feature_scales(
            np, np.array([variance.mean()]), np.array([np.abs(mean).max()])
        )
        std = np.full_like(variance, common[0])
    else:
        std = feature_scales(np, variance, mean)
    return mean.astype(dtype), std.astype(dtype)


def encode(encoders, modalities, X, present):
    """Every modality's representation side by side, NaN where missing, in
    X's namespace and device.

    The rows of a missing modality (a block of NaN) are encoded as zeros and
    then replaced by NaN: a mask rather than writing into selected rows,
    which the array API does not offer.
    """
    xp = array_namespace(X)
    blocks = []
    for position, (name, indices) in enumerate(modalities.items()):
        encoder = encoders[name]
        dtype = encoder.coefs[0].dtype
        rows_present = present[:, position][:, None]
        chunks = []
        for start in range(0, X.shape[0], CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, X.shape[0])
            block = take_columns(X[start:stop, :], indices)
            block = xp.where(rows_present[start:stop, :], block, xp.zeros_like(block))
            chunks.append(encoder.forward(block))
        out = chunks[0] if len(chunks) == 1 else xp.concat(chunks, axis=0)
        nan = xp.asarray(float("nan"), dtype=dtype, device=array_device(X))
        blocks.append(xp.where(rows_present, out, nan))
    return blocks[0] if len(blocks) == 1 else xp.concat(blocks, axis=1)


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


def network_params(encoders, decoders=None):
    """Every trained array, in the order of the optimizer's moments and of
    ``batch_loss_and_gradients``: each encoder's, then each decoder's."""
    networks = [*encoders.values(), *(decoders or {}).values()]
    return [p for network in networks for p in network.params]


def batch_loss_and_gradients(
    encoders, blocks, decay, decoders=None, reconstruction=0.0, input_masks=None
):
    """Loss of one mini-batch and its gradient for every trained array.

    ``encoders`` and ``blocks`` (each modality's columns of the batch) in the
    same order. The loss is the Eckhart-Young loss of the encoders' outputs
    plus ``decay / 2 * sum ||W||^2`` over every network's weights and, with
    ``decoders`` (DCCAE, Wang et al., ICML 2015), ``reconstruction`` times
    each modality's mean squared error of its decoder's reconstruction of
    the standardised input from the encoder's output (the fraction of that
    input's variance left unexplained, as the standardised features have
    mean variance 1). ``input_masks`` (one per encoder, or None) multiply
    the standardised inputs (input dropout); a decoder then rebuilds the
    clean input from the masked one's code, as a denoising autoencoder
    does. Gradients in ``network_params`` order.
    """
    if input_masks is None:
        input_masks = [None] * len(encoders)
    outputs, layers, inputs = [], [], []
    for encoder, block, mask in zip(encoders, blocks, input_masks):
        clean = encoder.standardise(block)
        out, kept = encoder.propagate(clean if mask is None else clean * mask, True)
        outputs.append(out)
        layers.append(kept)
        inputs.append(clean)
    loss, grads_out = ey_loss_and_gradients(outputs)
    encoder_grads, decoder_grads = [], []
    for m, encoder in enumerate(encoders):
        grad_out = grads_out[m]
        if decoders is not None:
            decoder = decoders[m]
            target = inputs[m]  # the standardised input, before any masking
            rebuilt, rebuilt_layers = decoder.forward(outputs[m], True)
            residual = rebuilt - target
            weight = reconstruction / (target.shape[0] * target.shape[1])
            loss = loss + weight * sum_of_squares(encoder.xp, residual)
            grads, into_code = decoder.backward(
                rebuilt_layers, (2.0 * weight) * residual, decay, input_gradient=True
            )
            decoder_grads.extend(grads)
            grad_out = grad_out + into_code
            if decay:
                loss = loss + 0.5 * decay * decoder.penalty()
        encoder_grads.extend(encoder.backward(layers[m], grad_out, decay))
        if decay:
            loss = loss + 0.5 * decay * encoder.penalty()
    return loss, encoder_grads + decoder_grads


def run_epoch(
    encoders,
    optimizer,
    modalities,
    X,
    rows,
    rng,
    batch_size,
    alpha,
    schedule=None,
    decoders=None,
    reconstruction=0.0,
    input_dropout=0.0,
):
    """One pass of Adam over ``rows``; returns the mean mini-batch loss.

    The loss of a batch is that of ``batch_loss_and_gradients`` with
    ``decay = alpha / batch rows`` (MLPClassifier's weight decay). It is
    summed on X's device and read once, at the end of the epoch.
    ``schedule``, if given, maps the fraction of the epoch done (0 to 1) to
    the learning rate of the next step. ``decoders`` (a dict like
    ``encoders``, or None) add the DCCAE reconstruction term.
    ``input_dropout`` above 0 zeroes that fraction of each batch's
    standardised inputs at random (fresh masks every batch).
    """
    names = list(modalities)
    params = network_params(encoders, decoders)
    networks = [encoders[name] for name in names]
    decoder_list = None if decoders is None else [decoders[name] for name in names]
    parts = batches(rng, rows, batch_size)
    # Masks come from a Generator seeded by rng (its float32 draws cost a
    # fraction of RandomState's); without dropout rng's stream is untouched.
    noise = (
        np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
        if input_dropout
        else None
    )
    total, seen = 0.0, 0
    for position, batch in enumerate(parts):
        if schedule is not None:
            optimizer.learning_rate = schedule(position / len(parts))
        X_batch = take_rows(X, batch)
        blocks = [take_columns(X_batch, modalities[name]) for name in names]
        masks = None
        if noise is not None:
            masks = [
                dropout_mask(noise, tuple(block.shape), input_dropout, network.coefs[0])
                for block, network in zip(blocks, networks)
            ]
        loss, grads = batch_loss_and_gradients(
            networks, blocks, alpha / len(batch), decoder_list, reconstruction, masks
        )
        optimizer.step(params, grads)
        total = total + loss * len(batch)
        seen += len(batch)
    return float(total) / seen


def new_optimizer(encoders, learning_rate, decoders=None):
    return Adam(network_params(encoders, decoders), learning_rate)


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
    schedule,
    verbose,
    decoders=None,
    reconstruction=0.0,
    input_dropout=0.0,
):
    """Epochs until ``max_iter`` or no progress; returns the training record.

    ``validation_score`` is ``None`` (progress is then a fall of the mean
    training loss by more than ``tol``, as in MLPClassifier) or a callable
    returning the held-out correlation of the current encoders (progress is
    then a rise by more than ``tol``, and the encoders of the best epoch are
    restored at the end). ``schedule`` is the estimator's ``learning_rate``:
    with ``"adaptive"``, each time two epochs in a row make no progress the
    learning rate is divided by 5 (MLPClassifier's ``"adaptive"``); with
    ``"cosine"`` it falls from its initial value to 0 along half a cosine
    over ``max_iter`` epochs, step by step (Loshchilov and Hutter's SGDR
    without restarts).
    """
    initial = optimizer.learning_rate
    record = {"loss_curve": [], "validation_scores": [], "converged": False}
    best, best_params, stale = None, None, 0
    start = time.perf_counter()
    for epoch in range(max_iter):
        cosine = None
        if schedule == "cosine":

            def cosine(fraction, epoch=epoch):
                done = (epoch + fraction) / max_iter
                return initial * 0.5 * (1.0 + math.cos(math.pi * done))

        loss = run_epoch(
            encoders,
            optimizer,
            modalities,
            X,
            train_rows,
            rng,
            batch_size,
            alpha,
            cosine,
            decoders,
            reconstruction,
            input_dropout,
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
                best_params = [_copy(p) for p in network_params(encoders, decoders)]
            message = f"loss {loss:.6f}, validation correlation {score:.4f}"
        if schedule == "adaptive" and stale and stale % 2 == 0:
            optimizer.learning_rate /= 5.0
        if verbose:
            elapsed = time.perf_counter() - start
            print(
                f"Epoch {epoch + 1}: {message}, learning rate "
                f"{optimizer.learning_rate:.3g}, {elapsed:.1f} s",
                flush=True,
            )
        if stale >= n_iter_no_change:
            record["converged"] = True
            break
    record["n_epochs"] = epoch + 1
    if schedule == "cosine":
        # A later partial_fit continues at the initial rate, not at ~0.
        optimizer.learning_rate = initial
    if best_params is not None:
        current = network_params(encoders, decoders)
        for target, saved in zip(current, best_params):
            target[...] = saved
        record["best_validation_score"] = best
    return record


def _copy(array):
    if isinstance(array, np.ndarray):
        return array.copy()
    return array_namespace(array).asarray(array, copy=True)


def build_encoders(
    rng, X, modalities, rows, hidden, n_out, activation, dtype, input_scaling="feature"
):
    """New encoders in X's namespace and device, weights of ``dtype`` (a name),
    inputs standardised by ``input_scaling`` (see ``input_statistics``)."""
    xp = array_namespace(X)
    encoders = {}
    for name, indices in modalities.items():
        shift, scale = input_statistics(
            X, indices, rows[name], np.float64, input_scaling
        )
        encoders[name] = Encoder.initialise(
            rng,
            shift,
            scale,
            hidden,
            n_out,
            activation,
            dtype,
            xp=xp,
            device=array_device(X),
        )
    return encoders
