"""Atomic, checksummed checkpoints of a training run: a pytree of arrays plus JSON metadata.

A checkpoint of step ``n`` is the directory ``<directory>/step_<n:08d>/``, in one of two formats:

* ``"msgpack"`` — for a run of one process (the default of :func:`save_checkpoint`;
  :func:`default_format` says which one a run uses). One process writes
  ``arrays.msgpack`` (the pytree as a :mod:`flax.serialization` state dict in msgpack) and
  ``metadata.json`` (``{"format": 2, "step": n, "jax_version": ..., "metadata": {...}, "sha256":
  {"arrays.msgpack": ..., "metadata": ...}}``: the SHA-256 of the arrays file and of the metadata
  itself). The save writes a temporary sibling ``.tmp-...`` directory, fsyncs and renames it into place.
* ``"orbax"`` — for a run of several processes (``jax.process_count() > 1``), or when asked. Every
  process calls :func:`save_checkpoint` with the same step and metadata, and an Orbax
  ``CheckpointManager`` writes two items: ``arrays/`` (the state dict through Orbax's PyTree handler,
  OCDBT/Zarr files by tensorstore: every process writes the shards of the global arrays that live on its
  devices, process 0 the other leaves (NumPy arrays, scalars, arrays of one process) as it holds them;
  ``arrays/_METADATA`` records the tree, shapes and dtypes) and
  ``metadata/metadata.json`` (written by process 0: the JSON above with ``"storage": "orbax"``, the
  Orbax version, ``"leaves"``, the SHA-256 of every leaf's bytes, one per shard of a split array,
  computed by the process that holds that shard, and ``"empty_leaves"``, the key paths, shapes and dtypes
  of zero-size arrays, which Orbax cannot write). Orbax writes ``step_<n:08d>.orbax-checkpoint-tmp``
  and renames it only when every process has written its part, then deletes the checkpoints beyond
  ``keep`` (a replaced step is written in a ``.tmp-new-...`` directory beside it, then renamed into
  place). The save is synchronous: it returns when the checkpoint is complete in every process. Orbax
  needs the processes to see one file system (one machine, or a shared one).

What the checksums cover: msgpack — every byte of both files. Orbax — every value restored (each leaf's
bytes, shard by shard, checked after reading) and the whole ``metadata.json`` (its own checksum over all
but itself, the leaf checksums included); tensorstore's own checks turn a damaged data, manifest or
``_METADATA`` file into an error first. Orbax's bookkeeping files whose contents restoring never uses
(``_CHECKPOINT_METADATA``, ``commit_success.txt``, ``_sharding``, ``array_metadatas/``) are not checked.
Unlike the msgpack save, the Orbax save does not fsync every file and directory (tensorstore syncs its
data files): a killed process cannot leave a renamed half checkpoint, but a power failure may leave a
damaged newest one, and the checksums then say so.

* :func:`save_checkpoint` — atomic in both formats: a save killed halfway leaves the previous
  checkpoints loadable and no half-written ``step_*`` directory; then only the newest ``keep`` are kept.
* :func:`latest_step` — the newest complete checkpoint, of either format.
* :func:`restore_checkpoint` — restores either format (found from the files of the step directory,
  :func:`checkpoint_format`) into the structure of a target pytree, checking the checksums, the format
  version, the tree, every leaf's shape and dtype (for Orbax before reading any array), and naming the
  file or the key path (``params/dense1/w``) on a mismatch. Every process that calls it gets the full
  values. :func:`read_metadata` reads the metadata alone. Neither waits for other processes.

One run saves into a directory at a time; concurrent writers are not supported.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from jaxnets._util import path_str, to_json, unknown

MSGPACK = "msgpack"
ORBAX = "orbax"
FORMATS = (MSGPACK, ORBAX)
ARRAYS_FILE = "arrays.msgpack"
METADATA_FILE = "metadata.json"
ORBAX_ARRAYS_ITEM = "arrays"
ORBAX_METADATA_ITEM = "metadata"
ORBAX_STEP_FILE = "_CHECKPOINT_METADATA"
FORMAT_VERSION = 2
_STEP_DIR = re.compile(r"^step_(\d+)$")
_TMP_DIR = re.compile(r"^\.tmp-(new|old|del)-step_(\d+)-(\d+)-[0-9a-f]+$")
_ORBAX_TMP_DIR = re.compile(r"^step_\d+\.orbax-checkpoint-tmp")


class CheckpointError(ValueError):
    """A checkpoint does not match its target (tree, shape, dtype) or a file in it is corrupt."""


def default_format() -> str:
    """The format a run of this many processes saves: ``"orbax"`` across processes, else ``"msgpack"``."""
    return ORBAX if jax.process_count() > 1 else MSGPACK


def _step_dir(directory: Path, step: int) -> Path:
    return directory / f"step_{step:08d}"


def _document_file(path: Path, format: str) -> Path:
    return path / METADATA_FILE if format == MSGPACK else path / ORBAX_METADATA_ITEM / METADATA_FILE


def _format_of(path: Path) -> str | None:
    """The format of the complete checkpoint in ``path``; None if there is none."""
    if (path / ARRAYS_FILE).is_file() and (path / METADATA_FILE).is_file():
        return MSGPACK
    if ((path / ORBAX_STEP_FILE).is_file() and (path / ORBAX_ARRAYS_ITEM).is_dir()
            and _document_file(path, ORBAX).is_file()):
        return ORBAX
    return None


def _is_complete(path: Path) -> bool:
    return path.is_dir() and _format_of(path) is not None


def _step_dirs(directory: Path) -> dict[int, Path]:
    if not directory.is_dir():
        return {}
    return {int(match.group(1)): entry for entry in directory.iterdir() if (match := _STEP_DIR.match(entry.name))}


def _complete_steps(directory: Path) -> list[int]:
    """Steps of the complete checkpoints in ``directory``, ascending."""
    return sorted(step for step, path in _step_dirs(directory).items() if _is_complete(path))


def latest_step(directory: str | os.PathLike) -> int | None:
    """The step of the newest complete checkpoint in ``directory`` (either format); ``None`` if there is
    none (or the directory does not exist). Temporary and incomplete directories are ignored."""
    steps = _complete_steps(Path(directory))
    return steps[-1] if steps else None


def _is_typed_key(leaf: Any) -> bool:
    return hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_storable(leaf: Any) -> np.ndarray:
    """A leaf as a host NumPy array; typed PRNG keys as their raw ``uint32`` key data."""
    if _is_typed_key(leaf):
        leaf = jax.random.key_data(leaf)
    if isinstance(leaf, (bool, int, float, complex)):
        leaf = jnp.asarray(leaf)  # the dtype JAX gives a Python scalar
    return np.asarray(leaf)


def _is_global(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and not leaf.is_fully_addressable


def _to_orbax_storable(leaf: Any) -> Any:
    """Arrays spread over several processes stay as they are (each process writes its shards); every
    other leaf becomes a host NumPy array, which process 0 writes."""
    if _is_typed_key(leaf):
        leaf = jax.random.key_data(leaf)
    return leaf if _is_global(leaf) else _to_storable(leaf)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(document: dict) -> bytes:
    """The bytes the metadata checksum covers: everything but the checksums, keys sorted."""
    return json.dumps({k: v for k, v in document.items() if k != "sha256"}, sort_keys=True,
                      allow_nan=False).encode()


def _fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _tmp_path(directory: Path, kind: str, step: int) -> Path:
    return directory / f".tmp-{kind}-step_{step:08d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process saves sequentially: its own leftovers are stale
    try:
        os.kill(pid, 0)
    except PermissionError:  # exists, owned by someone else
        return True
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    return True


def _clean_leftovers(directory: Path) -> None:
    """Remove temporary directories left by killed saves (Orbax's too); an ``old`` copy whose step
    directory is missing (killed between the two renames of an overwrite) is put back instead."""
    for entry in directory.iterdir():
        if _ORBAX_TMP_DIR.match(entry.name):
            shutil.rmtree(entry, ignore_errors=True)
            continue
        match = _TMP_DIR.match(entry.name)
        if match is None or _process_alive(int(match.group(3))):
            continue
        final = _step_dir(directory, int(match.group(2)))
        if match.group(1) == "old" and not final.exists() and _is_complete(entry):
            os.replace(entry, final)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def _base_document(step: int, metadata: dict | None) -> dict:
    return {"format": FORMAT_VERSION, "step": step, "jax_version": jax.__version__,
            "metadata": to_json({} if metadata is None else metadata)}


def save_checkpoint(directory: str | os.PathLike, step: int, tree: Any, *, metadata: dict | None = None,
                    keep: int = 3, format: str = MSGPACK) -> Path:
    """Save ``tree`` (a pytree of arrays) and JSON ``metadata`` as checkpoint ``step``, atomically.

    Args:
      directory: holds one ``step_<step:08d>`` directory per checkpoint; created if missing.
      step: a non-negative integer (usually the epoch); an existing checkpoint of that step is replaced.
      tree: nested dicts/lists/tuples/NamedTuples (Optax states) of arrays, NumPy arrays and Python
        scalars; typed PRNG keys (``jax.random.key``) are stored as their key data. With ``"orbax"``,
        leaves may be global arrays split over the devices of several processes.
      metadata: JSON-serialisable dict (epoch, history, ...); NumPy/JAX scalars are converted.
      keep: how many of the newest checkpoints (of either format) to keep; older ones are deleted after
        the save. The checkpoint just written is never deleted.
      format: ``"msgpack"`` (one process writes) or ``"orbax"`` (every process of the run calls this
        with the same ``step`` and ``metadata``; see :func:`default_format`).

    Returns:
      The path of the checkpoint directory.

    Raises:
      TypeError: metadata that is not JSON-serialisable (the message names the key path).
      ValueError: a bad step, keep or format, or msgpack asked to save arrays of several processes.
    """
    if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    if format not in FORMATS:
        raise unknown("checkpoint format", format, FORMATS)
    step = int(step)
    directory = Path(directory)
    if format == ORBAX:
        return _save_orbax(directory, step, tree, metadata, keep)
    if any(_is_global(leaf) for leaf in jax.tree_util.tree_leaves(tree)):
        raise ValueError("save_checkpoint: the tree holds arrays spread over the devices of several processes, "
                         "which a msgpack checkpoint (written by one process) cannot hold; use format='orbax'")
    # Serialise everything before touching the disk, so bad input changes nothing.
    state = serialization.to_state_dict(jax.tree_util.tree_map(_to_storable, tree))
    arrays = serialization.msgpack_serialize(state)
    document = _base_document(step, metadata)
    document["sha256"] = {ARRAYS_FILE: _sha256(arrays), "metadata": _sha256(_canonical(document))}
    meta_json = json.dumps(document, indent=1, allow_nan=False)

    directory.mkdir(parents=True, exist_ok=True)
    final = _step_dir(directory, step)
    tmp = _tmp_path(directory, "new", step)
    old = None
    try:
        tmp.mkdir()
        _write_file(tmp / ARRAYS_FILE, arrays)
        _write_file(tmp / METADATA_FILE, meta_json.encode())
        _fsync_dir(tmp)
        if final.exists():  # a directory cannot be renamed onto a non-empty one: move it aside first
            old = _tmp_path(directory, "old", step)
            os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            if old is not None:
                os.replace(old, final)
                old = None
            raise
        _fsync_dir(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

    _clean_leftovers(directory)
    _keep_newest(directory, step, keep)
    return final


def _keep_newest(directory: Path, step: int, keep: int) -> None:
    """Delete the complete checkpoints other than the newest ``keep`` and ``step`` (just written)."""
    steps = [s for s in _complete_steps(directory) if s != step]
    newest = sorted(steps + [step])[-keep:]
    for s in steps:
        if s not in newest:
            doomed = _tmp_path(directory, "del", s)
            os.replace(_step_dir(directory, s), doomed)
            shutil.rmtree(doomed, ignore_errors=True)


# --------------------------------------------------------------------------- Orbax


def _leaves(state: Any) -> list[tuple[str, Any]]:
    """``(key path, leaf)`` of a state dict, in leaf order (None leaves and empty dicts have none)."""
    return [(path_str(path), leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(state)]


def _digest(value: Any) -> str:
    return _sha256(np.ascontiguousarray(np.asarray(value)).tobytes())


def _index_key(index: tuple, shape: tuple) -> str:
    """A shard's index (a tuple of slices) as ``"0:2,0:3"`` (``""`` for a scalar)."""
    index = tuple(index) + (slice(None),) * (len(shape) - len(index))
    return ",".join("{}:{}".format(*s.indices(dim)[:2]) for s, dim in zip(index, shape))


def _parse_index(key: str) -> tuple:
    return tuple(slice(*map(int, part.split(":"))) for part in key.split(",")) if key else ()


def _allgather(value: Any) -> list:
    """Every process's JSON-able ``value``, in process order, in every process (a collective)."""
    if jax.process_count() == 1:
        return [value]
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int32))).reshape(-1)
    padded = np.zeros(max(1024, 1 << int(sizes.max() - 1).bit_length()), np.uint8)  # few distinct shapes
    padded[:data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(padded))
    return [json.loads(row[:size].tobytes()) for row, size in zip(rows, sizes)]


