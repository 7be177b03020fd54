"""Finite differences (exact on a quadratic, chunk size irrelevant, forward vs central), directional
checks against jvp/vjp, and reports that catch a broken gradient and name the broken leaf."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import central_difference_grad
from jaxnets import backprop, gradcheck, models
from jaxnets.losses import cross_entropy


def _quadratic(seed=0):
    """f(θ) = ½ θᵀAθ + bᵀθ over a two-leaf pytree; ∇f = Aθ + b (A symmetric)."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((7, 7))
    a, b = m + m.T, rng.standard_normal(7)
    params = {"u": jnp.asarray(rng.standard_normal((2, 2))), "v": {"w": jnp.asarray(rng.standard_normal(3))}}

    def flat(p):
        return jnp.concatenate([p["u"].reshape(-1), p["v"]["w"]])

    def f(p):
        x = flat(p)
        return 0.5 * x @ (jnp.asarray(a) @ x) + jnp.asarray(b) @ x

    g = a @ np.asarray(flat(params)) + b
    expected = {"u": g[:4].reshape(2, 2), "v": {"w": g[4:]}}
    return f, params, expected


def _mlp_problem(dtype=jnp.float64, batch=5, activation="tanh"):
    model = models.mlp([6, 4], activation=activation)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((batch, 3)), dtype)
    t = jnp.asarray(rng.integers(0, 4, batch))
    params, _ = model.init(jax.random.PRNGKey(0), x)
    loss = lambda p: jnp.mean(cross_entropy(model.apply(p, {}, x)[0], t))  # noqa: E731
    return model, params, x, t, loss


def test_central_differences_of_a_quadratic_are_exact_to_rounding():
    with jax.enable_x64(True):
        f, params, expected = _quadratic()
        # central differences have no truncation error on a quadratic: even ε = 0.5 is exact
        for eps in (0.5, 1e-3):
            numeric = gradcheck.finite_difference_grad(f, params, eps=eps)
            assert gradcheck.relative_error(numeric, expected) < 1e-12
        assert jax.tree_util.tree_structure(numeric) == jax.tree_util.tree_structure(params)


def test_forward_differences_have_first_order_truncation_error():
    with jax.enable_x64(True):
        f, params, expected = _quadratic()
        # f(θ+εe) − f(θ) = ε ∇f + ½ε² A_ii: the error of coordinate i is exactly ½ ε A_ii
        error_big = gradcheck.relative_error(gradcheck.finite_difference_grad(f, params, method="forward", eps=1e-2), expected)
        error_small = gradcheck.relative_error(gradcheck.finite_difference_grad(f, params, method="forward", eps=1e-4), expected)
        assert 50 < error_big / error_small < 200  # ≈ 100: linear in ε
        assert error_small < 1e-4


