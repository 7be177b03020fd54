"""Where a compiled training epoch spends its time: a per-operation profile of the epoch ``fit`` runs.

The epoch is the one ``jaxnets.fit`` compiles by default (the scanned epoch, its plan drawn
outside it; ``common.jaxnets_epoch_fn``), Adam(1e-3), for one of the benchmarks' networks:

* ``mlp``: 784-256-256-10 ReLU, batch 128, the Fashion-MNIST training set (``bench_mlp.py``);
* ``lenet``: ``models.lenet5("modern")``, batch 128 (``bench_lenet.py``);
* ``cnn2d`` / ``cnn1d``: the user CNNs of ``bench_conv1d.py`` (batch 100; the 1-D one on MNIST-1D, or
  random data of its shape when the ``mnist1d`` package is not installed).

After two warm-up epochs one epoch runs under ``jax.profiler.trace`` with XLA:CPU's per-operation
trace events on (``--xla_cpu_enable_xprof_traceme``, added to ``XLA_FLAGS`` before JAX starts). Each
row is one operation of the optimised program (a fusion, a library matmul, a sort): how often it
ran, its milliseconds summed over the XLA threads, its share of all operations' time, and what it is
(output shape, and the JAX operation it came from, e.g. ``transpose(jvp())/pad`` for a gradient's
pad). Operations that run in parallel on several threads count once per thread, so the shares say
where the work goes, not the wall time; the trace's events also add some time of their own.

Command: ``python benchmarks/profile_epoch.py mlp`` (≈ 30 s; ``--examples N`` trains on the first N
examples, ``--top K`` rows; ``--quick``: 1,024 examples, 10 rows). The last line is
``epoch_ms=<wall time of the traced epoch> operations_ms=<summed> top=<operation> top_share=<share>``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

TRACE_FLAG = "--xla_cpu_enable_xprof_traceme=true"
if TRACE_FLAG not in os.environ.get("XLA_FLAGS", ""):  # must be set before the backend starts
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TRACE_FLAG}".strip()

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common  # noqa: E402

NETWORKS = ("mlp", "lenet", "cnn2d", "cnn1d")
# what XLA:CPU's executor records around the operations, not operations themselves
BOOKKEEPING = re.compile(r"^(ThunkExecutor::|SlinkyThreadPool::|CommonPjRtLoadedExecutable|\$)")


def network(name: str, examples: int | None):
    """(model, x (N, …) float32, y (N,) int32, batch size) of a benchmark network."""
    from benchmarks import bench_conv1d
    from jaxnets import models

    if name == "cnn1d":
        x, y, _ = bench_conv1d.mnist1d_train(False)
        model, batch = bench_conv1d.user_model("1d"), 100
    else:
        x, y, _ = common.fashion_mnist_train()
        if name == "mlp":
            x = x.reshape(len(x), -1)
        model = {"mlp": lambda: models.mlp([256, 256, 10], activation="relu"),
                 "lenet": lambda: models.lenet5("modern"),
                 "cnn2d": lambda: bench_conv1d.user_model("2d")}[name]()
        batch = 100 if name == "cnn2d" else 128
    n = len(x) if examples is None else min(examples, len(x))
    return model, np.ascontiguousarray(x[:n], np.float32), np.asarray(y[:n], np.int32), batch


def operation_table(trace_dir: str) -> dict[str, list]:
    """{operation name: [times run, milliseconds summed over the XLA threads]} from a profiler trace."""
    import jax

    paths = sorted(Path(trace_dir).rglob("*.xplane.pb"))
    if not paths:
        raise FileNotFoundError(f"profile_epoch: the profiler wrote no *.xplane.pb under {trace_dir}")
    table: dict[str, list] = {}
    for plane in jax.profiler.ProfileData.from_file(str(paths[-1])).planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLA"):  # XLA's threads; the Python thread is elsewhere
                continue
            for event in line.events:
                if BOOKKEEPING.match(event.name):
                    continue
                row = table.setdefault(event.name, [0, 0.0])
                row[0] += 1
                row[1] += event.duration_ns / 1e6
    return table


def describe(hlo_text: str, program: str) -> dict[str, str]:
    """{instruction name: "program: shape  jax/operation"} for an optimised HLO module's instructions."""
    found = {}
    for line in hlo_text.splitlines():
        match = re.match(r"\s*(?:ROOT\s+)?%([\w.\-]+) = (\S+) ", line)
        if match:
            op_name = re.search(r'op_name="([^"]*)"', line)
            where = op_name.group(1).split("/", 1)[-1] if op_name else ""
            found.setdefault(match.group(1), f"{program}: {match.group(2)}  {where}")
    return found


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network", nargs="?", choices=NETWORKS, default="mlp")
    parser.add_argument("--examples", type=int, default=None, help="train on the first N examples (default: all)")
    parser.add_argument("--top", type=int, default=None, help="rows to print (default 25; quick 10)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,024 examples, 10 rows")
    args = parser.parse_args(argv)

    import jax

    from jaxnets import optim
    from jaxnets.train import TrainState, make_planned_epoch_fn, plan_epoch

    examples = 1024 if args.quick else args.examples
    top = args.top or (10 if args.quick else 25)
    model, x, y, batch = network(args.network, examples)
    info = common.environment()
    print(f"{args.network}: {x.shape[0]} examples, batch {batch}; {info['cpu']}, {info['cores']} cores, "
          f"jax {info['versions']['jax']}, backend {info['backend']}")
    run_epoch = common.jaxnets_epoch_fn(model, x, y, engine="scan", batch_size=batch, learning_rate=1e-3)
    run_epoch(), run_epoch()  # compile, then one steady epoch
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            started = time.perf_counter()
            run_epoch()
            epoch_ms = (time.perf_counter() - started) * 1e3
        table = operation_table(trace_dir)

    # the same programs, compiled again, name what each operation is
    optimizer = optim.optimizer("adam", 1e-3)
    params, state = model.init(jax.random.PRNGKey(0), x[:1])
    ts = TrainState(params, state, optimizer.init(params))
    plan = plan_epoch(jax.random.PRNGKey(0), x.shape[0], batch)
    epoch = jax.jit(make_planned_epoch_fn(model, "cross_entropy", optimizer))
    names = describe(plan_epoch.lower(jax.random.PRNGKey(0), x.shape[0], batch).compile().as_text(), "plan")
    names |= describe(epoch.lower(ts, x, y, *plan).compile().as_text(), "epoch")

    total = sum(ms for _, ms in table.values())
    rows = sorted(table.items(), key=lambda item: -item[1][1])
    print(common.format_table(
        [{"operation": name, "runs": count, "ms": f"{ms:.1f}", "share": f"{ms / total:.3f}",
          "what": names.get(name, "")[:100]} for name, (count, ms) in rows[:top]],
        ["operation", "runs", "ms", "share", "what"]))
    top_name, (_, top_ms) = rows[0]
    print(f"epoch_ms={epoch_ms:.1f} operations_ms={total:.1f} top={top_name} top_share={top_ms / total:.3f}")
    return {"epoch_ms": epoch_ms, "operations_ms": total, "table": table, "names": names}


if __name__ == "__main__":
    main()