def _local_checksums(state: Any) -> list:
    """``[leaf position, shard index, SHA-256 of its bytes]`` of the leaves this process writes: the shards
    of global arrays on its devices (one replica each), and in process 0 the host leaves."""
    mine = []
    for position, (_, leaf) in enumerate(_leaves(state)):
        if _is_global(leaf):
            mine += [[position, _index_key(shard.index, leaf.shape), _digest(shard.data)]
                     for shard in leaf.addressable_shards if shard.replica_id == 0]
        elif jax.process_index() == 0:
            mine.append([position, _index_key((), leaf.shape), _digest(leaf)])
    return mine


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _save_orbax(directory: Path, step: int, tree: Any, metadata: dict | None, keep: int) -> Path:
    import orbax.checkpoint as ocp
    from importlib.metadata import version

    state = serialization.to_state_dict(jax.tree_util.tree_map(_to_orbax_storable, tree))
    empty = []  # Orbax cannot write zero-size arrays: they are None in its tree, their shape and dtype recorded

    def set_aside(path, leaf):
        if leaf.size:
            return leaf
        empty.append([[entry.key for entry in path], list(leaf.shape), jnp.dtype(leaf.dtype).name])
        return None

    state = jax.tree_util.tree_map_with_path(set_aside, state)
    primary = jax.process_index() == 0
    plan = None
    if primary:  # what process 0 sees decides for all; nothing else writes until the gather (a barrier)
        if directory.is_dir():
            _clean_leftovers(directory)
        plan = {"existing": sorted(_step_dirs(directory)), "complete": _complete_steps(directory),
                "staging": _tmp_path(directory, "new", step).name}
    gathered = _allgather([plan, _local_checksums(state)])
    plan = gathered[0][0]
    existing, staging = plan["existing"], directory / plan["staging"]
    table = [[path, {}] for path, _ in _leaves(state)]
    for _, mine in gathered:
        for position, index, digest in mine:
            table[position][1][index] = digest
    document = dict(_base_document(step, metadata), storage=ORBAX, orbax_version=version("orbax-checkpoint"),
                    leaves=table, empty_leaves=empty)
    document["sha256"] = {"metadata": _sha256(_canonical(document))}
    items = ocp.args.Composite(**{ORBAX_ARRAYS_ITEM: ocp.args.PyTreeSave(state),
                                  ORBAX_METADATA_ITEM: ocp.args.JsonSave(document)})
    # A step newer than all, beside complete checkpoints only: Orbax's max_to_keep keeps the newest `keep`.
    # Otherwise (Orbax would keep the latest saved, not the newest, and count incomplete step directories)
    # the old ones are deleted here; a replaced step is written in a staging directory beside it, then
    # swapped in with two renames as in the msgpack format.
    newer = all(s < step for s in existing) and existing == plan["complete"]
    root = staging if step in existing else directory
    options = ocp.CheckpointManagerOptions(max_to_keep=keep if newer else None, step_prefix="step",
                                           step_format_fixed_length=8, create=True, enable_async_checkpointing=False)
    handlers = {ORBAX_ARRAYS_ITEM: ocp.PyTreeCheckpointHandler(),
                ORBAX_METADATA_ITEM: ocp.JsonCheckpointHandler(filename=METADATA_FILE)}
    manager = ocp.CheckpointManager(root.absolute(), options=options, item_handlers=handlers)  # Orbax: absolute
    try:
        manager.save(step, args=items, force=True)
    finally:
        manager.close()
    final = _step_dir(directory, step)
    if not newer:
        if primary:
            if root == staging:
                old = _tmp_path(directory, "old", step)
                os.replace(final, old)
                os.replace(_step_dir(staging, step), final)
                shutil.rmtree(old, ignore_errors=True)
                shutil.rmtree(staging, ignore_errors=True)
            _keep_newest(directory, step, keep)
        _sync(f"jaxnets.checkpoint:saved:{step}")
    return final


