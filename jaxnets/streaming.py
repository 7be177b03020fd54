"""Training data that is not one array on the device: host arrays (NumPy memmaps included) and
iterators of host batches, trained in compiled chunks of K steps.

``fit`` and ``fit_seeds`` take, as ``train_data``, besides an ``(x, t)`` pair that is put on the device:

* :class:`HostArrays` ``(x, t)`` — arrays that stay on the host: NumPy arrays, NumPy memmaps (a pair of
  ``np.memmap`` is wrapped in it by itself), anything with ``shape``, ``dtype`` and ``x[indices]``.
  Each epoch draws the permutation the in-memory epoch draws (from the same key), so both train on
  the same batches in the same order and end with the same params (to float rounding).
* :class:`HostBatches` — an iterable of ``(x_batch, t_batch)`` host batches: a list, a generator
  function's result, a PyTorch or Grain data loader. Its order is its own.

An epoch then runs as chunks of ``chunk_steps`` steps: the chunk's batches (K, batch, …) are read on
the host, put on the devices, and trained by one compiled ``lax.scan`` call
(:func:`jaxnets.train.make_chunk_fn`); the next chunk is read and transferred on a worker thread
while the current one trains (a chunk is always one scan: ``engine=`` applies to data in memory). Host
and device memory grow with K × batch, not with the data set (the pages of a memmap are released every
512 rows read). Step k of the epoch uses the key the
in-memory epoch gives step k.

Under data parallelism each batch is split over the mesh's ``"data"`` axis, and each process reads
only the rows its own devices train on: :class:`HostArrays` reads those rows of every batch (every
process sees the same file), and the iterable of :class:`HostBatches` must yield, in every process,
that process's rows of each global batch (``batch_size / process_count`` rows in a mesh whose
``"data"`` axis spans the processes, as a Grain loader sharded by process does).

The data position is part of a checkpoint: for :class:`HostArrays` and a re-iterable
:class:`HostBatches` it is the epoch (a source with ``set_epoch(epoch)`` is told it before each pass);
an iterator (``iter(it) is it``) gives ``steps_per_epoch`` batches per epoch and, to resume, needs
``get_state()``/``set_state(state)`` (as Grain's iterators have), whose state is saved with each epoch.
"""

from __future__ import annotations

import base64
import functools
import mmap
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxnets.parallel import DATA, RunLayout
from jaxnets.train import epoch_order, split_run_keys

DEFAULT_CHUNK_STEPS = 32
_ROWS_PER_READ = 512  # rows read from a memmap between two releases of its pages


def _check_chunk_steps(chunk_steps: int) -> int:
    if not isinstance(chunk_steps, (int, np.integer)) or isinstance(chunk_steps, bool) or chunk_steps < 1:
        raise ValueError(f"chunk_steps must be an int >= 1, got {chunk_steps!r}")
    return int(chunk_steps)


def _mapping(array: Any) -> mmap.mmap | None:
    """The shared memory map under a memmap (or a view of one) whose pages may be dropped."""
    if not isinstance(array, np.memmap) or getattr(array, "mode", "c") == "c":  # copy-on-write: keep the pages
        return None
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base


