"""``batchrunner merge SHARD.json... -o ALL.json [--junitxml ALL.xml]``: one report from the shards' reports.

Each shard's run (``pytest --batch-shard K/N --batch-json SHARD.json``) writes the
results of its own commands, plus its shard (``K``, ``N``) and the list of every
command of every shard. The merge:

* puts every command once, in file and line order (as a run on one machine
  orders them): its result from the shard that ran it;
* reports a command that no given shard ran as ``"not run"`` (a shard whose
  file is missing, or shards computed from different histories), and names
  the missing shards;
* refuses, with a one-line error naming both files, a command that ran in two
  shards, two files of the same shard, or shards of different totals; and,
  naming the file and the field, a file that is not what a run writes (a
  field of the wrong type, a shard 5 of 2);
* recomputes the summary (``total_duration_ms`` is the span from the first
  shard's start to the last one's end), writes the JSON results and, if
  asked, a JUnit XML file of the commands, then prints the BatchRunner summary
  of the whole;
* with ``--cache-dir DIR``, adds the whole run to the history in that pytest
  cache directory (shards never write history themselves, so that all of them
  split the batch alike: see :mod:`pytest_batchrunner.plugin.shards`).

Exit status: 0 when every command succeeded, 1 when one failed or did not
run, or the input is bad (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from pytest_batchrunner._version import __version__
from pytest_batchrunner.reports.results import CommandResult, summarize
from pytest_batchrunner.values import MAX_COUNT

__all__ = ["MergeError", "main", "merge_documents"]

_FIELDS = {f.name for f in dataclasses.fields(CommandResult)}


class MergeError(ValueError):
    """The shards' files cannot be merged; the message says which file and why."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``batchrunner merge``."""
    parser = argparse.ArgumentParser(
        prog="batchrunner merge",
        description="Merge the --batch-json files of shards (pytest --batch-shard K/N) into one report.",
    )
    parser.add_argument("shards", metavar="SHARD.json", nargs="+", help="the JSON results of each shard")
    parser.add_argument("-o", "--output", metavar="FILE", required=True, help="write the merged JSON results to FILE")
    parser.add_argument("--junitxml", metavar="FILE", help="also write a JUnit XML report of every command to FILE")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="record the merged run's durations in the history of this pytest cache directory "
                        "(e.g. .pytest_cache), which the shards of the next run split by")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return parser


