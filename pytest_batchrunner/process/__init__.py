"""The process layer: spawn a command, capture its output, bound it in time, kill what it leaves.

Owns: :mod:`.command` (one attempt of one command: ``/bin/sh -c``, its own
session, bounded capture, timeout, the kill sequence), :mod:`.guardian` and
:mod:`.guardian_process` (the process that kills commands when their runner
dies), :mod:`.environment` (the environment a command gets) and
:mod:`.prestart` (commands started before pytest is ready).

Must not import: pytest, :mod:`pytest_batchrunner.plugin`,
:mod:`pytest_batchrunner.reports`, :mod:`batchrunner`. The Python API and the
command line start commands through it before pytest is even imported.
"""
