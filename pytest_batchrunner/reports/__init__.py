"""The reports: records of attempts turned into files and text.

Owns: :mod:`.results` (the records and the summary's numbers), :mod:`.summary`
(the terminal's BatchRunner summary), :mod:`.junit` (with :mod:`.junitxml`, the pytest
plugin that hands it pytest's own file), :mod:`.json`,
:mod:`.auditlog`, :mod:`.joblog`, :mod:`.trace` (the timeline, and its Chrome
trace), :mod:`.html`, :mod:`.markdown` (one module per file format), :mod:`.files`
(writing a report file safely) and :mod:`.options` (the report options and
which writers a run gets).

Never runs a command. Must not import :mod:`pytest_batchrunner.plugin` or
:mod:`batchrunner`; the plugin hands it what it needs.
"""
