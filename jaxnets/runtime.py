"""The runtime around a run: the persistent XLA compilation cache and the facts a run records.

XLA compilation dominates the first epoch of a small model on CPU (seconds, against a fraction of a
second per epoch afterwards). ``enable_compilation_cache`` turns on JAX's persistent cache, so a
program compiled once — in this process or an earlier one — is loaded instead of recompiled. The
cache is keyed by the compiled program; it never changes results. It is opt-in: the experiment
runner, the main job and the test suite switch it on.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import jax

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "jaxnets" / "xla"


def enable_compilation_cache(directory: str | os.PathLike | None = None, *, min_compile_seconds: float = 0.2) -> Path:
    """Caches compiled XLA programs in ``directory`` (default ``~/.cache/jaxnets/xla``, or
    ``$JAXNETS_XLA_CACHE``) when they took more than ``min_compile_seconds`` to compile."""
    path = Path(directory or os.environ.get("JAXNETS_XLA_CACHE") or DEFAULT_CACHE_DIR).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
    return path


def environment(seed: int | None = None) -> dict:
    """What a run records to be reproducible: versions, backend, device kind, XLA_FLAGS and seed."""
    import jaxlib
    import optax

    return {
        "jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": optax.__version__,
        "python": platform.python_version(), "machine": platform.machine(),
        "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(), "xla_flags": os.environ.get("XLA_FLAGS", ""), "seed": seed,
    }
