"""Orbax checkpoints written by two processes of two CPU devices each (``python -m jaxnets.launch`` on
127.0.0.1): a leaf split over all four devices, replicated leaves, host leaves and typed PRNG keys saved
with keep=2, restored whole and bit-identical in both processes and in this one; a process killed mid-save
leaves no checkpoint of that step. Each launch is bounded by the launcher's timeout and a subprocess timeout."""

import inspect
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import checkpoint as ckpt
from launched import printed

LAUNCH_TIMEOUT = 90


def values(step):
    """The tree saved as step ``step``, as whole host values (the same in every process and in this one)."""
    return {"params": {"w": np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2) + 100 * step,  # (runs, 3, 2)
                       "b": np.linspace(0, 1, 5, dtype=np.float32) * step},
            "keys": jax.random.split(jax.random.key(step), 4),  # one typed key per run
            "key": jax.random.key(1000 + step), "host": np.arange(3.0) + step, "count": step}


def target():
    """What a resumed run restores into: single-device arrays, NumPy, a ShapeDtypeStruct, typed keys."""
    tree = values(0)
    tree["params"] = {"w": jax.ShapeDtypeStruct((4, 3, 2), jnp.float32), "b": jnp.zeros(5)}
    return tree


def assert_restored(restored, step):
    """``restored`` holds exactly ``values(step)``, as whole arrays of this process."""
    expected = values(step)
    for tree in (expected, restored):
        for name in ("keys", "key"):
            assert jnp.issubdtype(tree[name].dtype, jax.dtypes.prng_key)
            tree[name] = jax.random.key_data(tree[name])
    flat_expected, structure = jax.tree_util.tree_flatten(expected)
    flat_restored, restored_structure = jax.tree_util.tree_flatten(restored)
    assert structure == restored_structure
    for want, got in zip(flat_expected, flat_restored):
        assert getattr(got, "is_fully_addressable", True)
        want = np.asarray(want if not isinstance(want, int) else jnp.asarray(want))
        assert np.asarray(got).dtype == want.dtype and np.asarray(got).tobytes() == want.tobytes()
    assert isinstance(restored["host"], np.ndarray) and isinstance(restored["params"]["w"], jax.Array)


SCRIPT = """
import os, signal, sys
from pathlib import Path
import jax
import jax.numpy as jnp
import numpy as np
from jaxnets import distributed

distributed.initialize(heartbeat_timeout_s=5)  # the launcher's environment: 2 processes x 2 CPU devices
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxnets import checkpoint as ckpt, parallel

mode, directory = sys.argv[1], Path(sys.argv[2])
process = jax.process_index()
mesh = Mesh(np.array(jax.devices()), ("runs",))  # the 4 devices of both processes
split, replicated = NamedSharding(mesh, PartitionSpec("runs")), NamedSharding(mesh, PartitionSpec())


def placed(step):
    tree = values(step)
    return {"params": {"w": parallel.put(tree["params"]["w"], split), "b": parallel.put(tree["params"]["b"], replicated)},
            "keys": parallel.put(tree["keys"], split), "key": parallel.put(tree["key"], replicated),
            "host": tree["host"], "count": tree["count"]}


if mode == "save":
    tree = placed(0)
    assert not tree["params"]["w"].is_fully_addressable and len(tree["params"]["w"].addressable_shards) == 2
    assert ckpt.default_format() == "orbax"
    for step in range(4):
        ckpt.save_checkpoint(directory, step, placed(step), metadata={"epoch": step}, keep=2, format="orbax")
        assert ckpt.complete_steps(directory) == list(range(max(0, step - 1), step + 1)), step  # in both processes
    # step 3 replaced, by the values of step 7
    ckpt.save_checkpoint(directory, 3, placed(7), metadata={"epoch": 3, "replaced": True}, keep=2, format="orbax")
    assert ckpt.latest_step(directory) == 3 and ckpt.checkpoint_format(directory) == "orbax"
    restored, meta = ckpt.restore_checkpoint(directory, target())
    assert meta == {"epoch": 3, "replaced": True}, meta
    assert_restored(restored, 7)
    if process == 0:  # restoring is no collective: one process alone may do it
        restored, meta = ckpt.restore_checkpoint(directory, target(), step=2)
        assert meta == {"epoch": 2} == ckpt.read_metadata(directory, step=2)
        assert_restored(restored, 2)
    wrong = target()
    wrong["params"]["w"] = jax.ShapeDtypeStruct((4, 3, 3), jnp.float32)
    try:
        ckpt.restore_checkpoint(directory, wrong)
        raise AssertionError("a shape mismatch was restored")
    except ckpt.CheckpointError as error:
        assert "params/w: expected shape (4, 3, 3) dtype float32, found shape (4, 3, 2) dtype float32" in str(error)
    try:
        ckpt.save_checkpoint(directory.with_name("msgpack"), 0, placed(0))
        raise AssertionError("msgpack saved arrays split over processes")
    except ValueError as error:
        assert "format='orbax'" in str(error), error
    print(f"restored {process}", flush=True)
else:  # kill: process 1 dies as the arrays of step 4 are about to be written; process 0 writes its part
    import orbax.checkpoint as ocp

    if process == 1:
        def die(*args, **kwargs):
            print(f"killed {process}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        ocp.PyTreeCheckpointHandler.async_save = die
    print(f"saving {process}", flush=True)
    ckpt.save_checkpoint(directory, 4, placed(4), metadata={"epoch": 4}, keep=2, format="orbax")
    print(f"saved {process}", flush=True)
"""


