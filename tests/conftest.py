"""Strict test settings (after Equinox's conftest): rank promotion raises, warnings are errors
(pyproject), compiled programs are cached for the session, and tests get a PRNG key fixture. Tests that need float64 use
``with jax.enable_x64(True):``."""

import tempfile

import jax
import numpy as np
import pytest

from jaxnets.runtime import enable_compilation_cache

jax.config.update("jax_numpy_rank_promotion", "raise")
# Many tests compile the same small programs; a persistent cache (fresh for each session, so no
# test depends on an earlier run) loads them instead of recompiling.
enable_compilation_cache(tempfile.mkdtemp(prefix="jaxnets-xla-cache-"))


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