def _verify_leaves(found: Any, table: list, arrays_dir: Path, meta_file: Path) -> None:
    """Every restored leaf's bytes against the checksums recorded at save time."""
    leaves = _leaves(found)
    if [path for path, _ in leaves] != [path for path, _ in table]:
        raise CheckpointError(f"corrupt checkpoint {str(arrays_dir)!r}: its leaves {[p for p, _ in leaves]} are not "
                              f"those whose checksums {str(meta_file)!r} records {[p for p, _ in table]}")
    for (path, value), (_, digests) in zip(leaves, table):
        covered = 0
        for index, digest in digests.items():
            part = value[_parse_index(index)]
            covered += part.size
            if _digest(part) != digest:
                where = path if part.size == value.size else f"{path}[{index}]"
                raise CheckpointError(f"corrupt checkpoint {str(arrays_dir)!r}: the values of {where} do not match "
                                      f"the SHA-256 checksum recorded in {str(meta_file)!r}")
        if covered != value.size:
            raise CheckpointError(f"corrupt checkpoint file {str(meta_file)!r}: it records checksums of "
                                  f"{covered} of the {value.size} values of {path}")


def _brief(error: Exception) -> str:
    """An error's message without the tensorstore spec that tensorstore appends (it names the file before)."""
    return re.sub(r"\s*\[tensorstore_spec=.*", "", str(error), flags=re.DOTALL) or repr(error)