def clean_env() -> dict:
    """This environment without the variables of an enclosing run (jaxnets', SLURM's, Open MPI's)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("JAXNETS_", "SLURM_", "OMPI_"))}


def launch(tmp_path, mode: str, directory) -> subprocess.CompletedProcess:
    script = tmp_path / "checkpoints_script.py"
    helpers = "".join(textwrap.dedent(inspect.getsource(f)) + "\n\n" for f in (values, target, assert_restored))
    script.write_text(SCRIPT.replace("\ndef placed", "\n" + helpers + "def placed", 1))
    command = [sys.executable, "-m", "jaxnets.launch", "--processes", "2", "--devices-per-process", "2",
               "--timeout", str(LAUNCH_TIMEOUT), "--", sys.executable, str(script), mode, str(directory)]
    return subprocess.run(command, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT + 30, env=clean_env())


@pytest.fixture(scope="module")
def saved_by_two_processes(tmp_path_factory):
    """Steps 0-3 saved by two processes with keep=2 (step 3 then replaced), restored in both."""
    tmp_path = tmp_path_factory.mktemp("two_processes")
    directory = tmp_path / "checkpoints"
    return directory, launch(tmp_path, "save", directory)


def test_two_processes_save_their_shards_and_both_restore_the_whole_values(saved_by_two_processes):
    directory, run = saved_by_two_processes
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert printed(run.stdout, 0, "restored 0") and printed(run.stdout, 1, "restored 1"), run.stdout[-2000:]
    assert sorted(p.name for p in directory.iterdir()) == ["step_00000002", "step_00000003"]  # keep=2, no leftovers
    for step in (2, 3):
        assert (directory / f"step_{step:08d}" / "arrays" / "ocdbt.process_1").is_dir()  # process 1 wrote its part
    # One process restores what two wrote: the same values, bit for bit.
    assert ckpt.latest_step(directory) == 3
    restored, meta = ckpt.restore_checkpoint(directory, target())
    assert meta == {"epoch": 3, "replaced": True}
    assert_restored(restored, 7)
    restored, _ = ckpt.restore_checkpoint(directory, target(), step=2)
    assert_restored(restored, 2)
    import json

    document = json.loads((directory / "step_00000002" / "metadata" / "metadata.json").read_text())
    leaves = dict(document["leaves"])
    assert sorted(leaves["params/w"]) == ["0:1,0:3,0:2", "1:2,0:3,0:2", "2:3,0:3,0:2", "3:4,0:3,0:2"]  # per shard
    assert list(leaves["params/b"]) == ["0:5"]  # replicated: hashed once


def test_a_process_killed_mid_save_leaves_no_checkpoint_of_that_step(saved_by_two_processes, tmp_path):
    saved, run = saved_by_two_processes
    assert run.returncode == 0, run.stderr[-4000:]
    directory = tmp_path / "checkpoints"
    shutil.copytree(saved, directory)
    killed = launch(tmp_path, "kill", directory)
    assert killed.returncode not in (0, 124), (killed.returncode, killed.stderr[-4000:])  # failed, not timed out
    assert printed(killed.stdout, 1, "killed 1") and "saved" not in killed.stdout, killed.stdout[-2000:]
    # Process 0 wrote its part of step 4 but, without process 1's, it was never completed.
    assert (directory / "step_00000004.orbax-checkpoint-tmp").is_dir()
    assert not (directory / "step_00000004").exists()
    assert ckpt.latest_step(directory) == 3
    restored, _ = ckpt.restore_checkpoint(directory, target())
    assert_restored(restored, 7)
