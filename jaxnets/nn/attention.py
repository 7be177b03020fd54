"""Multi-head self-attention and the vision transformer's patch embedding.

Token sequences are (batch, tokens, dim). ``PatchEmbedding`` turns NHWC images into such
sequences: it cuts the image into non-overlapping ``patch × patch`` squares, projects each
(flattened) patch linearly to ``dim`` features, prepends a learned class token and adds a
learned position embedding per token.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxnets.initializers import get_initializer
from jaxnets.nn._util import as_tuple, broadcast_last
from jaxnets.nn.core import Layer, Shape, as_shape_dtype, param_dtype


def _dense(params: dict, x: jax.Array) -> jax.Array:
    """x: (..., in) → (..., out) with params ``w`` (in, out) and optional ``b`` (out,)."""
    y = x @ params["w"]
    return y + broadcast_last(params["b"], y.ndim) if "b" in params else y


@dataclasses.dataclass(frozen=True)
class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product self-attention.

    x: (batch, tokens, dim) → y: (batch, tokens, out_features or dim).

    params: ``query``, ``key``, ``value``, each ``{"w": (dim, qkv), "b": (qkv,)}``, and ``out``
    ``{"w": (qkv, out), "b": (out,)}``, where ``qkv = qkv_features or dim`` is split into
    ``num_heads`` heads of ``qkv // num_heads`` features. For each head h,

        attention_h = softmax(Q_h K_hᵀ / sqrt(head_dim)) V_h        (tokens, head_dim)

    and the heads are concatenated and projected by ``out``. With ``causal=True`` token i
    attends only to tokens j ≤ i.
    """

    num_heads: int
    qkv_features: int | None = None
    out_features: int | None = None
    causal: bool = False
    use_bias: bool = True
    w_init: str | Callable = "glorot_uniform"
    b_init: str | Callable = "zeros"

    def __post_init__(self):
        for field in ("num_heads", "qkv_features", "out_features"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"MultiHeadAttention: {field} must be a positive int, got {value!r}")
        get_initializer(self.w_init)
        get_initializer(self.b_init)

    @property
    def default_name(self) -> str:
        return "attention"

    def _check(self, shape: Shape, dim: int | None = None) -> tuple[int, int]:
        """Checks x's shape; returns (qkv, out) feature counts."""
        if len(shape) != 3:
            raise self.error(f"expected input of rank 3 (batch, tokens, dim), got shape {tuple(shape)}")
        if dim is not None and shape[-1] != dim:
            raise self.error(f"dim mismatch: expected input of shape (batch, tokens, {dim}), got {tuple(shape)}")
        qkv = self.qkv_features or shape[-1]
        if qkv % self.num_heads:
            raise self.error(
                f"num_heads {self.num_heads} does not divide the attention dim {qkv} (qkv_features, or the "
                f"input's last axis in shape {tuple(shape)}); each head needs dim / num_heads features"
            )
        return qkv, self.out_features or shape[-1]

    def init(self, key, x):
        spec = as_shape_dtype(x)
        qkv, out = self._check(spec.shape)
        dtype, dim = param_dtype(spec), spec.shape[-1]
        params = {}
        for k, (name, (fan_in, fan_out)) in zip(
            jax.random.split(key, 4),
            [("query", (dim, qkv)), ("key", (dim, qkv)), ("value", (dim, qkv)), ("out", (qkv, out))],
        ):
            w_key, b_key = jax.random.split(k)
            params[name] = {"w": get_initializer(self.w_init)(w_key, (fan_in, fan_out), dtype)}
            if self.use_bias:
                params[name]["b"] = get_initializer(self.b_init)(b_key, (fan_out,), dtype)
        return params, {}

    def apply(self, params, state, x, *, key=None, train=False):
        qkv, _ = self._check(x.shape, params["query"]["w"].shape[0])
        batch, tokens, _ = x.shape
        heads, head_dim = self.num_heads, qkv // self.num_heads
        q, k, v = (_dense(params[n], x).reshape(batch, tokens, heads, head_dim) for n in ("query", "key", "value"))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)  # (batch, heads, tokens, tokens)
        if self.causal:
            allowed = jnp.tril(jnp.ones((tokens, tokens), bool)).reshape(1, 1, tokens, tokens)
            logits = jnp.where(allowed, logits, jnp.finfo(logits.dtype).min)
        weights = jax.nn.softmax(logits, axis=-1)
        heads_out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, tokens, qkv)
        return _dense(params["out"], heads_out), state  # (batch, tokens, out)

    def output_shape(self, input_shape):
        _, out = self._check(input_shape)
        return (*input_shape[:-1], out)


