"""Atomic, checksummed checkpoints of a training run: a pytree of arrays plus JSON metadata.

A checkpoint of step ``n`` is the directory ``<directory>/step_<n:08d>/``, in one of two formats
(:func:`default_format` says which one a run uses):

* ``"msgpack"`` — for a run of one process (the default of :func:`save_checkpoint`). One process writes
  ``arrays.msgpack`` (the pytree as a :mod:`flax.serialization` state dict in msgpack) and
  ``metadata.json`` (``{"format": 2, "step": n, "jax_version": ..., "metadata": {...}, "sha256":
  {"arrays.msgpack": ..., "metadata": ...}}``: the SHA-256 of the arrays file and of the metadata
  itself, so the checksums cover every byte of both files). The save writes a temporary sibling
  ``.tmp-...`` directory, fsyncs and renames it into place.
* ``"orbax"`` — for a run of several processes (``jax.process_count() > 1``), or when asked. Every
  process calls :func:`save_checkpoint` with the same step and metadata; each writes its shards through
  Orbax, and the save returns when the checkpoint is complete in every process. Its layout, what its
  checksums cover and how durable it is: :mod:`jaxnets._checkpoint_orbax` (imported inside the functions
  here that need it, as it imports this module; it imports Orbax only to save or restore).

* :func:`save_checkpoint` — atomic in both formats: a save killed halfway leaves the previous
  checkpoints loadable and no half-written ``step_*`` directory; then only the newest ``keep`` are kept.
* :func:`latest_step` — the newest complete checkpoint, of either format.
* :func:`restore_checkpoint` — restores either format (found from the files of the step directory,
  :func:`checkpoint_format`) into the structure of a target pytree, checking the checksums, the format
  version, the tree, every leaf's shape and dtype (for Orbax before reading any array), and naming the
  file or the key path (``params/dense1/w``) on a mismatch. Every process that calls it gets the full
  values. :func:`read_metadata` reads the metadata alone. Neither waits for other processes.

One run saves into a directory at a time; concurrent writers are not supported. The step directories,
leftovers cleaning, checksums and tree checks here serve both formats (public names for the Orbax module).
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

from jaxnets._util import to_json, unknown

MSGPACK = "msgpack"
ORBAX = "orbax"
FORMATS = (MSGPACK, ORBAX)
ARRAYS_FILE = "arrays.msgpack"
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 2
_STEP_DIR = re.compile(r"^step_(\d+)$")
_TMP_DIR = re.compile(r"^\.tmp-(new|old|del)-step_(\d+)-(\d+)-[0-9a-f]+$")


class CheckpointError(ValueError):
    """A checkpoint does not match its target (tree, shape, dtype) or a file in it is corrupt."""


def default_format() -> str:
    """The format a run of this many processes saves: ``"orbax"`` across processes, else ``"msgpack"``."""
    return ORBAX if jax.process_count() > 1 else MSGPACK


def step_dir(directory: Path, step: int) -> Path:
    return directory / f"step_{step:08d}"


def _format_of(path: Path) -> str | None:
    """The format of the complete checkpoint in ``path``; None if there is none."""
    from jaxnets import _checkpoint_orbax

    if (path / ARRAYS_FILE).is_file() and (path / METADATA_FILE).is_file():
        return MSGPACK
    return ORBAX if _checkpoint_orbax.is_complete(path) else None


def _is_complete(path: Path) -> bool:
    return path.is_dir() and _format_of(path) is not None


def step_dirs(directory: Path) -> dict[int, Path]:
    if not directory.is_dir():
        return {}
    return {int(match.group(1)): entry for entry in directory.iterdir() if (match := _STEP_DIR.match(entry.name))}


def complete_steps(directory: Path) -> list[int]:
    """Steps of the complete checkpoints in ``directory``, ascending."""
    return sorted(step for step, path in step_dirs(directory).items() if _is_complete(path))


def latest_step(directory: str | os.PathLike) -> int | None:
    """The step of the newest complete checkpoint in ``directory`` (either format); ``None`` if there is
    none (or the directory does not exist). Temporary and incomplete directories are ignored."""
    steps = complete_steps(Path(directory))
    return steps[-1] if steps else None


def is_typed_key(leaf: Any) -> bool:
    return hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def to_storable(leaf: Any) -> np.ndarray:
    """A leaf as a host NumPy array; typed PRNG keys as their raw ``uint32`` key data."""
    if is_typed_key(leaf):
        leaf = jax.random.key_data(leaf)
    if isinstance(leaf, (bool, int, float, complex)):
        leaf = jnp.asarray(leaf)  # the dtype JAX gives a Python scalar
    return np.asarray(leaf)


def is_global(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and not leaf.is_fully_addressable


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(document: dict) -> bytes:
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


def tmp_path(directory: Path, kind: str, step: int) -> Path:
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


def clean_leftovers(directory: Path) -> None:
    """Remove temporary directories left by killed saves (Orbax's too); an ``old`` copy whose step
    directory is missing (killed between the two renames of an overwrite) is put back instead."""
    from jaxnets import _checkpoint_orbax

    for entry in directory.iterdir():
        if _checkpoint_orbax.TMP_DIR.match(entry.name):
            shutil.rmtree(entry, ignore_errors=True)
            continue
        match = _TMP_DIR.match(entry.name)
        if match is None or _process_alive(int(match.group(3))):
            continue
        final = step_dir(directory, int(match.group(2)))
        if match.group(1) == "old" and not final.exists() and _is_complete(entry):
            os.replace(entry, final)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def base_document(step: int, metadata: dict | None) -> dict:
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
        from jaxnets import _checkpoint_orbax

        return _checkpoint_orbax.save(directory, step, tree, metadata, keep)
    if any(is_global(leaf) for leaf in jax.tree_util.tree_leaves(tree)):
        raise ValueError("save_checkpoint: the tree holds arrays spread over the devices of several processes, "
                         "which a msgpack checkpoint (written by one process) cannot hold; use format='orbax'")
    # Serialise everything before touching the disk, so bad input changes nothing.
    state = serialization.to_state_dict(jax.tree_util.tree_map(to_storable, tree))
    arrays = serialization.msgpack_serialize(state)
    document = base_document(step, metadata)
    document["sha256"] = {ARRAYS_FILE: sha256(arrays), "metadata": sha256(canonical(document))}
    meta_json = json.dumps(document, indent=1, allow_nan=False)

    directory.mkdir(parents=True, exist_ok=True)
    final = step_dir(directory, step)
    tmp = tmp_path(directory, "new", step)
    old = None
    try:
        tmp.mkdir()
        _write_file(tmp / ARRAYS_FILE, arrays)
        _write_file(tmp / METADATA_FILE, meta_json.encode())
        _fsync_dir(tmp)
        if final.exists():  # a directory cannot be renamed onto a non-empty one: move it aside first
            old = tmp_path(directory, "old", step)
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

    clean_leftovers(directory)
    keep_newest(directory, step, keep)
    return final


def keep_newest(directory: Path, step: int, keep: int) -> None:
    """Delete the complete checkpoints other than the newest ``keep`` and ``step`` (just written)."""
    steps = [s for s in complete_steps(directory) if s != step]
    newest = sorted(steps + [step])[-keep:]
    for s in steps:
        if s not in newest:
            doomed = tmp_path(directory, "del", s)
            os.replace(step_dir(directory, s), doomed)
            shutil.rmtree(doomed, ignore_errors=True)


# --------------------------------------------------------------------------- restoring


def walk(expected: Any, found: Any, path: str, leaf_fn) -> Any:
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
        return {k: walk(v, found[k], f"{path}/{k}" if path else k, leaf_fn) for k, v in expected.items()}
    if expected is None:
        if found is not None:
            raise CheckpointError(f"{where}: expected None, found {type(found).__name__}")
        return None
    if isinstance(found, dict) or found is None:
        raise CheckpointError(f"{where}: expected an array leaf, found "
                              f"{'a subtree' if found is not None else 'None'}")
    return leaf_fn(expected, found, where)


def check_leaf(expected: Any, found: Any, where: str) -> tuple[Any, bool]:
    """``(spec, typed_key)`` of a target leaf, checked against a saved leaf's shape and dtype."""
    typed_key = is_typed_key(expected)
    if typed_key:
        spec = jax.random.key_data(expected)
    elif isinstance(expected, (bool, int, float, complex)):
        spec = jnp.asarray(expected)  # as to_storable saved it
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


def restore_leaf(expected: Any, found: Any, where: str) -> Any:
    found = np.asarray(found)
    spec, typed_key = check_leaf(expected, found, where)
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
    path = step_dir(directory, step)
    if not _is_complete(path):
        raise FileNotFoundError(f"no complete checkpoint of step {step} in {str(directory)!r} "
                                f"(available: {complete_steps(directory)})")
    return path


def checkpoint_format(directory: str | os.PathLike, *, step: int | None = None) -> str:
    """The format (``"msgpack"`` or ``"orbax"``) of checkpoint ``step`` (default: the latest) in
    ``directory``; FileNotFoundError if there is no such complete checkpoint."""
    return _format_of(_checkpoint_path(Path(directory), step))


def _read_document(path: Path, format: str) -> dict:
    """The metadata JSON in ``path``, checked: readable, the supported format, its own checksum."""
    from jaxnets import _checkpoint_orbax

    meta_file = path / METADATA_FILE if format == MSGPACK else _checkpoint_orbax.document_file(path)
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
    if checksums.get("metadata") != sha256(canonical(document)) or document.get("storage", MSGPACK) != format:
        raise CheckpointError(f"corrupt checkpoint file {str(meta_file)!r}: its contents do not match their "
                              "SHA-256 checksum")
    return document


def read_metadata(directory: str | os.PathLike, *, step: int | None = None) -> dict:
    """The metadata saved with checkpoint ``step`` (default: the latest), of either format, checked like
    :func:`restore_checkpoint` checks it; raises FileNotFoundError or CheckpointError."""
    path = _checkpoint_path(Path(directory), step)
    format = _format_of(path)
    return _read_document(path, format)["metadata"]


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
    document = _read_document(path, format)
    if format == ORBAX:
        from jaxnets import _checkpoint_orbax

        restored = _checkpoint_orbax.restore(path, target, document)
        return serialization.from_state_dict(target, restored), document["metadata"]
    arrays_file = path / ARRAYS_FILE
    raw = arrays_file.read_bytes()
    if document["sha256"].get(ARRAYS_FILE) != sha256(raw):
        raise CheckpointError(f"corrupt checkpoint file {str(arrays_file)!r}: its contents do not match the SHA-256 "
                              f"checksum recorded in {METADATA_FILE}")
    try:
        found = serialization.msgpack_restore(raw)
    except Exception as e:  # msgpack raises ValueError, ExtraData, TypeError, ... on corrupt input
        raise CheckpointError(f"corrupt checkpoint file {str(arrays_file)!r}: {e}") from e
    restored = walk(serialization.to_state_dict(target), found, "", restore_leaf)
    return serialization.from_state_dict(target, restored), document["metadata"]
