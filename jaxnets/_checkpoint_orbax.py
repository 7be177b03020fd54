"""The ``"orbax"`` checkpoint format, for a run of several processes: :func:`save` and :func:`restore`
of one ``step_<n:08d>/`` directory, which :mod:`jaxnets.checkpoint` calls for this format; it finds these
checkpoints with :func:`is_complete`, their metadata with :func:`document_file` and Orbax's leftovers with
``TMP_DIR``. Orbax itself is imported only inside :func:`save` and :func:`restore`.

Every process calls :func:`jaxnets.checkpoint.save_checkpoint` with the same step and metadata, and an
Orbax ``CheckpointManager`` writes two items: ``arrays/`` (the state dict through Orbax's PyTree handler,
OCDBT/Zarr files by tensorstore: every process writes the shards of the global arrays that live on its
devices, process 0 the other leaves (NumPy arrays, scalars, arrays of one process) as it holds them;
``arrays/_METADATA`` records the tree, shapes and dtypes) and ``metadata/metadata.json`` (written by
process 0: the msgpack format's ``metadata.json`` without its arrays-file checksum, with ``"storage":
"orbax"``, the Orbax version, ``"leaves"``, the SHA-256 of every leaf's bytes, one per shard of a split
array, computed by the process that holds that shard, and ``"empty_leaves"``, the key paths, shapes and
dtypes of zero-size arrays, which Orbax cannot write). Orbax writes ``step_<n:08d>.orbax-checkpoint-tmp``
and renames it only when every process has written its part, then deletes the checkpoints beyond ``keep``
(a replaced step is written in a ``.tmp-new-...`` directory beside it, then renamed into place). The save
is synchronous: it returns when the checkpoint is complete in every process. Orbax needs the processes to
see one file system (one machine, or a shared one).

What the checksums cover: every value restored (each leaf's bytes, shard by shard, checked after reading)
and the whole ``metadata.json`` (its own checksum over all but itself, the leaf checksums included);
tensorstore's own checks turn a damaged data, manifest or ``_METADATA`` file into an error first. Orbax's
bookkeeping files whose contents restoring never uses (``_CHECKPOINT_METADATA``, ``commit_success.txt``,
``_sharding``, ``array_metadatas/``) are not checked. Unlike the msgpack save, this save does not fsync
every file and directory (tensorstore syncs its data files): a killed process cannot leave a renamed half
checkpoint, but a power failure may leave a damaged newest one, and the checksums then say so.

:func:`restore` checks the tree, every leaf's shape and dtype against ``arrays/_METADATA`` before reading
any array, and gives every process that calls it the full values without waiting for the others.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from jaxnets._util import path_str
from jaxnets.checkpoint import (METADATA_FILE, ORBAX, CheckpointError, base_document, canonical, check_leaf,
                                clean_leftovers, complete_steps, is_global, is_typed_key, keep_newest, restore_leaf,
                                sha256, step_dir, step_dirs, tmp_path, to_storable, walk)

ARRAYS_ITEM = "arrays"
METADATA_ITEM = "metadata"
STEP_FILE = "_CHECKPOINT_METADATA"
TMP_DIR = re.compile(r"^step_\d+\.orbax-checkpoint-tmp")  # a step Orbax has not finished writing


def document_file(path: Path) -> Path:
    """The ``metadata.json`` of the Orbax checkpoint in ``path``."""
    return path / METADATA_ITEM / METADATA_FILE


def is_complete(path: Path) -> bool:
    """Whether ``path`` holds a complete Orbax checkpoint (Orbax writes its step file last)."""
    return (path / STEP_FILE).is_file() and (path / ARRAYS_ITEM).is_dir() and document_file(path).is_file()


def _to_orbax_storable(leaf: Any) -> Any:
    """Arrays spread over several processes stay as they are (each process writes its shards); every
    other leaf becomes a host NumPy array, which process 0 writes."""
    if is_typed_key(leaf):
        leaf = jax.random.key_data(leaf)
    return leaf if is_global(leaf) else to_storable(leaf)


def _leaves(state: Any) -> list[tuple[str, Any]]:
    """``(key path, leaf)`` of a state dict, in leaf order (None leaves and empty dicts have none)."""
    return [(path_str(path), leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(state)]


def _digest(value: Any) -> str:
    return sha256(np.ascontiguousarray(np.asarray(value)).tobytes())


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
        if is_global(leaf):
            mine += [[position, _index_key(shard.index, leaf.shape), _digest(shard.data)]
                     for shard in leaf.addressable_shards if shard.replica_id == 0]
        elif jax.process_index() == 0:
            mine.append([position, _index_key((), leaf.shape), _digest(leaf)])
    return mine


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def save(directory: Path, step: int, tree: Any, metadata: dict | None, keep: int) -> Path:
    """Save checkpoint ``step`` of ``tree`` in every process (a collective); arguments already checked by
    :func:`jaxnets.checkpoint.save_checkpoint`. Returns the step directory."""
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
            clean_leftovers(directory)
        plan = {"existing": sorted(step_dirs(directory)), "complete": complete_steps(directory),
                "staging": tmp_path(directory, "new", step).name}
    gathered = _allgather([plan, _local_checksums(state)])
    plan = gathered[0][0]
    existing, staging = plan["existing"], directory / plan["staging"]
    table = [[path, {}] for path, _ in _leaves(state)]
    for _, mine in gathered:
        for position, index, digest in mine:
            table[position][1][index] = digest
    document = dict(base_document(step, metadata), storage=ORBAX, orbax_version=version("orbax-checkpoint"),
                    leaves=table, empty_leaves=empty)
    document["sha256"] = {"metadata": sha256(canonical(document))}
    items = ocp.args.Composite(**{ARRAYS_ITEM: ocp.args.PyTreeSave(state),
                                  METADATA_ITEM: ocp.args.JsonSave(document)})
    # A step newer than all, beside complete checkpoints only: Orbax's max_to_keep keeps the newest `keep`.
    # Otherwise (Orbax would keep the latest saved, not the newest, and count incomplete step directories)
    # the old ones are deleted here; a replaced step is written in a staging directory beside it, then
    # swapped in with two renames as in the msgpack format.
    newer = all(s < step for s in existing) and existing == plan["complete"]
    root = staging if step in existing else directory
    options = ocp.CheckpointManagerOptions(max_to_keep=keep if newer else None, step_prefix="step",
                                           step_format_fixed_length=8, create=True, enable_async_checkpointing=False)
    handlers = {ARRAYS_ITEM: ocp.PyTreeCheckpointHandler(),
                METADATA_ITEM: ocp.JsonCheckpointHandler(filename=METADATA_FILE)}
    manager = ocp.CheckpointManager(root.absolute(), options=options, item_handlers=handlers)  # Orbax: absolute
    try:
        manager.save(step, args=items, force=True)
    finally:
        manager.close()
    final = step_dir(directory, step)
    if not newer:
        if primary:
            if root == staging:
                old = tmp_path(directory, "old", step)
                os.replace(final, old)
                os.replace(step_dir(staging, step), final)
                shutil.rmtree(old, ignore_errors=True)
                shutil.rmtree(staging, ignore_errors=True)
            keep_newest(directory, step, keep)
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


def restore(path: Path, target: Any, document: dict) -> Any:
    """The state dict of the checkpoint in ``path`` in the structure of ``target``'s state dict, checked;
    ``document`` is its ``metadata.json``, already checked by :mod:`jaxnets.checkpoint`."""
    import orbax.checkpoint as ocp
    from etils import epath

    arrays_dir = path.absolute() / ARRAYS_ITEM  # tensorstore opens absolute paths only
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
        walk(expected, _put(saved, empty), "", check_leaf)  # the tree, shapes and dtypes before reading any array
        try:
            found = handler.restore(epath.Path(arrays_dir), args=ocp.args.PyTreeRestore(restore_args=restore_args))
        except Exception as e:  # tensorstore's checks of damaged data or manifest files
            raise CheckpointError(f"corrupt checkpoint {str(arrays_dir)!r}: its arrays cannot be read: "
                                  f"{_brief(e)}") from e
    finally:
        handler.close()
    _verify_leaves(found, document["leaves"], arrays_dir, document_file(path))
    return walk(expected, _put(found, empty), "", restore_leaf)


def _put(tree: dict, leaves: list) -> dict:
    """A copy of the nested dicts ``tree`` with each ``(keys, leaf)`` of ``leaves`` put at its key path."""
    tree = jax.tree_util.tree_map(lambda leaf: leaf, tree)  # new dicts, same leaves
    for keys, leaf in leaves:
        node = tree
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = leaf
    return tree
