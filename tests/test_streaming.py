"""Streamed training data (jaxnets.streaming): host arrays, memmaps and iterables of batches train in
compiled chunks of K steps to the params of the in-memory epoch, resume where they stopped, and keep
host memory bounded by the chunk, not the data set."""

import mmap
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import jaxnets as jn
from jaxnets import data, models, nn, optim
from jaxnets.seeds import fit_seeds, seed_keys, stack_trees
from jaxnets.streaming import HostArrays, HostBatches, as_source
from jaxnets.train import epoch_order

KEY = jax.random.PRNGKey(1)
BATCH = 50


@pytest.fixture(scope="module")
def digits():
    ds = data.load_digits()
    return ds.x_train[:600], ds.y_train[:600], ds.x_test, ds.y_test


def small_cnn():
    # batch norm (statistics of each batch) and dropout (a key per step): both must see the same batches and keys
    return nn.Sequential([
        ("c1", nn.Conv2D(4, 3, padding="SAME", use_bias=False)), ("bn", nn.BatchNorm()), ("r1", nn.Activation("relu")),
        ("p1", nn.MaxPool2D(2)), ("flat", nn.Flatten()), ("drop", nn.Dropout(0.3)), ("out", nn.Dense(10))])


def train(model, train_data, digits, **options):
    x, y, x_test, y_test = digits
    params, state = model.init(jax.random.PRNGKey(0), x[:1])
    kw = dict(loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2), epochs=3, batch_size=BATCH, key=KEY,
              progress=False, validation_data=(x_test, y_test)) | options
    return jn.fit(model, params, state, train_data, **kw)


def max_difference(a, b):
    return max(float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


class SameOrderBatches:
    """An iterable that yields the batches the in-memory epoch draws (re-iterable, told its epoch)."""

    def __init__(self, x, y, key=KEY):
        self.x, self.y, self.key, self.epoch = x, y, key, None

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        for idx in epoch_order(self.key, self.epoch, len(self.x), BATCH):
            yield self.x[idx], self.y[idx]


class StatefulIterator:
    """An endless iterator of batches with Grain-style get_state()/set_state()."""

    def __init__(self, x, y):
        self.x, self.y, self.position = x, y, 0

    def __iter__(self):
        return self

    def __next__(self):
        steps = len(self.x) // BATCH
        rng = np.random.default_rng(self.position // steps)  # a new order every pass
        order = rng.permutation(len(self.x))[: steps * BATCH].reshape(steps, BATCH)
        idx = order[self.position % steps]
        self.position += 1
        return self.x[idx], self.y[idx]

    def get_state(self):
        return {"position": self.position}

    def set_state(self, state):
        self.position = state["position"]


@pytest.mark.parametrize("chunk_steps", [1, 5, 12, 64])  # 12 steps per epoch: K below, dividing, above
@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_host_arrays_train_to_the_in_memory_params(digits, model_name, chunk_steps):
    # The tolerance: the same step computation on the same batches and keys, compiled in a scan of K steps
    # instead of the whole epoch's; XLA may fuse the two programs differently, within float32 rounding.
    model = models.mlp([32, 10], activation="relu") if model_name == "mlp" else small_cnn()
    x, y = digits[:2]
    in_memory = train(model, (x, y), digits)
    streamed = train(model, HostArrays(x, y, chunk_steps=chunk_steps), digits)
    assert max_difference((in_memory.params, in_memory.state), (streamed.params, streamed.state)) < 1e-6
    np.testing.assert_allclose(streamed.history["train_loss"], in_memory.history["train_loss"], rtol=1e-6)
    assert streamed.history["train_accuracy"] == pytest.approx(in_memory.history["train_accuracy"], abs=1e-9)
    assert streamed.history["train_loss"][-1] < streamed.history["train_loss"][0]


def test_a_pair_of_memmaps_streams_and_releases_its_pages(digits, tmp_path):
    x, y = digits[:2]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    mx, my = np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")
    source = as_source((mx, my))
    assert isinstance(source, HostArrays) and len(source._mappings) == 2
    assert all(isinstance(m, mmap.mmap) for m in source._mappings)
    assert as_source((x, y)) is None  # arrays in memory go to the device whole, as before
    # a copy-on-write memmap holds private pages that dropping would lose: left alone
    assert HostArrays(np.load(tmp_path / "x.npy", mmap_mode="c"), y)._mappings == []
    in_memory = train(models.mlp([32, 10]), (x, y), digits)
    streamed = train(models.mlp([32, 10]), (mx, my), digits)
    assert max_difference(in_memory.params, streamed.params) < 1e-6


@pytest.mark.parametrize("chunk_steps", [5, 12])
def test_an_iterable_of_batches_in_the_same_order_trains_to_the_in_memory_params(digits, chunk_steps):
    x, y = digits[:2]
    in_memory = train(small_cnn(), (x, y), digits)
    streamed = train(small_cnn(), HostBatches(SameOrderBatches(x, y), chunk_steps=chunk_steps), digits)
    assert max_difference((in_memory.params, in_memory.state), (streamed.params, streamed.state)) < 1e-6
    # an iterable without len(): the keys of its steps are found as it goes, the same keys
    generator = HostBatches(_NoLen(SameOrderBatches(x, y)), chunk_steps=chunk_steps)
    assert generator.steps_per_epoch is None
    also = train(small_cnn(), generator, digits)
    assert max_difference((in_memory.params, in_memory.state), (also.params, also.state)) < 1e-6


class _NoLen:
    def __init__(self, inner):
        self.inner = inner

    def set_epoch(self, epoch):
        self.inner.set_epoch(epoch)

    def __iter__(self):
        return iter(self.inner)


def test_fit_seeds_streams_one_order_for_all_runs_with_per_run_hyperparameters(digits):
    # Every run reads the batches in run 0's order; an MLP without dropout uses its key for nothing else,
    # so run r equals fit with run 0's key and run r's learning rate.
    x, y, x_test, y_test = digits
    model = models.mlp([32, 10], activation="relu")
    params, state = model.init(jax.random.PRNGKey(0), x[:1])
    keys = seed_keys([1, 2])
    rates = [1e-2, 3e-3]
    runs = fit_seeds(model, stack_trees([params, params]), stack_trees([state, state]), HostArrays(x, y, chunk_steps=5),
                     loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2), epochs=2, batch_size=BATCH,
                     keys=keys, hyperparams={"learning_rate": rates}, progress=False)
    for r, rate in enumerate(rates):
        alone = jn.fit(model, params, state, (x, y), loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2),
                       epochs=2, batch_size=BATCH, key=keys[0], hyperparams={"learning_rate": rate}, progress=False)
        assert max_difference(jax.tree.map(lambda leaf: leaf[r], runs.params), alone.params) < 1e-6
    assert runs.history["train_loss"][-1].shape == (2,)