def _load(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            document = json.loads(f.read().decode("utf-8"))
    except OSError as exc:
        raise MergeError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MergeError(f"{path}: not a JSON file: {exc}") from None
    except RecursionError:
        raise MergeError(f"{path}: not the JSON results of a run (--batch-json): nested too deeply") from None
    if not isinstance(document, dict) or not isinstance(document.get("results"), list) or not isinstance(
        document.get("summary"), dict
    ):
        raise MergeError(f"{path}: not the JSON results of a run (--batch-json): no 'summary' and 'results'")
    return document


# What each field of a result, of an attempt, of a shard's command and of the
# summary may hold, as the JSON results write it: a shard edited or written by
# something else is refused, naming the file and the field, rather than failing
# later (sorting, summing, writing the JUnit file) with a traceback.
_NUMBER = (int, float)
_STATUSES = ("passed", "failed", "skipped", "xfailed", "xpassed", "not run", "interrupted")
_RESULT_TYPES: dict[str, tuple[Any, ...]] = {
    "command": (str,), "success": (bool,), "exit_code": (int, None), "stdout": (str,), "stderr": (str,),
    "duration_ms": _NUMBER, "timestamp": (str, None), "file": (str, None), "line": (int, None),
    "attempts": (int,), "timed_out": (bool,), "signal": (str, None), "status": (str,), "flaky": (bool,),
    "interrupted": (bool,), "message": (str,), "stdout_bytes": (int,), "stderr_bytes": (int,),
    "leftovers": (list,), "nodeid": (str, None), "attempt_log": (list,), "attempts_duration_ms": (*_NUMBER, None),
}
_ATTEMPT_TYPES: dict[str, tuple[Any, ...]] = {
    "attempt": (int,), "success": (bool,), "exit_code": (int, None), "signal": (str, None), "timed_out": (bool,),
    "status": (str,), "duration_ms": _NUMBER, "timestamp": (str, None), "worker": (str,), "host": (str,),
    "leftovers": (list,), "expected_exit": (int, None),
}
_ATTEMPT_REQUIRED = ("success", "timed_out", "duration_ms")
"""What the history (``--cache-dir``) and the JUnit file read of every attempt; every run writes them."""
_COMMAND_TYPES: dict[str, tuple[Any, ...]] = {"nodeid": (str,), "command": (str,), "file": (str, None), "line": (int, None)}
_SUMMARY_TYPES: dict[str, tuple[Any, ...]] = {
    "total_duration_ms": (*_NUMBER, None), "max_retries": (int, None), "workers": (int, None),
    "started": (str, None), "finished": (str, None),
}
_KIND_NAMES = {str: "a string", bool: "true or false", int: "a whole number", float: "a number", list: "a list",
               None: "null"}


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _fits(value: Any, kinds: tuple[Any, ...]) -> bool:
    if value is None:
        return None in kinds
    if isinstance(value, bool):  # a bool is an int to Python, not to JSON
        return bool in kinds
    if isinstance(value, (int, float)) and float in kinds and not _finite(value):
        return False  # NaN, Infinity (no JSON number), or a number no float holds
    return any(kind is not None and isinstance(value, kind) for kind in kinds)


def _check_fields(data: dict[str, Any], types: dict[str, tuple[Any, ...]], where: str) -> None:
    """:class:`MergeError` naming *where* and the field if a field of *data* has a type the results never hold."""
    for key, kinds in types.items():
        if key in data and not _fits(data[key], kinds):
            names = [_KIND_NAMES[kind] for kind in kinds if not (kind is int and float in kinds)]
            raise MergeError(f"{where}: '{key}' must be {' or '.join(names)}, not {json.dumps(data[key])[:80]}")
    leftovers = data.get("leftovers")
    if isinstance(leftovers, list) and not all(isinstance(item, str) for item in leftovers):
        raise MergeError(f"{where}: 'leftovers' must be a list of strings, not {json.dumps(leftovers)[:80]}")
    if types is _SUMMARY_TYPES:
        for key in ("started", "finished"):
            if data.get(key) is not None and _parse_time(data[key]) is None:
                raise MergeError(f"{where}: '{key}' must be an ISO 8601 time with its UTC offset, not {json.dumps(data[key])[:80]}")


def _check_shard(path: str, shard: Any) -> tuple[int, int]:
    """The ``(index, total)`` of a shard's ``"shard"`` object; :class:`MergeError` naming the file if it is malformed."""
    if not isinstance(shard, dict):
        raise MergeError(f"{path}: 'shard' must be an object with index and total, not {json.dumps(shard)[:80]}")
    index: Any = shard.get("index")
    count: Any = shard.get("total")
    if not _fits(index, (int,)) or not _fits(count, (int,)):
        raise MergeError(f"{path}: 'shard' has no index and total")
    if not 1 <= index <= count <= MAX_COUNT:
        raise MergeError(f"{path}: 'shard' is {index}/{count}: the index must be 1 to the total, "
                         f"the total 1 to {MAX_COUNT}")
    commands = shard.get("commands")
    if commands is not None and not isinstance(commands, list):
        raise MergeError(f"{path}: 'shard' commands must be a list")
    for number, command in enumerate(commands or [], 1):
        if not isinstance(command, dict):
            raise MergeError(f"{path}: 'shard' command {number} is not an object")
        _check_fields(command, _COMMAND_TYPES, f"{path}: 'shard' command {number}")
    return index, count


def _key(result: dict[str, Any]) -> str:
    key = result.get("nodeid") or f"{result.get('file')}:{result.get('line')}:{result.get('command')}"
    # A shard may run an item more than once (--keep-duplicates): each run is a result.
    run = result.get("run", 1)
    return key if run == 1 else f"{key} (run {run})"


def _result(data: dict[str, Any], path: str, number: int) -> CommandResult:
    where = f"{path}: result {number}"
    _check_fields(data, _RESULT_TYPES, where)
    if data.get("status", "passed") not in _STATUSES:
        raise MergeError(f"{where}: 'status' must be one of {', '.join(_STATUSES)}, not {json.dumps(data['status'])[:80]}")
    for attempt, entry in enumerate(data.get("attempt_log") or [], 1):
        if not isinstance(entry, dict):
            raise MergeError(f"{where}: attempt {attempt} is not an object")
        missing = [key for key in _ATTEMPT_REQUIRED if key not in entry]
        if missing:
            raise MergeError(f"{where}: attempt {attempt} has no {', '.join(repr(key) for key in missing)}")
        _check_fields(entry, _ATTEMPT_TYPES, f"{where}: attempt {attempt}")
    try:
        return CommandResult(**{k: v for k, v in data.items() if k in _FIELDS})
    except TypeError as exc:
        raise MergeError(f"{path}: a result is incomplete: {exc}") from None


def _not_run(command: dict[str, Any], why: str) -> CommandResult:
    return CommandResult(
        command=command.get("command", ""), success=False, exit_code=-1, stdout="", stderr="",
        duration_ms=0.0, timestamp=None, file=command.get("file"), line=command.get("line"),
        attempts=0, status="not run", message=why, nodeid=command.get("nodeid"),
    )


def _parse_time(text: Any) -> datetime.datetime | None:
    """*text* as an aware time (what runs write), else ``None``."""
    try:
        time = datetime.datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return time if time is not None and time.utcoffset() is not None else None


def merge_documents(documents: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any], list[CommandResult], list[str]]:
    """Merge ``(path, document)`` pairs: ``(summary, results, notes)``; :class:`MergeError` if they conflict."""
    ran: dict[str, tuple[str, CommandResult]] = {}
    known: dict[str, dict[str, Any]] = {}
    shards: dict[int, str] = {}
    total: tuple[int, str] | None = None
    for path, document in documents:
        _check_fields(document["summary"], _SUMMARY_TYPES, f"{path}: summary")
        shard = document.get("shard")
        if shard is not None:
            index, count = _check_shard(path, shard)
            if total is not None and total[0] != count:
                raise MergeError(f"{path}: shard {index}/{count}, but {total[1]} is a shard of {total[0]}")
            total = (count, path)
            if index in shards:
                raise MergeError(f"{path}: shard {index}/{count} is also {shards[index]}")
            shards[index] = path
            for command in shard.get("commands") or []:
                if isinstance(command, dict) and command.get("nodeid"):
                    known.setdefault(command["nodeid"], command)
        for number, data in enumerate(document["results"], 1):
            if not isinstance(data, dict):
                raise MergeError(f"{path}: result {number} is not an object")
            result = _result(data, path, number)
            key = _key(data)
            if key in ran:
                raise MergeError(f"{key}: in two shards, {ran[key][0]} and {path}")
            ran[key] = (path, result)
    notes = []
    if total is not None:
        missing = [f"{i}/{total[0]}" for i in range(1, total[0] + 1) if i not in shards]
        if missing:
            # A long list stays one readable line.
            shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
            notes.append("missing shards: " + shown + " (their commands are reported as not run)")
    results = [result for _, result in ran.values()]
    absent = [c for nodeid, c in known.items() if nodeid not in ran]
    results += [_not_run(c, "not run: in none of the merged shards") for c in absent]
    results.sort(key=lambda r: (r.file or "", r.line or 0, r.nodeid or ""))
    summaries = [document["summary"] for _, document in documents]
    starts = [t for s in summaries if (t := _parse_time(s.get("started"))) is not None]
    ends = [t for s in summaries if (t := _parse_time(s.get("finished"))) is not None]
    if starts and ends:
        wall = max(0.0, (max(ends) - min(starts)).total_seconds())
    else:
        wall = max((float(s.get("total_duration_ms") or 0) for s in summaries), default=0.0) / 1000
    summary = summarize(
        results,
        wall_seconds=wall,
        mode="parallel" if len(documents) > 1 or any(s.get("mode") == "parallel" for s in summaries) else "sequential",
        max_retries=max((int(s.get("max_retries") or 0) for s in summaries), default=0),
        workers=sum(int(s.get("workers") or 1) for s in summaries),
        interrupted=any(bool(s.get("interrupted")) for s in summaries),
    )
    summary["batchrunner_version"] = __version__
    summary["started"] = min(starts).isoformat(timespec="milliseconds") if starts else None
    summary["finished"] = max(ends).isoformat(timespec="milliseconds") if ends else None
    summary["shards"] = len(documents)
    return summary, results, notes


