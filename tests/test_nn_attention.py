"""MultiHeadAttention and PatchEmbedding against NumPy references, float64 gradients, shapes, jit,
and bad input (heads not dividing dim, non-divisible patch size, channel mismatch)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_jit_equals_eager, assert_layer_gradients_match, assert_output_shape_agrees
from jaxnets.nn import (Conv2D, Dense, GlobalAvgPool, LayerError, LayerNorm, MultiHeadAttention, PatchEmbedding,
                        ResidualBlock, Sequential)

def numpy_attention(x, params, num_heads, causal):
    """One head at a time, one example at a time, softmax written out."""
    def dense(p, v):
        return v @ p["w"] + p.get("b", 0.0)

    batch, tokens, _ = x.shape
    outputs = []
    for n in range(batch):
        q, k, v = (dense(params[name], x[n]) for name in ("query", "key", "value"))  # (tokens, qkv)
        head_dim = q.shape[-1] // num_heads
        heads = []
        for h in range(num_heads):
            cols = slice(h * head_dim, (h + 1) * head_dim)
            scores = q[:, cols] @ k[:, cols].T / np.sqrt(head_dim)  # (tokens, tokens)
            if causal:
                scores = np.where(np.tril(np.ones((tokens, tokens))) > 0, scores, -np.inf)
            weights = np.exp(scores - scores.max(axis=1, keepdims=True))
            weights /= weights.sum(axis=1, keepdims=True)
            heads.append(weights @ v[:, cols])
        outputs.append(dense(params["out"], np.concatenate(heads, axis=1)))
    return np.stack(outputs)


def random_params(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda s: (0.5 * rng.standard_normal(s.shape)).astype(np.float32), shapes)


@pytest.mark.parametrize("num_heads,qkv,out,causal", [(1, None, None, False), (2, None, None, True),
                                                      (3, 6, 5, False), (4, 8, None, True)])
def test_attention_matches_numpy_reference(num_heads, qkv, out, causal, key):
    layer = MultiHeadAttention(num_heads, qkv_features=qkv, out_features=out, causal=causal)
    x = np.random.default_rng(1).standard_normal((2, 5, 6)).astype(np.float32)
    params = random_params(jax.eval_shape(lambda k: layer.init(k, x)[0], key))
    y, _ = layer.apply(params, {}, x)
    expected = numpy_attention(x.astype(np.float64), jax.tree_util.tree_map(np.float64, params), num_heads, causal)
    assert y.shape == expected.shape == layer.output_shape(x.shape)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_causal_attention_ignores_later_tokens(key):
    layer = MultiHeadAttention(2, causal=True)
    x = jax.random.normal(key, (1, 6, 4))
    params, state = layer.init(key, x)
    changed = x.at[:, 4:].set(7.0)
    y, _ = layer.apply(params, state, x)
    y_changed, _ = layer.apply(params, state, changed)
    np.testing.assert_allclose(y[:, :4], y_changed[:, :4], rtol=1e-6, atol=1e-6)
    assert not np.allclose(y[:, 4:], y_changed[:, 4:])


def test_attention_is_permutation_equivariant_without_a_mask(key):
    layer = MultiHeadAttention(2)
    x = jax.random.normal(key, (2, 5, 4))
    params, state = layer.init(key, x)
    perm = np.array([3, 0, 4, 1, 2])
    np.testing.assert_allclose(layer.apply(params, state, x[:, perm])[0], layer.apply(params, state, x)[0][:, perm],
                               rtol=1e-5, atol=1e-6)


def numpy_patch_embedding(x, params, patch):
    batch, h, w, c = x.shape
    rows = []
    for n in range(batch):
        tokens = [params["class_token"]]
        for i in range(0, h, patch[0]):
            for j in range(0, w, patch[1]):
                tokens.append(np.einsum("hwc,hwcd->d", x[n, i:i + patch[0], j:j + patch[1]], params["w"]) + params["b"])
        rows.append(np.stack(tokens) + params["position"])
    return np.stack(rows)


@pytest.mark.parametrize("patch,shape", [(2, (2, 4, 6, 3)), ((3, 2), (1, 6, 4, 1))])
def test_patch_embedding_matches_numpy_loop(patch, shape, key):
    layer = PatchEmbedding(patch, 5)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    params = random_params(jax.eval_shape(lambda k: layer.init(k, x)[0], key))
    y, _ = layer.apply(params, {}, x)
    expected = numpy_patch_embedding(x.astype(np.float64), params, layer.patch_size)
    assert y.shape == expected.shape == layer.output_shape(shape)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_patch_projection_equals_a_strided_convolution(key):
    layer = PatchEmbedding(4, 8)
    x = jax.random.normal(key, (2, 8, 12, 3))
    params, state = layer.init(key, x)
    conv, _ = Conv2D(8, 4, strides=4).apply({"w": params["w"], "b": params["b"]}, {}, x)  # (2, 2, 3, 8)
    y, _ = layer.apply(params, state, x)
    np.testing.assert_allclose(y[:, 1:] - params["position"][1:].reshape(1, 6, 8), np.asarray(conv).reshape(2, 6, 8),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[:, 0], np.tile(params["class_token"] + params["position"][0], (2, 1)), rtol=1e-6)


LAYERS = [
    (MultiHeadAttention(2), (2, 5, 8), (2, 5, 8)),
    (MultiHeadAttention(3, qkv_features=9, out_features=4, causal=True, use_bias=False), (1, 4, 6), (1, 4, 4)),
    (PatchEmbedding(7, 16), (2, 28, 28, 1), (2, 17, 16)),
    (PatchEmbedding((2, 4), 6), (1, 4, 8, 3), (1, 5, 6)),
    (Sequential([PatchEmbedding(4, 8), ResidualBlock(Sequential([LayerNorm(), MultiHeadAttention(2)]), activation=None),
                 GlobalAvgPool(), Dense(3)]), (2, 8, 8, 1), (2, 3)),
]
IDS = [f"{type(layer).__name__}-{i}" for i, (layer, _, _) in enumerate(LAYERS)]


@pytest.mark.parametrize("layer,in_shape,out_shape", LAYERS, ids=IDS)
def test_output_shape_agrees_with_apply(layer, in_shape, out_shape, key):
    assert_output_shape_agrees(layer, in_shape, out_shape, key)


@pytest.mark.parametrize("layer,in_shape,out_shape", LAYERS, ids=IDS)
def test_jit_equals_no_jit(layer, in_shape, out_shape, key):
    assert_jit_equals_eager(layer, in_shape, rtol=1e-5, atol=1e-5)


GRAD_LAYERS = [
    (MultiHeadAttention(2), (2, 3, 4)),
    (MultiHeadAttention(2, qkv_features=2, causal=True), (1, 4, 3)),
    (PatchEmbedding(2, 3), (1, 4, 4, 1)),
]


@pytest.mark.parametrize("layer,in_shape", GRAD_LAYERS, ids=[f"{type(l).__name__}-{i}" for i, (l, _) in enumerate(GRAD_LAYERS)])
def test_gradients_match_central_differences_float64(layer, in_shape, key):
    assert_layer_gradients_match(layer, in_shape)


# ---- bad input ----------------------------------------------------------------------------

def test_non_divisible_patch_size_names_shapes_and_constraint(key):
    model = Sequential([("embed", PatchEmbedding(4, 8))])
    with pytest.raises(LayerError, match=r"layer 'embed' \(PatchEmbedding\): image 30×28 \(input shape \(2, 30, 28, 1\)\) "
                                         r"is not divisible into 4×4 patches: height and width must be multiples of the "
                                         r"patch size \(30 % 4 = 2, 28 % 4 = 0\)"):
        model.init(key, (2, 30, 28, 1))


def test_heads_not_dividing_dim_names_both(key):
    with pytest.raises(LayerError, match=r"\(MultiHeadAttention\): num_heads 3 does not divide the attention dim 8 "
                                         r".*\(2, 5, 8\)"):
        MultiHeadAttention(3).init(key, (2, 5, 8))
    with pytest.raises(LayerError, match="num_heads 4 does not divide the attention dim 6"):
        MultiHeadAttention(4, qkv_features=6).output_shape((2, 5, 8))


def test_shape_mismatches_at_apply_name_expected_and_actual(key):
    attention = MultiHeadAttention(2)
    params, state = jax.eval_shape(lambda k: attention.init(k, (2, 5, 8)), key)
    with pytest.raises(LayerError, match=r"dim mismatch: expected input of shape \(batch, tokens, 8\), got \(2, 5, 6\)"):
        attention.apply(params, state, jnp.ones((2, 5, 6)))
    with pytest.raises(LayerError, match=r"expected input of rank 3 \(batch, tokens, dim\), got shape \(5, 8\)"):
        attention.output_shape((5, 8))
    embed = PatchEmbedding(2, 4)
    params, state = jax.eval_shape(lambda k: embed.init(k, (1, 4, 4, 3)), key)
    with pytest.raises(LayerError, match=r"channel mismatch: expected 3 input channels \(last axis\), got 1"):
        embed.apply(params, state, jnp.ones((1, 4, 4, 1)))
    with pytest.raises(LayerError, match=r"gives 9 patches, but the position embedding was built for 4"):
        embed.apply(params, state, jnp.ones((1, 6, 6, 3)))


@pytest.mark.parametrize("make,match", [
    (lambda: MultiHeadAttention(0), "num_heads must be a positive int"),
    (lambda: MultiHeadAttention(2, qkv_features=-4), "qkv_features must be a positive int"),
    (lambda: PatchEmbedding(0, 4), "patch_size must be"),
    (lambda: PatchEmbedding(2, 0), "dim must be a positive int"),
])
def test_bad_hyperparameters_are_rejected_when_built(make, match):
    with pytest.raises(ValueError, match=match):
        make()