def grain_batches(x, y, kind):
    """An endless, shuffled Grain iterator of (x, t) batches: a dataset's (state: a dict) or a data loader's
    (state: JSON bytes)."""
    import grain  # in the dev extra
    if kind == "grain_dataset":
        dataset = grain.MapDataset.source(list(range(len(x)))).shuffle(seed=0).repeat(None)
        return iter(dataset.map(lambda i: (x[i], y[i])).batch(BATCH, drop_remainder=True))

    class Example(grain.transforms.Map):
        def map(self, i):
            return x[i], y[i]

    sampler = grain.samplers.IndexSampler(len(x), shard_options=grain.sharding.NoSharding(), shuffle=True, seed=0,
                                          num_epochs=None)
    loader = grain.DataLoader(data_source=list(range(len(x))), sampler=sampler, worker_count=0,
                              operations=[Example(), grain.transforms.Batch(BATCH, drop_remainder=True)])
    return iter(loader)


@pytest.mark.parametrize("kind", ["host_arrays", "iterable", "iterator", "grain_dataset", "grain_loader"])
def test_resume_continues_as_if_never_stopped_and_restores_the_data_position(digits, tmp_path, kind):
    x, y = digits[:2]

    def source():
        if kind == "host_arrays":
            return HostArrays(x, y, chunk_steps=5)
        if kind == "iterable":
            return HostBatches(SameOrderBatches(x, y), chunk_steps=5)
        if kind == "iterator":
            return HostBatches(StatefulIterator(x, y), steps_per_epoch=7, chunk_steps=5)
        return HostBatches(grain_batches(x, y, kind), steps_per_epoch=7, chunk_steps=5)

    whole = train(small_cnn(), source(), digits, epochs=4)
    train(small_cnn(), source(), digits, epochs=2, checkpoint_dir=tmp_path)
    resumed_source = source()
    resumed = train(small_cnn(), resumed_source, digits, epochs=4, checkpoint_dir=tmp_path)
    assert max_difference((whole.params, whole.state, whole.opt_state),
                          (resumed.params, resumed.state, resumed.opt_state)) == 0.0
    assert resumed.history["train_loss"] == whole.history["train_loss"]
    if kind == "iterator":
        assert resumed_source.batches.position == 4 * 7  # restored to 2 × 7, then two more epochs read