def _restore_orbax(path: Path, target: Any, document: dict) -> Any:
    import orbax.checkpoint as ocp
    from etils import epath

    arrays_dir = path.absolute() / ORBAX_ARRAYS_ITEM  # tensorstore opens absolute paths only
    expected = serialization.to_state_dict(target)
    handler = ocp.PyTreeCheckpointHandler()
    try:
        try:  # _METADATA, and the arrays' .zarray entries in the OCDBT database (CRC-32C checked)
            saved = handler.metadata(epath.Path(arrays_dir)).tree
        except Exception as e:
            raise CheckpointError(f"corrupt checkpoint {str(arrays_dir)!r}: its tree, shapes and dtypes cannot be "
                                  f"read: {_brief(e)}") from e
        restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), saved)
        empty = [(keys, np.zeros(shape, jnp.dtype(dtype))) for keys, shape, dtype in document.get("empty_leaves", [])]
        _walk(expected, _put(saved, empty), "", _check_leaf)  # the tree, shapes and dtypes before reading any array
        try:
            found = handler.restore(epath.Path(arrays_dir), args=ocp.args.PyTreeRestore(restore_args=restore_args))
        except Exception as e:  # tensorstore's checks of damaged data or manifest files
            raise CheckpointError(f"corrupt checkpoint {str(arrays_dir)!r}: its arrays cannot be read: "
                                  f"{_brief(e)}") from e
    finally:
        handler.close()
    _verify_leaves(found, document["leaves"], arrays_dir, _document_file(path, ORBAX))
    return _walk(expected, _put(found, empty), "", _restore_leaf)


