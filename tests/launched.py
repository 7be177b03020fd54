"""Reading the output of ``python -m jaxnets.launch`` in tests."""


def printed(stdout: str, process: int, text: str) -> bool:
    """Whether process ``process`` printed ``text``: some line with its prefix ``[p<process>] `` contains it.

    A whole-line match is not safe: Gloo's C++ threads (JAX's CPU collectives) write "[Gloo] Rank 1 is
    connected to ..." to the same stdout as the script, in pieces and without a lock shared with Python,
    so a script's line can share its line with a piece of theirs (seen in CI: "[p1] gathered [0, 7]" missing
    as a line). The launcher sets ``PYTHONUNBUFFERED``, so ``print`` writes each argument, separator and
    end on its own, and a piece of Gloo's can land between them (seen in CI: "[p0] gathered[Gloo] Rank 0
    ..." with " [0, 7]" on the next line). The scripts here therefore print one string each (an f-string),
    whose text one write carries whole.
    """
    prefix = f"[p{process}] "
    return any(line.startswith(prefix) and text in line for line in stdout.splitlines())
