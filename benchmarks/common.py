"""Timing helpers shared by the benchmarks.

* :func:`interleaved` — round-robin repetitions of several implementations in one process, so
  that load from other processes on the machine hits all of them alike; :func:`summarize` gives
  min/median.
* :func:`cold_first_epochs` / :func:`first_epoch_child` — first epochs (compilation included) each in a
  fresh process, optionally on a persistent compilation cache an untimed run filled.
* :func:`matmul_peak` — the machine's measured fp32 matmul throughput (GFLOP/s) with a large
  ``jnp`` matmul, best of several, taken in the same run as the benchmark.
* the machine record is :func:`jaxnets.runtime.environment` (CPU, cores, SIMD flags, versions, XLA_FLAGS,
  backend), the one every run writes.
* :func:`format_table` — a plain-text table for the terminal and RESULTS.md.
* :func:`read_idx` / :func:`fashion_mnist_train` — the training set straight from the gzip IDX
  files (used when ``jaxnets.data`` is not importable).
"""

from __future__ import annotations

import gzip
import importlib
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist", "~/.cache/jaxnets/fashion-mnist")


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call of ``fn`` (which must block until its result is ready)."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _cpu_times() -> tuple[int, int] | None:
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]), idle


def busy_fraction(interval: float = 0.5) -> float | None:
    """Fraction of all CPUs busy during the next ``interval`` seconds (from /proc/stat; None
    where that is unavailable). Called while this process is idle, it measures other load."""
    before = _cpu_times()
    time.sleep(interval)
    after = _cpu_times()
    if before is None or after is None or after[0] == before[0]:
        return None
    return 1.0 - (after[1] - before[1]) / (after[0] - before[0])


def wait_for_quiet(max_busy: float = 0.25, timeout: float = 60.0, interval: float = 0.5) -> float | None:
    """Waits (up to ``timeout`` seconds) until other processes use less than ``max_busy`` of the
    CPUs; returns the last busy fraction measured (None where it cannot be measured)."""
    deadline = time.monotonic() + timeout
    while True:
        busy = busy_fraction(interval)
        if busy is None or busy <= max_busy or time.monotonic() >= deadline:
            return busy


def interleaved(runners: Mapping[str, Callable[[], object]], repeats: int,
                on_round: Callable[[int, dict[str, float]], None] | None = None,
                quiet: float | None = None, quiet_timeout: float = 60.0,
                quiet_each_call: bool = False) -> dict[str, list[float]]:
    """Runs every runner once per round, ``repeats`` rounds, in round-robin order (the order
    rotates each round so no implementation always follows the same one).

    Each runner must block until its work is done (``block_until_ready``). Returns
    ``{name: [seconds per round]}``. ``on_round(round, {name: seconds})`` is called after each round.
    With ``quiet`` (a busy fraction, e.g. 0.25) each round (each timed call with
    ``quiet_each_call``) first waits up to ``quiet_timeout`` seconds for other processes to leave
    the CPUs that idle (see :func:`wait_for_quiet`).
    """
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        if quiet is not None and not quiet_each_call:
            wait_for_quiet(quiet, quiet_timeout)
        shift = r % len(names)
        this_round = {}
        for name in names[shift:] + names[:shift]:
            if quiet is not None and quiet_each_call:
                wait_for_quiet(quiet, quiet_timeout)
            this_round[name] = timed(runners[name])
            times[name].append(this_round[name])
        if on_round is not None:
            on_round(r, this_round)
    return times


def first_epoch_child(factory: Callable, x, y, *, uses_jax: bool, cache_dir: str | None) -> None:
    """Measures one first epoch of ``factory(x, y)()`` (set-up outside the clock) in this fresh process
    and prints ``{"first": seconds}`` as JSON. For a JAX implementation the backend starts before the
    clock, and with ``cache_dir`` JAX's persistent compilation cache is on, keeping every program."""
    if uses_jax:
        import jax.numpy as jnp

        if cache_dir:
            from jaxnets.runtime import enable_compilation_cache

            enable_compilation_cache(cache_dir, min_compile_seconds=0.0)
        (jnp.zeros(()) + 1).block_until_ready()
    run = factory(x, y)
    print(json.dumps({"first": timed(run)}))


