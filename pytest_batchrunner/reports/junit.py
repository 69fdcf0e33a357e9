"""JUnit XML for batch commands, through pytest's own ``--junitxml``.

pytest's junitxml plugin writes one ``<testcase>`` per report it sees; with
pytest-rerunfailures that is one per attempt, all with the same name, and a
failed attempt that is rerun leaves an empty one (no ``<failure>``). CI then
counts a flaky command twice and never shows its failed attempt. So, after
pytest has written the file (a ``trylast`` ``pytest_sessionfinish``), the
:class:`~pytest_batchrunner.reports.junitxml.JUnitReport` plugin rewrites it:

* every ``<testcase>`` pytest wrote for a batch command is dropped, and one
  ``<testcase>`` per command is put in place of the first of them, built from the
  :class:`~pytest_batchrunner.reports.results.Recorder` (so it agrees with the terminal summary, the JSON
  results and the logs); ``classname`` is the batch file as pytest names it
  (``dir/cmds.batch`` -> ``dir.cmds.batch``, with ``--junitprefix``), ``name`` is
  the command as its item is named;
* earlier failed attempts are Maven Surefire's children, as Jenkins displays
  them: ``<flakyFailure>`` when the command finally passed, ``<rerunFailure>``
  when it finally failed, each with the attempt's status as ``message``, a kind
  as ``type`` (``exit code``, ``signal``, ``timeout``, ``crash``), its details as
  ``<stackTrace>`` and its output as ``<system-out>`` / ``<system-err>``;
* the final outcome: nothing for a pass (xpass included); ``<failure>`` for a
  failure, whose ``message`` is its status (``exit code 3``, ``killed by SIGSEGV``,
  ``timed out after 30 s``); ``<failure type="error">`` when the command did not
  fail but its test did (setup, teardown, a strict xfail that passed);
  ``<failure type="interrupted">`` for a command that was running when the run was stopped; ``<skipped>`` for a skipped, xfailed or
  never-run command. So the suite's ``tests`` / ``failures`` / ``skipped`` for the
  batch are the summary's ``total_commands`` / ``failed`` / ``skipped + not_run``;
* the last attempt's stdout and stderr go in the testcase's ``<system-out>`` and
  ``<system-err>``, clipped to their head and tail as Jenkins does: 500
  characters per stream for a pass, 50,000 for a failure, and all of them
  scaled down together when the file would exceed :data:`SIZE_TARGET` (GitLab
  rejects files over 30 MB); as for Python tests, ``junit_logging`` says which
  streams are written (``no``, the default: none; ``system-out``, ``system-err``,
  ``out-err``, ``all``), and ``junit_log_passing_tests = false`` drops the output of passes;
* text is made legal XML 1.0: characters XML cannot hold (``\\x00``, ``\\x1b``...)
  become ``#xNN``, as pytest does, and the XML writer escapes ``<``, ``&``,
  ``]]>``;
* the nameless ``<testcase>`` pytest leaves for the item that was running when
  the run was interrupted (invalid: ``name`` is required) is dropped;
* the suite's ``tests``, ``failures``, ``errors`` and ``skipped`` are corrected
  by what pytest had counted for batch reports (:class:`PytestCounts`) and
  what the new testcases hold; everything else, ordinary Python tests
  included, stays exactly as pytest wrote it;
* the file is replaced atomically.

The result validates against the xunit2 schema (``junit-10.xsd``), pytest's
default ``junit_family``; with ``xunit1`` the testcases also get ``file`` and
``line``, as pytest's do.
"""

from __future__ import annotations

import bisect
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_batchrunner.batchfile import split_nodeid
from pytest_batchrunner.reports.files import attempt_status
from pytest_batchrunner.reports.results import CommandResult

__all__ = [
    "FAIL_OUTPUT_CHARS",
    "PASS_OUTPUT_CHARS",
    "SIZE_TARGET",
    "PytestCounts",
    "batch_testcases",
    "junit_address",
    "junit_chunks",
    "rewrite_junit",
    "xml_text",
]

