"""Conv1D, Conv2D and LocallyConnected2D against direct NumPy loops (every padding, stride and
dilation case, for every ``impl`` of the convolutions: xla, im2col, toeplitz), float64 gradients
against central differences (every impl), shapes, jit, the true convolution (``flip_kernel``), the
``impl="auto"`` rule, and bad input."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_jit_equals_eager, assert_layer_gradients_match, assert_output_shape_agrees
from jaxnets.nn import (Activation, BatchNorm, Conv1D, Conv2D, Dense, Flatten, LayerError, LocallyConnected2D,
                        ResidualBlock, Sequential)
from jaxnets.nn import conv_impl
from jaxnets.nn.conv import explicit_pads

IMPLS = ["xla", "im2col", "toeplitz"]


def numpy_conv(x, w, b, strides, pads, dilation, per_position=False):
    """Direct loop: y[n, o..., f] = b + sum over kernel offsets k and channels c of
    x_padded[n, o*s + k*d, c] * w[k, c, f]. With ``per_position`` w and b are indexed by the
    output position first (locally connected)."""
    x = np.pad(x, [(0, 0), *pads, (0, 0)])
    window = w.shape[-2 - len(strides):-2]
    out = [(n - (k - 1) * d - 1) // s + 1 for n, k, s, d in zip(x.shape[1:-1], window, strides, dilation)]
    y = np.zeros((x.shape[0], *out, w.shape[-1]))
    for o in np.ndindex(*out):
        kernel = w[o] if per_position else w
        y[(slice(None), *o)] = b[o] if per_position else b
        for k in np.ndindex(*window):
            idx = tuple(oi * s + ki * d for oi, ki, s, d in zip(o, k, strides, dilation))
            y[(slice(None), *o)] += x[(slice(None), *idx)] @ kernel[k]
    return y


PADDINGS_2D = ["VALID", "SAME", 1, (2, 0), ((1, 2), (0, 1))]
CASES_2D = list(itertools.product(PADDINGS_2D, [1, (2, 3)], [1, 2]))


def check_against_numpy(layer, x_shape, per_position=False, seed=0):
    """Random x, w, b (NumPy, so nothing but the layer is compiled) through the layer and the loop."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    shapes = jax.eval_shape(lambda: layer.init(jax.random.PRNGKey(0), x)[0])
    params = {name: rng.standard_normal(s.shape).astype(np.float32) for name, s in shapes.items()}
    y, _ = layer.apply(params, {}, x)
    expected = numpy_conv(x.astype(np.float64), params["w"].astype(np.float64), params["b"].astype(np.float64),
                          layer.strides, layer.pads(x.shape), layer.dilation, per_position=per_position)
    assert y.shape == expected.shape == layer.output_shape(x.shape)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("padding,strides,dilation", CASES_2D)
def test_conv2d_matches_numpy_loop(padding, strides, dilation, impl):
    check_against_numpy(Conv2D(4, (3, 2), strides=strides, padding=padding, dilation=dilation, impl=impl),
                        (2, 8, 7, 3))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("padding,strides,dilation", list(itertools.product(["VALID", "SAME", 2, (0, 3)], [1, 3], [1, 2])))
def test_conv1d_matches_numpy_loop(padding, strides, dilation, impl):
    check_against_numpy(Conv1D(5, 3, strides=strides, padding=padding, dilation=dilation, impl=impl), (3, 11, 2))