def test_streamed_sources_check_their_input_and_say_what_is_wrong(digits, tmp_path):
    x, y = digits[:2]
    model = models.mlp([32, 10])
    with pytest.raises(ValueError, match="give steps_per_epoch"):
        HostBatches(iter([(x[:BATCH], y[:BATCH])]))
    with pytest.raises(ValueError, match="chunk_steps must be an int >= 1"):
        HostArrays(x, y, chunk_steps=0)
    with pytest.raises(ValueError, match="600 inputs but 599 targets"):
        HostArrays(x, y[:-1])
    with pytest.raises(ValueError, match=r"batch 1 of epoch 0 has 30 inputs and 30 targets; expected 50"):
        train(model, HostBatches([(x[:50], y[:50]), (x[:30], y[:30])]), digits)
    with pytest.raises(ValueError, match=r"the iterator ended after 2 of the 3 batches of epoch 0"):
        train(model, HostBatches(iter([(x[:50], y[:50])] * 2), steps_per_epoch=3), digits)
    with pytest.raises(ValueError, match="get_state"):
        train(model, HostBatches(iter([(x[:50], y[:50])] * 9), steps_per_epoch=3), digits, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="augment"):
        train(model, HostArrays(x, y), digits, augment=lambda key, v: v)
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 10\)"):
        train(model, HostArrays(x, np.full_like(y, 12)), digits)
    with pytest.raises(ValueError, match="batch_size 50 is larger than the 40 training examples"):
        train(model, HostArrays(x[:40], y[:40]), digits)
    with pytest.raises(TypeError, match="train_data must be a pair"):
        train(model, 3, digits)


MEMORY_SCRIPT = """
import resource, sys
import jax, numpy as np
import jaxnets as jn
from jaxnets import models, optim
from jaxnets.streaming import HostArrays

path, rows, features, batch, chunk = sys.argv[1], *map(int, sys.argv[2:])
x = np.load(path, mmap_mode="r")
y = (np.arange(rows) % 10).astype(np.int32)
model = models.mlp([32, 10], activation="relu")
params, state = model.init(jax.random.PRNGKey(0), x[:1])
kw = dict(loss="cross_entropy", optimizer=optim.optimizer("sgd", 1e-3), batch_size=batch, key=jax.random.PRNGKey(1),
          progress=False)
# compile the chunk program on a small set in memory first, so the peak below is the streaming's own
small = np.zeros((2 * chunk * batch, features), np.float32)
jn.fit(model, params, state, HostArrays(small, y[: len(small)], chunk_steps=chunk), epochs=1, **kw)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
jn.fit(model, params, state, HostArrays(x, y, chunk_steps=chunk), epochs=1, **kw)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(before, after)
"""


def test_a_memmap_larger_than_a_chunk_trains_without_its_pages_piling_up_in_memory(tmp_path):
    # 256 MiB of float32 inputs, read in chunks of 8 × 256 rows (8 MiB). Without dropping the memmap's pages
    # after each read, the peak resident memory would grow by the whole file.
    rows, features, batch, chunk = 65536, 1024, 256, 8
    path = tmp_path / "x.npy"
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, features))
    for start in range(0, rows, 8192):
        x[start:start + 8192] = np.random.default_rng(start).random((8192, features), np.float32)
    x.flush()
    del x
    script = tmp_path / "memory.py"
    script.write_text(textwrap.dedent(MEMORY_SCRIPT))
    run = subprocess.run([sys.executable, str(script), str(path), str(rows), str(features), str(batch), str(chunk)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    before, after = map(int, run.stdout.split())
    file_size = rows * features * 4
    assert after - before < file_size / 4, (before, after, file_size)