def _put(tree: dict, leaves: list) -> dict:
    """A copy of the nested dicts ``tree`` with each ``(keys, leaf)`` of ``leaves`` put at its key path."""
    tree = jax.tree_util.tree_map(lambda leaf: leaf, tree)  # new dicts, same leaves
    for keys, leaf in leaves:
        node = tree
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = leaf
    return tree


# --------------------------------------------------------------------------- restoring


def _walk(expected: Any, found: Any, path: str, leaf_fn) -> Any:
    """Walk the target's state dict (leaves: the target's leaves) and the saved one together,
    checking the structure; ``leaf_fn(expected_leaf, found_leaf, key_path)`` gives each leaf."""
    where = path or "<root>"
    if isinstance(expected, dict):
        if not isinstance(found, dict):
            raise CheckpointError(f"{where}: expected a subtree with keys {sorted(expected)}, "
                                  f"found a leaf of type {type(found).__name__}")
        missing = [k for k in expected if k not in found]
        extra = [k for k in found if k not in expected]
        if missing or extra:
            raise CheckpointError(
                f"{where}: tree structure differs from the target; missing in checkpoint: "
                f"{[f'{path}/{k}' if path else k for k in missing]}, not in target: "
                f"{[f'{path}/{k}' if path else k for k in extra]}")
        return {k: _walk(v, found[k], f"{path}/{k}" if path else k, leaf_fn) for k, v in expected.items()}
    if expected is None:
        if found is not None:
            raise CheckpointError(f"{where}: expected None, found {type(found).__name__}")
        return None
    if isinstance(found, dict) or found is None:
        raise CheckpointError(f"{where}: expected an array leaf, found "
                              f"{'a subtree' if found is not None else 'None'}")
    return leaf_fn(expected, found, where)


