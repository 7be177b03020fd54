"""Several processes, one JAX program: joining the processes of a multi-process run.

Each process of a multi-process run calls :func:`initialize` once, right after ``import jax`` and
before any JAX computation. It starts JAX's own distributed runtime (``jax.distributed.initialize``:
a coordination service in process 0, a client in every process); afterwards ``jax.devices()`` lists
the devices of all processes, and a program compiled over a mesh of them runs its collectives
across processes. On CPU the cross-process collectives are gloo's (TCP).

Where the processes learn who they are, first match wins:

1. the arguments of :func:`initialize`;
2. the environment that ``python -m jaxnets.launch`` sets for each process it starts:
   ``JAXNETS_COORDINATOR`` (``host:port`` of process 0's coordination service),
   ``JAXNETS_NUM_PROCESSES``, ``JAXNETS_PROCESS_ID`` and ``JAXNETS_LOCAL_DEVICES`` (CPU devices per
   process);
3. JAX's cluster detection (SLURM, Open MPI, Cloud TPU), which fills in whatever is still unset.

Example (a script started by ``python -m jaxnets.launch --processes 2 -- python script.py``)::

    import jax
    from jaxnets import distributed

    distributed.initialize()
    if distributed.is_main_process():
        print(distributed.process_info())
"""

from __future__ import annotations

import math
import os

import jax

COORDINATOR_ENV = "JAXNETS_COORDINATOR"
NUM_PROCESSES_ENV = "JAXNETS_NUM_PROCESSES"
PROCESS_ID_ENV = "JAXNETS_PROCESS_ID"
LOCAL_DEVICES_ENV = "JAXNETS_LOCAL_DEVICES"

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def _backends_initialized() -> bool:
    """Whether JAX has already created its backends (its devices are then fixed). JAX has no public
    query for this; its own ``jax.distributed.initialize`` asks the same function."""
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def _env_int(name: str, minimum: int) -> int | None:
    """The integer in environment variable ``name`` (None when unset or empty), at least ``minimum``."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"environment variable {name} must be at least {minimum}, got {value}")
    return value


def _check_count(name: str, value: int | None, minimum: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise ValueError(f"initialize: {name} must be an integer of at least {minimum}, got {value!r}")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, local_device_count: int | None = None,
               heartbeat_timeout_s: float | None = None) -> dict:
    """Joins this process to a multi-process JAX run and returns :func:`process_info`.

    Call it once per process, right after ``import jax`` and before any JAX computation (even
    ``jax.devices()``): JAX fixes its devices and their collectives when the first one is created, and
    this function raises RuntimeError if that has already happened.

    Args:
      coordinator_address: ``host:port`` of the coordination service that process 0 starts; the
        same in every process. Default: ``$JAXNETS_COORDINATOR``, else JAX's cluster detection.
        On a loopback host (``127.0.0.1``, ``localhost``) the service listens on that host only.
      num_processes: how many processes take part. Default: ``$JAXNETS_NUM_PROCESSES``, else
        cluster detection.
      process_id: this process's index, ``0 <= process_id < num_processes``. Default:
        ``$JAXNETS_PROCESS_ID``, else cluster detection.
      local_device_count: CPU devices this process exposes (``jax_num_cpu_devices``). Default:
        ``$JAXNETS_LOCAL_DEVICES``, else JAX's default (one, or what ``XLA_FLAGS`` asks for). GPU
        and TPU devices are not affected.
      heartbeat_timeout_s: seconds after which a process that has sent no heartbeat to the
        coordination service is declared dead; the service then reports the failure to every
        process, and they abort (SIGABRT, "the JAX distributed service detected fatal errors")
        instead of waiting forever in a collective or a barrier. It is
        JAX's ``heartbeat_timeout_seconds`` (whole seconds, rounded up; JAX's default is 100 s),
        used by the service and by every client. Default: JAX's default.

    Returns:
      :func:`process_info` of the joined run.

    Raises:
      RuntimeError: JAX's backends are already initialised, or this process already joined a run.
      ValueError: an argument or ``JAXNETS_*`` variable is invalid, or the run cannot be found (no
        arguments, no ``JAXNETS_*`` variables and no cluster JAX recognises).
    """
    _check_count("num_processes", num_processes, 1)
    _check_count("process_id", process_id, 0)
    _check_count("local_device_count", local_device_count, 1)
    if heartbeat_timeout_s is not None and not heartbeat_timeout_s > 0:
        raise ValueError(f"initialize: heartbeat_timeout_s must be positive, got {heartbeat_timeout_s!r}")

    coordinator_address = coordinator_address or os.environ.get(COORDINATOR_ENV) or None
    num_processes = num_processes if num_processes is not None else _env_int(NUM_PROCESSES_ENV, 1)
    process_id = process_id if process_id is not None else _env_int(PROCESS_ID_ENV, 0)
    local_device_count = (local_device_count if local_device_count is not None
                          else _env_int(LOCAL_DEVICES_ENV, 1))

    if jax.distributed.is_initialized():
        raise RuntimeError("initialize: this process has already joined a multi-process run; call it once per "
                           "process")
    if _backends_initialized():
        raise RuntimeError("initialize came too late: JAX has already created its devices (a computation, "
                           "jax.devices() or jax.device_put ran); call it right after `import jax`")

    # Both settings are read when the CPU backend is created, i.e. at the first computation.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if local_device_count is not None:
        jax.config.update("jax_num_cpu_devices", local_device_count)

    options = {}
    if heartbeat_timeout_s is not None:
        options["heartbeat_timeout_seconds"] = max(1, math.ceil(heartbeat_timeout_s))
    if coordinator_address is not None:
        host = coordinator_address.rsplit(":", 1)[0]
        if host in LOOPBACK_HOSTS:
            options["coordinator_bind_address"] = coordinator_address
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id, **options)
    except ValueError as error:
        if None not in (coordinator_address, num_processes, process_id):
            raise
        raise ValueError(f"initialize: cannot find the processes of the run ({error}). Start them with "
                         "`python -m jaxnets.launch --processes N -- python SCRIPT`, under SLURM or Open MPI, "
                         f"set {COORDINATOR_ENV}, {NUM_PROCESSES_ENV} and {PROCESS_ID_ENV}, or pass "
                         "coordinator_address, num_processes and process_id") from error
    return process_info()


def is_main_process() -> bool:
    """Whether this is process 0 of the run (the one that writes files and reports); True in a
    single-process run."""
    return jax.process_index() == 0


def process_info() -> dict:
    """``{"process_index", "process_count", "local_device_count", "device_count"}`` of this process
    (creates JAX's devices if they do not exist yet)."""
    return {"process_index": jax.process_index(), "process_count": jax.process_count(),
            "local_device_count": jax.local_device_count(), "device_count": jax.device_count()}