def cold_first_epochs(script: str | Path, names: Sequence[str], runs: int, child_args: Sequence[str] = (),
                      quiet: float | None = None, quiet_timeout: float = 30.0) -> dict[str, list[float]]:
    """``runs`` first epochs per entry of ``names``, each in a fresh process, round-robin:
    ``python SCRIPT --child NAME *child_args`` must print :func:`first_epoch_child`'s JSON as its last
    line. ``"NAME+cache"`` runs NAME on a persistent compilation cache (``--cache-dir``) that one untimed
    run filled first: what a second session of a notebook meets. Returns ``{entry: [seconds]}``."""
    results: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as tmp:
        def spawn(entry):
            impl, _, cached = entry.partition("+")
            cmd = [sys.executable, str(script), "--child", impl, *child_args]
            if cached:
                cmd += ["--cache-dir", os.path.join(tmp, impl)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"the first-epoch run {' '.join(cmd)!r} failed (exit {done.returncode}):\n"
                                   f"{done.stderr[-3000:]}")
            return json.loads(done.stdout.strip().splitlines()[-1])["first"]

        for entry in names:
            if "+cache" in entry:
                spawn(entry)  # fill the cache
        for r in range(runs):
            for entry in list(names[r % len(names):]) + list(names[:r % len(names)]):
                if quiet is not None:
                    wait_for_quiet(quiet, quiet_timeout)
                results[entry].append(spawn(entry))
    return results


def epoch_rows(names: Sequence[str], first: Mapping[str, float], steady: Mapping[str, Sequence[float]],
               cold: Mapping[str, Sequence[float]], last: Mapping[str, tuple[float, float]]) -> list[dict]:
    """One table row per implementation (``names``, then the entries only :func:`cold_first_epochs` timed, such
    as ``"flax+cache"``): its first epoch in this process, min/median of its fresh-process first epochs and of
    its steady epochs, and its last (loss, accuracy); ``None`` where it has no such number."""
    rows = []
    for name in list(names) + [n for n in cold if n not in names]:
        s = summarize(steady[name]) if name in steady else {}
        c = summarize(cold[name]) if cold.get(name) else {}
        rows.append({"implementation": name, "first_in_process_s": first.get(name), "first_cold_min_s": c.get("min"),
                     "first_cold_median_s": c.get("median"), "steady_min_s": s.get("min"),
                     "steady_median_s": s.get("median"), "train_loss": last[name][0] if name in last else None,
                     "train_accuracy": last[name][1] if name in last else None})
    return rows


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """``{"min", "median", "max", "n"}`` of a list of timings."""
    return {"min": min(seconds), "median": statistics.median(seconds), "max": max(seconds), "n": len(seconds)}


