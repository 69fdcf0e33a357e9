"""The original BatchRunner's log and console lines, as a reader of its logs parses them (a test helper)."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

__all__ = ["LOG_LINE", "LogEntry", "parse_log"]

# The original BatchRunner's line: "[YYYY-MM-DD HH:MM:SS] [LEVEL] message"; a message may go on over
# the next lines (the original writes "\n[1/3] Starting command..." and stderr as they are).
LOG_LINE = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] \[(INFO|SUCCESS|WARNING|ERROR)\] (.*)\Z")
# The original's messages, as its source writes them, and the extra events in the same shape.
ORIGINAL_MESSAGES = [
    r"={70}", r"BatchRunner v[\d.]+\S* - Starting \d+ commands", r"Mode: (sequential|parallel)", r"Retries: \d+",
    r"Timeout: [\d.]+s per command", r"\n\[\d+/\d+\] Starting command\.\.\.", r"Executing: .* \(attempt \d+/\d+\)",
    r"\[OK\] Command completed \(\d+\.\dms\)", r"\[X\] Command failed \(exit code -?\d+\)", r"Error output: (.|\n)*",
    r"\[X\] Command timed out after [\d.]+s", r"Retrying in [\d.]+s\.\.\.", r"Progress: \d+/\d+ completed",
    r"\n={70}", r"EXECUTION SUMMARY", r"Total Commands: \d+", r"Successful: \d+", r"Failed: \d+",
    r"Success Rate: \d+\.\d+%", r"(Total|Avg Command|Min Command|Max Command) Duration: \d+\.\dms",
    r"\nFailed commands:", r"  - .*", r"    Error: (.|\n)*", r"\nResults saved to: .*",
]
EXTRA_MESSAGES = [
    r"SUMMARY( \w+=\S*)+", r"\[!\] Killed processes left behind by the command: .*",
    r"\[!\] Interrupted: the run was stopped; .*", r"\[X\] Command interrupted: .*", r"\[!\] Not run: .*",
    r"Command failed as expected \(xfail\)", r"\[X\] Command succeeded, but was expected to fail \(strict xfail\)",
]
LOG_MESSAGE = re.compile("|".join(f"(?:{m})" for m in ORIGINAL_MESSAGES + EXTRA_MESSAGES), re.DOTALL)


@dataclass
class LogEntry:
    """One line of the log, in the original's shape (with any lines its message goes on over)."""

    time: str
    level: str
    message: str


def parse_log(text: str) -> list[LogEntry]:
    """Read a log as the original's lines; fail on anything else."""
    entries: list[LogEntry] = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if m:
            entries.append(LogEntry(*m.groups()))
        else:
            assert entries, f"not a log line: {line!r}"
            entries[-1].message += "\n" + line
    for entry in entries:
        datetime.datetime.strptime(entry.time, "%Y-%m-%d %H:%M:%S")
        assert LOG_MESSAGE.fullmatch(entry.message), f"not one of the original's messages: {entry}"
    return entries
