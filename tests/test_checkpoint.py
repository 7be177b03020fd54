"""Tests of jaxnets.checkpoint: bit-identical round trips (params, Optax states, PRNG keys,
metadata), mismatch errors naming the key path, atomicity under interrupted saves, retention."""

import hashlib
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets import checkpoint as ckpt
from jaxnets.checkpoint import CheckpointError, latest_step, read_metadata, restore_checkpoint, save_checkpoint


def make_params(key, hidden=4):
    k1, k2 = jax.random.split(key)
    return {"dense1": {"w": jax.random.normal(k1, (3, hidden)), "b": jnp.zeros(hidden)},
            "dense2": {"w": jax.random.normal(k2, (hidden, 2)), "b": jnp.arange(2.0)}}


def make_tree(key, hidden=4):
    """params, state, an Adam state after one update, an inject_hyperparams state, and a raw key."""
    params = make_params(key, hidden)
    adam = optax.adam(1e-3)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    _, adam_state = adam.update(grads, adam.init(params), params)
    sgd_state = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1).init(params)
    return {"params": params, "state": {"bn": {"mean": jnp.full(hidden, 0.5), "count": jnp.int32(7)}},
            "opt_state": (adam_state, sgd_state), "key": jax.random.PRNGKey(0)}


def fresh_target(hidden=4):
    """A target as a resumed run builds it: re-initialised from another seed, same structure."""
    return make_tree(jax.random.PRNGKey(123), hidden)


