"""Strict test settings (after Equinox's conftest): rank promotion raises, warnings are errors
(pyproject), compiled programs are cached for the session, and tests get a PRNG key fixture. Tests that need float64 use
``with jax.enable_x64(True):``."""

import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import monitoring

from jaxnets import data
from jaxnets.runtime import enable_compilation_cache

jax.config.update("jax_numpy_rank_promotion", "raise")
# Many tests compile the same programs; a persistent cache (fresh for each session, so no test depends on an
# earlier run) loads them instead of recompiling. It keeps those over 0.2 s, the threshold the suite's times were
# measured with (keeping every small program too is untried here).
enable_compilation_cache(tempfile.mkdtemp(prefix="jaxnets-xla-cache-"), min_compile_seconds=0.2)

# Compilation is counted as lowerings to MLIR (JAX's ``jaxpr_to_mlir_module`` event), which happen even when the
# persistent compilation cache then loads the XLA program.
LOWERINGS: list[float] = []
monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **_: LOWERINGS.append(seconds) if event.endswith("jaxpr_to_mlir_module_duration") else None)


def lowerings_of(fn):
    """(what fn returned, how many programs JAX lowered while it ran)."""
    before = len(LOWERINGS)
    out = fn()
    return out, len(LOWERINGS) - before


def _fashion_mnist_available() -> bool:
    try:
        data.load_fashion_mnist()
        return True
    except data.DatasetNotFoundError:
        return False


def pytest_configure(config):
    config.addinivalue_line("markers", "requires_fashion_mnist: trains on the real Fashion-MNIST files, which the "
                                       "README's test command installs")


def pytest_collection_modifyitems(config, items):
    # Look for the files only when a collected test needs them (loading them takes ~1.4 s).
    needing = [item for item in items if item.get_closest_marker("requires_fashion_mnist")]
    if needing:
        available = _fashion_mnist_available()
        for item in needing:
            item.add_marker(pytest.mark.skipif(
                not available, reason="Fashion-MNIST files not installed (scripts/setup.sh installs them)"))


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


def central_difference_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Reference gradient of a scalar f at x by central differences, one coordinate at a time
    (a plain NumPy loop, independent of the library under test)."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = eps
        grad[i] = (float(f(x + step)) - float(f(x - step))) / (2 * eps)
    return grad


def numpy_init(layer, in_shape, dtype=np.float32, seed=0):
    """(params, state, x) with the shapes ``layer.init`` gives, filled from NumPy's RNG (random
    initialisers cost a compilation each; these tests are about apply). Running variances stay positive."""
    rng = np.random.default_rng(seed)
    spec = jax.ShapeDtypeStruct(in_shape, dtype)
    shapes = jax.eval_shape(lambda k: layer.init(k, spec), jax.random.PRNGKey(0))

    def fill(path, leaf):
        if getattr(path[-1], "key", None) == "var":
            return rng.uniform(0.5, 1.5, leaf.shape).astype(dtype)
        return (0.5 * rng.standard_normal(leaf.shape)).astype(dtype)

    params, state = jax.tree_util.tree_map_with_path(fill, shapes)
    return params, state, rng.standard_normal(in_shape).astype(dtype)


def assert_output_shape_agrees(layer, in_shape, out_shape, init_key, **apply_kwargs):
    """``layer.output_shape(in_shape)`` and the shape ``apply`` returns both equal the hand-computed
    ``out_shape`` (init and apply are traced with ``jax.eval_shape``, nothing is run). Returns the
    state before and after apply (their shape structures)."""
    x = jax.ShapeDtypeStruct(in_shape, jnp.float32)
    params, state = jax.eval_shape(layer.init, init_key, x)
    y, new_state = jax.eval_shape(lambda p, s, v: layer.apply(p, s, v, **apply_kwargs), params, state, x)
    assert layer.output_shape(in_shape) == out_shape
    assert y.shape == out_shape
    return state, new_state


def assert_jit_equals_eager(layer, in_shape, *, rtol: float, atol: float, **apply_kwargs) -> None:
    """``apply`` under ``jax.jit`` equals eager ``apply`` (output and new state) to ``rtol``/``atol``,
    on params and input from :func:`numpy_init`."""
    params, state, x = numpy_init(layer, in_shape)
    eager = layer.apply(params, state, x, **apply_kwargs)
    compiled = jax.jit(lambda p, s, v: layer.apply(p, s, v, **apply_kwargs))(params, state, x)
    for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(compiled)):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol)


def assert_layer_gradients_match(layer, in_shape, *, train: bool = False) -> None:
    """Autodiff against central differences in float64 for a layer's gradient with respect to every
    parameter and every input value, through the scalar Σ tanh(y)·target with a fixed random target.
    Params and input come from :func:`numpy_init`; dropout gets a fixed key."""
    from jax.flatten_util import ravel_pytree
    import jax.numpy as jnp

    with jax.enable_x64(True):
        params, state, x = numpy_init(layer, in_shape, np.float64)
        flat, unravel = ravel_pytree((params, x))
        target = np.random.default_rng(1).standard_normal(layer.output_shape(in_shape))
        dropout_key = jax.random.PRNGKey(7)

        @jax.jit
        def loss(v):
            p, xx = unravel(v)
            return jnp.sum(jnp.tanh(layer.apply(p, state, xx, key=dropout_key, train=train)[0]) * target)

        numeric = central_difference_grad(loss, np.asarray(flat))
        np.testing.assert_allclose(jax.grad(loss)(flat), numeric, rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="session")
def quick_results(tmp_path_factory):
    """``python -m experiments all --quick`` run once per test session, in a fresh process (what CI asks
    for); tests of the experiments and the notebooks read its outputs instead of recomputing them.
    Returns ``(results directory, completed process)``. With ``JAXNETS_REUSE_RESULTS=DIR`` the results
    already in DIR are read instead (for iterating on one experiment's tests; CI never sets it)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    reuse = os.environ.get("JAXNETS_REUSE_RESULTS")  # a developer's shortcut: results of an earlier `all --quick`
    if reuse:
        return Path(reuse), subprocess.CompletedProcess([], 0, "", "")
    out = tmp_path_factory.mktemp("results")
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run([sys.executable, "-m", "experiments", "all", "--quick", "--out", str(out)],
                         capture_output=True, text=True, cwd=root, timeout=2400)
    return out, run
