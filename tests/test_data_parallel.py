"""Data parallelism on a ("runs", "data") device mesh: each batch split over devices, the result the
one-device run's. Four simulated CPU devices in a fresh process (JAX fixes its devices at the first
computation, and this test process has computed already)."""

import subprocess
import sys
import textwrap

import pytest

from launched import printed

PRELUDE = """
import jax, numpy as np
from jaxnets import runtime
runtime.use_cpu_devices(4)
import jaxnets as jn
from jaxnets import data, models, nn, optim, parallel
from jaxnets.seeds import fit_seeds, init_runs, seed_keys
from jaxnets.train import TrainState, make_epoch_fn
assert len(jax.devices()) == 4
ds = data.load_digits()
x, y = ds.x_train[:512], ds.y_train[:512]


def lenet_bn():
    # LeNet-style, with batch norm after each convolution (no bias there: batch norm's offset is the bias,
    # and a bias whose gradient is zero in exact arithmetic lets Adam amplify rounding into full steps)
    return nn.Sequential([
        ("c1", nn.Conv2D(6, 3, padding="SAME", use_bias=False)), ("bn1", nn.BatchNorm()), ("r1", nn.Activation("relu")),
        ("p1", nn.MaxPool2D(2)), ("c2", nn.Conv2D(8, 3, padding="SAME", use_bias=False)), ("bn2", nn.BatchNorm()),
        ("r2", nn.Activation("relu")), ("flat", nn.Flatten()), ("d1", nn.Dense(32)), ("r3", nn.Activation("relu")),
        ("drop", nn.Dropout(0.3)), ("out", nn.Dense(10))])


def max_difference(a, b):
    return max(float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
"""


def run_script(body: str) -> str:
    script = PRELUDE + textwrap.dedent(body)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}\nstdout: {run.stdout[-1000:]}\nstderr: {run.stderr[-4000:]}"
    return run.stdout


@pytest.mark.parametrize("engine", ["scan", "step"])
def test_fit_on_four_devices_equals_fit_on_one(engine):
    # The tolerance: float32 sums of a batch's gradient in another order (4 partial sums, then an all-reduce)
    # differ in the last bits; after 2 epochs (16 Adam steps) the params stay within 1e-5.
    out = run_script(f"""
    for name, model in (("mlp", models.mlp([32, 10], activation="relu")), ("lenet_bn", lenet_bn())):
        params, state = model.init(jax.random.PRNGKey(0), x[:1])
        kw = dict(loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2), epochs=2, batch_size=64,
                  key=jax.random.PRNGKey(1), progress=False, validation_data=(ds.x_test, ds.y_test),
                  engine={engine!r})
        one = jn.fit(model, params, state, (x, y), **kw)
        four = jn.fit(model, params, state, (x, y), devices=jax.devices(), **kw)
        also = jn.fit(model, params, state, (x, y), mesh=parallel.data_mesh(jax.devices()[:2]), **kw)
        assert max_difference((one.params, one.state), (four.params, four.state)) < 1e-5, name
        assert max_difference((one.params, one.state), (also.params, also.state)) < 1e-5, name
        np.testing.assert_allclose(four.history["train_loss"], one.history["train_loss"], rtol=1e-5)
        np.testing.assert_allclose(four.history["val_accuracy"], one.history["val_accuracy"], atol=1e-6)
        assert one.history["train_loss"][-1] < one.history["train_loss"][0]  # it trains
        # the results come back on one device, as fit's always do
        assert {{d for leaf in jax.tree.leaves(four.params) for d in leaf.sharding.device_set}} == {{jax.devices()[0]}}
    print("ok")
    """)
    assert out.strip() == "ok"


def test_the_compiled_epoch_splits_the_batch_and_averages_the_gradient_over_the_devices():
    # With the batch sharded over "data", XLA must combine the devices' partial gradients: the compiled
    # program holds an all-reduce; without it, nothing crosses devices.
    out = run_script("""
    model = models.mlp([16, 10], activation="relu")
    params, state = model.init(jax.random.PRNGKey(0), x[:1])
    optimizer = optim.optimizer("sgd", 0.1)
    ts = TrainState(params, state, optimizer.init(params))
    mesh = parallel.data_mesh()
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    args = jax.device_put((ts, x, y), replicated)
    texts = {}
    for name, sharding in (("split", jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))),
                           ("whole", None)):
        epoch = make_epoch_fn(model, "cross_entropy", optimizer, batch_size=64, batch_sharding=sharding)
        texts[name] = jax.jit(epoch).lower(*args, jax.random.PRNGKey(0)).compile().as_text()
    assert "all-reduce" in texts["split"]
    assert "all-reduce" not in texts["whole"]
    print("ok")
    """)
    assert out.strip() == "ok"


