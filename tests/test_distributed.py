"""Multi-process runs on this machine: ``jaxnets.distributed`` and ``python -m jaxnets.launch``.

The multi-process tests start real processes (two, on CPU, over gloo) and bound everything twice: the
launcher's ``--timeout`` and the subprocess timeout around it, so a hung run fails the test instead of
hanging the suite.
"""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import pytest

from jaxnets import distributed
from jaxnets.launch import exit_code, launch, main
from launched import printed

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 120  # the subprocess timeout of every test here
HEARTBEAT_S = 3  # how soon JAX's coordination service declares a silent process dead


def clean_env() -> dict:
    """This environment without the variables of an enclosing run (jaxnets', SLURM's, Open MPI's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAXNETS_", "SLURM_", "OMPI_", "PMI_"))}
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    return env


def run_launcher(tmp_path, script: str, *options: str, args: tuple[str, ...] = ()):
    """Writes ``script`` to tmp_path and runs it under ``python -m jaxnets.launch OPTIONS -- python script
    ARGS``; returns (completed process, seconds taken)."""
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    command = [sys.executable, "-m", "jaxnets.launch", *options, "--", sys.executable, str(path), *args]
    start = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=clean_env(), timeout=LIMIT_S)
    return run, time.monotonic() - start


def test_printed_reads_a_script_line_that_shares_its_line_with_gloo():
    # As launched runs print them: Gloo's pieces before and after the script's text on one line.
    stdout = "[p1] [Gloo] Rank 1 is connected to gathered [0, 7]\n[p0] gathered [0, 7][Gloo] Rank 0 is\n"
    assert printed(stdout, 1, "gathered [0, 7]") and printed(stdout, 0, "gathered [0, 7]")
    assert not printed(stdout, 0, "Rank 1") and not printed(stdout, 2, "gathered")


def test_two_processes_of_two_devices_sum_across_processes(tmp_path):
    # Process p holds [10p + 1, 10p + 2] of the global array [1, 2, 11, 12], one value per device.
    script = """
        import jax
        import jax.numpy as jnp
        import numpy as np
        from jax.experimental import multihost_utils
        from jax.sharding import Mesh, NamedSharding, PartitionSpec
        from jaxnets import distributed

        info = distributed.initialize(heartbeat_timeout_s=10)
        assert jax.device_count() == 4, jax.devices()
        assert jax.process_count() == 2
        print(f"info {sorted(info.items())}")
        mesh = Mesh(np.array(jax.devices()), ("devices",))
        p = jax.process_index()
        local = np.array([10 * p + 1, 10 * p + 2], np.float32)  # (2,): this process's two devices
        x = jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec("devices")), local, (4,))
        total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, PartitionSpec()))(x)
        print(f"total {float(total)}")
        print(f"gathered {multihost_utils.process_allgather(np.array([p * 7])).ravel().tolist()}")
        print(f"main {distributed.is_main_process()}")
    """
    run, elapsed = run_launcher(tmp_path, script, "--processes", "2", "--devices-per-process", "2",
                                "--timeout", "90")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    for p in (0, 1):
        info = [("device_count", 4), ("local_device_count", 2), ("process_count", 2), ("process_index", p)]
        assert printed(run.stdout, p, f"info {info}"), run.stdout
        assert printed(run.stdout, p, "total 26.0"), run.stdout  # 1 + 2 + 11 + 12
        assert printed(run.stdout, p, "gathered [0, 7]"), run.stdout
        assert printed(run.stdout, p, f"main {p == 0}"), run.stdout
    assert all(line.startswith(("[p0] ", "[p1] ")) for line in lines)
    print(f"two processes: {elapsed:.1f} s")


def test_failing_process_stops_the_others(tmp_path):
    # Process 0 would sleep for 600 s and ignores SIGTERM, so only the launcher's SIGKILL ends it.
    # Process 1 waits until process 0 has written its pid, then fails with code 3.
    pid_file = tmp_path / "sleeper.pid"
    script = f"""
        import os, signal, sys, time
        pid_file = {str(pid_file)!r}
        if os.environ["JAXNETS_PROCESS_ID"] == "0":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with open(pid_file + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(pid_file + ".tmp", pid_file)
            print("sleeping", flush=True)
            time.sleep(600)
        else:
            deadline = time.monotonic() + 30
            while not os.path.exists(pid_file) and time.monotonic() < deadline:
                time.sleep(0.05)
            print("failing", file=sys.stderr)
            sys.exit(3)
    """
    run, elapsed = run_launcher(tmp_path, script, "--processes", "2")
    assert run.returncode == 3, run.stdout + run.stderr
    assert elapsed < 60
    assert printed(run.stdout, 0, "sleeping"), run.stdout
    assert "[p1] failing" in run.stderr.splitlines()
    assert "[launch] process 1 failed with exit code 3; stopping the 1 still running" in run.stderr
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


@pytest.mark.parametrize("how", ["killed", "left"])
def test_process_gone_mid_barrier_ends_the_run(tmp_path, how):
    # Process 1 dies (SIGKILL) or leaves early (exit code 0) while process 0 waits for it in a barrier.
    # Killed: the launcher sees the failure and stops process 0. Left: nothing fails in the launcher's
    # eyes; JAX's coordination service misses process 1's heartbeats and ends process 0 itself.
    script = f"""
        import os, signal, time
        import jax
        from jax.experimental import multihost_utils
        from jaxnets import distributed

        distributed.initialize(heartbeat_timeout_s={HEARTBEAT_S})
        if jax.process_index() == 1:
            time.sleep(1)
            if {how!r} == "killed":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(0)
        print("waiting", flush=True)
        multihost_utils.sync_global_devices("never reached by process 1")
        print("passed the barrier", flush=True)
    """
    run, elapsed = run_launcher(tmp_path, script, "--processes", "2", "--timeout", "90")
    assert printed(run.stdout, 0, "waiting"), run.stdout + run.stderr
    assert "passed the barrier" not in run.stdout
    assert elapsed < 60
    if how == "killed":
        assert run.returncode == exit_code(-9) == 137
        assert "[launch] process 1 failed with exit code 137" in run.stderr
    else:
        assert run.returncode != 0, run.stdout + run.stderr
        assert "[launch] process 0 failed" in run.stderr
        assert "timed out" not in run.stderr  # the heartbeat ended it, not --timeout


def test_timeout_stops_every_process(tmp_path):
    run, elapsed = run_launcher(tmp_path, "import time\ntime.sleep(600)\n", "--processes", "2", "--timeout", "1.5")
    assert run.returncode == 124
    assert elapsed < 30
    assert "[launch] timed out after 1.5 s; stopping 2 process(es)" in run.stderr


@pytest.mark.parametrize("argv, message", [
    (["--processes", "0", "--", "python", "x.py"], "argument --processes: must be at least 1, got 0"),
    (["--processes", "two", "--", "python", "x.py"], "argument --processes: must be an integer, got 'two'"),
    (["--processes", "2", "--timeout", "0", "--", "python"], "argument --timeout: must be positive, got 0"),
    (["--processes", "2"], "no command to run: put it after --"),
    (["--processes", "2", "--"], "no command to run: put it after --"),
    (["--", "python", "x.py"], "the following arguments are required: --processes"),
])
def test_command_line_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, message", [
    ({"command": ["python"], "processes": 0}, "processes must be an integer of at least 1, got 0"),
    ({"command": [], "processes": 2}, "command must be a non-empty list of strings"),
    ({"command": "python x.py", "processes": 2}, "command must be a non-empty list of strings"),
    ({"command": ["python"], "processes": 2, "devices_per_process": 0}, "devices_per_process must be"),
    ({"command": ["python"], "processes": 2, "timeout": -1.0}, "timeout must be positive"),
])
def test_launch_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        launch(**kwargs)


@pytest.mark.parametrize("kwargs, env, message", [
    ({"num_processes": 0}, {}, "num_processes must be an integer of at least 1, got 0"),
    ({"local_device_count": 0}, {}, "local_device_count must be"),
    ({"heartbeat_timeout_s": 0}, {}, "heartbeat_timeout_s must be positive"),
    ({}, {"JAXNETS_NUM_PROCESSES": "two"}, "JAXNETS_NUM_PROCESSES must be an integer, got 'two'"),
    ({}, {"JAXNETS_PROCESS_ID": "-1"}, "JAXNETS_PROCESS_ID must be at least 0, got -1"),
])
def test_initialize_rejects_bad_arguments(monkeypatch, kwargs, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):  # raised before JAX is touched
        distributed.initialize(**kwargs)


def test_initialize_after_first_computation_raises():
    jax.devices()  # creates the backend of this (test) process
    with pytest.raises(RuntimeError, match="initialize came too late"):
        distributed.initialize("127.0.0.1:1", 1, 0)
    assert not jax.distributed.is_initialized()


def test_initialize_without_a_run_says_how_to_start_one():
    code = "from jaxnets import distributed\ndistributed.initialize()\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=clean_env(),
                         timeout=LIMIT_S)
    assert run.returncode != 0
    assert "ValueError: initialize: cannot find the processes of the run" in run.stderr
    assert "python -m jaxnets.launch --processes N" in run.stderr
