"""Which names a line's ``tags=`` may take: markers that nothing but ``-m`` reads.

A tag becomes a marker on its line's item, for selection with ``-m``. A marker
that pytest or a plugin acts on would change what the line does (``skip``
skips it, ``flaky`` reruns it), so such a name is refused where it is written,
as a bad value for ``tags``. The parser itself refuses the markers pytest and
the foundation's plugins act on, registered or not (``skip``, ``timeout``,
``flaky``...). Here the rest is refused: any marker registered in the
``markers`` ini value by something other than the project's ini file, that
is by a plugin or a ``conftest.py``, which may act on it. A marker the ini
file registers (``markers = slow: ...``) stays a tag, unless something else
registers it too.

Which markers the ini file registered is read before any plugin or
``conftest.py`` adds its own (:func:`remember_ini_markers`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pytest

__all__ = ["TagRules", "remember_ini_markers", "tag_rules"]

_TAG_DESCRIPTION = "tag set in a batch file"

_INI_MARKERS_KEY = pytest.StashKey[list[str]]()
_RULES_KEY = pytest.StashKey["TagRules"]()


def remember_ini_markers(config: pytest.Config) -> None:
    """Note the markers the ini file registers (and ``-o markers=...``): call before plugins add theirs."""
    config.stash[_INI_MARKERS_KEY] = list(config.getini("markers"))


def tag_rules(config: pytest.Config) -> TagRules:
    """This run's :class:`TagRules`."""
    rules = config.stash.get(_RULES_KEY, None)
    if rules is None:
        rules = config.stash[_RULES_KEY] = TagRules(config, config.stash.get(_INI_MARKERS_KEY, None))
    return rules


def _marker_name(line: str) -> str:
    # As pytest reads a "markers" line: "skipif(condition): ..." names "skipif".
    return line.split(":", 1)[0].split("(", 1)[0].strip()


class TagRules:
    """Decides whether a name may be a tag, and registers the tags in use as markers."""

    def __init__(self, config: pytest.Config, ini_markers: list[str] | None) -> None:
        self.config = config
        # None: the ini file's markers were not noted (the plugin was registered
        # after pytest loaded the first conftest.py files); then only the
        # parser's refusals apply, rather than refusing the ini file's markers too.
        self.ini = None if ini_markers is None else Counter(_marker_name(line) for line in ini_markers)
        self.ours: set[str] = set()
        self._lines_seen = -1
        self._others: frozenset[str] = frozenset()

    def problem(self, name: str) -> str | None:
        """Why *name* cannot be a tag, or ``None`` if it can."""
        if name in self.others():
            return (
                f"'{name}' is a marker registered by a plugin or a conftest.py, which may act on it; "
                "a tag may only name a marker that nothing but the ini file registers"
            )
        return None

    def others(self) -> frozenset[str]:
        """The markers registered by anything but the ini file and these rules' own tags."""
        if self.ini is None:
            return frozenset()
        lines = self.config.getini("markers")
        if len(lines) != self._lines_seen:
            # Counted, not only named: a marker the ini file registers and a
            # plugin registers again is the plugin's too.
            counts = Counter(_marker_name(line) for line in lines)
            counts.subtract(self.ini)
            counts.subtract(self.ours)
            self._others = frozenset(name for name, count in counts.items() if count > 0)
            self._lines_seen = len(lines)
        return self._others

    def register(self, names: Iterable[str]) -> None:
        """Register each tag as a marker once (``--strict-markers`` accepts it, ``--markers`` lists it)."""
        for name in names:
            if name not in self.ours:
                self.ours.add(name)
                self.config.addinivalue_line("markers", f"{name}: {_TAG_DESCRIPTION}")
                if self._lines_seen >= 0:
                    self._lines_seen += 1  # our own line: what others() found still holds