def test_fit_seeds_on_a_runs_by_data_mesh_equals_one_device():
    out = run_script("""
    meshes = {runs: dict(parallel.runs_data_mesh(runs).shape) for runs in (1, 2, 3, 4, 8)}
    assert meshes == {1: {"runs": 1, "data": 4}, 2: {"runs": 2, "data": 2}, 3: {"runs": 2, "data": 2},
                      4: {"runs": 4, "data": 1}, 8: {"runs": 4, "data": 1}}, meshes
    model = lenet_bn()
    keys = seed_keys([0, 1, 2])  # 3 runs on 2 rows: padded to 4
    params, state = init_runs(model, keys, x[:1])
    kw = dict(loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2), epochs=2, batch_size=64, keys=keys,
              progress=False, hyperparams={"learning_rate": [1e-2, 3e-3, 1e-3]})
    one = fit_seeds(model, params, state, (x, y), devices=jax.devices()[:1], **kw)
    grid = fit_seeds(model, params, state, (x, y), mesh=parallel.runs_data_mesh(3), **kw)
    # a mesh given with its axes the other way round is the same mesh
    flipped = jax.sharding.Mesh(parallel.runs_data_mesh(3).devices.T, ("data", "runs"))
    again = fit_seeds(model, params, state, (x, y), mesh=flipped, **kw)
    assert max_difference((one.params, one.state), (grid.params, grid.state)) < 1e-5
    assert max_difference((grid.params, grid.state), (again.params, again.state)) == 0.0
    assert np.shape(grid.history["train_loss"]) == (2, 3)
    np.testing.assert_allclose(grid.history["train_loss"], one.history["train_loss"], rtol=1e-5)
    print("ok")
    """)
    assert out.strip() == "ok"


def test_bad_meshes_and_batch_sizes_are_errors_that_say_what_to_change():
    out = run_script("""
    model = models.mlp([8, 10])
    params, state = model.init(jax.random.PRNGKey(0), x[:1])
    kw = dict(loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2), epochs=1, key=jax.random.PRNGKey(1),
              progress=False)
    messages = []
    for extra in (dict(batch_size=30, devices=jax.devices()),
                  dict(batch_size=32, mesh=parallel.runs_data_mesh(2)),
                  dict(batch_size=32, mesh=jax.sharding.Mesh(np.array(jax.devices()), ("batch",))),
                  dict(batch_size=32, devices=jax.devices(), mesh=parallel.data_mesh())):
        try:
            jn.fit(model, params, state, (x, y), **kw, **extra)
        except ValueError as error:
            messages.append(str(error))
    assert len(messages) == 4, messages
    assert "batch_size 30 does not split evenly over the 4 devices" in messages[0] and "multiple of 4" in messages[0]
    assert "'runs' axis must have size 1" in messages[1]
    assert "mesh axes must be 'runs' and/or 'data'" in messages[2] and "batch" in messages[2]
    assert "devices or mesh, not both" in messages[3]
    print("ok")
    """)
    assert out.strip() == "ok"


# --------------------------------------------------------------------------- several processes


def clean_env() -> dict:
    """This environment without the variables of an enclosing run (jaxnets', SLURM's, Open MPI's)."""
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("JAXNETS_", "SLURM_", "OMPI_"))}


