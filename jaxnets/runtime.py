"""The runtime around a run: the XLA compilation cache, CPU devices, and the facts a run records.

XLA compilation dominates the first epoch of a small model on CPU (seconds, against a fraction of a
second per epoch afterwards). ``enable_compilation_cache`` turns on JAX's persistent cache, so a
program compiled once — in this process or an earlier one — is loaded instead of recompiled. The
cache is keyed by the compiled program; it never changes results.

XLA:CPU runs the small matrix products of a small network mostly on one thread, so a program that
trains many seeds at once (:func:`jaxnets.seeds.fit_seeds`) leaves the other cores idle.
``use_cpu_devices`` makes JAX expose one CPU device per core; ``fit_seeds`` then splits its runs
over them (one shard of runs per device, run in parallel).

Both are opt-in; the experiment runner (``python -m experiments``) switches both on, the test suite
the cache.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import jax

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "jaxnets" / "xla"


def enable_compilation_cache(directory: str | os.PathLike | None = None, *, min_compile_seconds: float = 0.0) -> Path:
    """Caches compiled XLA programs in ``directory`` (default ``~/.cache/jaxnets/xla``, or
    ``$JAXNETS_XLA_CACHE``) when they took more than ``min_compile_seconds`` to compile.

    The default keeps every program. A first ``model.init`` and ``fit`` are many programs of
    0.01–0.3 s each (the weight draws, the epoch's plan, the key folding) besides the epoch's own, and
    loading one takes milliseconds: in a second process on a 2-core Xeon the 1-D CNN of
    ``benchmarks/bench_conv1d.py`` then initialises in 0.26 s and trains its first epoch in 0.61 s,
    against 0.97–1.02 s and 0.84–0.98 s when only programs over 0.2 s are kept (benchmarks/RESULTS.md). The
    first process writes ≈ 20 more files (≈ 250 KB in all) and is no slower within the noise."""
    path = Path(directory or os.environ.get("JAXNETS_XLA_CACHE") or DEFAULT_CACHE_DIR).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
    return path


def use_cpu_devices(count: int | None = None) -> int:
    """Makes JAX expose ``count`` CPU devices (default: ``os.cpu_count()``) instead of one, and
    returns ``count``. Call it right after ``import jax``, before any computation: JAX fixes its
    devices when the first one runs (a later call raises RuntimeError). GPU and TPU devices are not
    affected; the CPU devices share the machine's cores, so only work split over them (the runs of
    ``fit_seeds``) runs in parallel."""
    count = (os.cpu_count() or 1) if count is None else int(count)
    if count < 1:
        raise ValueError(f"use_cpu_devices: count must be at least 1, got {count}")
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as error:
        raise RuntimeError(f"use_cpu_devices({count}) came too late: JAX already runs with "
                           f"{len(jax.devices('cpu'))} CPU device(s); call it before the first JAX "
                           "computation") from error
    return count


PACKAGES = ("jax", "jaxlib", "optax", "flax", "chex", "numpy", "equinox", "torch")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _simd_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
    return ",".join(f for f in wanted if f in flags) or "none"


def _version(module: str) -> str | None:
    """The installed version of ``module`` (None when it is not installed), read from its package
    metadata, so that nothing heavy (PyTorch) is imported just to be named."""
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def environment(seed: int | None = None) -> dict:
    """The one record of where and with what a run ran, written by the main job, every experiment
    and every benchmark: date, Python, CPU model, cores and SIMD flags, the versions of
    ``PACKAGES`` (None where not installed), JAX's backend, device kind and count, XLA_FLAGS and
    the seed."""
    import datetime

    devices = jax.devices()
    return {
        "date": datetime.date.today().isoformat(), "python": platform.python_version(),
        "machine": platform.machine(), "cpu": _cpu_model(), "cores": os.cpu_count(), "simd": _simd_flags(),
        "versions": {name: _version(name) for name in PACKAGES},
        "backend": jax.default_backend(), "device_kind": devices[0].device_kind, "device_count": len(devices),
        "xla_flags": os.environ.get("XLA_FLAGS", ""), "seed": seed,
    }