def test_toeplitz_tiles_all_give_the_convolution(key):
    x = jax.random.normal(key, (2, 7, 12, 3))
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 4))
    conv = lambda **kw: conv_impl.toeplitz_conv2d(x, w, (1, 2), ((1, 1), (1, 1)), (1, 1), **kw)  # noqa: E731
    expected = jax.lax.conv_general_dilated(x, w, (1, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    for tile in (1, 2, 3, 6):  # out width 6
        np.testing.assert_allclose(conv(tile=tile), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="positive divisor of the output width 6, got 4"):
        conv(tile=4)
    # largest divisor of the output width up to the kernel width: LeNet's C1 (28 wide), C3 (10 wide)
    assert [conv_impl.default_tile(*a) for a in ((28, 5), (10, 5), (7, 3), (2, 5))] == [4, 5, 1, 2]


def test_auto_picks_the_native_convolution_except_inside_a_cpu_training_loop():
    """The rule of conv_impl.auto_conv_impl, from benchmarks/bench_conv_impls.py's tables."""
    layer = Conv2D(16, 3, padding="SAME")
    assert layer.resolved_impl((1, 28, 28, 1), "gpu") == layer.resolved_impl((1, 28, 28, 16), "tpu") == "xla"
    assert layer.resolved_impl((1, 28, 28, 1), "cpu") == "xla"  # outside a loop (inference, the step engine)
    with conv_impl.training_loop():
        assert layer.resolved_impl((1, 28, 28, 1), "gpu") == "xla"
        assert layer.resolved_impl((1, 28, 28, 1), "cpu") == "toeplitz"  # few input channels: a Toeplitz strip matmul
        assert layer.resolved_impl((1, 28, 28, 3), "cpu") == "toeplitz"
        assert layer.resolved_impl((1, 28, 28, 4), "cpu") == "im2col"
        assert Conv2D(16, 5).resolved_impl((1, 14, 14, 6), "cpu") == "toeplitz"  # 5×5 kernels (LeNet's C3): Toeplitz
        assert Conv2D(16, (5, 3)).resolved_impl((1, 14, 14, 6), "cpu") == "im2col"
        assert Conv1D(32, 5).resolved_impl((1, 40, 1), "cpu") == "im2col"  # 1-D: patches
        assert Conv1D(32, 3).resolved_impl((1, 1000, 64), "cpu") == "im2col"
        assert Conv2D(16, 3, impl="xla").resolved_impl((1, 28, 28, 1), "cpu") == "xla"  # an explicit impl is kept
        # small kernels over ≥ 16 channels on ≥ 28×28 inputs (the ResNet's first stage): XLA's convolution
        assert layer.resolved_impl((1, 28, 28, 16), "cpu") == "xla"
        assert Conv2D(32, 3, strides=2).resolved_impl((1, 32, 32, 64), "cpu") == "xla"
        assert Conv2D(16, (3, 1)).resolved_impl((1, 28, 28, 16), "cpu") == "xla"
        assert layer.resolved_impl((1, 14, 14, 16), "cpu") == "im2col"  # the 2-D user CNN's 16→32 layer
        assert layer.resolved_impl((1, 27, 28, 16), "cpu") == "im2col"  # one row under 28×28 positions
        assert layer.resolved_impl((1, 28, 28, 15), "cpu") == "im2col"
        assert Conv2D(16, 1).resolved_impl((1, 28, 28, 16), "cpu") == "im2col"  # 1×1: the plain matmul
        assert Conv2D(16, 5).resolved_impl((1, 28, 28, 16), "cpu") == "toeplitz"
    assert not conv_impl.in_training_loop()


def test_auto_computes_with_the_impl_it_resolves_to_in_the_training_loop():
    """What a layer reports is what its scanned epoch compiles: one XLA convolution in the forward pass for a
    16-channel 3×3 layer on 28×28 inputs, none for the same layer on 14×14 (its patches' matmul)."""
    def forward_convolutions(shape):
        layer = Conv2D(16, 3, padding="SAME")
        x = jnp.ones(shape)
        params, state = layer.init(jax.random.PRNGKey(0), x)

        def loop(x):
            with conv_impl.training_loop():
                return layer.apply(params, state, x)[0]
        return str(jax.make_jaxpr(loop)(x)).count("conv_general_dilated")

    assert forward_convolutions((2, 28, 28, 16)) == 1
    assert forward_convolutions((2, 14, 14, 16)) == 0


def test_fit_takes_xla_for_a_large_many_channel_layer_and_fit_seeds_keeps_the_matmul(monkeypatch):
    """In the training loop a 3×3 layer over 16 channels of 28×28 is XLA's convolution in ``fit``; over
    stacked runs (``fit_seeds``, where batched weights would make it a grouped convolution) it is im2col."""
    import optax

    from jaxnets import fit
    from jaxnets.seeds import fit_seeds, init_runs

    in_loop = []
    real_conv = conv_impl.conv

    def recorded(impl, *args):
        if conv_impl.in_training_loop():
            in_loop.append(impl)
        return real_conv(impl, *args)

    monkeypatch.setattr(conv_impl, "conv", recorded)
    model = Sequential([Conv2D(4, 3, padding="SAME"), Flatten(), Dense(3)])
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 28, 28, 16))
    y = jnp.arange(8) % 3
    settings = dict(loss="cross_entropy", optimizer=optax.sgd(0.01), epochs=1, batch_size=4, progress=False)
    params, state = model.init(jax.random.PRNGKey(1), x[:1])
    fit(model, params, state, (x, y), key=jax.random.PRNGKey(2), **settings)
    assert in_loop and set(in_loop) == {"xla"}
    in_loop.clear()
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    params, state = init_runs(model, keys, x[:1])
    fit_seeds(model, params, state, (x, y), keys=keys, **settings)
    assert in_loop and set(in_loop) == {"im2col"}