class HostArrays:
    """Training examples ``x`` (N, …) and targets ``t`` (N, …) that stay on the host.

    Args:
      x, t: NumPy arrays or memmaps (or any array with ``shape``, ``dtype`` and indexing by an index
        array); read chunk by chunk, never whole.
      chunk_steps: K, the number of steps (batches) per compiled call and per host read.
    """

    def __init__(self, x: Any, t: Any, *, chunk_steps: int = DEFAULT_CHUNK_STEPS):
        for name, array in (("x", x), ("t", t)):
            if not hasattr(array, "shape") or len(array.shape) == 0:
                raise ValueError(f"HostArrays: {name} must be an array with a leading example axis, got "
                                 f"{type(array).__name__}")
        if x.shape[0] != t.shape[0]:
            raise ValueError(f"HostArrays: {x.shape[0]} inputs but {t.shape[0]} targets; give one target per input")
        self.x, self.t = x, t
        self.chunk_steps = _check_chunk_steps(chunk_steps)
        self._mappings = [m for m in (_mapping(x), _mapping(t)) if m is not None]

    @property
    def num_examples(self) -> int:
        return int(self.x.shape[0])

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n`` examples, for the checks before training."""
        return np.asarray(self.x[:n]), np.asarray(self.t[:n])

    def position(self) -> None:
        """The data position lies in the epoch: the permutation comes from the epoch's key."""
        return None

    def restore(self, position: None) -> None:
        """Nothing to restore (see :meth:`position`)."""

    def _read(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self._mappings:
            return np.asarray(self.x[idx]), np.asarray(self.t[idx])
        # From a memmap, a few rows at a time, dropping the mapped pages after each block: the kernel maps up
        # to 16 neighbouring pages with each one read, so a whole chunk of random rows could map most of the file.
        flat = idx.reshape(-1)
        x = np.empty((flat.size, *self.x.shape[1:]), self.x.dtype)
        t = np.empty((flat.size, *self.t.shape[1:]), self.t.dtype)
        for start in range(0, flat.size, _ROWS_PER_READ):
            rows = flat[start:start + _ROWS_PER_READ]
            x[start:start + rows.size], t[start:start + rows.size] = self.x[rows], self.t[rows]
            for mapping in self._mappings:  # those pages are page cache now, not this process's memory
                mapping.madvise(mmap.MADV_DONTNEED)
        return x.reshape(*idx.shape, *x.shape[1:]), t.reshape(*idx.shape, *t.shape[1:])

    def chunks(self, order: np.ndarray, rows: slice) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The epoch's batches ``order`` (steps, batch) of example indices, K at a time, with only
        the columns ``rows`` of each batch: (k, rows, …) inputs and targets."""
        for start in range(0, order.shape[0], self.chunk_steps):
            yield self._read(order[start:start + self.chunk_steps, rows])


class HostBatches:
    """Training batches ``(x_batch, t_batch)`` read from an iterable, in its order.

    Args:
      batches: an iterable of pairs of host arrays, every batch with the same number of rows
        (``batch_size``, or this process's rows of it; see the module docstring). Re-iterable ones
        are read once per epoch; an iterator is read ``steps_per_epoch`` batches per epoch.
      steps_per_epoch: the batches of an epoch (default: ``len(batches)`` where it exists, else a
        whole pass); required for an iterator.
      chunk_steps: K, the number of batches per compiled call.
    """

    def __init__(self, batches: Iterable, *, steps_per_epoch: int | None = None,
                 chunk_steps: int = DEFAULT_CHUNK_STEPS):
        if not hasattr(batches, "__iter__"):
            raise TypeError(f"HostBatches: batches must be iterable, got {type(batches).__name__}")
        self.batches = batches
        self.is_iterator = iter(batches) is batches
        if steps_per_epoch is None and self.is_iterator:
            raise ValueError("HostBatches: an iterator has no end per epoch; give steps_per_epoch")
        if steps_per_epoch is not None and (not isinstance(steps_per_epoch, int) or steps_per_epoch < 1):
            raise ValueError(f"HostBatches: steps_per_epoch must be an int >= 1, got {steps_per_epoch!r}")
        if steps_per_epoch is None and hasattr(batches, "__len__"):
            steps_per_epoch = len(batches)
        self.steps_per_epoch = steps_per_epoch
        self.chunk_steps = _check_chunk_steps(chunk_steps)
        self._peeked: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def resumable(self) -> bool:
        """Whether a checkpoint can hold the position (always, but for an iterator without state)."""
        return not self.is_iterator or (hasattr(self.batches, "get_state") and hasattr(self.batches, "set_state"))

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The first rows of the first batch, for the checks before training. A re-iterable source
        is read again for it; an iterator's batch is kept and trained first."""
        if not self.is_iterator:
            if hasattr(self.batches, "set_epoch"):
                self.batches.set_epoch(0)
            x, t = _pair(next(iter(self.batches), None), 0)
            return x[:n], t[:n]
        if self._peeked is None:
            self._peeked = _pair(next(self.batches, None), 0)
        x, t = self._peeked
        return x[:n], t[:n]

    def position(self) -> Any:
        """JSON for the checkpoint: the iterator's state (bytes as base64), None for re-iterables."""
        if not self.is_iterator:
            return None
        state = self.batches.get_state()
        return {"base64": base64.b64encode(state).decode()} if isinstance(state, bytes) else state

    def restore(self, position: Any) -> None:
        """Go back to a position :meth:`position` gave."""
        if self.is_iterator and position is not None:
            if isinstance(position, dict) and set(position) == {"base64"}:
                position = base64.b64decode(position["base64"])
            self.batches.set_state(position)
            self._peeked = None

    def _epoch_batches(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.is_iterator:
            for i in range(self.steps_per_epoch):
                if self._peeked is not None:
                    batch, self._peeked = self._peeked, None
                else:
                    batch = next(self.batches, None)
                    if batch is None:
                        raise ValueError(f"HostBatches: the iterator ended after {i} of the {self.steps_per_epoch} "
                                         f"batches of epoch {epoch}")
                yield _pair(batch, i)
            return
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)
        for i, batch in enumerate(self.batches):
            if self.steps_per_epoch is not None and i == self.steps_per_epoch:
                return
            yield _pair(batch, i)

    def chunks(self, epoch: int, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Epoch ``epoch``'s batches, K at a time, stacked: (k, rows, …); every batch must have
        ``rows`` rows."""
        xs, ts = [], []
        for i, (x, t) in enumerate(self._epoch_batches(epoch)):
            if x.shape[0] != rows or t.shape[0] != rows:
                raise ValueError(f"HostBatches: batch {i} of epoch {epoch} has {x.shape[0]} inputs and {t.shape[0]} "
                                 f"targets; expected {rows} of each (batch_size over the processes' share)")
            xs.append(x)
            ts.append(t)
            if len(xs) == self.chunk_steps:
                yield np.stack(xs), np.stack(ts)
                xs, ts = [], []
        if xs:
            yield np.stack(xs), np.stack(ts)


def _pair(batch: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
    if batch is None:
        raise ValueError("HostBatches: the source yielded no batch")
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(f"HostBatches: batch {index} must be a pair (x_batch, t_batch), got {type(batch).__name__}")
    x, t = (np.asarray(a) for a in batch)
    if x.ndim == 0 or t.ndim == 0:
        raise ValueError(f"HostBatches: batch {index} must hold arrays with a leading batch axis")
    return x, t


Source = HostArrays | HostBatches


def as_source(train_data: Any) -> Source | None:
    """``train_data`` as a streamed source, or None for an in-memory ``(x, t)`` pair. A pair of
    memmaps becomes :class:`HostArrays`; an iterable that is not a pair, :class:`HostBatches`."""
    if isinstance(train_data, (HostArrays, HostBatches)):
        return train_data
    if isinstance(train_data, (tuple, list)) and len(train_data) == 2:
        if any(isinstance(a, np.memmap) for a in train_data):
            return HostArrays(*train_data)
        return None
    if hasattr(train_data, "__iter__") and not hasattr(train_data, "shape"):
        return HostBatches(train_data)
    raise TypeError(f"train_data must be a pair (x, t), a HostArrays or a HostBatches; got {type(train_data).__name__}")


def _local_rows(sharding: NamedSharding, shape: tuple[int, ...]) -> slice:
    """The rows (axis 1 of (K, batch, …)) that this process's devices hold under ``sharding``."""
    spans = {(index[1].start or 0, shape[1] if index[1].stop is None else index[1].stop)
             for index in sharding.addressable_devices_indices_map(shape).values()}
    low, high = min(s for s, _ in spans), max(e for _, e in spans)
    if sum(e - s for s, e in spans) != high - low and len(spans) > 1:
        raise ValueError(f"this process's devices hold rows {sorted(spans)} of each batch, not one contiguous span; "
                         "order the mesh's 'data' axis by process")
    return slice(low, high)


def _place(local: np.ndarray, rows: slice, global_shape: tuple[int, ...], sharding: NamedSharding) -> jax.Array:
    """A global (K, batch, …) array from this process's rows ``rows`` of each batch."""
    if sharding.is_fully_addressable:
        return jax.device_put(local, sharding)

    def piece(index):
        start = (index[1].start or 0) - rows.start
        stop = (global_shape[1] if index[1].stop is None else index[1].stop) - rows.start
        return local[(index[0], slice(start, stop), *index[2:])]
    return jax.make_array_from_callback(global_shape, sharding, piece)


@functools.partial(jax.jit, static_argnums=1)
def _split_steps(step_keys, steps: int):  # (runs,) -> (runs, steps): each run's step keys
    return jax.vmap(lambda k: jax.random.split(k, steps))(step_keys)


@functools.partial(jax.jit, static_argnames="size")
def _slice_steps(keys, start, *, size: int):  # (runs, steps) -> (runs, size) from step ``start``
    return jax.lax.dynamic_slice_in_dim(keys, start, size, axis=1)


class StreamedEpoch:
    """An epoch over a streamed ``source`` as chunks: ``epoch(ts, keys, l1, l2, epoch, order_key)``
    -> ``(ts, (losses, num_correct))`` with (runs, steps) results, like the in-memory epoch's.

    ``chunk``: the jitted chunk program on stacked runs, ``(ts, xs, ts, keys (runs, K), l1, l2)``;
    ``keys``: the runs' epoch keys (runs,); ``order_key``: the run key whose in-memory order
    (:func:`jaxnets.train.epoch_order`) orders a :class:`HostArrays` source (run 0's: every run sees
    the same batches)."""

    def __init__(self, source: Source, chunk: Callable, *, batch_size: int, layout: RunLayout):
        self.source, self.chunk, self.batch_size = source, chunk, batch_size
        self.data_sharding = NamedSharding(layout.mesh, PartitionSpec(None, DATA) if layout.batch is not None
                                           else PartitionSpec())
        self.rows = _local_rows(self.data_sharding, (1, batch_size))
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxnets-stream")

    def steps(self) -> int | None:
        if isinstance(self.source, HostArrays):
            return self.source.num_examples // self.batch_size
        return self.source.steps_per_epoch

    def _host_chunks(self, epoch: int, order_key) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if isinstance(self.source, HostArrays):
            order = epoch_order(order_key, epoch, self.source.num_examples, self.batch_size)
            return self.source.chunks(order, self.rows)
        return self.source.chunks(epoch, self.rows.stop - self.rows.start)

    def _device_chunk(self, host: tuple[np.ndarray, np.ndarray] | None):
        if host is None:
            return None
        return tuple(_place(a, self.rows, (a.shape[0], self.batch_size, *a.shape[2:]), self.data_sharding)
                     for a in host)

    def __call__(self, ts, keys, l1, l2, epoch: int, order_key):
        step_keys = split_run_keys(keys)[1]
        capacity = self.steps() or self.source.chunk_steps
        all_keys = _split_steps(step_keys, capacity)  # (runs, capacity); a prefix of a longer split
        host = self._host_chunks(epoch, order_key)

        def read_next():
            return self._device_chunk(next(host, None))

        pending = self._reader.submit(read_next)
        losses, corrects, done = [], [], 0
        while (current := pending.result()) is not None:
            if losses:  # at most one chunk in flight: dispatch runs ahead of the devices, and each chunk holds memory
                jax.block_until_ready(losses[-1])
            pending = self._reader.submit(read_next)  # read and transfer the next chunk while this one trains
            xs, targets = current
            k = xs.shape[0]
            if done + k > capacity:  # an iterable longer than its first guess: split the keys further
                capacity = max(2 * capacity, done + k)
                all_keys = _split_steps(step_keys, capacity)
            ts, (chunk_losses, chunk_correct) = self.chunk(ts, xs, targets, _slice_steps(all_keys, done, size=k),
                                                           l1, l2)
            losses.append(chunk_losses)
            corrects.append(chunk_correct)
            done += k
        if not losses:
            raise ValueError(f"the streamed training data gave no batch in epoch {epoch}")
        return ts, (jnp.concatenate(losses, axis=1), jnp.concatenate(corrects, axis=1))