def _records(result: CommandResult) -> list[dict[str, Any]]:
    """The attempts of *result* as the JUnit writer reads them (the output is the last attempt's only)."""
    records = []
    for number, attempt in enumerate(result.attempt_log, 1):
        last = number == len(result.attempt_log)
        records.append({
            "status": "", "exit_code": None, "signal": None, "timed_out": False, "duration_ms": 0.0,
            "worker": "?", "host": ":", "timestamp": None, "leftovers": [], **attempt,
            "expected_exit": attempt.get("expected_exit") or 0,
            "stdout": result.stdout if last else "",
            "stderr": result.stderr if last else "",
        })
    return records


def write_reports(output: str, junitxml: str | None, summary: dict[str, Any], results: list[CommandResult]) -> None:
    """Write the merged JSON results (and the JUnit XML file)."""
    from pytest_batchrunner.reports.files import write_atomically
    from pytest_batchrunner.reports.json import write_json_report

    write_json_report(output, summary, results)
    if junitxml is not None:
        from pytest_batchrunner.reports.junit import junit_chunks

        # An empty suite timed as the whole run, which the commands' testcases fill.
        seconds = summary["total_duration_ms"] / 1000
        suite = (f'<testsuites name="pytest tests"><testsuite name="pytest" errors="0" failures="0" '
                 f'skipped="0" tests="0" time="{seconds:.3f}" /></testsuites>').encode()
        # The testcases are built from a stream of (result, attempt records), read twice.
        write_atomically(junitxml, junit_chunks(suite, lambda: ((r, _records(r)) for r in results)))