EIGEN_CASES = [(2, padding, strides, dilation) for padding, strides, dilation in CASES_2D] + [
    (1, padding, strides, dilation) for padding, strides, dilation in
    itertools.product(["VALID", "SAME", 2, (0, 3)], [1, 3], [1, 2])]


@pytest.mark.parametrize("ndim,padding,strides,dilation", EIGEN_CASES)
def test_eigen_conv_gradients_equal_jax_own_convolution_gradients(ndim, padding, strides, dilation):
    """conv_impl.eigen_conv writes out the two gradient convolutions that JAX derives for
    lax.conv_general_dilated; in float64 they agree to rounding, for every padding, stride, dilation."""
    layer = (Conv2D(4, (3, 2), strides=strides, padding=padding, dilation=dilation) if ndim == 2 else
             Conv1D(5, 3, strides=strides, padding=padding, dilation=dilation))
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal((2, 8, 7, 3) if ndim == 2 else (3, 11, 2)))
        w = jnp.asarray(rng.standard_normal((*layer.kernel_size, x.shape[-1], layer.features)))
        args = (layer.strides, tuple(map(tuple, layer.pads(x.shape))), layer.dilation)
        probe = jnp.asarray(rng.standard_normal(layer.output_shape(x.shape)))  # a generic output gradient
        loss = lambda conv: lambda x, w: jnp.sum(probe * jnp.sin(conv(x, w, *args)))  # noqa: E731
        expected = jax.grad(loss(conv_impl.xla_conv), (0, 1))(x, w)
        got = jax.grad(loss(conv_impl.eigen_conv), (0, 1))(x, w)
        assert got[0].shape == x.shape and got[1].shape == w.shape
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(conv_impl.eigen_conv(x, w, *args), conv_impl.xla_conv(x, w, *args))


def _dimension_labels(compiled_text):
    return [line.split("dim_labels=")[1].split(",")[0] for line in compiled_text.splitlines() if "convolution(" in line]


@pytest.mark.parametrize("ndim", [1, 2])
def test_the_scanned_epoch_computes_xla_convolutions_in_the_canonical_form_on_cpu(key, ndim):
    """The reason "xla" is fast in the scanned epoch on CPU: every convolution XLA compiles there,
    the two gradients included, has the labels of its fast kernel (batch, spatial, features) ×
    (spatial, in, out). JAX's own transposes (e.g. f01b_i01o->01bf) would run as a slow loop nest."""
    from jaxnets import optim
    from jaxnets.train import TrainState, make_epoch_fn

    Conv = Conv2D if ndim == 2 else Conv1D
    model = Sequential([Dense(4), Conv(8, 3, strides=2, padding="SAME", impl="xla"), Activation("relu"), Flatten(),
                        Dense(3)])
    x = jax.random.normal(key, (16, *(9,) * ndim, 4))
    y = jnp.arange(16) % 3
    params, state = model.init(key, x)
    opt = optim.optimizer("sgd", 0.1)
    epoch = jax.jit(make_epoch_fn(model, "cross_entropy", opt, batch_size=8))
    labels = _dimension_labels(epoch.lower(TrainState(params, state, opt.init(params)), x, y, key).compile().as_text())
    assert len(labels) == 3  # forward, input gradient, weight gradient
    if jax.default_backend() == "cpu":
        assert set(labels) == {"b01f_01io->b01f"}, labels


