"""Data parallelism: examples per second of ``jaxnets.fit`` on 1, 2, 4 and 8 devices and on 2 processes, and
whether every layout trains to the one-device params.

Each layout runs in its own process (JAX fixes its devices at start): ``fit(..., mesh=parallel.data_mesh())``
trains the main job's MLP (784 → 256 → 256 → 10, Adam, batch 256) and the small ResNet (``models.resnet()``,
batch 64; not in ``--quick``) on the first Fashion-MNIST images (digits when it is not installed) for a few
epochs from the same params and key. A CPU run splits the batch over simulated CPU devices
(``jax_num_cpu_devices``) that share the machine's cores: its numbers show that the layouts agree and what the
splitting costs, not a speed-up; on GPUs (``--devices`` up to the GPU count) they are the real scaling. The
2-process layout is ``python -m jaxnets.launch --processes 2`` with half the devices in each.

Reported per layout and network: steady examples/s (the best epoch after the first) and the largest
|param − one-device param|. One more one-device run shows how far float rounding alone moves the params: the same
batches with the rows of each batch in reverse order (``HostBatches``), which changes nothing but the order in
which each gradient is summed, as splitting the batch over devices does. Adam turns such rounding into
learning-rate-sized steps wherever a gradient coordinate is a sum that cancels to almost zero (its update is
normalised by its own tiny size), so after 48 steps both networks' params differ by ~1e-2 in every layout and in
this floor alike, while with plain SGD the MLP's stay within 1e-7 (measured 2026-12-02, see RESULTS.md). Compare
each layout's Δparam with the floor's. The last line's ``data_parallel_equal`` and ``multiprocess_equal`` are the
MLP's.

Streamed data (:mod:`jaxnets.streaming`), one device, each in its own process:

* the same MLP on the same 16,384 images (8,192 in ``--quick``; the set repeated if it is smaller), once from
  device memory and once from a memmap of them on disk (``HostArrays``, chunks of 32 steps), 3 epochs: steady
  examples/s of both, their ratio, and whether the params agree;
* two epochs of the MLP over a memmap of ``--memmap-gb`` GB of random inputs (784 features; 2 GB is about 640,000
  rows; quick 0.125 GB): the peak resident memory of the process during the second epoch (``VmHWM``, reset after
  the first through ``/proc/self/clear_refs``, so compilation is not counted) against the file's size.

The last line is ``data_parallel_equal=<max |Δparam| over the one-process layouts> multiprocess_equal=<max
|Δparam| of 2 processes> streamed_vs_in_memory=<streamed examples/s ÷ in-memory examples/s>``.

Command: ``python benchmarks/bench_scaling.py [--devices 1,2,4,8] [--memmap-gb 2]`` (devices 1, 2, 4, 8 and 2 processes × 4 by
default; ≈ 10 min on 2 CPU cores);
``--quick``: the MLP only, 1,024 images, 2 epochs, devices 1, 2, 4, a 0.125 GB memmap (≈ 1.5 min).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NETWORKS = {"mlp": 256, "resnet": 64}  # name → batch size
FLOOR = "1 device, each batch's rows reversed"


def worker(out: str, devices: int | None, networks: list[str], examples: int, epochs: int,
           perturb: bool = False) -> None:
    """One layout: trains each network, writes ``{network: {"examples_per_s", "params"}}`` to ``out``
    (process 0; .npz of the params next to it)."""
    import jax

    from jaxnets import distributed, runtime

    if os.environ.get(distributed.NUM_PROCESSES_ENV):
        distributed.initialize()
    else:
        runtime.use_cpu_devices(devices)
    import jaxnets as jn
    from jaxnets import data, models, optim, parallel

    from jaxnets.streaming import HostBatches
    from jaxnets.train import epoch_order

    dataset = data.load_default()[0]
    x, y = dataset.x_train[:examples], dataset.y_train[:examples]
    key = jax.random.PRNGKey(1)

    class ReversedBatches:
        """The in-memory epoch's batches, each with its rows in reverse order (the rounding floor)."""

        def __init__(self, batch: int):
            self.batch, self.epoch = batch, 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            for idx in epoch_order(key, self.epoch, len(x), self.batch)[:, ::-1]:
                yield x[idx], y[idx]

    record, arrays = {"devices": jax.device_count(), "processes": jax.process_count()}, {}
    for name in networks:
        model = (models.mlp([256, 256, dataset.num_classes], activation="relu") if name == "mlp"
                 else models.resnet(dataset.num_classes))
        params, state = model.init(jax.random.PRNGKey(0), x[:1])
        batch = NETWORKS[name]
        train_data = HostBatches(ReversedBatches(batch)) if perturb else (x, y)
        result = jn.fit(model, params, state, train_data, loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-3),
                        epochs=epochs, batch_size=batch, key=key, progress=False, mesh=parallel.data_mesh())
        steady = min(result.history["seconds"][1:]) if epochs > 1 else result.history["seconds"][0]
        record[name] = {"examples_per_s": (len(x) // batch) * batch / steady}
        for i, leaf in enumerate(jax.tree.leaves(result.params)):
            arrays[f"{name}_{i}"] = np.asarray(leaf)
    if jax.process_index() == 0:
        np.savez(out + ".npz", **arrays)
        Path(out).write_text(json.dumps(record))


def resident_bytes(field: str = "VmHWM") -> int:
    """This process's resident memory from ``/proc/self/status`` (Linux): ``VmRSS`` now, or ``VmHWM``, the peak
    since the start or the last :func:`reset_peak_resident`."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status (not Linux?)")


def reset_peak_resident() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak resident set size to the current one


def streamed_worker(out: str, examples: int, memmap_gb: float) -> None:
    """The streamed-data measurements (one device), written as JSON to ``out``."""
    import jax

    import jaxnets as jn
    from jaxnets import data, models, optim
    from jaxnets.streaming import HostArrays

    dataset = data.load_default()[0]
    repeat = np.arange(examples) % len(dataset.x_train)
    x = dataset.x_train[repeat].reshape(examples, -1)
    y = dataset.y_train[repeat]
    epochs = 3
    model = models.mlp([256, 256, dataset.num_classes], activation="relu")
    params, state = model.init(jax.random.PRNGKey(0), x[:1])
    batch, chunk = NETWORKS["mlp"], 32
    kw = dict(loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-3), batch_size=batch,
              key=jax.random.PRNGKey(1), progress=False)
    directory = Path(out).parent
    np.save(directory / "x.npy", x)
    on_disk = np.load(directory / "x.npy", mmap_mode="r")
    in_memory = jn.fit(model, params, state, (x, y), epochs=epochs, **kw)
    streamed = jn.fit(model, params, state, HostArrays(on_disk, y, chunk_steps=chunk), epochs=epochs, **kw)
    steps = examples // batch
    rate = {name: steps * batch / (min(r.history["seconds"][1:]) if epochs > 1 else r.history["seconds"][0])
            for name, r in (("in_memory", in_memory), ("streamed", streamed))}
    difference = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                     for a, b in zip(jax.tree.leaves(in_memory.params), jax.tree.leaves(streamed.params)))

    features = x.shape[1]
    rows = int(memmap_gb * 1e9) // (features * 4) // batch * batch
    big = np.lib.format.open_memmap(directory / "big.npy", mode="w+", dtype=np.float32, shape=(rows, features))
    block = 16384
    for start in range(0, rows, block):  # written block by block; the pages are dropped before training
        big[start:start + block] = np.random.default_rng(start).random((min(block, rows - start), features),
                                                                       np.float32)
    big.flush()
    del big
    labels = (np.arange(rows) % dataset.num_classes).astype(np.int32)
    before = resident_bytes("VmRSS")
    big_run = jn.fit(model, params, state, HostArrays(np.load(directory / "big.npy", mmap_mode="r"), labels,
                                                      chunk_steps=chunk), epochs=2,
                     on_epoch_end=lambda record: reset_peak_resident() if record["epoch"] == 0 else None, **kw)
    during = resident_bytes("VmHWM")
    Path(out).write_text(json.dumps({
        "in_memory_examples_per_s": rate["in_memory"], "streamed_examples_per_s": rate["streamed"],
        "max_abs_param_difference": difference, "memmap_bytes": rows * features * 4, "memmap_rows": rows,
        "rss_before": before, "peak_rss_second_epoch": during,
        "memmap_epoch_seconds": big_run.history["seconds"][1],
        "chunk_bytes": chunk * batch * features * 4}))


def run_streamed(tmp: Path, args) -> dict:
    out = tmp / "streamed" / "result.json"
    out.parent.mkdir()
    command = [sys.executable, str(Path(__file__).resolve()), "--streamed-worker", str(out), "--examples",
               str(8192 if args.quick else 16384), "--memmap-gb", str(args.memmap_gb)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=1500)
    if run.returncode != 0:
        raise RuntimeError(f"the streamed-data run failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    return json.loads(out.read_text())


def run_layout(tmp: Path, label: str, devices: int, processes: int, args, perturb: bool = False) -> dict:
    out = str(tmp / "".join(c if c.isalnum() else "_" for c in label))
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", out, "--networks", ",".join(args.networks),
               "--examples", str(args.examples), "--epochs", str(args.epochs)] + (["--perturb"] if perturb else [])
    if processes > 1:
        command = [sys.executable, "-m", "jaxnets.launch", "--processes", str(processes), "--devices-per-process",
                   str(devices // processes), "--timeout", "1200", "--", *command]
    else:
        command += ["--devices", str(devices)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXNETS_")}
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=1500)
    if run.returncode != 0:
        raise RuntimeError(f"layout {label} failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    record = json.loads(Path(out).read_text())
    record["params"] = dict(np.load(out + ".npz"))
    return record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the MLP only, 1,024 images, 2 epochs, 1/2/4 devices")
    parser.add_argument("--devices", default=None, help="comma-separated device counts (default 1,2,4,8; quick 1,2,4)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--perturb", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--streamed-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memmap-gb", type=float, default=None, help="size of the streamed memmap (default 2; quick "
                        "0.125)")
    parser.add_argument("--networks", default=None, help="comma-separated: mlp, resnet (default both; quick: mlp)")
    parser.add_argument("--examples", type=int, default=None, help="training images (default 4,096; quick 1,024)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 3; quick 2)")
    args = parser.parse_args(argv)
    args.networks = (args.networks or ("mlp" if args.quick else "mlp,resnet")).split(",")
    args.examples = args.examples or (1024 if args.quick else 4096)
    args.epochs = args.epochs or (2 if args.quick else 3)
    args.memmap_gb = args.memmap_gb or (0.125 if args.quick else 2.0)
    if args.streamed_worker:
        streamed_worker(args.streamed_worker, args.examples, args.memmap_gb)
        return
    if args.worker:  # one layout, in this process (started by run_layout)
        worker(args.worker, int(args.devices) if args.devices else None, args.networks, args.examples, args.epochs,
               args.perturb)
        return
    counts = [int(c) for c in (args.devices or ("1,2,4" if args.quick else "1,2,4,8")).split(",")]
    if 1 not in counts:
        counts = [1, *counts]
    layouts = [(f"{n} device{'s' * (n > 1)}", n, 1, False) for n in counts]
    if max(counts) >= 2:
        top = max(c for c in counts if c % 2 == 0)
        layouts.append((f"2 processes × {top // 2}", top, 2, False))
    layouts.append((FLOOR, 1, 1, True))
    from benchmarks import common

    info = common.environment()
    print(f"{info['cpu']}, {info['cores']} cores ({info['simd']}), jax {info['versions']['jax']}; networks "
          f"{', '.join(args.networks)}; {args.examples} images, {args.epochs} epochs")
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, devices, processes, perturb in layouts:
            results[label] = run_layout(Path(tmp), label, devices, processes, args, perturb)
            print(f"  {label}: " + ", ".join(f"{n} {results[label][n]['examples_per_s']:.0f} examples/s"
                                            for n in args.networks), flush=True)
        streamed = run_streamed(Path(tmp), args)
    ratio = streamed["streamed_examples_per_s"] / streamed["in_memory_examples_per_s"]
    print(f"  streamed from a memmap: {streamed['streamed_examples_per_s']:.0f} examples/s against "
          f"{streamed['in_memory_examples_per_s']:.0f} in memory (ratio {ratio:.2f}); max |Δparam| "
          f"{streamed['max_abs_param_difference']:.1e}")
    print(f"  a {streamed['memmap_bytes'] / 1e9:.2f} GB memmap ({streamed['memmap_rows']} rows): its second epoch took "
          f"{streamed['memmap_epoch_seconds']:.1f} s with a peak resident memory of "
          f"{streamed['peak_rss_second_epoch'] / 1e9:.2f} GB (the whole process; chunks of "
          f"{streamed['chunk_bytes'] / 1e6:.0f} MB; resident before the run {streamed['rss_before'] / 1e9:.2f} GB)")
    reference = results[layouts[0][0]]["params"]
    worst = {}  # (layout, network) -> max |Δparam| against one device
    for label, record in results.items():
        for n in args.networks:
            worst[label, n] = max(float(np.max(np.abs(record["params"][k] - reference[k])))
                                  for k in reference if k.startswith(n + "_"))
        rows.append({"layout": label, **{f"{n} examples/s": record[n]["examples_per_s"] for n in args.networks},
                     **{f"{n} max |Δparam|": worst[label, n] for n in args.networks}})
    print(common.format_table(rows, ["layout", *[f"{n} examples/s" for n in args.networks],
                                     *[f"{n} max |Δparam|" for n in args.networks]]))
    judged = "mlp" if "mlp" in args.networks else args.networks[0]
    layout_worst = {label: v for (label, n), v in worst.items() if n == judged and label != FLOOR}
    single = max(v for k, v in layout_worst.items() if "process" not in k)
    multi = max((v for k, v in layout_worst.items() if "process" in k), default=float("nan"))
    print(f"data_parallel_equal={single:.2e} multiprocess_equal={multi:.2e} streamed_vs_in_memory={ratio:.2f}")


if __name__ == "__main__":
    main()
