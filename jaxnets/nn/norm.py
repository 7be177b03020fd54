"""Normalisation layers: BatchNorm (batch statistics in training, running averages in ``state``
for evaluation) and LayerNorm.

Both normalise features on the last axis (channels of NHWC images, features of a (batch, features)
or (batch, tokens, dim) array) and then scale and shift them with learned per-feature
``scale`` (initialised to 1) and ``offset`` (initialised to 0):

    y = (x - mean) / sqrt(var + epsilon) * scale + offset
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxnets.nn._util import broadcast_last, check_rank
from jaxnets.nn.core import Layer, Shape, as_shape_dtype, param_dtype


class _FeatureNorm(Layer):
    """Shared init and checks: per-feature ``scale`` and ``offset`` of shape (features,)."""

    def _check(self, shape: Shape, features: int | None) -> None:
        check_rank(self, shape, 2, f"(batch, ..., {features or 'features'})")
        if features is not None and shape[-1] != features:
            raise self.error(
                f"feature mismatch: expected {features} features (channels, last axis), got {shape[-1]} "
                f"in input of shape {tuple(shape)}"
            )

    def _affine_params(self, x) -> dict:
        spec = as_shape_dtype(x)
        self._check(spec.shape, None)
        dtype = param_dtype(spec)
        features = spec.shape[-1]
        return {"scale": jnp.ones((features,), dtype), "offset": jnp.zeros((features,), dtype)}

    def _normalise(self, params, x, mean, var):
        """x: (batch, ..., features); mean, var: broadcastable to x."""
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        return y * broadcast_last(params["scale"], x.ndim) + broadcast_last(params["offset"], x.ndim)

    def output_shape(self, input_shape):
        self._check(input_shape, None)
        return tuple(input_shape)


@dataclasses.dataclass(frozen=True)
class BatchNorm(_FeatureNorm):
    """Batch normalisation over all axes but the last.

    x: (batch, ..., features) → y: same shape.
    params: ``scale``, ``offset`` (features,). state: ``mean``, ``var`` (features,), the running
    averages, initialised to 0 and 1.

    With ``train=True`` each feature is normalised with the mean and (biased) variance of the
    batch (over the batch and spatial axes) and the returned state holds
    ``momentum * running + (1 - momentum) * batch_statistic`` (the Flax/Keras convention; PyTorch's
    ``momentum=0.1`` is ``momentum=0.9`` here). With ``train=False`` the running averages are used
    and the state is returned unchanged.
    """

    momentum: float = 0.9
    epsilon: float = 1e-5

    def __post_init__(self):
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"BatchNorm: momentum must be in [0, 1], got {self.momentum!r}")
        if not self.epsilon > 0:
            raise ValueError(f"BatchNorm: epsilon must be positive, got {self.epsilon!r}")

    def init(self, key, x):
        params = self._affine_params(x)
        features, dtype = params["scale"].shape, params["scale"].dtype
        return params, {"mean": jnp.zeros(features, dtype), "var": jnp.ones(features, dtype)}

    def apply(self, params, state, x, *, key=None, train=False):
        self._check(x.shape, params["scale"].shape[0])
        if "mean" not in state or "var" not in state:
            raise self.error(
                "state holds no running statistics ('mean', 'var'); pass the state returned by init "
                f"(got state keys {sorted(state)})"
            )
        if not train:
            mean = broadcast_last(state["mean"], x.ndim)
            var = broadcast_last(state["var"], x.ndim)
            return self._normalise(params, x, mean, var), state
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes, keepdims=True)  # (1, ..., 1, features)
        var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
        y = self._normalise(params, x, mean, var)
        m = self.momentum
        batch_mean = jax.lax.stop_gradient(mean.reshape(-1)).astype(state["mean"].dtype)
        batch_var = jax.lax.stop_gradient(var.reshape(-1)).astype(state["var"].dtype)
        new_state = {"mean": m * state["mean"] + (1 - m) * batch_mean,
                     "var": m * state["var"] + (1 - m) * batch_var}
        return y, new_state


@dataclasses.dataclass(frozen=True)
class LayerNorm(_FeatureNorm):
    """Layer normalisation: each example (each token) is normalised over its last axis.

    x: (batch, ..., features) → y: same shape. params: ``scale``, ``offset`` (features,).
    Behaves the same in training and evaluation.
    """

    epsilon: float = 1e-5

    def __post_init__(self):
        if not self.epsilon > 0:
            raise ValueError(f"LayerNorm: epsilon must be positive, got {self.epsilon!r}")

    def init(self, key, x):
        return self._affine_params(x), {}

    def apply(self, params, state, x, *, key=None, train=False):
        self._check(x.shape, params["scale"].shape[0])
        mean = jnp.mean(x, axis=-1, keepdims=True)  # (batch, ..., 1)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return self._normalise(params, x, mean, var), state