def test_the_training_loop_uses_the_matmul_formulation_and_every_impl_trains_alike(key):
    from jaxnets import optim
    from jaxnets.train import TrainState, make_epoch_fn

    x = jax.random.normal(key, (16, 6, 6, 2))
    y = jnp.arange(16) % 2
    opt = optim.optimizer("sgd", 0.1)
    results = {}
    for impl in ["auto", *IMPLS]:
        model = Sequential([Dense(4), Conv2D(3, 3, strides=(1, 2), padding="SAME", impl=impl), Activation("relu"),
                            Flatten(), Dense(2)])
        params, state = model.init(key, x)
        epoch = jax.jit(make_epoch_fn(model, "cross_entropy", opt, batch_size=8))
        ts = TrainState(params, state, opt.init(params))
        results[impl] = epoch(ts, x, y, key)[0].params
        uses_xla = impl == "xla" or (impl == "auto" and jax.default_backend() != "cpu")  # auto: a matmul on CPU
        assert ("convolution" in epoch.lower(ts, x, y, key).as_text()) == uses_xla, impl
    for impl in ["auto", "im2col", "toeplitz"]:
        for a, b in zip(jax.tree.leaves(results[impl]), jax.tree.leaves(results["xla"])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_true_convolution_flips_the_kernel_as_the_notes_define_it():
    """(2, −1, 1) ∗ (1, 1, 2) = (2, 1, 4, −1, 2) (Toronto CSC 2515); cross-correlation gives (4, 0, 3, 0, 1)."""
    a = jnp.array([2.0, -1.0, 1.0]).reshape(1, 3, 1)
    b = jnp.array([1.0, 1.0, 2.0]).reshape(3, 1, 1)
    for impl in IMPLS:
        true = Conv1D(1, 3, padding=2, use_bias=False, flip_kernel=True, impl=impl)
        correlation = Conv1D(1, 3, padding=2, use_bias=False, impl=impl)
        np.testing.assert_allclose(true.apply({"w": b}, {}, a)[0].ravel(), [2, 1, 4, -1, 2], atol=1e-6)
        np.testing.assert_allclose(correlation.apply({"w": b}, {}, a)[0].ravel(), [4, 0, 3, 0, 1], atol=1e-6)
    rng = np.random.default_rng(0)
    f, g, h = (rng.standard_normal(5) for _ in range(3))
    convolve = lambda u, v: np.asarray(Conv1D(1, 5, padding=4, use_bias=False, flip_kernel=True).apply(  # noqa: E731
        {"w": jnp.asarray(v).reshape(5, 1, 1)}, {}, jnp.asarray(u).reshape(1, 5, 1))[0]).ravel()
    np.testing.assert_allclose(convolve(f, g), convolve(g, f), atol=1e-5)  # commutative
    np.testing.assert_allclose(convolve(f, 2.0 * g - 3.0 * h), 2.0 * convolve(f, g) - 3.0 * convolve(f, h), atol=1e-5)
    np.testing.assert_allclose(convolve(f, g), np.convolve(f, g), atol=1e-5)  # NumPy's convolution
    image = rng.standard_normal((1, 6, 7, 1)).astype(np.float32)
    kernel = rng.standard_normal((3, 2, 1, 1)).astype(np.float32)
    flipped, _ = Conv2D(1, (3, 2), use_bias=False, flip_kernel=True).apply({"w": kernel}, {}, image)
    plain, _ = Conv2D(1, (3, 2), use_bias=False).apply({"w": kernel[::-1, ::-1]}, {}, image)
    np.testing.assert_allclose(flipped, plain, atol=1e-5)


@pytest.mark.parametrize("n,k,s,d", [(7, 3, 2, 1), (8, 3, 2, 1), (8, 3, 3, 2), (5, 5, 1, 1), (1, 3, 2, 1), (9, 2, 4, 3)])
def test_same_padding_gives_ceil_output_and_puts_extra_pixel_high(n, k, s, d):
    (lo, hi), = explicit_pads("SAME", (n,), (k,), (s,), (d,))
    out = (n + lo + hi - (k - 1) * d - 1) // s + 1
    assert out == -(-n // s)
    assert hi - lo in (0, 1)


def test_lecun_style_edge_kernel_by_hand():
    """A 1×2 kernel [-1, 1] on a step image responds only at the step (the notes' edge detector)."""
    x = np.zeros((1, 3, 5, 1), np.float32)
    x[..., 3:, :] = 1.0
    layer = Conv2D(1, (1, 2), use_bias=False)
    params = {"w": jnp.asarray([-1.0, 1.0]).reshape(1, 2, 1, 1)}
    y, _ = layer.apply(params, {}, x)
    np.testing.assert_array_equal(y[0, :, :, 0], np.tile([0.0, 0.0, 1.0, 0.0], (3, 1)))


@pytest.mark.parametrize("padding,strides,dilation", [("VALID", 1, 1), ("SAME", 2, 1), (((2, 1), (0, 1)), (2, 1), 2)])
def test_locally_connected_matches_numpy_loop(padding, strides, dilation):
    layer = LocallyConnected2D(3, (2, 3), strides=strides, padding=padding, dilation=dilation)
    check_against_numpy(layer, (2, 6, 7, 2), per_position=True)


def test_locally_connected_with_shared_weights_equals_conv(key):
    conv = Conv2D(4, 3, strides=2, padding="SAME")
    local = LocallyConnected2D(4, 3, strides=2, padding="SAME")
    x = jax.random.normal(key, (2, 9, 9, 3))
    cp, _ = conv.init(key, x)
    out_h, out_w = conv.output_shape(x.shape)[1:3]
    lp = {"w": jnp.broadcast_to(cp["w"], (out_h, out_w, *cp["w"].shape)),
          "b": jnp.broadcast_to(cp["b"], (out_h, out_w, 4))}
    np.testing.assert_allclose(local.apply(lp, {}, x)[0], conv.apply(cp, {}, x)[0], rtol=1e-5, atol=1e-5)


def test_locally_connected_has_same_wiring_but_more_weights_than_conv(key):
    """Same connections, no sharing: out_h * out_w times the conv's kernel and one bias per unit."""
    conv, local = Conv2D(6, 5), LocallyConnected2D(6, 5)
    cp, _ = jax.eval_shape(lambda k: conv.init(k, (1, 32, 32, 1)), key)
    lp, _ = jax.eval_shape(lambda k: local.init(k, (1, 32, 32, 1)), key)
    assert conv.output_shape((1, 32, 32, 1)) == local.output_shape((1, 32, 32, 1)) == (1, 28, 28, 6)
    assert cp["w"].size == 5 * 5 * 1 * 6 == 150 and cp["b"].size == 6
    assert lp["w"].size == 28 * 28 * 150 == 117_600 and lp["b"].size == 28 * 28 * 6


# Shape agreement and jit = no-jit: (layer, input shape, hand-computed output shape)
LAYERS = [
    (Conv1D(4, 3), (2, 10, 3), (2, 8, 4)),
    (Conv1D(4, 3, strides=2, padding="SAME"), (2, 10, 3), (2, 5, 4)),
    (Conv1D(2, 2, padding=(1, 0), dilation=3), (1, 6, 1), (1, 4, 2)),
    (Conv2D(6, 5, padding=2), (2, 28, 28, 1), (2, 28, 28, 6)),
    (Conv2D(16, 5), (2, 14, 14, 6), (2, 10, 10, 16)),
    (Conv2D(3, (3, 1), strides=(2, 1), padding="SAME", use_bias=False), (1, 7, 5, 2), (1, 4, 5, 3)),
    (Conv2D(2, 3, dilation=2, padding=((0, 1), (2, 2))), (1, 8, 6, 2), (1, 5, 6, 2)),
    (LocallyConnected2D(3, 3), (2, 6, 6, 2), (2, 4, 4, 3)),
    (LocallyConnected2D(2, 2, strides=2, padding="SAME"), (1, 5, 5, 1), (1, 3, 3, 2)),
    (Sequential([Conv2D(4, 3, padding="SAME"), Conv2D(2, 3, strides=2), Flatten(), Dense(3)]), (2, 9, 9, 1), (2, 3)),
    (ResidualBlock(Conv2D(3, 3, padding="SAME")), (2, 5, 5, 3), (2, 5, 5, 3)),
    (ResidualBlock(Sequential([Conv2D(4, 3, strides=2, padding="SAME"), BatchNorm(), Activation("relu"),
                               Conv2D(4, 3, padding="SAME")])), (2, 7, 7, 2), (2, 4, 4, 4)),
    (ResidualBlock(Conv1D(5, 3, strides=2, padding="SAME"), activation="tanh"), (2, 9, 3), (2, 5, 5)),
    (ResidualBlock(Dense(4), activation=None), (3, 6), (3, 4)),
]
IDS = [f"{type(layer).__name__}-{i}" for i, (layer, _, _) in enumerate(LAYERS)]


@pytest.mark.parametrize("layer,in_shape,out_shape", LAYERS, ids=IDS)
def test_output_shape_agrees_with_apply(layer, in_shape, out_shape, key):
    assert_output_shape_agrees(layer, in_shape, out_shape, key)


@pytest.mark.parametrize("layer,in_shape,out_shape", LAYERS, ids=IDS)
def test_jit_equals_no_jit(layer, in_shape, out_shape, key):
    assert_jit_equals_eager(layer, in_shape, rtol=1e-5, atol=1e-5)


GRAD_LAYERS = [
    *[(Conv1D(2, 3, strides=2, padding="SAME", dilation=1, impl=impl), (2, 7, 2)) for impl in IMPLS],
    *[(Conv2D(2, (2, 3), strides=(2, 1), padding=((1, 0), (1, 1)), dilation=(1, 2), impl=impl), (1, 5, 6, 2))
      for impl in IMPLS],
    (Conv2D(2, 3, strides=2, padding="SAME", flip_kernel=True), (1, 5, 4, 2)),
    (LocallyConnected2D(2, 2, strides=2, padding="SAME"), (1, 4, 5, 2)),
    (ResidualBlock(Conv2D(3, 2, strides=2, padding="SAME"), activation="tanh"), (1, 3, 4, 2)),
]


@pytest.mark.parametrize("layer,in_shape", GRAD_LAYERS,
                         ids=[f"{type(l).__name__}-{getattr(l, 'impl', '')}-{i}" for i, (l, _) in enumerate(GRAD_LAYERS)])
def test_gradients_match_central_differences_float64(layer, in_shape, key):
    """Gradient with respect to every parameter and every input value."""
    assert_layer_gradients_match(layer, in_shape)


def test_float64_inputs_give_float64_params_and_outputs(key):
    with jax.enable_x64(True):
        for layer in (Conv2D(2, 3), LocallyConnected2D(2, 3), Conv1D(2, 3)):
            x = jnp.ones((1, 5, 5, 1) if not isinstance(layer, Conv1D) else (1, 5, 1), jnp.float64)
            params, state = layer.init(key, x)
            assert all(p.dtype == jnp.float64 for p in jax.tree_util.tree_leaves(params))
            assert layer.apply(params, state, x)[0].dtype == jnp.float64


# ---- residual block -------------------------------------------------------------------------

def test_residual_identity_and_projection_against_numpy(key):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    same = ResidualBlock(Conv2D(3, 3, padding="SAME"))
    params, _ = same.init(key, x)
    assert set(params) == {"body"}  # identity shortcut: nothing to learn
    body = numpy_conv(x, np.asarray(params["body"]["w"]), np.asarray(params["body"]["b"]), (1, 1), ((1, 1), (1, 1)), (1, 1))
    np.testing.assert_allclose(same.apply(params, {}, x)[0], relu(body + x), rtol=1e-5, atol=1e-5)

    down = ResidualBlock(Conv2D(5, 3, strides=2, padding="SAME"))  # 7×6×3 → 4×3×5: 1×1 projection, stride 2
    params, _ = down.init(key, x)
    w, b = np.asarray(params["shortcut"]["w"]), np.asarray(params["shortcut"]["b"])
    assert w.shape == (1, 1, 3, 5)
    pads = down.body.pads(x.shape)
    body = numpy_conv(x, np.asarray(params["body"]["w"]), np.asarray(params["body"]["b"]), (2, 2), pads, (1, 1))
    skip = numpy_conv(x, w, b, (2, 2), ((0, 0), (0, 0)), (1, 1))
    np.testing.assert_allclose(down.apply(params, {}, x)[0], relu(body + skip), rtol=1e-5, atol=1e-5)


def test_residual_with_a_shortcut_layer_carries_its_state(key):
    block = ResidualBlock(Sequential([Conv2D(4, 3, strides=2, padding="SAME"), BatchNorm()]),
                          shortcut=Sequential([Conv2D(4, 1, strides=2, use_bias=False), BatchNorm()]))
    params, state = block.init(key, (2, 8, 8, 2))
    assert set(state) == {"body", "shortcut"} and set(state["shortcut"]) == {"batchnorm1"}
    x = jax.random.normal(key, (2, 8, 8, 2))
    y, new_state = block.apply(params, state, x, train=True)
    assert y.shape == (2, 4, 4, 4) and float(jnp.min(y)) >= 0.0
    assert not np.allclose(new_state["shortcut"]["batchnorm1"]["mean"], 0.0)


def test_residual_bad_shortcuts_are_explained(key):
    with pytest.raises(LayerError, match=r"identity shortcut needs the body to keep the shape, but it maps "
                                         r"\(1, 6, 6, 2\) to \(1, 6, 6, 4\)"):
        ResidualBlock(Conv2D(4, 3, padding="SAME"), shortcut="identity").output_shape((1, 6, 6, 2))
    with pytest.raises(LayerError, match=r"no 1×1 projection with a stride maps \(1, 6, 6, 2\) onto the body's "
                                         r"output \(1, 8\)"):
        ResidualBlock(Sequential([Flatten(), Dense(8)])).init(key, (1, 6, 6, 2))
    model = Sequential([("block1", ResidualBlock(Sequential([Conv2D(4, 3), Conv2D(4, 9)])))])
    with pytest.raises(LayerError, match=r"layer 'block1/body/conv2' \(Conv2D\): kernel 9×9 is larger"):
        model.init(key, (1, 8, 8, 1))
    with pytest.raises(ValueError, match="shortcut must be a Layer or one of"):
        ResidualBlock(Conv2D(2, 1), shortcut="conv")


# ---- bad input ---------------------------------------------------------------------------

def test_kernel_larger_than_padded_input_names_shapes_and_constraint(key):
    model = Sequential([("c1", Conv2D(4, 3)), ("c2", Conv2D(4, 5))])
    with pytest.raises(LayerError, match=r"layer 'c2' \(Conv2D\): kernel 5×5 is larger than the padded input 4×4 "
                                         r"\(input 4×4, padding .*\); each spatial size \+ padding must be >= the kernel"):
        model.init(key, (1, 6, 6, 1))
    with pytest.raises(LayerError, match=r"kernel 3 \(dilation 3, effective 7\) is larger than the padded input 6"):
        Conv1D(2, 3, dilation=3, padding=1).output_shape((1, 4, 1))
    # Padding can make a small input large enough.
    assert Conv2D(1, 5, padding=1).output_shape((1, 3, 3, 1)) == (1, 1, 1, 1)


def test_channel_mismatch_names_expected_and_actual_channels(key):
    model = Sequential([Conv2D(4, 3)])
    params, state = jax.eval_shape(lambda k: model.init(k, (1, 8, 8, 3)), key)
    with pytest.raises(LayerError, match=r"layer 'conv1' \(Conv2D\): channel mismatch: expected 3 input channels "
                                         r"\(last axis\), got 1 in input of shape \(1, 8, 8, 1\)"):
        model.apply(params, state, jnp.ones((1, 8, 8, 1)))
    with pytest.raises(LayerError, match="expected 2 input channels.*got 5"):
        Conv1D(3, 2, in_channels=2).init(key, (1, 6, 5))


@pytest.mark.parametrize("layer,shape", [(Conv2D(2, 3), (8, 8, 1)), (Conv1D(2, 3), (1, 8, 8, 1)),
                                         (LocallyConnected2D(2, 3), (8, 8))])
def test_wrong_rank_names_the_expected_layout(layer, shape):
    with pytest.raises(LayerError, match=r"expected input of rank \d \(batch, .*channels\), got shape"):
        layer.output_shape(shape)


def test_locally_connected_rejects_a_different_image_size(key):
    layer = LocallyConnected2D(2, 3)
    params, state = jax.eval_shape(lambda k: layer.init(k, (1, 6, 6, 1)), key)
    with pytest.raises(LayerError, match=r"gives 5×5 output positions, but the weights were built for 4×4"):
        layer.apply(params, state, jnp.ones((1, 7, 7, 1)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(features=0, kernel_size=3), "features must be a positive int"),
    (dict(features=2, kernel_size=(3, 3, 3)), "kernel_size must be a positive int or 2 positive ints"),
    (dict(features=2, kernel_size=3, strides=0), "strides must be"),
    (dict(features=2, kernel_size=3, padding="FULL"), "padding must be 'SAME', 'VALID'"),
    (dict(features=2, kernel_size=3, padding=(1, 2, 3)), "padding must be"),
    (dict(features=2, kernel_size=3, padding=-1), "padding must be"),
])
def test_bad_hyperparameters_are_rejected_when_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Conv2D(**kwargs)
