"""Losses, penalties and metrics.

Per-example losses take model outputs of shape (batch, ...) and targets, and return
shape (batch,); training averages them. Cross-entropies take *logits* and are computed
with ``log_softmax``/``log_sigmoid`` (through Optax), so they stay finite and correct for
logits of ±1e4 and beyond.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxnets._util import unknown, weight_mask

Array = jax.Array

def squared_error(outputs: Array, targets: Array) -> Array:
    """½‖y − t‖² per example. outputs, targets: (batch, ...) of equal shape → (batch,)."""
    if outputs.shape != targets.shape:
        raise ValueError(f"squared_error: outputs {outputs.shape} and targets {targets.shape} differ")
    diff = (outputs - targets).reshape(outputs.shape[0], -1)
    return 0.5 * jnp.sum(diff * diff, axis=-1)


def binary_cross_entropy(logits: Array, labels: Array) -> Array:
    """−t log σ(z) − (1−t) log(1−σ(z)) per example, from logits z.

    logits: (batch,) or (batch, k) independent outputs; labels in {0, 1} (or soft), same
    shape, or (batch,) when logits are (batch, 1). Returns (batch,), summed over outputs.
    """
    if logits.ndim == 2 and labels.ndim == 1 and logits.shape[1] == 1:
        labels = labels[:, None]
    if logits.shape != labels.shape:
        raise ValueError(f"binary_cross_entropy: logits {logits.shape} and labels {labels.shape} differ")
    losses = optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype))
    return losses.reshape(logits.shape[0], -1).sum(axis=-1)


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Multi-class cross-entropy −log softmax(z)_t per example, from logits.

    logits: (batch, classes); labels: integer class indices (batch,) or one-hot /
    probability rows (batch, classes). Returns (batch,).
    """
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: expected logits of shape (batch, classes), got {logits.shape}")
    if labels.shape == logits.shape:
        return optax.softmax_cross_entropy(logits, labels.astype(logits.dtype))
    if labels.shape == logits.shape[:1] and jnp.issubdtype(labels.dtype, jnp.integer):
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    raise ValueError(
        f"cross_entropy: labels must be integers of shape ({logits.shape[0]},) or one-hot of shape "
        f"{logits.shape}; got {labels.dtype} {labels.shape}"
    )


LOSSES: dict[str, Callable[[Array, Array], Array]] = {
    "squared_error": squared_error,
    "binary_cross_entropy": binary_cross_entropy,
    "cross_entropy": cross_entropy,
}


def get_loss(name_or_fn: str | Callable) -> Callable[[Array, Array], Array]:
    """The per-example loss called ``name`` (a callable passes through)."""
    if callable(name_or_fn):
        return name_or_fn
    try:
        return LOSSES[name_or_fn]
    except (KeyError, TypeError):
        raise unknown("loss", name_or_fn, sorted(LOSSES), plural="losses") from None


def _masked_leaves(params, mask):
    mask = weight_mask(params) if mask is None else mask
    return [leaf for leaf, keep in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(mask)) if keep]


def l1_penalty(params, mask=None) -> Array:
    """Σ|w| over the leaves selected by ``mask`` (default :func:`jaxnets._util.weight_mask`: every
    trained value that is not a bias, i.e. not named b/bias/offset)."""
    return sum((jnp.sum(jnp.abs(w)) for w in _masked_leaves(params, mask)), jnp.zeros(()))


def l2_penalty(params, mask=None) -> Array:
    """½ Σ w² over the leaves selected by ``mask`` (default: weights, not biases)."""
    return sum((0.5 * jnp.sum(w * w) for w in _masked_leaves(params, mask)), jnp.zeros(()))


def predicted_classes(outputs: Array) -> Array:
    """Class predictions: argmax over classes for (batch, k>1) outputs, z ≥ 0 for a single
    logit of shape (batch,) or (batch, 1)."""
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        return jnp.argmax(outputs, axis=-1)
    return (outputs.reshape(outputs.shape[0]) >= 0).astype(jnp.int32)


def correct(outputs: Array, labels: Array) -> Array:
    """Per-example 1.0/0.0 correctness; labels are class indices or one-hot rows. → (batch,)"""
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = jnp.argmax(labels, axis=-1)
    return (predicted_classes(outputs) == labels.reshape(labels.shape[0])).astype(jnp.float32)


def accuracy(outputs: Array, labels: Array) -> Array:
    """Fraction of correctly classified examples (see :func:`correct`)."""
    return jnp.mean(correct(outputs, labels))