def _check_leaf(expected: Any, found: Any, where: str) -> tuple[Any, bool]:
    """``(spec, typed_key)`` of a target leaf, checked against a saved leaf's shape and dtype."""
    typed_key = _is_typed_key(expected)
    if typed_key:
        spec = jax.random.key_data(expected)
    elif isinstance(expected, (bool, int, float, complex)):
        spec = jnp.asarray(expected)  # as _to_storable saved it
    elif hasattr(expected, "shape") and hasattr(expected, "dtype"):  # arrays, jax.ShapeDtypeStruct
        spec = expected
    else:
        raise CheckpointError(f"{where}: unsupported target node of type {type(expected).__name__} "
                              "(use dicts, lists, tuples and NamedTuples of arrays)")
    shape, dtype = tuple(found.shape), np.dtype(found.dtype)
    if shape != tuple(spec.shape) or dtype != spec.dtype:
        raise CheckpointError(f"{where}: expected shape {tuple(spec.shape)} dtype {spec.dtype}, "
                              f"found shape {shape} dtype {dtype}"
                              + (" (key data of a typed PRNG key)" if typed_key else ""))
    return spec, typed_key


def _restore_leaf(expected: Any, found: Any, where: str) -> Any:
    found = np.asarray(found)
    spec, typed_key = _check_leaf(expected, found, where)
    if typed_key:
        return jax.random.wrap_key_data(found, impl=jax.random.key_impl(expected))
    if isinstance(expected, (np.ndarray, np.generic)):
        return found.copy()  # NumPy leaves stay NumPy, in their own dtype (float64 included)
    return jnp.asarray(found, dtype=spec.dtype)


def _checkpoint_path(directory: Path, step: int | None) -> Path:
    if step is None:
        step = latest_step(directory)
        if step is None:
            raise FileNotFoundError(f"no complete checkpoint in {str(directory)!r}")
    path = _step_dir(directory, step)
    if not _is_complete(path):
        raise FileNotFoundError(f"no complete checkpoint of step {step} in {str(directory)!r} "
                                f"(available: {_complete_steps(directory)})")
    return path


