"""The process layer: spawn a command, capture its output, bound it in time, kill what it leaves.

Owns: :mod:`.command` (one attempt of one command, from its start to its
:class:`~.command.Attempt`), :mod:`.spawn` (``/bin/sh -c`` in its own session,
within the open-files budget), :mod:`.capture` (bounded output and the exit),
:mod:`.tree` (the processes of a session: found, named, reaped), :mod:`.kill`
(the kill sequence), :mod:`.signals` (signal names; holding the stop signals
during a spawn), :mod:`.guardian` and
:mod:`.guardian_process` (the process that kills commands when their runner
dies), :mod:`.environment` (the environment a command gets) and
:mod:`.prestart` (commands started before pytest is ready).

Must not import: pytest, :mod:`pytest_batchrunner.plugin`,
:mod:`pytest_batchrunner.reports`, :mod:`batchrunner`. The Python API and the
command line start commands through it before pytest is even imported.
"""
