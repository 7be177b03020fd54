"""Many runs in one compiled program vs one run at a time.

Part 1: 32 seeds of a 2-64-64-2 tanh MLP, Adam (lr 0.01), batch 64,
100 epochs on 1 024 two-spirals points, trained by

* ``vmapped`` — :func:`jaxnets.seeds.fit_seeds`: all 32 seeds in one vmapped, scanned epoch;
* (a) ``sequential fit`` — 32 calls of :func:`jaxnets.fit` (engine "scan"), one per seed;
* (b) ``flax loop`` — the idiomatic Flax loop: a ``flax.linen`` MLP, ``TrainState`` and one
  ``jax.jit``-compiled train step called per minibatch from Python, seed after seed.

Part 2: 8 seeds of the Fashion-MNIST MLP of the main job (784-256-256-10 ReLU, Adam 1e-3,
batch 128) for 1 epoch on the 60 000 training images, vmapped vs 8 sequential fits.

Part 3: a hyper-parameter grid on the part-1 network: 4 optimizers (sgd, momentum, rmsprop, adam)
× 4 learning rates × 2 seeds = 32 runs, 100 epochs, as one ``fit_seeds`` call per optimizer (its 8
runs with ``hyperparams={"learning_rate": ...}``) against 32 sequential ``fit`` calls and the
Flax loop (a fresh ``optax`` optimizer per run, as a Flax user writes it).

JAX exposes one CPU device per core (``jaxnets.runtime.use_cpu_devices``; ``--cpu-devices 1``
turns it off) for all three implementations: ``fit_seeds`` splits its runs over the devices,
``fit`` and the Flax loop run on the first one, as they would in a user's process.

All times are wall-clock seconds including compilation (what a user waits for): each timed
block starts from empty compilation caches (``jax.clear_caches()``), as in a fresh process, and
compiles what it needs once — ``fit`` reuses its compiled programs across calls with equal
settings, so the 32 sequential ``fit`` calls of part 1 compile one epoch and those of part 3 one
per optimizer (its learning rates live in the optimizer state). The implementations run
round-robin in one process (repetitions interleaved, min and median reported) because other
processes may load the CPU. Part 1 also reports the time without compilation (epochs after the
first). The last line is
``vmapped_seeds_speedup=<vs a> vs_flax_loop=<vs b> hparam_grid_speedup=<part 3 vs sequential fits>
hparam_grid_vs_flax_loop=<part 3 vs the Flax loop>`` (medians).

Command: ``python benchmarks/bench_seeds.py`` (≈ 3 min on 2 CPU cores, 2 repetitions;
``--quick``: 8 seeds, 10 epochs, a 4 × 2 × 2 grid, 1 repetition, 10 000 Fashion-MNIST images, ≈ 2 min).
"""

from __future__ import annotations

import argparse
import statistics
import time

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

import jaxnets as jn
from jaxnets import data, models, optim, runtime
from jaxnets.seeds import fit_seeds, init_runs, seed_grid, seed_keys


class FlaxMLP(fnn.Module):
    hidden: tuple[int, ...] = (64, 64)
    outputs: int = 2

    @fnn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = jnp.tanh(fnn.Dense(width)(x))
        return fnn.Dense(self.outputs)(x)


@jax.jit
def flax_train_step(state: train_state.TrainState, x, y):
    def loss_fn(params):
        logits = state.apply_fn({"params": params}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


def flax_loop(x: np.ndarray, y: np.ndarray, seeds: list[int], epochs: int, batch_size: int, lr: float,
              optimizers: list | None = None) -> list:
    """The idiomatic Flax training loop, one run after another: one compiled step, reused while the
    optimizer stays the same. ``optimizers``: one Optax optimizer per run (default Adam at ``lr``)."""
    model, results = FlaxMLP(), []
    for i, seed in enumerate(seeds):
        params = model.init(jax.random.PRNGKey(seed), x[:1])["params"]
        tx = optax.adam(lr) if optimizers is None else optimizers[i]
        state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
        rng = np.random.default_rng(seed)
        steps = len(x) // batch_size
        for _ in range(epochs):
            order = rng.permutation(len(x))
            for i in range(steps):
                idx = order[i * batch_size:(i + 1) * batch_size]
                state, loss = flax_train_step(state, x[idx], y[idx])
        results.append(jax.block_until_ready(state.params))
    return results


def jaxnets_runs(model, x, y, seeds, epochs, batch_size, lr):
    keys = seed_keys(seeds)
    init_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 1)
    params, state = init_runs(model, init_keys, x[:1])
    return keys, params, state, optim.optimizer("adam", lr)