def checkpoint_format(directory: str | os.PathLike, *, step: int | None = None) -> str:
    """The format (``"msgpack"`` or ``"orbax"``) of checkpoint ``step`` (default: the latest) in
    ``directory``; FileNotFoundError if there is no such complete checkpoint."""
    return _format_of(_checkpoint_path(Path(directory), step))


def _read_document(meta_file: Path, format: str) -> dict:
    """The metadata JSON, checked: readable, the supported format, its own checksum."""
    try:
        document = json.loads(meta_file.read_text())
        checksums = document["sha256"]
        document["metadata"]
        if format == ORBAX:
            document["leaves"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"corrupt checkpoint file {str(meta_file)!r}: {e!r}") from e
    if document.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{str(meta_file)!r}: checkpoint format {document.get('format')!r}; this version of "
                              f"jaxnets reads format {FORMAT_VERSION} (start the run afresh in a new directory)")
    if checksums.get("metadata") != _sha256(_canonical(document)) or document.get("storage", MSGPACK) != format:
        raise CheckpointError(f"corrupt checkpoint file {str(meta_file)!r}: its contents do not match their "
                              "SHA-256 checksum")
    return document


def read_metadata(directory: str | os.PathLike, *, step: int | None = None) -> dict:
    """The metadata saved with checkpoint ``step`` (default: the latest), of either format, checked like
    :func:`restore_checkpoint` checks it; raises FileNotFoundError or CheckpointError."""
    path = _checkpoint_path(Path(directory), step)
    format = _format_of(path)
    return _read_document(_document_file(path, format), format)["metadata"]


def restore_checkpoint(directory: str | os.PathLike, target: Any, *,
                       step: int | None = None) -> tuple[Any, dict]:
    """Restore checkpoint ``step`` (default: the latest) into the structure of ``target``.

    Args:
      directory: the directory given to :func:`save_checkpoint`; its checkpoints may be of either
        format (see :func:`checkpoint_format`).
      target: a pytree of the same structure, shapes and dtypes as the saved one (e.g. freshly
        initialised params and optimizer state; arrays, NumPy arrays or ``jax.ShapeDtypeStruct``);
        its leaves' values are not used.
      step: which checkpoint; ``None`` for the newest complete one.

    Returns:
      ``(tree, metadata)``: ``tree`` has ``target``'s structure with whole jax-array leaves of the
      target's dtypes on the default device (typed PRNG keys re-wrapped with the target's
      implementation; NumPy leaves of the target come back as NumPy arrays), also for a checkpoint that
      several processes wrote.

    Raises:
      FileNotFoundError: no (complete) checkpoint in ``directory`` or no checkpoint ``step``.
      CheckpointError: a corrupt file or a checksum mismatch (the file named), an unsupported
        format, or a tree/shape/dtype mismatch (the key path named).
    """
    path = _checkpoint_path(Path(directory), step)
    format = _format_of(path)
    document = _read_document(_document_file(path, format), format)
    if format == ORBAX:
        restored = _restore_orbax(path, target, document)
        return serialization.from_state_dict(target, restored), document["metadata"]
    arrays_file = path / ARRAYS_FILE
    raw = arrays_file.read_bytes()
    if document["sha256"].get(ARRAYS_FILE) != _sha256(raw):
        raise CheckpointError(f"corrupt checkpoint file {str(arrays_file)!r}: its contents do not match the SHA-256 "
                              f"checksum recorded in {METADATA_FILE}")
    try:
        found = serialization.msgpack_restore(raw)
    except Exception as e:  # msgpack raises ValueError, ExtraData, TypeError, ... on corrupt input
        raise CheckpointError(f"corrupt checkpoint file {str(arrays_file)!r}: {e}") from e
    restored = _walk(serialization.to_state_dict(target), found, "", _restore_leaf)
    return serialization.from_state_dict(target, restored), document["metadata"]
