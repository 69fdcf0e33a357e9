"""Run a program whose stdin is a pipe held open and never written to, as under a CI runner or a terminal.

pytest gives its own tests ``/dev/null`` as stdin, so a check that commands get
end-of-file must start the runner as a child with an open pipe: a command
that inherited it would wait for input.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def output_with_stdin_open(argv: list[str], cwd: Path | None = None, timeout: float = 60) -> tuple[int, str]:
    """Run *argv* with its stdin an open pipe until it exits; its exit status and its output (stderr merged)."""
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        out = proc.stdout.read().decode(errors="replace")  # ends when the program exits; stdin stays open
        proc.wait(timeout=timeout)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out