def vmapped(model, x, y, seeds, epochs, batch_size, lr):
    keys, params, state, opt = jaxnets_runs(model, x, y, seeds, epochs, batch_size, lr)
    result = fit_seeds(model, params, state, (x, y), loss="cross_entropy", optimizer=opt, epochs=epochs,
                       batch_size=batch_size, keys=keys, progress=False)
    jax.block_until_ready(result.params)
    return result.history["seconds"], result.history["train_loss"][-1]


def sequential(model, x, y, seeds, epochs, batch_size, lr):
    keys, params, state, opt = jaxnets_runs(model, x, y, seeds, epochs, batch_size, lr)
    seconds, losses = np.zeros(epochs), []
    for i in range(len(seeds)):
        one = jax.tree.map(lambda leaf: leaf[i], (params, state))
        result = jn.fit(model, *one, (x, y), loss="cross_entropy", optimizer=opt, epochs=epochs,
                        batch_size=batch_size, key=keys[i], engine="scan", progress=False)
        jax.block_until_ready(result.params)
        seconds += np.asarray(result.history["seconds"])
        losses.append(result.history["train_loss"][-1])
    return seconds, np.asarray(losses)


# part 3: optimizer name → its 4 learning rates (from too small to too large for this net)
GRID = {"sgd": [0.03, 0.1, 0.3, 1.0], "momentum": [0.003, 0.01, 0.03, 0.1],
        "rmsprop": [3e-4, 1e-3, 3e-3, 1e-2], "adam": [1e-3, 3e-3, 1e-2, 3e-2]}
OPTAX = {"sgd": optax.sgd, "momentum": lambda lr: optax.sgd(lr, momentum=0.9), "rmsprop": optax.rmsprop,
         "adam": optax.adam}


def grid_vmapped(model, x, y, grid, seeds, epochs, batch_size):
    """One fit_seeds call per optimizer, its runs the product of learning rates and seeds."""
    losses = []
    for name, rates in grid.items():
        run_seeds, values = seed_grid(seeds, learning_rate=rates)
        keys, params, state, _ = jaxnets_runs(model, x, y, run_seeds, epochs, batch_size, rates[0])
        result = fit_seeds(model, params, state, (x, y), loss="cross_entropy", optimizer=optim.optimizer(name, rates[0]),
                           epochs=epochs, batch_size=batch_size, keys=keys, hyperparams=values, progress=False,
                           on_non_finite="record")
        jax.block_until_ready(result.params)
        losses.append(result.history["train_loss"][-1])
    return np.concatenate(losses)


def grid_sequential(model, x, y, grid, seeds, epochs, batch_size):
    """The same runs as :func:`grid_vmapped`, one ``fit`` call each."""
    losses = []
    for name, rates in grid.items():
        run_seeds, values = seed_grid(seeds, learning_rate=rates)
        keys, params, state, _ = jaxnets_runs(model, x, y, run_seeds, epochs, batch_size, rates[0])
        for i, rate in enumerate(values["learning_rate"]):
            one = jax.tree.map(lambda leaf: leaf[i], (params, state))
            result = jn.fit(model, *one, (x, y), loss="cross_entropy", optimizer=optim.optimizer(name, rate),
                            epochs=epochs, batch_size=batch_size, key=keys[i], progress=False, on_non_finite="record")
            jax.block_until_ready(result.params)
            losses.append(result.history["train_loss"][-1])
    return np.asarray(losses)


def grid_flax(x, y, grid, seeds, epochs, batch_size):
    """The same runs in the Flax loop, with a fresh Optax optimizer per run."""
    for name, rates in grid.items():
        run_seeds, values = seed_grid(seeds, learning_rate=rates)
        flax_loop(x, y, run_seeds, epochs, batch_size, 0.0, [OPTAX[name](r) for r in values["learning_rate"]])


def measure(name: str, fn, times: dict, steady: dict | None = None) -> None:
    jax.clear_caches()  # compile as a fresh process would (the backend and the data stay)
    started = time.perf_counter()
    out = fn()
    times.setdefault(name, []).append(time.perf_counter() - started)
    if steady is not None and isinstance(out, tuple) and len(out[0]) > 1:
        # epochs after the first (which includes compilation), scaled to all epochs
        steady.setdefault(name, []).append(float(np.sum(out[0][1:])) * len(out[0]) / (len(out[0]) - 1))
    print(f"  {name:<16} {times[name][-1]:8.2f} s", flush=True)