def run_python(*args: str, processes: int = 1, launcher_timeout: int = 200) -> subprocess.CompletedProcess:
    """``python ARGS`` in a fresh process, or under ``python -m jaxnets.launch`` as ``processes`` processes of 2 CPU
    devices each (bounded twice: the launcher's timeout and the subprocess timeout around it)."""
    command = [sys.executable, *args]
    if processes > 1:
        command = [sys.executable, "-m", "jaxnets.launch", "--processes", str(processes), "--devices-per-process", "2",
                   "--timeout", str(launcher_timeout), "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=launcher_timeout + 40, env=clean_env())

TRAIN_SCRIPT = """
import sys
import jax
import numpy as np
from jaxnets import distributed

mode, out = sys.argv[1], sys.argv[2]
if mode == "two_processes":
    distributed.initialize(heartbeat_timeout_s=5)  # the launcher's environment: 2 processes × 2 CPU devices
else:
    from jaxnets import runtime
    runtime.use_cpu_devices(4)
import jaxnets as jn
from jaxnets import data, models, nn, optim, parallel

ds = data.load_digits()
x, y = ds.x_train[:512], ds.y_train[:512]
lenet_bn = nn.Sequential([
    ("c1", nn.Conv2D(6, 3, padding="SAME", use_bias=False)), ("bn1", nn.BatchNorm()), ("r1", nn.Activation("relu")),
    ("p1", nn.MaxPool2D(2)), ("flat", nn.Flatten()), ("d1", nn.Dense(32)), ("r2", nn.Activation("relu")),
    ("drop", nn.Dropout(0.3)), ("out", nn.Dense(10))])
arrays = {}
for name, model in (("mlp", models.mlp([32, 10], activation="relu")), ("lenet_bn", lenet_bn)):
    params, state = model.init(jax.random.PRNGKey(0), x[:1])
    result = jn.fit(model, params, state, (x, y), loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2),
                    epochs=2, batch_size=64, key=jax.random.PRNGKey(1), progress=False,
                    validation_data=(ds.x_test, ds.y_test), mesh=None if mode == "one_device" else parallel.data_mesh())
    arrays[name + "_loss"] = np.asarray(result.history["train_loss"])
    arrays[name + "_val_accuracy"] = np.asarray(result.history["val_accuracy"])
    for i, leaf in enumerate(jax.tree.leaves((result.params, result.state))):
        assert leaf.is_fully_addressable  # the whole result, in every process
        arrays[f"{name}_{i}"] = np.asarray(leaf)
np.savez(f"{out}/{mode}_{jax.process_index()}.npz", **arrays)
print(f"trained {mode} {jax.process_index()} {jax.device_count()}")
"""


def test_two_processes_of_two_devices_train_to_the_params_of_one_process_and_of_one_device(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    launched = run_python(str(script), "two_processes", str(tmp_path), processes=2)
    assert launched.returncode == 0, launched.stderr[-4000:]
    assert printed(launched.stdout, 0, "trained two_processes 0 4"), launched.stdout[-2000:]
    assert printed(launched.stdout, 1, "trained two_processes 1 4"), launched.stdout[-2000:]
    for mode in ("four_devices", "one_device"):
        run = run_python(str(script), mode, str(tmp_path))
        assert run.returncode == 0, run.stderr[-4000:]
    import numpy as np

    results = {name: dict(np.load(tmp_path / f"{name}.npz"))
               for name in ("two_processes_0", "two_processes_1", "four_devices_0", "one_device_0")}
    reference = results["one_device_0"]
    for name, arrays in results.items():
        assert arrays.keys() == reference.keys()
        for key, value in arrays.items():
            tolerance = 0.0 if name == "two_processes_1" else 1e-5  # both processes hold the same result
            expected = results["two_processes_0"][key] if name == "two_processes_1" else reference[key]
            np.testing.assert_allclose(value, expected, rtol=0, atol=tolerance, err_msg=f"{name}: {key}")
    assert reference["mlp_loss"][-1] < reference["mlp_loss"][0]


KILLED_SCRIPT = """
import os, signal, sys
import jax
from jaxnets import distributed

distributed.initialize(heartbeat_timeout_s=3)
import jaxnets as jn
from jaxnets import data, models, optim, parallel

ds = data.load_digits()
model = models.mlp([32, 10])
params, state = model.init(jax.random.PRNGKey(0), ds.x_train[:1])


def die_in_process_1(record):
    if jax.process_index() == 1 and record["epoch"] == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # mid-run: process 0 goes on into the next epoch's collectives


jn.fit(model, params, state, (ds.x_train, ds.y_train), loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2),
       epochs=50, batch_size=64, key=jax.random.PRNGKey(1), progress=False, mesh=parallel.data_mesh(),
       on_epoch_end=die_in_process_1)
print("finished")
"""


def test_a_process_killed_mid_training_ends_the_run_within_a_bounded_time(tmp_path):
    import time

    script = tmp_path / "killed.py"
    script.write_text(KILLED_SCRIPT)
    start = time.monotonic()
    launched = run_python(str(script), processes=2, launcher_timeout=100)
    elapsed = time.monotonic() - start
    assert launched.returncode not in (0, 124), (launched.returncode, launched.stderr[-3000:])  # failed, not timed out
    assert "finished" not in launched.stdout
    assert elapsed < 90, elapsed


SEEDS_SCRIPT = """
import sys
import jax
import numpy as np
from jaxnets import distributed

mode, out = sys.argv[1], sys.argv[2]
if mode == "two_processes":
    distributed.initialize(heartbeat_timeout_s=5)
from jaxnets import data, models, optim, parallel
from jaxnets.seeds import fit_seeds, init_runs, seed_keys

ds = data.load_digits()
x, y = ds.x_train[:512], ds.y_train[:512]
model = models.mlp([32, 10], activation="relu")
keys = seed_keys([0, 1, 2])
params, state = init_runs(model, keys, x[:1])
# two processes: the runs split over both processes' devices (2 rows of 2: one row per process)
mesh = parallel.runs_data_mesh(3) if mode == "two_processes" else None
result = fit_seeds(model, params, state, (x, y), loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2),
                   epochs=3, batch_size=64, keys=keys, progress=False, validation_data=(ds.x_test, ds.y_test),
                   mesh=mesh, early_stopping=1, hyperparams={"learning_rate": [1e-2, 3e-3, 1e-3]})
arrays = {f"param_{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(result.params))}
arrays.update(loss=np.asarray(result.history["train_loss"]), best_epoch=np.asarray(result.best_epoch))
np.savez(f"{out}/{mode}_{jax.process_index()}.npz", **arrays)
print(f"trained {mode} {dict(mesh.shape) if mesh is not None else 'one device'}")
"""


def test_fit_seeds_splits_its_runs_over_the_devices_of_two_processes(tmp_path):
    import numpy as np

    script = tmp_path / "seeds.py"
    script.write_text(SEEDS_SCRIPT)
    launched = run_python(str(script), "two_processes", str(tmp_path), processes=2)
    assert launched.returncode == 0, launched.stderr[-4000:]
    assert printed(launched.stdout, 1, "trained two_processes {'runs': 2, 'data': 2}"), launched.stdout[-2000:]
    alone = run_python(str(script), "one_device", str(tmp_path))
    assert alone.returncode == 0, alone.stderr[-4000:]
    reference = dict(np.load(tmp_path / "one_device_0.npz"))
    for process in (0, 1):
        arrays = dict(np.load(tmp_path / f"two_processes_{process}.npz"))
        assert arrays["loss"].shape == (3, 3)  # (epochs, runs): every run's numbers, in every process
        np.testing.assert_array_equal(arrays["best_epoch"], reference["best_epoch"])
        for key in reference:
            np.testing.assert_allclose(arrays[key], reference[key], rtol=0, atol=1e-5, err_msg=key)


STREAMED_SCRIPT = """
import sys
import jax
import numpy as np
from jaxnets import distributed

mode, out = sys.argv[1], sys.argv[2]
if mode == "two_processes":
    distributed.initialize(heartbeat_timeout_s=5)
elif mode == "four_devices":
    from jaxnets import runtime
    runtime.use_cpu_devices(4)
import jaxnets as jn
from jaxnets import data, models, optim, parallel
from jaxnets.streaming import HostArrays, HostBatches
from jaxnets.train import epoch_order

ds = data.load_digits()
x, y = ds.x_train[:512], ds.y_train[:512]
BATCH, EPOCHS, KEY = 64, 2, jax.random.PRNGKey(1)


class Recorded:
    # an array that records which examples were read from it
    def __init__(self, array):
        self.array, self.read, self.shape, self.dtype = array, [], array.shape, array.dtype

    def __getitem__(self, index):
        if isinstance(index, np.ndarray):
            self.read.append(index.ravel())
        return self.array[index]


class ProcessShare:
    # each process's rows of each global batch of the in-memory order (as a loader sharded by process makes them)
    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        share = BATCH // jax.process_count()
        rows = slice(jax.process_index() * share, (jax.process_index() + 1) * share)
        for idx in epoch_order(KEY, self.epoch, len(x), BATCH)[:, rows]:
            yield x[idx], y[idx]


model = models.mlp([32, 10], activation="relu")
params, state = model.init(jax.random.PRNGKey(0), x[:1])
kw = dict(loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2), epochs=EPOCHS, batch_size=BATCH, key=KEY,
          progress=False, mesh=None if mode == "one_device" else parallel.data_mesh())
arrays = {}
recorded = Recorded(x)
sources = {"memory": (x, y), "host_arrays": HostArrays(recorded, y, chunk_steps=3),
           "host_batches": HostBatches(ProcessShare(), chunk_steps=3)}
for name, source in sources.items():
    result = jn.fit(model, params, state, source, **kw)
    for i, leaf in enumerate(jax.tree.leaves(result.params)):
        arrays[f"{name}_{i}"] = np.asarray(leaf)
arrays["read"] = np.concatenate(recorded.read)
if mode == "two_processes":  # a Grain loader sharded by process: each process reads its own half of the set
    import grain

    class Example(grain.transforms.Map):
        def map(self, i):
            return x[i], y[i]

    sampler = grain.samplers.IndexSampler(len(x), shard_options=grain.sharding.ShardByJaxProcess(drop_remainder=True),
                                          shuffle=True, seed=0, num_epochs=None)
    loader = grain.DataLoader(data_source=list(range(len(x))), sampler=sampler, worker_count=0,
                              operations=[Example(), grain.transforms.Batch(BATCH // 2, drop_remainder=True)])
    result = jn.fit(model, params, state, HostBatches(iter(loader), steps_per_epoch=4), **kw)
    arrays["grain_loss"] = np.asarray(result.history["train_loss"])
    for i, leaf in enumerate(jax.tree.leaves(result.params)):
        arrays[f"grain_{i}"] = np.asarray(leaf)
np.savez(f"{out}/{mode}_{jax.process_index()}.npz", **arrays)
print(f"trained {mode} {jax.process_index()}")
"""


def test_streamed_data_parallel_training_reads_each_process_share_and_equals_one_device(tmp_path):
    import numpy as np

    script = tmp_path / "streamed.py"
    script.write_text(STREAMED_SCRIPT)
    launched = run_python(str(script), "two_processes", str(tmp_path), processes=2)
    assert launched.returncode == 0, launched.stderr[-4000:]
    for mode in ("four_devices", "one_device"):
        run = run_python(str(script), mode, str(tmp_path))
        assert run.returncode == 0, run.stderr[-4000:]
    reference = dict(np.load(tmp_path / "one_device_0.npz"))
    steps = 512 // 64
    # one process alone reads every example of each epoch's batches once
    assert len(reference["read"]) == 2 * steps * 64 and len(np.unique(reference["read"])) == 512
    shares = []
    for name in ("two_processes_0", "two_processes_1", "four_devices_0"):
        arrays = dict(np.load(tmp_path / f"{name}.npz"))
        for key in (k for k in reference if k != "read"):  # (the Grain run: two processes only)
            np.testing.assert_allclose(arrays[key], reference[key], rtol=0, atol=1e-5, err_msg=f"{name}: {key}")
        if name.startswith("two_processes"):
            shares.append(arrays["read"])
    # of two processes, each reads only its half of every batch, and together they read what one process reads
    assert [len(s) for s in shares] == [2 * steps * 32] * 2
    assert not set(shares[0][: steps * 32]) & set(shares[1][: steps * 32])  # in one epoch the halves are disjoint
    np.testing.assert_array_equal(np.sort(np.concatenate(shares)), np.sort(reference["read"]))
    # the Grain loader's halves make one global batch: both processes end with the same params, and it trains
    first, second = (dict(np.load(tmp_path / f"two_processes_{p}.npz")) for p in (0, 1))
    grain_keys = [k for k in first if k.startswith("grain_")]
    assert len(grain_keys) > 1 and all(np.array_equal(first[k], second[k]) for k in grain_keys)
    assert first["grain_loss"][-1] < first["grain_loss"][0]


def test_fsdp_spec_splits_each_leaf_along_its_largest_divisible_axis():
    from jax.sharding import PartitionSpec as P

    from jaxnets.parallel import fsdp_spec

    assert fsdp_spec((784, 256), 4) == P("data", None)
    assert fsdp_spec((256, 784), 4) == P(None, "data")
    assert fsdp_spec((3, 3, 16, 32), 4) == P(None, None, None, "data")  # a conv kernel: its output channels
    assert fsdp_spec((6, 6), 4) == P()  # no axis divides: replicated
    assert fsdp_spec((10,), 4) == P()
    assert fsdp_spec((), 4) == P()  # Adam's step count
    assert fsdp_spec((8, 8), 4) == P("data", None)  # equal sizes: the first
    assert fsdp_spec((784, 256), 1) == P()


def test_sharded_params_train_to_the_replicated_params_and_stay_split_over_the_devices():
    # shard_params=True: each device holds a quarter of every weight that divides by 4; XLA gathers the weights
    # for each step (all-gather in the compiled epoch) and the results equal the one-device run's.
    out = run_script("""
    from jax.sharding import NamedSharding, PartitionSpec
    from jaxnets.streaming import HostArrays
    for name, model in (("mlp", models.mlp([32, 10], activation="relu")), ("lenet_bn", lenet_bn())):
        params, state = model.init(jax.random.PRNGKey(0), x[:1])
        for engine in ("scan", "step"):
            kw = dict(loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2), epochs=2, batch_size=64,
                      key=jax.random.PRNGKey(1), progress=False, engine=engine)
            one = jn.fit(model, params, state, (x, y), **kw)
            sharded = jn.fit(model, params, state, (x, y), devices=jax.devices(), shard_params=True, **kw)
            assert max_difference((one.params, one.state, one.opt_state),
                                  (sharded.params, sharded.state, sharded.opt_state)) < 1e-5, (name, engine)
        streamed = jn.fit(model, params, state, HostArrays(x, y, chunk_steps=3), devices=jax.devices(),
                          shard_params=True, **kw)
        assert max_difference(one.params, streamed.params) < 1e-5, name

    model = models.mlp([32, 10], activation="relu")
    params, state = model.init(jax.random.PRNGKey(0), x[:1])
    optimizer = optim.optimizer("adam", 1e-2)
    mesh = parallel.data_mesh()
    ts = TrainState(params, state, optimizer.init(params))
    ts = jax.tree.map(lambda leaf: jax.device_put(leaf, NamedSharding(mesh, parallel.fsdp_spec(leaf.shape, 4))), ts)
    epoch = jax.jit(make_epoch_fn(model, "cross_entropy", optimizer, batch_size=64,
                                  batch_sharding=NamedSharding(mesh, PartitionSpec("data")),
                                  constrain_params=parallel.fsdp_constraint(mesh)))
    assert "all-gather" in epoch.lower(ts, x, y, jax.random.PRNGKey(1)).compile().as_text()
    trained, _ = epoch(ts, x, y, jax.random.PRNGKey(1))
    w = trained.params["dense1"]["w"]  # (64, 32)
    assert w.sharding.is_equivalent_to(NamedSharding(mesh, PartitionSpec("data", None)), 2)
    assert w.addressable_shards[0].data.shape == (16, 32)
    moments = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(trained.opt_state)
               if leaf.shape == (64, 32)]  # Adam's two moments of dense1/w, split the same way
    assert len(moments) == 2 and all(m.addressable_shards[0].data.shape == (16, 32) for m in moments)

    keys = seed_keys([0, 1])
    p2, s2 = init_runs(model, keys, x[:1])
    kw = dict(loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2), epochs=2, batch_size=64, keys=keys,
              progress=False)
    alone = fit_seeds(model, p2, s2, (x, y), **kw)
    split = fit_seeds(model, p2, s2, (x, y), mesh=parallel.runs_data_mesh(2), shard_params=True, **kw)
    assert max_difference(alone.params, split.params) < 1e-5
    try:
        jn.fit(model, params, state, (x, y), loss="cross_entropy", optimizer=optimizer, epochs=1, batch_size=64,
               key=jax.random.PRNGKey(1), progress=False, shard_params=True)
    except ValueError as error:
        assert "shard_params=True splits params over the mesh's 'data' axis, which has one device" in str(error)
    else:
        raise AssertionError("shard_params on one device must be an error")
    print("ok")
    """)
    assert out.strip() == "ok"


RESUME_SCRIPT = """
import os, signal, sys
import jax
import numpy as np
from jaxnets import distributed

mode, out = sys.argv[1], sys.argv[2]
distributed.initialize(heartbeat_timeout_s=5)
import jaxnets as jn
from jaxnets import checkpoint, data, models, nn, optim, parallel
from jaxnets.seeds import fit_seeds, init_runs, seed_keys

ds = data.load_digits()
x, y = ds.x_train[:512], ds.y_train[:512]
model = nn.Sequential([("flat", nn.Flatten()), ("d1", nn.Dense(32)), ("r1", nn.Activation("relu")),
                       ("drop", nn.Dropout(0.2)), ("out", nn.Dense(10))])
params, state = model.init(jax.random.PRNGKey(0), x[:1])
keys = seed_keys([0, 1, 2])
run_params, run_state = init_runs(model, keys, x[:1])


trained = {"fit": [], "seeds": []}


def note(name):
    def on_epoch_end(record):
        trained[name].append(record["epoch"])
        if mode == "killed" and name == "seeds" and jax.process_index() == 1 and record["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # after epoch 1's checkpoint is complete
    return on_epoch_end


# "killed": fit ends after 2 of the 4 epochs, fit_seeds loses process 1 after epoch 1; "resume" goes on to 4
ckpt = None if mode == "whole" else out + "/ckpt"
common = dict(loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2), batch_size=64, progress=False)
one = jn.fit(model, params, state, (x, y), key=jax.random.PRNGKey(1), mesh=parallel.data_mesh(),
             checkpoint_dir=ckpt and ckpt + "/fit", on_epoch_end=note("fit"), epochs=2 if mode == "killed" else 4,
             **common)
runs = fit_seeds(model, run_params, run_state, (x, y), keys=keys, mesh=parallel.runs_data_mesh(3), epochs=4,
                 hyperparams={"learning_rate": [1e-2, 3e-3, 1e-3]}, checkpoint_dir=ckpt and ckpt + "/seeds",
                 on_epoch_end=note("seeds"), **common)
arrays = {f"fit_{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves((one.params, one.opt_state)))}
arrays.update({f"seeds_{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves((runs.params, runs.opt_state)))})
arrays.update(fit_loss=np.asarray(one.history["train_loss"]), seeds_loss=np.asarray(runs.history["train_loss"]))
np.savez(f"{out}/{mode}_{jax.process_index()}.npz", **arrays)
if ckpt:
    formats = [checkpoint.checkpoint_format(ckpt + "/fit"), checkpoint.checkpoint_format(ckpt + "/seeds")]
    print(f"formats {formats[0]} {formats[1]} {checkpoint.latest_step(ckpt + '/fit')}")
print(f"done {mode} {trained}")
"""


def test_two_processes_killed_mid_run_resume_from_their_orbax_checkpoint_bit_identically(tmp_path):
    import numpy as np

    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    whole = run_python(str(script), "whole", str(tmp_path), processes=2, launcher_timeout=120)
    assert whole.returncode == 0, whole.stderr[-4000:]
    killed = run_python(str(script), "killed", str(tmp_path), processes=2, launcher_timeout=120)
    assert killed.returncode not in (0, 124), killed.stderr[-3000:]  # process 1 died after epoch 1's checkpoint
    assert "done killed" not in killed.stdout
    resumed = run_python(str(script), "resume", str(tmp_path), processes=2, launcher_timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert printed(resumed.stdout, 0, "formats orbax orbax 3")  # written by both processes together, in Orbax's format
    assert printed(resumed.stdout, 1, "done resume {'fit': [2, 3], 'seeds': [2, 3]}")  # it went on from the checkpoints
    for process in (0, 1):
        expected = dict(np.load(tmp_path / f"whole_{process}.npz"))
        found = dict(np.load(tmp_path / f"resume_{process}.npz"))
        assert found.keys() == expected.keys()
        for key, value in expected.items():
            np.testing.assert_array_equal(found[key], value, err_msg=f"process {process}: {key}")