def matmul_peak(n: int = 4096, repeats: int = 5, dtype: str = "float32") -> float:
    """Measured matmul throughput in GFLOP/s: the best of ``repeats`` timed (n, n) @ (n, n)
    products (2·n³ FLOPs each) under ``jax.jit``, after one warm-up call."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
    product = jax.jit(jnp.matmul)
    product(a, b).block_until_ready()
    best = min(timed(lambda: product(a, b).block_until_ready()) for _ in range(repeats))
    return 2.0 * n**3 / best / 1e9


def environment() -> dict:
    """:func:`jaxnets.runtime.environment`, the record every run writes (imported here, on first use,
    so that a benchmark chooses its threads and flags before JAX starts)."""
    from jaxnets import runtime

    return runtime.environment()


def version_of(module: str) -> str | None:
    """The ``__version__`` of an importable module, or None when it is not installed (or broken)."""
    try:
        return getattr(importlib.import_module(module), "__version__", "?")
    except Exception:  # a broken optional install counts as absent
        return None


def format_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    """A plain-text (Markdown-compatible) table; floats are printed with 3 decimals (below 1e-3,
    in scientific notation: 1.4e-09)."""
    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.1e}" if 0 < abs(v) < 1e-3 else f"{v:.3f}"
        return str(v)

    body = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in body)) if body else len(c) for i, c in enumerate(columns)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"
    return "\n".join([line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (raw or ``.gz``) as a NumPy array of unsigned bytes, shape from its header."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} ({int(np.prod(dims))} values), file holds {data.size}")
    return data.reshape(dims)


def fashion_mnist_train(examples: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """The first ``examples`` (default all 60,000) Fashion-MNIST training images, C-contiguous float32
    (N, 28, 28, 1) in [0, 1], their labels int32 (N,), and where they came from."""
    x, y, source = _fashion_mnist_train_set()
    x, y = x[:examples], y[:examples]
    return np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.int32), source


def _fashion_mnist_train_set() -> tuple[np.ndarray, np.ndarray, str]:
    """The whole training set: by ``jaxnets.data`` when it provides a loader, else from the IDX files in
    $JAXNETS_DATA, ~/.cache/jaxnets or /usr/share/datasets directly."""
    try:
        from jaxnets import data

        loader = getattr(data, "load_fashion_mnist", None) or (lambda: data.load_dataset("fashion-mnist"))
        dataset = loader()
        return np.asarray(dataset.x_train, np.float32), np.asarray(dataset.y_train, np.int32), "jaxnets.data"
    except ImportError:
        pass
    dirs = [os.environ["JAXNETS_DATA"] + "/fashion-mnist"] if os.environ.get("JAXNETS_DATA") else []
    for d in [*dirs, *FASHION_MNIST_DIRS]:
        root = Path(d).expanduser()
        images, labels = root / "train-images-idx3-ubyte.gz", root / "train-labels-idx1-ubyte.gz"
        if images.exists() and labels.exists():
            x = read_idx(images).astype(np.float32)[..., None] / 255.0
            return x, read_idx(labels).astype(np.int32), str(root)
    raise FileNotFoundError(
        "Fashion-MNIST not found in $JAXNETS_DATA/fashion-mnist, ~/.cache/jaxnets/fashion-mnist or "
        "/usr/share/datasets/fashion-mnist; install it with `sudo apt-get install dataset-fashion-mnist`."
    )


def jaxnets_epoch_fn(model, x, y, *, engine: str, batch_size: int, learning_rate: float,
                     seed: int = 0) -> Callable[[], tuple[float, float]]:
    """A jaxnets model trained the way ``jaxnets.fit`` trains it, one epoch per call: Adam at
    ``learning_rate``, the scanned epoch (``engine="scan"``: the plan from ``train.plan_epoch``, then
    the planned epoch) or the per-step engine (``"step"``), epoch e keyed by ``fold_in(key, e)``, no
    penalties. x: (N, …), y: (N,).
    Returns ``run_epoch() -> (mean loss, accuracy)``, blocking until the epoch is done."""
    import jax
    import jax.numpy as jnp

    from jaxnets import optim
    from jaxnets.train import TrainState, make_planned_epoch_fn, make_step_epoch_fn, plan_epoch

    optimizer = optim.optimizer("adam", learning_rate)
    params, state = model.init(jax.random.PRNGKey(seed), x[:1])
    if engine == "scan":
        planned = jax.jit(make_planned_epoch_fn(model, "cross_entropy", optimizer))

        def epoch_fn(ts, x, t, key):
            return planned(ts, x, t, *plan_epoch(key, t.shape[0], batch_size))
    else:
        epoch_fn = make_step_epoch_fn(model, "cross_entropy", optimizer, batch_size=batch_size)
    x_dev, y_dev = jax.device_put(jnp.asarray(x)), jax.device_put(jnp.asarray(y))
    carry = {"ts": TrainState(params, state, optimizer.init(params)), "epoch": 0}
    key = jax.random.PRNGKey(seed)

    def run_epoch():
        carry["ts"], (losses, corrects) = epoch_fn(carry["ts"], x_dev, y_dev, jax.random.fold_in(key, carry["epoch"]))
        carry["epoch"] += 1
        losses = np.asarray(losses)
        return float(losses.mean()), float(np.sum(corrects)) / (losses.size * batch_size)

    return run_epoch


def torch_epoch_fn(model, optimizer, images, labels, batch_size: int) -> Callable[[], tuple[float, float]]:
    """The idiomatic PyTorch training epoch over pre-made tensors (images: (N, …), labels: (N,) int64):
    shuffle with ``torch.randperm``, then per batch index-slice, zero the grads, forward, cross-entropy,
    backward, step. Returns ``run_epoch() -> (mean loss, accuracy)`` over the N // batch_size full batches."""
    import torch

    steps = images.shape[0] // batch_size

    def run_epoch():
        perm = torch.randperm(images.shape[0])
        total_loss, total_correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)
        for i in range(steps):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            xb, yb = images[idx], labels[idx]
            optimizer.zero_grad(set_to_none=True)
            logits = model(xb)
            loss = torch.nn.functional.cross_entropy(logits, yb)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                total_loss += loss.detach()
                total_correct += (logits.argmax(1) == yb).sum()
        return total_loss.item() / steps, total_correct.item() / (steps * batch_size)

    return run_epoch
