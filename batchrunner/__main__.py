"""``python -m batchrunner``: the ``batchrunner`` command."""

from pytest_batchrunner.cli import main

raise SystemExit(main())
