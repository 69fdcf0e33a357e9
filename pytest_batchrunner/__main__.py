"""``python -m pytest_batchrunner``: the ``batchrunner`` command."""

from .cli import main

raise SystemExit(main())
