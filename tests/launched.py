"""Reading the output of ``python -m jaxnets.launch`` in tests."""


def printed(stdout: str, process: int, text: str) -> bool:
    """Whether process ``process`` printed ``text``: some line with its prefix ``[p<process>] `` contains it.

    A whole-line match is not safe: Gloo's C++ threads (JAX's CPU collectives) write "[Gloo] Rank 1 is
    connected to ..." to the same stdout as the script, in pieces and without a lock shared with Python,
    so a script's line can share its line with a piece of theirs (seen in CI: "[p1] gathered [0, 7]" missing
    as a line). One ``print`` is one write, so its text itself is never split.
    """
    prefix = f"[p{process}] "
    return any(line.startswith(prefix) and text in line for line in stdout.splitlines())