def assert_bit_identical(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        assert isinstance(y, jax.Array)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def test_round_trip_is_bit_identical_with_metadata(tmp_path, key):
    tree = make_tree(key)
    metadata = {"epoch": 4, "history": {"train_loss": [jnp.float32(0.5), np.float64(0.25), 0.125],
                                        "val_loss": [None, 1.0], "epoch": [np.int64(3), 4]},
                "info": {"note": "run A", "lr": jnp.asarray(0.1), "flag": np.bool_(True)}}
    path = save_checkpoint(tmp_path, 4, tree, metadata=metadata)
    assert path == tmp_path / "step_00000004"
    assert sorted(p.name for p in path.iterdir()) == ["arrays.msgpack", "metadata.json"]
    restored, meta = restore_checkpoint(tmp_path, fresh_target())
    assert_bit_identical(tree, restored)
    assert type(restored["opt_state"][0][0]) is type(tree["opt_state"][0][0])  # ScaleByAdamState
    assert meta["epoch"] == 4
    assert meta["history"]["train_loss"] == [0.5, 0.25, 0.125]
    assert meta["history"]["val_loss"] == [None, 1.0]
    assert meta["history"]["epoch"] == [3, 4] and all(type(e) is int for e in meta["history"]["epoch"])
    assert meta["info"] == {"note": "run A", "lr": pytest.approx(0.1), "flag": True}
    # A restored Adam state continues the same optimisation as the original one.
    adam = optax.adam(1e-3)
    grads = jax.tree_util.tree_map(jnp.ones_like, tree["params"])
    u1, _ = adam.update(grads, tree["opt_state"][0], tree["params"])
    u2, _ = adam.update(grads, restored["opt_state"][0], restored["params"])
    chex.assert_trees_all_equal(u1, u2)


def test_typed_prng_key_round_trip(tmp_path):
    tree = {"key": jax.random.key(7), "w": jnp.ones(2)}
    save_checkpoint(tmp_path, 0, tree)
    restored, meta = restore_checkpoint(tmp_path, {"key": jax.random.key(0), "w": jnp.zeros(2)})
    assert meta == {}
    assert jnp.issubdtype(restored["key"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(tree["key"]))
    np.testing.assert_array_equal(jax.random.normal(restored["key"], (3,)), jax.random.normal(tree["key"], (3,)))
    # The stored key data also restores into a raw uint32 key of the same implementation ...
    raw, _ = restore_checkpoint(tmp_path, {"key": jax.random.PRNGKey(0), "w": jnp.zeros(2)})
    np.testing.assert_array_equal(raw["key"], jax.random.key_data(tree["key"]))
    # ... but not into a typed key of another implementation (rbg keys hold 4 words).
    with pytest.raises(CheckpointError, match=r"key: expected shape \(4,\) dtype uint32, found shape \(2,\)"
                                              r".*typed PRNG key"):
        restore_checkpoint(tmp_path, {"key": jax.random.key(0, impl="rbg"), "w": jnp.zeros(2)})


def test_shape_mismatch_names_key_path(tmp_path, key):
    save_checkpoint(tmp_path, 1, make_tree(key, hidden=4))
    with pytest.raises(CheckpointError, match=r"params/dense1/w: expected shape \(3, 5\) dtype float32, "
                                              r"found shape \(3, 4\) dtype float32"):
        restore_checkpoint(tmp_path, fresh_target(hidden=5))


def test_dtype_mismatch_names_key_path(tmp_path, key):
    tree = make_tree(key)
    save_checkpoint(tmp_path, 1, tree)
    target = fresh_target()
    target["state"]["bn"]["count"] = jnp.float32(0)
    with pytest.raises(CheckpointError, match=r"state/bn/count: expected shape \(\) dtype float32, "
                                              r"found shape \(\) dtype int32"):
        restore_checkpoint(tmp_path, target)


def test_missing_and_extra_keys_name_key_path(tmp_path, key):
    tree = make_tree(key)
    save_checkpoint(tmp_path, 1, tree)
    target = fresh_target()
    target["params"]["dense3"] = {"w": jnp.zeros((2, 2))}
    with pytest.raises(CheckpointError, match=r"missing in checkpoint: \['params/dense3'\]"):
        restore_checkpoint(tmp_path, target)
    target = fresh_target()
    del target["params"]["dense2"]["b"]
    with pytest.raises(CheckpointError, match=r"not in target: \['params/dense2/b'\]"):
        restore_checkpoint(tmp_path, target)
    target = fresh_target()
    target["opt_state"] = target["opt_state"][0]  # Adam state only: tuple structure differs
    with pytest.raises(CheckpointError, match=r"opt_state"):
        restore_checkpoint(tmp_path, target)


def test_missing_checkpoint_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        restore_checkpoint(tmp_path / "nothing-here", {"w": jnp.zeros(1)})
    save_checkpoint(tmp_path, 2, {"w": jnp.zeros(1)})
    with pytest.raises(FileNotFoundError, match=r"step 3 .*available: \[2\]"):
        restore_checkpoint(tmp_path, {"w": jnp.zeros(1)}, step=3)


def test_latest_step_on_empty_missing_and_incomplete_dirs(tmp_path):
    assert latest_step(tmp_path / "missing") is None
    assert latest_step(tmp_path) is None
    (tmp_path / "step_00000009").mkdir()  # no files: incomplete
    (tmp_path / "step_00000009" / "arrays.msgpack").write_bytes(b"")
    (tmp_path / ".tmp-new-step_00000010-1-abcd").mkdir()
    assert latest_step(tmp_path) is None
    save_checkpoint(tmp_path, 3, {"w": jnp.zeros(1)})
    save_checkpoint(tmp_path, 120_000_000, {"w": jnp.zeros(1)})  # more than 8 digits
    assert latest_step(tmp_path) == 120_000_000


def _interrupted_save(tmp_path, monkeypatch, fail_on):
    """Save step 1, then make a second save fail at ``fail_on``; return the saved tree."""
    good = {"w": jnp.arange(3.0)}
    save_checkpoint(tmp_path, 1, good, metadata={"epoch": 1})
    real_replace, real_fsync = os.replace, os.fsync
    fsyncs = []

    def replace(src, dst):
        if fail_on == "rename" and os.path.basename(src).startswith(".tmp-new-"):
            raise OSError("killed before the rename")
        return real_replace(src, dst)

    def fsync(fd):
        fsyncs.append(fd)
        if fail_on == "write" and len(fsyncs) == 2:  # arrays written, metadata half-way
            raise KeyboardInterrupt
        return real_fsync(fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    return good


@pytest.mark.parametrize("fail_on", ["rename", "write"])
@pytest.mark.parametrize("new_step", [2, 1])  # a new step, and overwriting the existing one
def test_interrupted_save_leaves_previous_checkpoint(tmp_path, monkeypatch, fail_on, new_step):
    good = _interrupted_save(tmp_path, monkeypatch, fail_on)
    with pytest.raises((OSError, KeyboardInterrupt)):
        save_checkpoint(tmp_path, new_step, {"w": jnp.full(3, 9.0)}, metadata={"epoch": new_step})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000001"]
    assert latest_step(tmp_path) == 1
    restored, meta = restore_checkpoint(tmp_path, {"w": jnp.zeros(3)})
    assert_bit_identical(good, restored)
    assert meta == {"epoch": 1}


def test_overwrite_replaces_checkpoint(tmp_path):
    save_checkpoint(tmp_path, 1, {"w": jnp.zeros(2)}, metadata={"v": 1})
    save_checkpoint(tmp_path, 1, {"w": jnp.ones(2)}, metadata={"v": 2})
    restored, meta = restore_checkpoint(tmp_path, {"w": jnp.zeros(2)})
    np.testing.assert_array_equal(restored["w"], np.ones(2))
    assert meta == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000001"]


def test_leftovers_of_killed_saves_are_cleaned_or_recovered(tmp_path):
    dead_pid = 2**22 + 1  # above Linux's pid_max: no such process
    save_checkpoint(tmp_path, 1, {"w": jnp.ones(2)})
    # Killed between the two renames of an overwrite of step 1: the old copy is put back.
    os.replace(tmp_path / "step_00000001", tmp_path / f".tmp-old-step_00000001-{dead_pid}-00ff")
    half = tmp_path / f".tmp-new-step_00000002-{dead_pid}-0abc"
    half.mkdir()
    (half / "arrays.msgpack").write_bytes(b"\x82\xa1")
    assert latest_step(tmp_path) is None
    save_checkpoint(tmp_path, 3, {"w": jnp.zeros(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000001", "step_00000003"]
    restored, _ = restore_checkpoint(tmp_path, {"w": jnp.zeros(2)}, step=1)
    np.testing.assert_array_equal(restored["w"], np.ones(2))


def test_keep_retains_exactly_the_newest(tmp_path):
    for step in range(6):
        save_checkpoint(tmp_path, step, {"w": jnp.full(2, float(step))}, keep=2)
        assert ckpt._complete_steps(tmp_path) == list(range(max(0, step - 1), step + 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000004", "step_00000005"]
    # Re-saving an older step never deletes the checkpoint just written.
    save_checkpoint(tmp_path, 1, {"w": jnp.zeros(2)}, keep=1)
    assert ckpt._complete_steps(tmp_path) == [1, 5]
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, 6, {"w": jnp.zeros(2)}, keep=0)


@pytest.mark.parametrize("content", [b"", b"\x82\xa1w", b"not msgpack at all \xff"])
def test_corrupt_arrays_file_names_the_file(tmp_path, content):
    path = save_checkpoint(tmp_path, 1, {"w": jnp.zeros(2)})
    (path / "arrays.msgpack").write_bytes(content)
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint file .*step_00000001/arrays\.msgpack"):
        restore_checkpoint(tmp_path, {"w": jnp.zeros(2)})


def test_corrupt_metadata_file_names_the_file(tmp_path):
    path = save_checkpoint(tmp_path, 1, {"w": jnp.zeros(2)})
    (path / "metadata.json").write_text('{"metadata": {"epoch": 1')
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint file .*metadata\.json"):
        restore_checkpoint(tmp_path, {"w": jnp.zeros(2)})


def test_metadata_is_converted_to_json_and_the_unconvertible_named(tmp_path):
    save_checkpoint(tmp_path, 1, {"w": jnp.zeros(2)}, metadata={"history": {"loss": [1.0, np.float32(0.5), np.nan]},
                                                                "grads": np.ones(2), 3: "x"})
    assert read_metadata(tmp_path) == {"history": {"loss": [1.0, 0.5, None]}, "grads": [1.0, 1.0], "3": "x"}
    with pytest.raises(TypeError, match=r"info is a object, which has no JSON form"):
        save_checkpoint(tmp_path, 2, {"w": jnp.zeros(2)}, metadata={"info": object()})
    assert latest_step(tmp_path) == 1  # nothing written


def test_metadata_file_is_plain_json_with_step_format_and_checksums(tmp_path):
    path = save_checkpoint(tmp_path, 5, {"w": jnp.zeros(2)}, metadata={"epoch": 5})
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["step"] == 5 and meta["metadata"] == {"epoch": 5} and meta["format"] == 2
    assert meta["sha256"]["arrays.msgpack"] == hashlib.sha256((path / "arrays.msgpack").read_bytes()).hexdigest()


def test_a_flipped_byte_in_the_arrays_is_caught_by_the_checksum(tmp_path):
    """One byte flipped inside a float of the weights still parses as msgpack: only the checksum tells."""
    weights = {"w": jnp.arange(64, dtype=jnp.float32)}
    path = save_checkpoint(tmp_path, 1, weights)
    raw = bytearray((path / "arrays.msgpack").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (path / "arrays.msgpack").write_bytes(bytes(raw))
    from flax import serialization

    serialization.msgpack_restore(bytes(raw))  # still a valid file: without a checksum this would load
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint file .*arrays\.msgpack.*SHA-256"):
        restore_checkpoint(tmp_path, weights)


def test_edited_metadata_and_other_formats_are_refused(tmp_path):
    path = save_checkpoint(tmp_path, 1, {"w": jnp.zeros(2)}, metadata={"epoch": 1})
    text = (path / "metadata.json").read_text()
    (path / "metadata.json").write_text(text.replace('"epoch": 1', '"epoch": 7'))
    with pytest.raises(CheckpointError, match=r"metadata\.json.*do not match their SHA-256 checksum"):
        restore_checkpoint(tmp_path, {"w": jnp.zeros(2)})
    meta = json.loads(text)
    meta["format"] = 1
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"checkpoint format 1; this version of jaxnets reads format 2"):
        read_metadata(tmp_path)


def test_numpy_leaves_come_back_as_numpy_in_their_dtype(tmp_path):
    tree = {"best": np.array([0.1, np.inf]), "count": np.array([3]), "w": jnp.ones(2)}
    save_checkpoint(tmp_path, 0, tree)
    restored, _ = restore_checkpoint(tmp_path, tree)
    assert isinstance(restored["best"], np.ndarray) and restored["best"].dtype == np.float64
    np.testing.assert_array_equal(restored["best"], tree["best"])
    assert isinstance(restored["w"], jax.Array)