PASS_OUTPUT_CHARS = 500
"""Characters of each output stream kept for a command that passed (Jenkins keeps 500)."""
FAIL_OUTPUT_CHARS = 50_000
"""Characters of each output stream kept for a failed attempt (Jenkins keeps 50,000)."""
SIZE_TARGET = 24 * 1024 * 1024
"""Size the rewritten file aims to stay under: GitLab's 30 MB limit, with room for estimation error."""
# Output clipped to fewer characters than this is left out of the file altogether.
MIN_CLIP = 100
_MARKER = "[... {} characters left out of the JUnit report by pytest-batchrunner ...]"
_MARKER_SIZE = len(_MARKER) + 12
_TAG_SIZE = len("<system-out></system-out>")

# Characters XML 1.0 cannot hold, plus DEL and the C1 controls (legal, but
# they drive terminals): one table for the common ones (str.translate runs at C
# speed over megabytes of output), a pattern for the rare rest.
_ESCAPES = {c: f"#x{c:02X}" for c in [*range(0x20), *range(0x7F, 0xA0)] if chr(c) not in "\t\n\r"}
_NEEDS_ESCAPE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_RARE_ILLEGAL = re.compile("[\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """*text* with every character XML 1.0 cannot hold (and DEL, C1 controls) as ``#xNN``, as pytest does.

    ElementTree would otherwise write ``\\x00`` or ``\\x1b`` as they are, and no
    parser could read the file back.
    """
    if _NEEDS_ESCAPE.search(text):
        text = text.translate(_ESCAPES)
    if _RARE_ILLEGAL.search(text):
        text = _RARE_ILLEGAL.sub(lambda m: f"#x{ord(m.group()):04X}", text)
    return text


def clip(text: str, limit: int) -> str:
    """The head and tail of *text* in about *limit* characters, with a marker saying how much was left out."""
    if len(text) <= limit:
        return text
    head, tail = _head_and_tail(text, limit)
    return f"{head}\n{_MARKER.format(len(text) - len(head) - len(tail))}\n{tail}"


def _head_and_tail(text: str, limit: int) -> tuple[str, str]:
    # The end of a command's output says most about how it ended: keep more of it.
    head = limit // 3
    return text[:head], text[len(text) - (limit - head):]


def _xml_size(text: str) -> int:
    """Bytes *text* takes in the file, once made legal and escaped (``&`` -> ``&amp;``...)."""
    return (
        len(xml_text(text).encode("utf-8", "replace"))
        + 3 * (text.count("<") + text.count(">"))
        + 4 * text.count("&")
    )


def _mangle(nodeid: str) -> list[str]:
    """pytest's junitxml rule for a test's address: the part before the first ``[`` is split
    at ``::``, the file's ``/`` become dots and ``.py`` is dropped."""
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return names


def command_address(nodeid: str, prefix: str | None = None) -> tuple[str, str]:
    """``(classname, name)`` of our testcase for *nodeid*: the batch file as pytest
    names it, and the item's name (the command) exactly."""
    path, name = split_nodeid(nodeid)
    classnames = [re.sub(r"\.py$", "", path.replace("/", "."))]
    if prefix:
        classnames.insert(0, prefix)
    return ".".join(classnames), name


def junit_address(nodeid: str, prefix: str | None = None) -> tuple[str, str]:
    """``(classname, name)`` of *nodeid* as pytest's junitxml derives them (to find its testcases).

    The last part is the name, the others (after ``--junitprefix``) the classname.
    """
    names = _mangle(nodeid)
    classnames = names[:-1]
    if prefix:
        classnames.insert(0, prefix)
    return ".".join(classnames), names[-1]


_ESCAPE_MARK = re.compile(r"#x[0-9A-F]{2,6}")
_NOT_PLAIN = re.compile(r"[^\x20-\x7e]")


def _match_key(classname: str, name: str) -> str:
    # pytest escapes names with its own rule (it also escapes characters beyond
    # U+FFFF, for one); comparing with those characters and escapes removed
    # finds its testcases whatever the rule. Two batch commands may share a
    # key, which is harmless: both are replaced.
    return _NOT_PLAIN.sub("", _ESCAPE_MARK.sub("", f"{classname}::{name}"))


_PYTEST_9_2 = tuple(int(p) for p in re.findall(r"\d+", pytest.__version__)[:2]) >= (9, 2)


@dataclass
class PytestCounts:
    """What pytest's junitxml counted in the suite's totals for batch-command reports.

    pytest adds one to ``passed`` for a passing call, ``failure`` for a failing
    call (``skipped`` for a strict xfail that passed), ``error`` for a failing
    setup or teardown, ``skipped`` for a skip; reruns count nothing; ``tests``
    is their sum less the calls that failed and then also failed teardown.
    Subtracting these keeps the ordinary tests' numbers exactly pytest's.
    """

    passed: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    double_failures: int = 0
    _failed_calls: set[tuple[str, Any]] = field(default_factory=set, repr=False)

    def add(self, report: Any) -> None:
        """Count one ``pytest_runtest_logreport`` report, as pytest's junitxml does."""
        # By item and worker, as pytest's junitxml tells them: under --dist each
        # two workers' reports of the same item interleave.
        key = _item_key(report)
        if report.passed:
            if report.when == "call":
                self.passed += 1
        elif report.failed:
            if report.when == "teardown":
                # A failing teardown after a failing call: one test less before
                # pytest 9.2. After a passing call: one test less since 9.2
                # (pytest#3850, one testcase for the item).
                if (key in self._failed_calls) != _PYTEST_9_2:
                    self.double_failures += 1
            if report.when == "call":
                if hasattr(report, "wasxfail"):
                    self.skipped += 1
                else:
                    self.failures += 1
                self._failed_calls.add(key)
            else:
                self.errors += 1
        elif report.skipped:
            self.skipped += 1
        if report.when == "teardown":
            self._failed_calls.discard(key)

    @property
    def tests(self) -> int:
        """What pytest added to the suite's ``tests``."""
        return self.passed + self.failures + self.errors + self.skipped - self.double_failures


def _item_key(report: Any) -> tuple[str, Any]:
    """*report*'s item as pytest's junitxml keys it: its nodeid and the xdist worker that ran it."""
    return report.nodeid, getattr(report, "node", None)


# -- building testcases -------------------------------------------------------------------


def _bytes_per_char(text: str, limit: int) -> float:
    # Measured on what can be kept at most (head and tail), not on megabytes
    # of output that will be left out anyway.
    window = text if len(text) <= limit else "".join(_head_and_tail(text, limit))
    return _xml_size(window) / len(window) if window else 1.0


class _SizeCurve:
    """The size of a group of outputs that share a limit, as a function of that limit.

    Lengths are sorted, with prefix sums, so each question costs a binary search
    however many outputs there are (100,000 commands have 200,000 of them).
    """

    def __init__(self, outputs: list[tuple[int, float]]) -> None:
        """*outputs*: ``(length, bytes per character)`` of each output."""
        outputs.sort()
        self.lengths = [length for length, _rate in outputs]
        self.full = [0.0]  # sizes of the first i outputs, kept whole, tags included
        self.rates = [0.0]  # their bytes per character
        for length, rate in outputs:
            self.full.append(self.full[-1] + rate * length + _TAG_SIZE)
            self.rates.append(self.rates[-1] + rate)

    def size(self, limit: int) -> float:
        whole = bisect.bisect_right(self.lengths, limit)
        if limit < MIN_CLIP:
            return self.full[whole]  # the others are left out
        clipped = len(self.lengths) - whole
        return self.full[whole] + limit * (self.rates[-1] - self.rates[whole]) + clipped * (_MARKER_SIZE + _TAG_SIZE)


STREAMS = ("stdout", "stderr")


def logged_streams(junit_logging: str) -> tuple[str, ...]:
    """The streams pytest's ``junit_logging`` value writes (``no``, the default: none; ``out-err``, ``all``: both)."""
    return tuple(key for key, tag in (("stdout", "system-out"), ("stderr", "system-err"))
                 if junit_logging in (tag, "out-err", "all"))


def _kind(record: dict[str, Any]) -> str:
    if record["timed_out"]:
        return "timeout"
    if record["signal"] is not None:
        return "signal"
    if record["exit_code"] is None:
        return "crash"  # the worker died under it (see recording._crash_record)
    if record["status"].startswith("left processes behind"):
        return "leftovers"  # -W error
    return "exit code"


def _details(result: CommandResult, record: dict[str, Any], number: int, count: int) -> str:
    lines = [
        f"{attempt_status(record)} · {result.file}:{result.line} · attempt {number} of {count} · "
        f"{record['duration_ms'] / 1000:.3f} s · worker {record['worker']} · started {record['timestamp']}",
        f"command: {result.command}",
    ]
    if record["leftovers"]:
        lines.append("killed leftover processes: " + ", ".join(record["leftovers"]))
    return xml_text("\n".join(lines))


class _Builder:
    """Builds the testcases, in two passes over the results.

    The first (``scale`` None) measures: the size of every output, by limit,
    and of the testcases' structure; :meth:`fit` then finds one scale for all
    limits that keeps the file under its budget; the second pass builds each
    testcase with its output clipped to that scale, to be written at once.
    """

    def __init__(self, *, prefix: str | None, family: str, log_passing: bool, streams: tuple[str, ...] = STREAMS) -> None:
        self.prefix = prefix
        self.family = family
        self.log_passing = log_passing
        self.streams = streams
        self.scale: float | None = None
        self.outputs: dict[int, list[tuple[int, float]]] = {}

    def _output(self, parent: ET.Element, record: dict[str, Any], limit: int) -> None:
        for tag, key in (("system-out", "stdout"), ("system-err", "stderr")):
            text = record[key]
            if not text or key not in self.streams:
                continue
            if self.scale is None:
                self.outputs.setdefault(limit, []).append((len(text), _bytes_per_char(text, limit)))
                continue
            clipped = int(limit * self.scale)
            if clipped < MIN_CLIP and len(text) > clipped:
                continue  # no room left in the file: the JSON results keep it
            ET.SubElement(parent, tag).text = xml_text(clip(text, clipped))

    def testcase(self, result: CommandResult, records: list[dict[str, Any]]) -> ET.Element:
        classname, name = command_address(result.nodeid or "", self.prefix)
        attrs = {
            "classname": xml_text(classname),
            "name": xml_text(name),
            "time": f"{result.attempts_duration_ms / 1000:.3f}",
        }
        if self.family == "xunit1" and result.file is not None:
            # As pytest's: the file, and the 0-based line of the item's location.
            attrs["file"] = xml_text(result.file)
            attrs["line"] = str((result.line or 1) - 1)
        case = ET.Element("testcase", attrs)
        status = result.status
        count = len(records)
        if status in ("passed", "xpassed"):
            earlier, final, tag = records[:-1], records[-1:], "flakyFailure"
        elif status == "failed":
            earlier, final, tag = records[:-1], records[-1:], "rerunFailure"
            last = final[0] if final else None
            if last is not None and not last["success"]:
                failure = ET.SubElement(case, "failure", type=_kind(last), message=xml_text(attempt_status(last)))
                failure.text = _details(result, last, count, count)
            else:
                # Failed around the command: before it could start (setup, a
                # missing cwd...), or after it succeeded (teardown, strict xfail).
                message = result.message or "failed"
                if last is not None:
                    message = f"the command succeeded ({attempt_status(last)}) but its test failed"
                    if result.message and result.message != last["status"]:
                        message += f": {result.message}"
                failure = ET.SubElement(case, "failure", type="error", message=xml_text(message))
                failure.text = xml_text(f"{result.file}:{result.line}: {message}\ncommand: {result.command}")
        elif status == "interrupted":
            earlier, final, tag = records, [], "rerunFailure"
            message = "interrupted: the run was stopped while this command was running"
            last = records[-1] if records else None
            if last is not None and last.get("interrupted"):
                # The attempt that was killed: its run time, output and details are the failure's.
                earlier, final = records[:-1], records[-1:]
                failure = ET.SubElement(case, "failure", type="interrupted",
                                        message=xml_text(f"{message} ({attempt_status(last)})"))
                failure.text = _details(result, last, count, count)
            else:
                failure = ET.SubElement(case, "failure", type="interrupted", message=message)
                failure.text = xml_text(f"{result.file}:{result.line}: interrupted\ncommand: {result.command}")
        else:
            earlier, final, tag = [], records[-1:], ""
            kind = {"xfailed": "pytest.xfail", "not run": "batchrunner.notrun"}.get(status, "pytest.skip")
            message = result.message or status
            if status == "not run" and not message.startswith("not run"):
                message = "not run: the run was stopped before this command started"
            ET.SubElement(case, "skipped", type=kind, message=xml_text(message))
        for number, record in enumerate(earlier, 1):
            message = xml_text(f"{attempt_status(record)} (attempt {number})")
            attempt = ET.SubElement(case, tag, type=_kind(record), message=message)
            ET.SubElement(attempt, "stackTrace").text = _details(result, record, number, count)
            self._output(attempt, record, FAIL_OUTPUT_CHARS)
        for record in final:
            if result.success or status == "xfailed":
                if self.log_passing:
                    self._output(case, record, PASS_OUTPUT_CHARS)
            else:
                self._output(case, record, FAIL_OUTPUT_CHARS)
        return case

    def fit(self, budget: float) -> None:
        """Choose the scale that clips every output measured so that, together, they take about *budget* bytes at most."""
        curves = [(limit, _SizeCurve(outputs)) for limit, outputs in self.outputs.items()]
        self.outputs = {}

        def total(scale: float) -> float:
            return sum(curve.size(int(limit * scale)) for limit, curve in curves)

        scale = 1.0
        if total(scale) > budget:
            # Every limit shrinks by the same factor: failures keep 100 times as
            # much as passes, whose output is the first to be left out.
            low, high = 0.0, 1.0
            for _ in range(30):
                middle = (low + high) / 2
                if total(middle) <= budget:
                    low = middle
                else:
                    high = middle
            scale = low
        self.scale = scale


def _estimated_size(element: ET.Element) -> int:
    """Bytes *element* takes in the file (output is not added yet)."""
    size = 0
    for node in element.iter():
        size += 2 * len(node.tag) + 8 + len(node.text or "") + len(node.tail or "")
        for key, value in node.attrib.items():
            size += len(key) + len(value) + 4
    return size


Rows = Callable[[], Iterable[tuple[CommandResult, list[dict[str, Any]]]]]
"""A fresh stream of ``(result, attempt records)`` at each call, as :meth:`Recorder.results_with_records` gives."""


class _Measure:
    """What the first pass over the results learns: counts, batch files, sizes."""

    def __init__(self, builder: _Builder, rows: Rows, prefix: str | None) -> None:
        self.total = 0
        self.counts = {"failure": 0, "skipped": 0}
        self.classnames: set[str] = set()
        self.structure = 0
        for result, records in rows():
            self.total += 1
            tag = _final_child(result.status)
            if tag:
                self.counts[tag] += 1
            self.classnames.add(_match_key(junit_address(result.nodeid or "", prefix)[0], ""))
            self.structure += _estimated_size(builder.testcase(result, records))


def batch_testcases(
    rows: Rows,
    *,
    prefix: str | None = None,
    family: str = "xunit2",
    log_passing: bool = True,
    streams: tuple[str, ...] = STREAMS,
    other_size: int = 0,
) -> Iterator[ET.Element]:
    """One ``<testcase>`` per result, built and given one at a time.

    *rows* is read twice: once to measure the output, once to build. *other_size*
    is the size of the rest of the file: output is clipped so that the whole
    stays under :data:`SIZE_TARGET`.
    """
    builder = _Builder(prefix=prefix, family=family, log_passing=log_passing, streams=streams)
    measured = _Measure(builder, rows, prefix)
    builder.fit(max(0, SIZE_TARGET - other_size - measured.structure))
    for result, records in rows():
        yield builder.testcase(result, records)


# -- rewriting pytest's file --------------------------------------------------------------


def _final_child(status: str) -> str:
    """The tag :meth:`_Builder.testcase` gives a result's final outcome: ``failure``, ``skipped`` or ``""``."""
    if status in ("failed", "interrupted"):
        return "failure"
    if status in ("passed", "xpassed"):
        return ""
    return "skipped"


def _adjust(suite: dict[str, str], name: str, delta: int) -> None:
    try:
        value = int(suite.get(name, "0"))
    except ValueError:
        return
    suite[name] = str(value + delta)


def _start_tag(tag: str, attrib: dict[str, str]) -> bytes:
    text = ET.tostring(ET.Element(tag, attrib), encoding="unicode", short_empty_elements=False)
    return text[: -len(f"</{tag}>")].encode("utf-8", "replace")


def _serialized(element: ET.Element) -> bytes:
    return ET.tostring(element, encoding="unicode").encode("utf-8", "replace")


def junit_chunks(
    data: bytes | None,
    rows: Rows,
    *,
    counted: PytestCounts | None = None,
    prefix: str | None = None,
    family: str = "xunit2",
    log_passing: bool = True,
    streams: tuple[str, ...] = STREAMS,
    suite_name: str = "pytest",
) -> Iterator[bytes]:
    """pytest's JUnit XML (*data*) with its batch testcases replaced by one testcase per result, as chunks of bytes.

    *counted* is what pytest counted for the batch reports. Without *data* (pytest
    wrote nothing), a new file holds the batch testcases alone. pytest's file is
    read element by element, and the testcases are written as they are built:
    nothing grows with the number of commands but pytest's file itself.
    """
    counted = counted or PytestCounts()
    if not data:
        root = ET.Element("testsuites", name="pytest tests")
        zero = dict.fromkeys(("errors", "failures", "skipped", "tests"), "0")
        ET.SubElement(root, "testsuite", name=suite_name, **zero, time="0.000")
        data = ET.tostring(root)
    # Measure our testcases first (one pass over the results): their number and
    # counts go in the suite's opening tag; batch files' classnames tell
    # pytest's testcases for commands; their size sets how much output fits.
    builder = _Builder(prefix=prefix, family=family, log_passing=log_passing, streams=streams)
    measured = _Measure(builder, rows, prefix)
    total, mine, classnames = measured.total, measured.counts, measured.classnames

    def is_command(element: ET.Element) -> bool:
        return _match_key(element.get("classname", ""), "") in classnames

    # Pass 1 over pytest's file: which suite holds the first command's testcase
    # (ours go in its place), and the size of everything else.
    target, suite_number, other_size, depth = 0, -1, 0, 0
    found = False
    root_is_suite = False
    parents: list[ET.Element] = []
    for event, element in ET.iterparse(io.BytesIO(data), events=("start", "end")):
        if event == "start":
            if depth == 0:
                root_is_suite = element.tag == "testsuite"
                if root_is_suite:
                    suite_number = 0
            elif depth == 1 and element.tag == "testsuite" and not root_is_suite:
                suite_number += 1
            parents.append(element)
            depth += 1
            continue
        depth -= 1
        parents.pop()
        if depth == (1 if root_is_suite else 2):
            if element.tag == "testcase" and is_command(element):
                if not found:
                    target, found = suite_number, True
            else:
                other_size += _estimated_size(element)
            parents[-1].remove(element)
    if suite_number < 0:
        raise ValueError(f"no <testsuite> in the JUnit file (root <{element.tag}>)")

    yield b'<?xml version="1.0" encoding="utf-8"?>'
    builder.fit(max(0, SIZE_TARGET - other_size - measured.structure))
    cases = (builder.testcase(result, records) for result, records in rows())
    inserted = False
    suite_number, depth = -1, 0
    parents = []
    for event, element in ET.iterparse(io.BytesIO(data), events=("start", "end")):
        if event == "start":
            is_suite = element.tag == "testsuite" and (depth == 0 or (depth == 1 and not root_is_suite))
            if depth == 0 or is_suite:
                attrib = dict(element.attrib)
                if is_suite:
                    suite_number += 1
                    if suite_number == target:
                        _adjust(attrib, "tests", total - counted.tests)
                        _adjust(attrib, "failures", mine["failure"] - counted.failures)
                        _adjust(attrib, "errors", -counted.errors)
                        _adjust(attrib, "skipped", mine["skipped"] - counted.skipped)
                yield _start_tag(element.tag, attrib)
            parents.append(element)
            depth += 1
            continue
        depth -= 1
        parents.pop()
        suite_depth = 1 if root_is_suite else 2
        in_target = suite_number == target
        if depth == suite_depth or (depth == 1 and not root_is_suite and element.tag != "testsuite"):
            keep = True
            if element.tag == "testcase" and depth == suite_depth:
                if element.get("name") is None:
                    # pytest leaves a testcase with only a time for the item that
                    # was running when the run was interrupted: invalid for the
                    # schema (name is required), not counted by pytest, empty.
                    keep = False
                elif is_command(element):
                    keep = False
                    if in_target and not inserted:
                        inserted = True
                        for case in cases:
                            yield _serialized(case)
            if keep:
                yield _serialized(element)
            if parents:
                parents[-1].remove(element)
        elif depth < suite_depth:
            # The end of a suite (or of the root).
            if element.tag == "testsuite" and in_target and not inserted:
                inserted = True
                for case in cases:
                    yield _serialized(case)
            yield f"</{element.tag}>".encode()


def rewrite_junit(data: bytes | None, rows: Rows, **options: Any) -> bytes:
    """:func:`junit_chunks` joined: the whole file in memory, for small runs and tests."""
    return b"".join(junit_chunks(data, rows, **options))
