"""jaxnets.runtime: keeping freed memory for reuse (the compilation cache and CPU devices are tested
with the runner and fit_seeds)."""

import subprocess
import sys
from pathlib import Path

import pytest

from jaxnets import runtime

ROOT = Path(__file__).resolve().parent.parent
# Allocates and frees a 256 MB array and prints how much of it the process's resident memory lost.
PROBE = """
import sys
import numpy as np
from jaxnets import runtime
def resident(): return int(open("/proc/self/statm").read().split()[1]) * 4096
if sys.argv[1] == "keep":
    assert runtime.keep_freed_memory() is True
block = np.ones(256 * 2**20 // 8)
before = resident()
del block
print(before - resident())
"""


def returned_bytes(mode: str) -> int:
    run = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return int(run.stdout.split()[-1])


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc to read resident memory")
def test_keep_freed_memory_keeps_a_freed_large_block_in_the_process():
    assert returned_bytes("default") > 200 * 2**20  # glibc's default: a block this large goes back to the kernel
    assert returned_bytes("keep") < 16 * 2**20  # kept for the next allocation


def test_keep_freed_memory_rejects_sizes_mallopt_cannot_take():
    with pytest.raises(ValueError, match=r"max_block_bytes must be in \(0, 2147483647\], got 4294967296"):
        runtime.keep_freed_memory(1 << 32)
