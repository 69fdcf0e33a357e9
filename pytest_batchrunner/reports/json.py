"""The JSON results file (``--batch-json PATH``), in the original BatchRunner's shape.

Plain Python, no pytest import: the plugin, the Python API and the command line
can all write it from a :class:`~pytest_batchrunner.reports.results.Recorder` (or from results and a
summary they computed).

The document is ``{"summary": {...}, "results": [...]}``:

* ``summary`` is :meth:`Recorder.summary() <.results.Recorder.summary>` (the
  BatchRunner keys first: ``total_commands``, ``successful``, ``failed``,
  ``success_rate`` in percent, ``total_duration_ms``, ``avg/min/max_command_duration_ms``,
  ``mode``, ``max_retries``; then ``timed_out``, ``flaky``, ``reruns``, ``skipped``,
  ``not_run``, ``interrupted``...), plus ``batchrunner_version``, ``started`` and
  ``finished`` (ISO 8601);
* ``results`` holds one :class:`~pytest_batchrunner.reports.results.CommandResult` per command, in file
  and line order: ``command``, ``success``, ``exit_code``, ``stdout``,
  ``stderr``, ``duration_ms``, ``timestamp`` (ISO 8601), then ``file``, ``line``,
  ``attempts``, ``timed_out``, ``signal``, ``status``, ``interrupted``,
  ``attempt_log``... When a run is interrupted, ``summary.interrupted`` is true,
  a command that was running is ``"status": "interrupted", "interrupted": true``,
  and one that never started is ``"status": "not run"``;
* ``shard``, only in a shard's run (``--batch-shard K/N``): ``{"index": K,
  "total": N, "commands": [{"nodeid", "command", "file", "line"}, ...]}``, the
  commands of all shards, which ``batchrunner merge`` reads.

The file is always complete, valid UTF-8 JSON: it is replaced atomically, and
text that cannot be encoded (lone surrogates, which the process layer never
produces) is replaced rather than breaking the file.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
from collections.abc import Iterable, Iterator
from typing import Any

from pytest_batchrunner._version import __version__
from pytest_batchrunner.reports.files import write_atomically
from pytest_batchrunner.reports.results import CommandResult, Recorder

__all__ = ["JsonReport", "json_chunks", "json_document", "write_json_report"]


def json_document(
    summary: dict[str, Any], results: Iterable[CommandResult], shard: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON results as plain data: ``{"summary": ..., "results": [...]}``, and ``"shard"`` for a shard's run.

    All in memory: for small runs; :func:`json_chunks` streams the same bytes.
    """
    document = {"summary": dict(summary), "results": [r.to_dict() for r in results]}
    if shard is not None:
        document["shard"] = shard
    return document


def encode_json(document: Any) -> bytes:
    """*document* as UTF-8 JSON bytes, whatever strings it holds."""
    text = json.dumps(document, ensure_ascii=False, indent=2, allow_nan=False)
    # "replace" only matters for lone surrogates, which would make strict
    # encoding fail and leave no report at all.
    return text.encode("utf-8", "replace") + b"\n"


def json_chunks(
    summary: dict[str, Any], results: Iterable[CommandResult], shard: dict[str, Any] | None = None
) -> Iterator[bytes]:
    """The bytes of :func:`encode_json` ``(json_document(summary, results, shard))``, one result at a time.

    *results* is read once, as it comes (the recorder's stream): a run of any
    size is written holding one result in memory.
    """
    head = json.dumps({"summary": dict(summary)}, ensure_ascii=False, indent=2, allow_nan=False)
    yield head[: head.rindex("}")].rstrip().encode("utf-8", "replace") + b',\n  "results": ['
    first = True
    for result in results:
        fields = {name: getattr(result, name) for name in _FIELDS}
        try:
            text = _indented(fields, "    ")
        except TypeError:  # something _indented does not write: json's own encoder, then re-indented
            text = json.dumps(result.to_dict(), ensure_ascii=False, indent=2, allow_nan=False)
            # JSON strings hold no raw newline: every line break is the layout's.
            text = "\n    ".join(text.split("\n"))
        yield (b"\n    " if first else b",\n    ") + text.encode("utf-8", "replace")
        first = False
    end = b"]" if first else b"\n  ]"
    if shard is not None:
        text = "\n  ".join(json.dumps(shard, ensure_ascii=False, indent=2, allow_nan=False).split("\n"))
        end += b',\n  "shard": ' + text.encode("utf-8", "replace")
    yield end + b"\n}\n"


_FIELDS = tuple(f.name for f in dataclasses.fields(CommandResult))


def _indented(value: Any, indent: str) -> str:
    """``json.dumps(value, ensure_ascii=False, indent=2)``, its lines after the first indented by *indent*.

    The same text, about three times as fast: ``json`` writes indented output
    with its pure-Python encoder (its C encoder only writes compact text), and
    the results of a large run are written at the end of it, one after another.
    Strings go through ``json``'s own (C) string encoder. Raises TypeError for
    anything but dicts with string keys, lists, strings, numbers, booleans and None.
    """
    if isinstance(value, str):
        return _string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _float(value)
    inner = indent + "  "
    if isinstance(value, dict):
        if not value:
            return "{}"
        parts = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(key)
            parts.append(f"{inner}{_string(key)}: {_indented(item, inner)}")
        return "{\n" + ",\n".join(parts) + "\n" + indent + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + _indented(item, inner) for item in value) + "\n" + indent + "]"
    raise TypeError(type(value).__name__)


_string = json.encoder.encode_basestring  # type: ignore[attr-defined]  # the C function where there is one


def _float(value: float) -> str:
    if not math.isfinite(value):  # as json's allow_nan=False: NaN and Infinity are no JSON
        raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    return float.__repr__(value)


def write_json_report(
    path: str | os.PathLike[str],
    summary: dict[str, Any],
    results: Iterable[CommandResult],
    shard: dict[str, Any] | None = None,
) -> None:
    """Write the JSON results file atomically (temporary file, fsync, rename), streaming *results*."""
    write_atomically(path, json_chunks(summary, results, shard))


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="milliseconds")


class JsonReport:
    """Writer for :class:`~pytest_batchrunner.plugin.recording.BatchRecording`: writes the file once, at the end of the run."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path

    def finish(self, recorder: Recorder) -> None:
        """Write the results of *recorder* (also after an interruption)."""
        summary = recorder.summary()
        summary["batchrunner_version"] = __version__
        summary["started"] = _iso(recorder.started)
        summary["finished"] = _iso(recorder.finished)
        # A shard's run (--batch-shard) records the shard and every shard's commands, for the merge.
        shard = getattr(recorder, "shard", None)
        write_json_report(self.path, summary, recorder.results(), shard.info() if shard is not None else None)