@pytest.mark.parametrize("chunk_size", [1, 64])
def test_chunk_size_does_not_change_results(chunk_size):
    # Same differences up to the round-off of the loss values (u·|f|/ε ≈ 1e-11): only the
    # compiler's batching of the evaluations changes with the chunk size.
    with jax.enable_x64(True):
        _, params, _, _, loss = _mlp_problem()
        reference = gradcheck.finite_difference_grad(loss, params, chunk_size=5)
        numeric = gradcheck.finite_difference_grad(loss, params, chunk_size=chunk_size)
        for a, b in zip(jax.tree_util.tree_leaves(numeric), jax.tree_util.tree_leaves(reference)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def test_finite_differences_match_an_independent_numpy_loop():
    with jax.enable_x64(True):
        _, params, _, _, loss = _mlp_problem()
        numeric = gradcheck.finite_difference_grad(loss, params, eps=1e-5)
        w = np.asarray(params["dense1"]["w"])
        f = lambda v: loss({**params, "dense1": {**params["dense1"], "w": jnp.asarray(v)}})  # noqa: E731
        np.testing.assert_allclose(numeric["dense1"]["w"], central_difference_grad(f, w, eps=1e-5), rtol=1e-9, atol=1e-12)



def _sequential_problem(model, in_shape, classes, seed=2):
    """(params, state, x, head, loss) for ``model`` in float64 on random data; head: mean cross-entropy."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(in_shape))
    t = jnp.asarray(rng.integers(0, classes, in_shape[0]))
    params, state = model.init(jax.random.PRNGKey(seed), x)
    head = lambda y: jnp.mean(cross_entropy(y, t))  # noqa: E731
    return params, state, x, head, jax.jit(lambda p: head(model.apply(p, state, x)[0]))


@pytest.mark.parametrize("name", ["prelu-mlp", "dense-on-sequences", "cnn-with-batchnorm"])
def test_sequential_finite_differences_match_an_independent_numpy_loop(name):
    # Every leaf, perturbed one coordinate at a time by a plain NumPy loop through the whole model:
    # covers the rank-one Dense path (w, b; on 2-D and 3-D inputs), re-applied layers (PReLU slope,
    # convolution, batch-norm scale in evaluation mode) and layers with state.
    from jaxnets.nn import Activation, BatchNorm, Conv2D, Dense, Flatten, Sequential

    cases = {"prelu-mlp": (models.mlp([6, 4], activation="prelu"), (5, 3), 4),
             "dense-on-sequences": (Sequential([Dense(5), Activation("tanh"), Flatten(), Dense(3, use_bias=False)]),
                                    (4, 2, 3), 3),
             "cnn-with-batchnorm": (Sequential([Conv2D(2, 3), BatchNorm(), Activation("tanh"), Flatten(), Dense(3)]),
                                    (3, 5, 5, 1), 3)}
    model, in_shape, classes = cases[name]
    with jax.enable_x64(True):
        params, state, x, head, loss = _sequential_problem(model, in_shape, classes)
        numeric = gradcheck.sequential_finite_difference_fn(model, head, state=state, chunk_size=7)(params, x, 1e-5)
        assert jax.tree_util.tree_structure(numeric) == jax.tree_util.tree_structure(params)
        for layer, leaves in params.items():
            for leaf_name, leaf in leaves.items():
                def f(v, layer=layer, leaf_name=leaf_name):
                    return loss({**params, layer: {**params[layer], leaf_name: jnp.asarray(v)}})
                expected = central_difference_grad(f, np.asarray(leaf), eps=1e-5)
                np.testing.assert_allclose(numeric[layer][leaf_name], expected, rtol=1e-7, atol=1e-10,
                                           err_msg=f"{layer}/{leaf_name}")
        assert gradcheck.compare_gradients(jax.grad(loss)(params), numeric).rel_error < 1e-7


@pytest.mark.parametrize("method", ["central", "forward"])
def test_sequential_finite_differences_equal_the_generic_ones(method):
    with jax.enable_x64(True):
        model, params, x, t, loss = _mlp_problem()
        head = lambda y: jnp.mean(cross_entropy(y, t))  # noqa: E731
        generic = gradcheck.finite_difference_grad(loss, params, method=method)
        for chunk_size in (1, 16, 128):  # chunking changes only which evaluations share a vmap
            fast = gradcheck.sequential_finite_difference_fn(model, head, method=method, chunk_size=chunk_size)(params, x)
            # both evaluate f(θ ± εeᵢ); they differ by the rounding of θᵢ ± ε and of the loss (≈ u·|f|/ε)
            assert gradcheck.relative_error(fast, generic) < (1e-9 if method == "central" else 1e-6)


def test_sequential_finite_differences_reject_params_of_no_layer():
    with jax.enable_x64(True):
        model, params, x, t, _ = _mlp_problem()
        fd = gradcheck.sequential_finite_difference_fn(model, lambda y: jnp.sum(y))
        with pytest.raises(ValueError, match=r"\['extra'\] name no layer.*dense1"):
            fd({**params, "extra": {"w": jnp.ones(2)}}, x)
    with pytest.raises(ValueError, match="known methods"):
        gradcheck.sequential_finite_difference_fn(model, jnp.sum, method="backward")

def test_float64_mlp_gradients_agree_within_the_target():
    with jax.enable_x64(True):
        model, params, x, t, loss = _mlp_problem()
        numeric = gradcheck.finite_difference_grad(loss, params)
        report = gradcheck.compare_gradients(jax.grad(loss)(params), numeric)
        assert report.passed and report.rel_error < 1e-7 and report.dtype == "float64"
        _, hand = backprop.backprop(model, params, x, t, "cross_entropy")
        assert gradcheck.compare_gradients(hand, numeric, names=("backprop", "numeric")).rel_error < 1e-7


def test_float32_uses_its_own_epsilon_and_tolerance():
    _, params, _, _, loss = _mlp_problem(jnp.float32)
    report = gradcheck.check_gradients(loss, params)
    assert report.dtype == "float32" and report.tolerance == gradcheck.default_tolerance(jnp.float32) == 1e-2
    assert report.passed and report.rel_error > 1e-6  # float32 differences are far from float64's 1e-9
    assert gradcheck.default_epsilon(jnp.float32) == pytest.approx(float(np.finfo(np.float32).eps) ** (1 / 3))


def test_broken_gradient_is_caught_and_the_leaf_named():
    with jax.enable_x64(True):
        _, params, _, _, loss = _mlp_problem()
        grads = jax.grad(loss)(params)
        broken = {**grads, "dense2": {**grads["dense2"], "b": grads["dense2"]["b"].at[2].multiply(-1.0)}}
        report = gradcheck.check_gradients(loss, params, grad=broken, name="buggy")
        assert not report.passed
        assert report.failed_leaves == ["dense2/b"]
        leaf = {leaf.path: leaf for leaf in report.leaves}["dense2/b"]
        assert leaf.worst_index == (2,) and leaf.worst_a == pytest.approx(-leaf.worst_b, rel=1e-6)
        text = str(report)
        assert "FAIL" in text and "dense2/b" in text and "buggy" in text
        assert "**FAIL**" in report._repr_markdown_()


def test_relative_error_definition():
    assert gradcheck.relative_error(np.array([3.0, 4.0]), np.array([3.0, 4.0])) == 0
    assert gradcheck.relative_error(np.array([0.0, 0.0]), np.array([0.0, 0.0])) == 0
    # ‖(0, 1)‖ / max(‖(3, 4)‖, ‖(3, 5)‖) = 1 / √34
    assert gradcheck.relative_error(np.array([3.0, 4.0]), np.array([3.0, 5.0])) == pytest.approx(1 / np.sqrt(34))


def test_directional_check_agrees_with_jvp_and_vjp_and_catches_a_wrong_gradient(key):
    with jax.enable_x64(True):
        _, params, _, _, loss = _mlp_problem()
        grads = jax.grad(loss)(params)
        report = gradcheck.directional_check(loss, params, key=key, num_directions=6, grad=grads)
        assert report.passed and report.numeric.shape == (6,)
        assert max(report.errors().values()) < 1e-7
        scaled = jax.tree_util.tree_map(lambda g: 1.01 * g, grads)  # a 1 % error: FD finds it
        bad = gradcheck.directional_check(loss, params, key=key, num_directions=6, grad=scaled)
        assert not bad.passed and bad.errors()["given"] == pytest.approx(0.01 / 1.01, rel=1e-3)
        assert "FAIL" in str(bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="known methods"):
        gradcheck.finite_difference_fn(lambda p: p, method="backward")
    with pytest.raises(ValueError, match="chunk_size"):
        gradcheck.finite_difference_fn(lambda p: p, chunk_size=0)
    with pytest.raises(ValueError, match="structure"):
        gradcheck.compare_gradients({"a": jnp.ones(2)}, {"b": jnp.ones(2)})
