"""Backpropagation written out by hand, following the lecture notes' delta rule — an independent
reference that ``jax.grad`` (and finite differences) can be checked against.

The notes write a layer as z⁽ˡ⁺¹⁾ = Θ⁽ˡ⁾ a⁽ˡ⁾, a⁽ˡ⁺¹⁾ = g(z⁽ˡ⁺¹⁾) and derive

    δ⁽ᴸ⁾ = ∂J/∂z⁽ᴸ⁾                          (e.g. a⁽ᴸ⁾ − y for a sigmoid/softmax output and cross-entropy)
    δ⁽ˡ⁾ = g′(z⁽ˡ⁾) ∘ Θ⁽ˡ⁾ᵀ δ⁽ˡ⁺¹⁾
    ∂J/∂Θ⁽ˡ⁾ = δ⁽ˡ⁺¹⁾ a⁽ˡ⁾ᵀ.

jaxnets stores a batch as rows, so a Dense layer computes z = a W + b with W = Θᵀ of shape
(in, out); the same rule reads ∂J/∂W = aᵀ δ (summed over the batch), ∂J/∂b = Σ δ, and the delta
passed down is δ Wᵀ, multiplied elementwise by g′(z) at the activation layer below.

Works on any :class:`jaxnets.nn.Sequential` of ``Flatten``, ``Dense`` and ``Activation`` layers —
in particular every model built by :func:`jaxnets.models.mlp` (params ``dense1 … denseL`` with
``w``, ``b``; PReLU slopes under ``prelu<k>/slope``) — for every activation of
:mod:`jaxnets.activations` and the losses ``squared_error``, ``binary_cross_entropy`` and
``cross_entropy`` (the batch mean of the per-example loss, as :func:`jaxnets.train.objective`).
Nothing here calls ``jax.grad``/``jax.vjp``: every derivative is written out.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import erf

from jaxnets._util import unknown
from jaxnets.losses import get_loss
from jaxnets.nn._util import broadcast_last
from jaxnets.nn.core import Activation, Dense, Flatten, Layer, Sequential

Array = jax.Array
__all__ = ["LOSS_DELTAS", "forward", "backward", "output_delta", "backprop", "layer_gradient", "naive_gradients",
           "activation_derivative"]


def _layers(model: Sequential) -> tuple[tuple[str, Layer], ...]:
    if not isinstance(model, Sequential):
        raise TypeError(f"backprop: expected a jaxnets Sequential (e.g. models.mlp), got {type(model).__name__}")
    for name, layer in model.layers:
        if not isinstance(layer, (Dense, Activation, Flatten)):
            raise TypeError(f"backprop: layer {name!r} is {type(layer).__name__}; hand-written backprop covers "
                            "Flatten, Dense and Activation layers only")
    return model.layers


def forward(model: Sequential, params: dict, x: Array) -> tuple[Array, tuple[Array, ...]]:
    """The forward pass, caching every layer's input (the a⁽ˡ⁾ and z⁽ˡ⁾ of the notes).

    x: (batch, ...) → (outputs (batch, k), cache) where ``cache[i]`` is the input of layer i and
    ``cache[-1]`` the outputs.
    """
    cache = [x]
    for name, layer in _layers(model):
        x, _ = layer.apply(params.get(name, {}), {}, x)
        cache.append(x)
    return x, tuple(cache)


def activation_derivative(layer: Activation, params: dict, z: Array, a: Array,
                          grad_a: Array) -> tuple[Array, dict]:
    """∂J/∂z from ∂J/∂a for a = g(z), written out per activation; also ∂J/∂slope for PReLU.

    z, a, grad_a: (batch, features) → (grad_z of the same shape, grads of the layer's params).
    """
    options = dict(layer.options)
    name = layer.name
    if name == "softmax":  # not elementwise: δz = β s ∘ (δa − Σ δa ∘ s) over the last axis
        beta = options.get("beta", 1.0)
        return beta * a * (grad_a - jnp.sum(grad_a * a, axis=-1, keepdims=True)), {}
    if name == "prelu":
        slope = broadcast_last(params["slope"], z.ndim)
        positive = z >= 0
        grad_slope = jnp.sum(jnp.where(positive, 0.0, z) * grad_a, axis=tuple(range(z.ndim - 1)))
        return jnp.where(positive, grad_a, slope * grad_a), {"slope": grad_slope}
    one, zero = jnp.ones_like(z), jnp.zeros_like(z)
    if name == "sigmoid":
        slope = a * (1 - a)  # σ′ = σ (1 − σ)
    elif name == "tanh":
        slope = 1 - a * a  # tanh′ = 1 − tanh²
    elif name == "relu":
        slope = jnp.where(z > 0, one, zero)  # 0 at z = 0, as jax.nn.relu
    elif name == "leaky_relu":
        slope = jnp.where(z >= 0, one, options.get("negative_slope", 0.01) * one)
    elif name == "elu":
        slope = jnp.where(z > 0, one, options.get("alpha", 1.0) * jnp.exp(jnp.minimum(z, 0)))
    elif name == "softplus":
        slope = 1 / (1 + jnp.exp(-z))  # softplus′ = σ
    elif name == "gelu":  # d/dz z Φ(z) = Φ(z) + z φ(z)
        slope = 0.5 * (1 + erf(z / math.sqrt(2))) + z * jnp.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    elif name == "step":
        slope = zero
    elif name == "identity":
        slope = one
    else:
        raise ValueError(f"backprop: no hand-written derivative for activation {name!r}")
    return slope * grad_a, {}


def backward(model: Sequential, params: dict, cache: tuple[Array, ...], grad_outputs: Array,
             stop_at: int = 0) -> dict:
    """The backward pass: deltas from the output down, gradients of every parameter.

    ``grad_outputs``: ∂J/∂outputs (batch, k). ``stop_at``: index of the lowest layer whose
    parameters are needed (deltas are not propagated below it). Returns a dict like ``params``
    (only layers at or above ``stop_at``).
    """
    layers = _layers(model)
    grads, delta = {}, grad_outputs
    for i in range(len(layers) - 1, stop_at - 1, -1):
        name, layer = layers[i]
        a_in, a_out = cache[i], cache[i + 1]
        lowest = i == stop_at
        if isinstance(layer, Dense):
            w = params[name]["w"]
            a2 = a_in.reshape(-1, a_in.shape[-1])  # (batch·…, in)
            d2 = delta.reshape(-1, delta.shape[-1])  # (batch·…, out)
            grads[name] = {"w": a2.T @ d2}  # ∂J/∂W = aᵀ δ
            if layer.use_bias:
                grads[name]["b"] = jnp.sum(d2, axis=0)  # ∂J/∂b = Σ δ
            if not lowest:
                delta = delta @ w.T  # Θᵀ δ
        elif isinstance(layer, Activation):
            delta, layer_grads = activation_derivative(layer, params.get(name, {}), a_in, a_out, delta)
            if layer_grads:
                grads[name] = layer_grads
        else:  # Flatten
            delta = delta.reshape(a_in.shape)
    return grads


def _squared_error_delta(outputs: Array, targets: Array) -> Array:
    return outputs - targets  # ∂/∂y ½‖y − t‖²


def _binary_cross_entropy_delta(logits: Array, labels: Array) -> Array:
    if logits.ndim == 2 and labels.ndim == 1 and logits.shape[1] == 1:
        labels = labels[:, None]
    return 1 / (1 + jnp.exp(-logits)) - labels.astype(logits.dtype)  # σ(z) − t


def _cross_entropy_delta(logits: Array, labels: Array) -> Array:
    shifted = logits - jnp.max(logits, axis=-1, keepdims=True)
    p = jnp.exp(shifted) / jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True)  # softmax(z)
    if labels.shape != logits.shape:
        labels = (labels.reshape(-1, 1) == jnp.arange(logits.shape[-1]).reshape(1, -1))
    return p - labels.astype(logits.dtype)  # softmax(z) − onehot(t)


# ∂(per-example loss)/∂outputs, written out: outputs (batch, k), targets → (batch, k)
LOSS_DELTAS: dict[str, Callable[[Array, Array], Array]] = {
    "squared_error": _squared_error_delta,
    "binary_cross_entropy": _binary_cross_entropy_delta,
    "cross_entropy": _cross_entropy_delta,
}


def output_delta(loss: str, outputs: Array, targets: Array) -> tuple[Array, Array]:
    """(mean loss, ∂(mean loss)/∂outputs): outputs (batch, k) → scalar, (batch, k)."""
    if loss not in LOSS_DELTAS:
        raise unknown("loss", loss, sorted(LOSS_DELTAS), plural="losses for backprop")
    value = jnp.mean(get_loss(loss)(outputs, targets))
    return value, LOSS_DELTAS[loss](outputs, targets).reshape(outputs.shape) / outputs.shape[0]


def backprop(model: Sequential, params: dict, x: Array, targets: Array,
             loss: str = "cross_entropy") -> tuple[Array, dict]:
    """Mean loss of the batch and its gradient by the delta rule (one forward, one backward pass).

    x: (batch, ...); targets as the loss takes them. Returns (scalar, grads shaped like params).
    """
    outputs, cache = forward(model, params, x)
    value, delta = output_delta(loss, outputs, targets)
    return value, backward(model, params, cache, delta)


def layer_gradient(model: Sequential, params: dict, x: Array, targets: Array, layer: str,
                   loss: str = "cross_entropy") -> dict:
    """Gradient of one layer's parameters computed on its own: a fresh forward pass, then deltas
    from the output down to ``layer`` only. This is the "naive" differentiation of the notes:
    done for every layer it costs O(L²) layer operations, against backprop's O(L)."""
    names = [name for name, _ in _layers(model)]
    if layer not in names:
        raise ValueError(f"layer_gradient: no layer {layer!r}; layers: {', '.join(names)}")
    outputs, cache = forward(model, params, x)
    _, delta = output_delta(loss, outputs, targets)
    return backward(model, params, cache, delta, stop_at=names.index(layer))[layer]


def naive_gradients(model: Sequential, params: dict, x: Array, targets: Array,
                    loss: str = "cross_entropy") -> dict:
    """All gradients, one layer at a time with :func:`layer_gradient` (O(L²); for comparison).
    Under one ``jit`` the compiler may merge the repeated forward passes: time it per layer."""
    return {name: layer_gradient(model, params, x, targets, name, loss) for name in params}
