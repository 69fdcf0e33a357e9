"""The job log (``--batch-joblog PATH``): GNU parallel's ``--joblog`` format, one row per attempt.

Plain Python, no pytest import. The file starts with GNU parallel's header and
holds tab-separated rows, appended as attempts end::

    Seq  Host  Starttime       JobRuntime  Send  Receive  Exitval  Signal  Command
    2    :     1718000000.123  0.004       0     5        3        0       echo oops >&2; exit 3

Where GNU parallel keeps only a job's last run, there is a row for *every*
attempt, so the failed attempts of a retried command stay visible. Columns:

* ``Seq`` - the command's number, 1-based, in the order of the JSON results
  (file, then line); every attempt of a command has the same ``Seq``;
* ``Host`` - where the attempt ran: ``:``, GNU parallel's name for the local
  machine (also an xdist ``popen`` worker, with or without ``chdir``), else the
  remote xdist gateway's ``ssh=`` login or ``socket=`` address;
* ``Starttime`` - seconds since the epoch, ``JobRuntime`` - seconds (3 decimals);
* ``Send`` - ``0`` (nothing is sent to a command: its stdin is ``/dev/null``);
* ``Receive`` - bytes the command wrote to stdout and stderr;
* ``Exitval`` - the shell's exit status, or ``-1`` when it has none: killed by a
  signal, or timed out (a command that traps the timeout's SIGTERM and exits 0
  must never look like a success);
* ``Signal`` - number of the signal that killed the shell, else ``0``;
* ``Command`` - the command, with newlines, tabs and control characters
  escaped (``\\n``, ``\\t``, ``\\xNN``) to keep one row per line.

The file is truncated when the run starts, like GNU parallel's (without
``--resume``), and written only by the reporting process (the xdist controller).
"""

from __future__ import annotations

import os
from typing import Any

from pytest_batchrunner.process.signals import signal_number
from pytest_batchrunner.reports.files import LineFile, one_line
from pytest_batchrunner.reports.results import Recorder

__all__ = ["JOBLOG_HEADER", "JobLog", "joblog_row"]

JOBLOG_HEADER = "\t".join(
    ["Seq", "Host", "Starttime", "JobRuntime", "Send", "Receive", "Exitval", "Signal", "Command"]
)


def joblog_row(seq: int, record: dict[str, Any]) -> str:
    """The job log row of one attempt record (see :meth:`~pytest_batchrunner.plugin.items.CommandItem.attempt_record`)."""
    exit_code = record["exit_code"]
    exitval = -1 if record["timed_out"] or exit_code is None else exit_code
    return "\t".join(
        [
            str(seq),
            one_line(record.get("host") or ":"),
            f"{record['started']:.3f}",
            f"{record['duration_ms'] / 1000:.3f}",
            "0",
            str(record["stdout_bytes"] + record["stderr_bytes"]),
            str(exitval),
            str(signal_number(record["signal"]) or 0),
            one_line(record["command"]),
        ]
    )


class JobLog:
    """Recorder listener and writer for :class:`~pytest_batchrunner.plugin.recording.BatchRecording`."""

    def __init__(self, path: str | os.PathLike[str], recorder: Recorder) -> None:
        self.file = LineFile(path, truncate=True)
        self.file.write_line(JOBLOG_HEADER)
        self.recorder = recorder

    def seq(self, nodeid: str, worker: str | None = None) -> int:
        """The command's ``Seq``: its position among the run's commands, in results order.

        Numbered at the first row, when every command is known (the controller
        learns them from collection before anything runs); kept in the recorder's spool.
        An item run more than once (``--keep-duplicates``, ``--dist each``) has a
        ``Seq`` per run: the one *worker* is running.
        """
        return self.recorder.seq(nodeid, worker)

    def on_start(self, nodeid: str, command: str) -> None:
        """Nothing to write: GNU parallel writes a row when a job ends."""

    def on_attempt(self, record: dict[str, Any], outcome: str) -> None:
        """Append the row of the attempt that just ended."""
        self.file.write_line(joblog_row(self.seq(record["nodeid"], record.get("worker")), record))

    def finish(self, recorder: Recorder) -> None:
        """Close the file."""
        self.close()

    def close(self) -> None:
        """Close the file (again is harmless); later lines are dropped."""
        self.file.close()