def table(times: dict, title: str) -> None:
    print(title)
    for name, values in times.items():
        print(f"  {name:<16} min {min(values):8.2f} s   median {statistics.median(values):8.2f} s   ({len(values)} reps)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer seeds/epochs, one repetition")
    parser.add_argument("--reps", type=int, default=None, help="round-robin repetitions (default 2; quick 1)")
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="CPU devices JAX exposes (default: one per core; fit_seeds splits runs over them)")
    args = parser.parse_args(argv)
    runtime.use_cpu_devices(args.cpu_devices)
    reps = args.reps or (1 if args.quick else 2)
    num_seeds, epochs = (8, 10) if args.quick else (32, 100)
    print(f"devices: {jax.devices()}; {runtime.environment()}")
    grid = {name: rates[1:3] for name, rates in GRID.items()} if args.quick else GRID
    grid_seeds = [0, 1]

    x, y = data.make_synthetic("spirals", 1024, key=jax.random.PRNGKey(0))
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int32)
    model, seeds = models.mlp([64, 64, 2], activation="tanh"), list(range(num_seeds))
    print(f"part 1: {num_seeds} seeds of a 2-64-64-2 tanh MLP, Adam, batch 64, {epochs} epochs, {len(x)} spirals points")
    # Warm-up, untimed, each implementation at the run counts it is timed at: one-time costs of the
    # process that survive jax.clear_caches() (backend start, imports, lazily built Python state)
    # would otherwise fall on whichever timed block comes first. Compiled programs do not carry over:
    # measure() empties the caches before each block.
    grid_runs = len(next(iter(grid.values()))) * len(grid_seeds)
    for warm_seeds in (seeds, list(range(grid_runs))):
        vmapped(model, x, y, warm_seeds, 1, 64, 1e-2)
    sequential(model, x, y, [0], 1, 64, 1e-2), flax_loop(x, y, [0], 1, 64, 1e-2)
    times, steady = {}, {}
    for rep in range(reps):
        print(f" repetition {rep + 1}/{reps}")
        measure("vmapped", lambda: vmapped(model, x, y, seeds, epochs, 64, 1e-2), times, steady)
        measure("sequential fit", lambda: sequential(model, x, y, seeds, epochs, 64, 1e-2), times, steady)
        measure("flax loop", lambda: flax_loop(x, y, seeds, epochs, 64, 1e-2), times)
    table(times, "part 1, wall time including compilation:")
    table(steady, "part 1, without compilation (epochs after the first, scaled):")
    med = {k: statistics.median(v) for k, v in times.items()}

    dataset = data.load_default()[0]
    n_fashion, fashion_epochs = (10000, 1) if args.quick else (len(dataset.x_train), 1)
    xf, yf = dataset.x_train[:n_fashion], dataset.y_train[:n_fashion]
    fashion = models.mlp([256, 256, dataset.num_classes], activation="relu")
    print(f"part 2: 8 seeds of the {dataset.name} MLP 784-256-256-10, Adam, batch 128, {fashion_epochs} epochs, "
          f"{len(xf)} images")
    times2 = {}
    for rep in range(reps):
        print(f" repetition {rep + 1}/{reps}")
        measure("vmapped", lambda: vmapped(fashion, xf, yf, list(range(8)), fashion_epochs, 128, 1e-3), times2)
        measure("sequential fit", lambda: sequential(fashion, xf, yf, list(range(8)), fashion_epochs, 128, 1e-3), times2)
    table(times2, "part 2, wall time including compilation:")
    med2 = {k: statistics.median(v) for k, v in times2.items()}
    print(f"fashion_8_seeds_speedup={med2['sequential fit'] / med2['vmapped']:.2f}")

    runs = sum(len(r) for r in grid.values()) * len(grid_seeds)
    print(f"part 3: {len(grid)} optimizers × {len(next(iter(grid.values())))} learning rates × {len(grid_seeds)} seeds "
          f"= {runs} runs of the part-1 MLP, {epochs} epochs; one fit_seeds call per optimizer")
    times3 = {}
    for rep in range(reps):
        print(f" repetition {rep + 1}/{reps}")
        measure("grid vmapped", lambda: grid_vmapped(model, x, y, grid, grid_seeds, epochs, 64), times3)
        measure("grid sequential", lambda: grid_sequential(model, x, y, grid, grid_seeds, epochs, 64), times3)
        measure("grid flax loop", lambda: grid_flax(x, y, grid, grid_seeds, epochs, 64), times3)
    table(times3, "part 3, wall time including compilation:")
    med3 = {k: statistics.median(v) for k, v in times3.items()}
    print(f"vmapped_seeds_speedup={med['sequential fit'] / med['vmapped']:.2f} "
          f"vs_flax_loop={med['flax loop'] / med['vmapped']:.2f} "
          f"hparam_grid_speedup={med3['grid sequential'] / med3['grid vmapped']:.2f} "
          f"hparam_grid_vs_flax_loop={med3['grid flax loop'] / med3['grid vmapped']:.2f}")


if __name__ == "__main__":
    main()
