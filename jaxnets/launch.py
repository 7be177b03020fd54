"""Starting a multi-process run on this machine: ``python -m jaxnets.launch``.

::

    python -m jaxnets.launch --processes 2 --devices-per-process 2 -- python train.py --epochs 3

starts ``python train.py --epochs 3`` twice, as processes 0 and 1 of one run whose coordination
service listens on a free port of 127.0.0.1. Each process finds the run through the environment
(``JAXNETS_COORDINATOR``, ``JAXNETS_NUM_PROCESSES``, ``JAXNETS_PROCESS_ID``,
``JAXNETS_LOCAL_DEVICES``) when it calls :func:`jaxnets.distributed.initialize`. Every line a
process writes is passed on with its index in front (``[p1] loss 0.31``), stdout to stdout and
stderr to stderr.

Nothing is left hanging: when a process fails (non-zero exit), the others are stopped (SIGTERM,
then SIGKILL after a grace period) and the launcher exits with the failing process's code (128 + N
for a process killed by signal N); with ``--timeout S`` all are stopped after S seconds and the
launcher exits with code 124. A process that has joined a run takes SIGTERM as a preemption notice
(JAX's preemption service) and keeps going, so it ends at the SIGKILL, or earlier when JAX's
coordination service misses a dead peer's heartbeats (``heartbeat_timeout_s`` of
:func:`jaxnets.distributed.initialize`) and aborts it. Only this machine (127.0.0.1) is supported.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from jaxnets import distributed

TIMEOUT_EXIT_CODE = 124
GRACE_SECONDS = 5.0
POLL_SECONDS = 0.05
HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def exit_code(returncode: int) -> int:
    """A process's exit status as a shell reports it: 128 + N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _report(message: str) -> None:
    print(f"[launch] {message}", file=sys.stderr, flush=True)


def _forward(stream, sink, prefix: str, lock: threading.Lock) -> None:
    """Copies ``stream`` to ``sink`` line by line, each line with ``prefix`` in front."""
    for line in iter(stream.readline, ""):
        with lock:
            sink.write(prefix + (line if line.endswith("\n") else line + "\n"))
            sink.flush()
    stream.close()


def _signal_group(child: subprocess.Popen, sig: int) -> None:
    """Sends ``sig`` to ``child`` and the processes it started (its own process group)."""
    try:
        os.killpg(child.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stop(children: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM to every child still running, SIGKILL to those still running ``grace`` s later."""
    running = [child for child in children if child.poll() is None]
    for child in running:
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in running:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for child in children:
        if child.poll() is None:
            _signal_group(child, signal.SIGKILL)
            child.wait()
        else:  # the child is gone; its own children may not be
            _signal_group(child, signal.SIGKILL)


def _check(command: list[str], processes: int, devices_per_process: int | None, timeout: float | None) -> None:
    if isinstance(command, str) or not command or not all(isinstance(part, str) for part in command):
        raise ValueError(f"launch: command must be a non-empty list of strings, got {command!r}")
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"launch: processes must be an integer of at least 1, got {processes!r}")
    if devices_per_process is not None and (isinstance(devices_per_process, bool)
                                            or not isinstance(devices_per_process, int) or devices_per_process < 1):
        raise ValueError(f"launch: devices_per_process must be an integer of at least 1, got {devices_per_process!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"launch: timeout must be positive (seconds), got {timeout!r}")


def launch(command: list[str], processes: int, devices_per_process: int | None = None,
           timeout: float | None = None, *, grace: float = GRACE_SECONDS) -> int:
    """Runs ``command`` as ``processes`` processes of one run on this machine and returns the
    launcher's exit code: 0 when all succeed, else the first failing process's code (128 + N when
    killed by signal N; 1 if that would be 0), or 124 after ``timeout`` seconds.

    ``devices_per_process`` sets the CPU devices of each process (``JAXNETS_LOCAL_DEVICES``). When
    one process fails, or the timeout passes, every other process gets SIGTERM and, ``grace``
    seconds later, SIGKILL. The processes' output goes to this process's stdout and stderr, each
    line prefixed with ``[p<index>] ``.
    """
    _check(command, processes, devices_per_process, timeout)
    base = dict(os.environ, PYTHONUNBUFFERED="1")
    base[distributed.COORDINATOR_ENV] = f"{HOST}:{free_port()}"
    base[distributed.NUM_PROCESSES_ENV] = str(processes)
    if devices_per_process is None:
        base.pop(distributed.LOCAL_DEVICES_ENV, None)
    else:
        base[distributed.LOCAL_DEVICES_ENV] = str(devices_per_process)

    lock = threading.Lock()
    children: list[subprocess.Popen] = []
    forwarders: list[threading.Thread] = []
    start = time.monotonic()
    try:
        for index in range(processes):
            env = dict(base, **{distributed.PROCESS_ID_ENV: str(index)})
            child = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
            children.append(child)
            for stream, sink in ((child.stdout, sys.stdout), (child.stderr, sys.stderr)):
                thread = threading.Thread(target=_forward, args=(stream, sink, f"[p{index}] ", lock), daemon=True)
                thread.start()
                forwarders.append(thread)
        code = _supervise(children, start, timeout)
    finally:
        _stop(children, grace)
        for thread in forwarders:
            thread.join(timeout=grace)
    return code


def _supervise(children: list[subprocess.Popen], start: float, timeout: float | None) -> int:
    """Waits until every child succeeded (0), one failed (its code) or ``timeout`` passed (124)."""
    while True:
        codes = [child.poll() for child in children]
        for index, returncode in enumerate(codes):
            if returncode not in (None, 0):
                others = sum(code is None for code in codes)
                _report(f"process {index} failed with exit code {exit_code(returncode)}; "
                        f"stopping the {others} still running")
                return exit_code(returncode) or 1
        if all(code == 0 for code in codes):
            return 0
        if timeout is not None and time.monotonic() - start > timeout:
            _report(f"timed out after {timeout:g} s; stopping {sum(code is None for code in codes)} process(es)")
            return TIMEOUT_EXIT_CODE
        time.sleep(POLL_SECONDS)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value:g}")
    return value


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m jaxnets.launch``."""
    cli = argparse.ArgumentParser(
        prog="python -m jaxnets.launch", usage="%(prog)s --processes N [options] -- COMMAND [ARGS ...]",
        description="Run COMMAND as N processes of one multi-process JAX run on this machine.")
    cli.add_argument("--processes", type=_positive_int, required=True, help="number of processes")
    cli.add_argument("--devices-per-process", type=_positive_int, default=None,
                     help="CPU devices each process exposes (default: JAX's)")
    cli.add_argument("--timeout", type=_positive_float, default=None,
                     help="stop all processes after this many seconds and exit with code 124 (default: no limit)")
    return cli


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cli = parser()
    if "--" in argv:
        split = argv.index("--")
        options, command = argv[:split], argv[split + 1:]
    else:
        options, command = argv, []
    args = cli.parse_args(options)
    if not command:
        cli.error("no command to run: put it after --, e.g. -- python train.py")
    # A launcher stopped by SIGTERM stops its processes too (the finally block of launch).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return launch(command, args.processes, args.devices_per_process, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