def _check_report_paths(args: argparse.Namespace) -> None:
    """Refuse, naming both, a report path that is a directory, the other report's file or a shard's file."""
    from pathlib import Path

    from pytest_batchrunner.reports.files import ReportPathError, check_report_paths

    reports = []
    for option, value in (("-o/--output", args.output), ("--junitxml", args.junitxml)):
        if value is None:
            continue
        if not value.strip():
            raise ReportPathError(f"{option} needs a file name")
        reports.append((option, Path(value)))
    check_report_paths(reports, [("the shard", Path(path)) for path in args.shards])


def main(argv: Sequence[str]) -> int:
    """``batchrunner merge`` with *argv* (the arguments after ``merge``); its exit status."""
    args = build_parser().parse_args(list(argv))
    try:
        _check_report_paths(args)
        documents = [(path, _load(path)) for path in args.shards]
        summary, results, notes = merge_documents(documents)
        write_reports(args.output, args.junitxml, summary, results)
        if args.cache_dir is not None:
            from pytest_batchrunner.plugin.history import write_cache_file

            write_cache_file(args.cache_dir, results)
    except (MergeError, OSError, ValueError) as exc:
        message = str(exc) if not isinstance(exc, OSError) or not exc.filename else f"{exc.strerror}: {exc.filename}"
        print(f"[X] Error: {message}", file=sys.stderr, flush=True)
        return 1
    if not args.quiet:
        from pytest_batchrunner.reports.summary import summary_lines

        print("=" * 70 + f"\nBatchRunner summary ({len(documents)} shards merged)")
        for text, _markup in summary_lines(summary, results):
            print(text)
        print(f"Results saved to: {os.fspath(args.output)}", flush=True)
    for note in notes:
        print(f"[!] {note}", file=sys.stderr, flush=True)
    ok = summary["failed"] == 0 and summary["not_run"] == 0 and not summary["interrupted"]
    return 0 if ok else 1