@dataclasses.dataclass(frozen=True)
class PatchEmbedding(Layer):
    """Image → token sequence for a vision transformer.

    x: (batch, height, width, channels) → y: (batch, 1 + num_patches, dim), with
    ``num_patches = (height / ph) * (width / pw)`` in row-major order after the class token.
    params: ``w`` (ph, pw, channels, dim) and ``b`` (dim,) — the patch projection, the same as a
    ``Conv2D(dim, patch_size, strides=patch_size)`` —, ``class_token`` (dim,) and ``position``
    (1 + num_patches, dim). The image size must be divisible by the patch size and is fixed at init.
    """

    patch_size: int | Sequence[int]
    dim: int
    w_init: str | Callable = "glorot_uniform"
    b_init: str | Callable = "zeros"
    embedding_init: str | Callable = jax.nn.initializers.normal(stddev=0.02)

    def __post_init__(self):
        object.__setattr__(self, "patch_size", as_tuple(self.patch_size, 2, "patch_size", "PatchEmbedding"))
        if not isinstance(self.dim, int) or self.dim <= 0:
            raise ValueError(f"PatchEmbedding: dim must be a positive int, got {self.dim!r}")
        for init in (self.w_init, self.b_init, self.embedding_init):
            get_initializer(init)

    @property
    def default_name(self) -> str:
        return "patch_embedding"

    def _grid(self, shape: Shape, channels: int | None = None) -> tuple[int, int]:
        """Checks x's shape; returns the patch grid (rows, columns)."""
        if len(shape) != 4:
            raise self.error(f"expected input of rank 4 (batch, height, width, channels), got shape {tuple(shape)}")
        if channels is not None and shape[-1] != channels:
            raise self.error(
                f"channel mismatch: expected {channels} input channels (last axis), got {shape[-1]} in input "
                f"of shape {tuple(shape)}"
            )
        (h, w), (ph, pw) = shape[1:3], self.patch_size
        if h % ph or w % pw:
            raise self.error(
                f"image {h}×{w} (input shape {tuple(shape)}) is not divisible into {ph}×{pw} patches: "
                f"height and width must be multiples of the patch size ({h} % {ph} = {h % ph}, {w} % {pw} = {w % pw})"
            )
        return h // ph, w // pw

    def init(self, key, x):
        spec = as_shape_dtype(x)
        rows, cols = self._grid(spec.shape)
        dtype, channels = param_dtype(spec), spec.shape[-1]
        w_key, b_key, c_key, p_key = jax.random.split(key, 4)
        embed = get_initializer(self.embedding_init)
        return {
            "w": get_initializer(self.w_init)(w_key, (*self.patch_size, channels, self.dim), dtype),
            "b": get_initializer(self.b_init)(b_key, (self.dim,), dtype),
            "class_token": embed(c_key, (self.dim,), dtype),
            "position": embed(p_key, (1 + rows * cols, self.dim), dtype),
        }, {}

    def apply(self, params, state, x, *, key=None, train=False):
        rows, cols = self._grid(x.shape, params["w"].shape[2])
        tokens = 1 + rows * cols
        if params["position"].shape[0] != tokens:
            raise self.error(
                f"input of shape {tuple(x.shape)} gives {tokens - 1} patches, but the position embedding was "
                f"built for {params['position'].shape[0] - 1} (the image size is fixed at init)"
            )
        batch, channels = x.shape[0], x.shape[-1]
        ph, pw = self.patch_size
        patches = x.reshape(batch, rows, ph, cols, pw, channels).transpose(0, 1, 3, 2, 4, 5)
        patches = patches.reshape(batch, rows * cols, ph * pw * channels)  # (batch, patches, ph·pw·channels)
        embedded = _dense({"w": params["w"].reshape(ph * pw * channels, self.dim), "b": params["b"]}, patches)
        cls = jnp.broadcast_to(params["class_token"].reshape(1, 1, self.dim), (batch, 1, self.dim))
        y = jnp.concatenate([cls.astype(embedded.dtype), embedded], axis=1)  # (batch, tokens, dim)
        return y + params["position"].reshape(1, tokens, self.dim), state

    def output_shape(self, input_shape):
        rows, cols = self._grid(input_shape)
        return (input_shape[0], 1 + rows * cols, self.dim)
