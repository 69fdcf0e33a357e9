"""Results of a batch run: :class:`CommandResult`, the summary, and the :class:`Recorder`.

Plain Python, no pytest import. The plugin feeds the recorder with what each
report carries (on the controller, under xdist); the terminal summary, the JSON
results, the logs and the JUnit rewrite all read the same recorder, so they
agree by construction.

The recorder holds nothing per command in memory: every command and every
attempt record (with its kept output) goes to a spool, a private SQLite
database in a temporary file of ``$TMPDIR``, unlinked as soon as it is open, so
that the operating system removes it when it is closed (or when the process
dies). Writers read it back in one streaming pass, in file order
(:meth:`Recorder.results`, :meth:`Recorder.results_with_records`), so a run of
a million commands needs no more memory than a run of ten. The
spool is optional: when its file cannot be written (a full ``$TMPDIR``), what it
held moves to memory and the run goes on (:attr:`Recorder.spool_problem` says why).

A *command* here is one run of an item: a session may run the same item more
than once (``pytest c.batch c.batch --keep-duplicates``, or xdist's ``--dist
each``, where every worker runs every item). Each run is a result of its own,
counted in the summary; its reruns (pytest-rerunfailures) are its attempts. A
run is known by its nodeid and the worker running it (``"main"`` without
xdist): a worker runs one item at a time, so its reports of a nodeid belong to
the run it started last, and a report that starts an attempt after that run's
final outcome starts the next run (see :meth:`Recorder.begin`).
"""

from __future__ import annotations

import datetime
import os
import pickle
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_batchrunner.process.signals import signal_number

__all__ = ["CommandResult", "Recorder", "SummaryCounter", "original_exit_code", "summarize"]


@dataclass
class CommandResult:
    """The outcome of one command, over all its attempts.

    The first seven fields are the original BatchRunner's, in its order.
    """

    command: str
    success: bool
    exit_code: int
    """The last attempt's exit code, as the original's ``subprocess.run`` gave it: ``-N`` for a command
    killed by signal N, ``-1`` where there is none (a timeout, a command interrupted or never run, a crashed
    worker), with the reason in :attr:`stderr`."""
    stdout: str
    stderr: str
    duration_ms: float
    """The last attempt's time, as in the original (:attr:`attempts_duration_ms` adds every attempt)."""
    timestamp: str | None
    """ISO 8601 start time of the first attempt; ``None`` for a command that never started."""
    file: str | None = None
    line: int | None = None
    attempts: int = 1
    timed_out: bool = False
    signal: str | None = None
    status: str = ""
    """``"passed"``, ``"failed"``, ``"skipped"``, ``"xfailed"``, ``"xpassed"``, ``"not run"`` or ``"interrupted"``."""
    flaky: bool = False
    interrupted: bool = False
    message: str = ""
    """Why it failed or was skipped, in one line."""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    leftovers: list[str] = field(default_factory=list)
    nodeid: str | None = None
    attempt_log: list[dict[str, Any]] = field(default_factory=list)
    """Every attempt: ``attempt``, ``exit_code``, ``signal``, ``timed_out``, ``duration_ms``, ``timestamp``..."""
    attempts_duration_ms: float | None = None
    """Time spent running the command, all attempts added (retry delays excluded); ``duration_ms`` if not given."""
    run: int = 1
    """Which run of its item this is: 2, 3... when the session ran the same item again (``--keep-duplicates``,
    xdist's ``--dist each``); such results share the nodeid, each with its own attempts."""

    def __post_init__(self) -> None:
        if self.attempts_duration_ms is None:
            self.attempts_duration_ms = self.duration_ms

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data."""
        return asdict(self)


@dataclass
class CommandInfo:
    """What the recorder knows of a command without reading its records."""

    nodeid: str
    command: str
    file: str | None
    line: int | None
    attempts: int
    """Attempt records received so far."""


# Writes (or bytes written) between two commits of the spool: a commit is cheap,
# and keeps the transaction (and SQLite's dirty pages) small. The transaction's
# writes are kept until its commit, to be replayed if the spool moves to memory.
_COMMIT_EVERY = 1000
_COMMIT_BYTES = 4 << 20
# SQLite's page cache for the spool, in KiB (negative: a size, not pages).
_CACHE_KIB = 2048
# Runs kept in memory after their final outcome (the most recent ones): a
# failing teardown reports after the outcome of its call.
_ID_CACHE = 256
_PROBLEM = "the results spool could not be written in the temporary folder ({}): the run went on with it in memory"
_ORDER = "coalesce(file, ''), coalesce(line, 0), nodeid, run"
_ORDER_JOINED = "coalesce(c.file, ''), coalesce(c.line, 0), c.nodeid, c.run"
_SCHEMA = f"""
CREATE TABLE command (
    id INTEGER PRIMARY KEY,
    nodeid TEXT NOT NULL,
    run INTEGER NOT NULL DEFAULT 1,
    expected INTEGER NOT NULL DEFAULT 0,
    command TEXT NOT NULL DEFAULT '',
    file TEXT,
    line INTEGER,
    outcome TEXT,
    message TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    seq INTEGER
);
CREATE UNIQUE INDEX command_run ON command (nodeid, run);
CREATE INDEX command_order ON command ({_ORDER});
CREATE TABLE attempt (
    id INTEGER PRIMARY KEY,
    command_id INTEGER NOT NULL,
    record BLOB NOT NULL,
    stdout BLOB NOT NULL,
    stderr BLOB NOT NULL
);
CREATE INDEX attempt_command ON attempt (command_id, id);
"""


def _memory_db() -> sqlite3.Connection:
    """A spool in memory, its temporary tables and sorts too (``$TMPDIR`` is full)."""
    db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA temp_store = MEMORY")
    return db


def _storable(value: Any) -> Any:
    """*value*, with a str's surrogate escapes (undecodable bytes of a file name) as ``\\xNN``."""
    if not isinstance(value, str):
        return value
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        return value.encode("utf-8", "backslashreplace").decode("ascii")


class Recorder:
    """Collects attempt records and final outcomes in a spool, then streams results and the summary.

    Listeners (``on_start(nodeid, command)``, ``on_attempt(record, outcome)``) let
    the audit log and job log write as the run goes; writers read the results at
    the end with :meth:`results` or :meth:`results_with_records` (one pass, in
    file and line order, one command at a time), and :meth:`summary`.

    Call it from one thread at a time (pytest's hooks do). :meth:`close` removes
    the spool; a closed recorder keeps its summary but no longer has results.
    """

    def __init__(self, mode: str = "sequential", max_retries: int = 0, workers: int = 1) -> None:
        self.mode = mode
        self.max_retries = max_retries
        self.workers = workers
        self.started = time.time()
        self.finished: float | None = None
        self.interrupted = False
        self.listeners: list[Any] = []
        self._writes = 0
        self._tx: list[tuple[str, tuple[Any, ...]]] | None = []
        """The writes of the open transaction (None once the spool is in memory)."""
        self._tx_bytes = 0
        self.spool_problem: str | None = None
        """Why the spool is in memory, or None."""
        self._path: str | None = None
        """The spool's file while it has a name (where an open file cannot be unlinked: Windows)."""
        try:
            self._db = self._open_file()
        except (OSError, sqlite3.OperationalError) as exc:
            self._db = _memory_db()
            self._tx = None
            self.spool_problem = _PROBLEM.format(exc)
        self._db.executescript(_SCHEMA)
        # The runs in memory, by (nodeid, worker): those in flight, and the most
        # recent finished ones (_done, oldest first); their rows, in _claimed.
        self._live: dict[tuple[str, str], _Run] = {}
        self._done: dict[tuple[str, str], None] = {}
        self._claimed: set[int] = set()
        # Runs whose worker died before their rerun: it may come from any worker.
        self._orphans: dict[str, list[_Run]] = {}
        # Attempts pytest started (logstart) that no report has spoken of yet, by nodeid.
        self._pending: dict[str, int] = {}
        self._count = 0
        self._active = False
        self._sequenced = False
        self._summary: tuple[tuple[Any, ...], dict[str, Any]] | None = None

    # -- the spool ------------------------------------------------------------------------

    def _open_file(self) -> sqlite3.Connection:
        # A file, not SQLite's "" temporary database: a commit writes the file, so a
        # write the disk refuses later leaves the committed spool readable (and movable to memory).
        fd, path = tempfile.mkstemp(prefix="batchrunner-spool-", suffix=".sqlite")
        os.close(fd)
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            # A journal (in memory) so that a write the disk refuses is rolled back, not left half done.
            db.execute("PRAGMA journal_mode = MEMORY")
            db.execute("PRAGMA synchronous = OFF")
        finally:
            try:
                os.unlink(path)
            except OSError:
                self._path = path  # removed on close
        return db

    def _write(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        cursor = self._write_uncommitted(sql, args)
        self._commit_if_due()
        return cursor

    def _write_uncommitted(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        # Asked of SQLite, not counted: a Ctrl+C between two statements must not
        # leave a transaction that the next write would try to begin again.
        if not self._db.in_transaction:
            self._db.execute("BEGIN")
            self._writes = 0
        self._summary = None
        cursor = self._execute(sql, args)
        self._writes += 1
        if self._tx is not None:
            self._tx.append((sql, args))
            self._tx_bytes += sum(len(a) for a in args if isinstance(a, (bytes, str)))
        return cursor

    def _commit_if_due(self) -> None:
        if self._writes >= _COMMIT_EVERY or self._tx_bytes >= _COMMIT_BYTES:
            try:
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._to_memory(exc)
            if self._tx is not None:
                self._tx.clear()
                self._tx_bytes = 0

    def _execute(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._statement(sql, args)
        except sqlite3.OperationalError as exc:  # e.g. "database or disk is full"
            self._to_memory(exc)
            return self._statement(sql, args)

    def _statement(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except UnicodeEncodeError:
            # A file name that is not UTF-8 reaches pytest's ids as surrogate
            # escapes, which SQLite cannot store: its bytes are kept as \xNN.
            return self._db.execute(sql, tuple(_storable(a) for a in args))

    def _to_memory(self, exc: sqlite3.OperationalError) -> None:
        """The spool's file failed: go on in memory, from its last commit and the writes since (raises *exc* if in memory)."""
        if self._tx is None:
            raise exc
        old, self._db = self._db, _memory_db()
        try:
            if old.in_transaction:
                old.execute("ROLLBACK")
            old.backup(self._db)
        finally:
            self._close(old)
        writes, self._tx = self._tx, None
        for sql, args in writes:
            self._statement(sql, args)
        self.spool_problem = _PROBLEM.format(exc)

    def _close(self, db: sqlite3.Connection) -> None:
        db.close()
        if self._path is not None:
            try:
                os.unlink(self._path)
            except OSError:
                pass
            self._path = None

    def _new_run(self, nodeid: str) -> _Run:
        # The first row of *nodeid* that no run has claimed (collection expects
        # one per run it planned), else a new row: one lookup, as for any command.
        rows = self._execute(
            "SELECT id, run, attempts, outcome FROM command WHERE nodeid = ? ORDER BY run", (nodeid,)
        ).fetchall()
        for command_id, _number, attempts, outcome in rows:
            if not attempts and outcome is None and command_id not in self._claimed:
                return _Run(command_id)
        number = rows[-1][1] + 1 if rows else 1
        if self._count >= 0:  # else it is recounted when asked
            self._count += 1
        cursor = self._write("INSERT INTO command (nodeid, run) VALUES (?, ?)", (nodeid, number))
        return _Run(cursor.lastrowid)  # type: ignore[arg-type]

    def _run(self, nodeid: str, worker: str, *, new: bool) -> _Run:
        """The run of *nodeid* on *worker*; with *new*, a finished one is followed by the next run."""
        key = (nodeid, worker)
        run = self._live.get(key)
        if run is not None and not (new and run.finished):
            return run
        if run is not None:
            self._forget(key)
        orphans = self._orphans.get(nodeid)
        if orphans:
            run = orphans.pop(0)
            if not orphans:
                del self._orphans[nodeid]
        else:
            run = self._new_run(nodeid)
            self._claimed.add(run.id)
        self._live[key] = run
        return run

    def _forget(self, key: tuple[str, str]) -> None:
        run = self._live.pop(key)
        self._done.pop(key, None)
        self._claimed.discard(run.id)

    def _finished(self, key: tuple[str, str], run: _Run) -> None:
        run.finished = True
        self._done[key] = None
        if len(self._done) > _ID_CACHE:
            oldest = next(iter(self._done))
            self._forget(oldest)

    def _started(self, nodeid: str) -> None:
        # A report spoke of an attempt that pytest's logstart announced.
        pending = self._pending.get(nodeid)
        if pending is not None:
            if pending > 1:
                self._pending[nodeid] = pending - 1
            else:
                del self._pending[nodeid]

    def close(self) -> None:
        """Remove the spool (again is harmless); the summary is counted first, and kept."""
        if self._db is not None:
            if self._summary is None:
                self.summary()
            self._close(self._db)
            self._db = None  # type: ignore[assignment]

    # -- what the plugin tells it ---------------------------------------------------------

    def expect(self, nodeid: str, command: str, file: str | None, line: int | None) -> None:
        """Announce a collected command, so that one that never ran is still reported.

        Once per run planned: announced twice (an item collected twice, or run
        by two workers under ``--dist each``), it is two commands.
        """
        values = (nodeid, command, file, line)
        cursor = self._write(
            "INSERT INTO command (nodeid, command, file, line, expected) VALUES (?, ?, ?, ?, 1) "
            "ON CONFLICT (nodeid, run) DO UPDATE SET command = excluded.command, file = excluded.file, "
            "line = excluded.line, expected = 1 WHERE expected = 0",
            values,
        )
        if not cursor.rowcount:
            # Its first run is expected already: this is one more.
            self._write(
                "INSERT INTO command (nodeid, run, command, file, line, expected) "
                "SELECT ?, max(run) + 1, ?, ?, ?, 1 FROM command WHERE nodeid = ?",
                (nodeid, command, file, line, nodeid),
            )
        self._count = -1  # recounted when asked: the insert may have been an update

    def start(self, nodeid: str) -> None:
        """pytest started an attempt of *nodeid* (its logstart; the worker is not known yet)."""
        # In memory: only the attempts that no report has spoken of yet are there.
        self._pending[nodeid] = self._pending.get(nodeid, 0) + 1
        self._active = True
        if self.listeners:
            row = self._execute(
                "SELECT command FROM command WHERE nodeid = ? ORDER BY run LIMIT 1", (nodeid,)
            ).fetchone()
            for listener in self.listeners:
                listener.on_start(nodeid, row[0] if row is not None and row[0] else nodeid)

    def begin(self, nodeid: str, worker: str = "main") -> None:
        """An attempt of *nodeid* begins on *worker* (the first report of it, pytest's setup report).

        It is the next attempt of that worker's run of *nodeid* while the run has
        no final outcome (a rerun), else the first attempt of a new run. Without
        calls to :meth:`begin`, :meth:`attempt` decides the same from the reports.
        """
        self._started(nodeid)
        self._run(nodeid, worker, new=True)
        self._active = True

    def attempt(self, record: dict[str, Any], outcome: str, worker: str = "main") -> None:
        """A finished attempt; *outcome* is the report's (``"rerun"`` for one that will be retried)."""
        nodeid = record["nodeid"]
        # The summary's max_retries: the highest of the commands' own (retries=, the flaky marker, --reruns).
        self.max_retries = max(self.max_retries, int(record.get("max_attempts") or 1) - 1)
        key = (nodeid, worker)
        if key not in self._live or self._live[key].finished:
            self._started(nodeid)  # a run begins here: no begin() announced it
        command_id = self._run(nodeid, worker, new=True).id
        self._write(
            "UPDATE command SET command = ?, file = ?, line = ?, attempts = attempts + 1 WHERE id = ?",
            (record["command"], record["file"], record["line"], command_id),
        )
        # The output apart, so that counting (the summary) never reads it.
        meta = {k: v for k, v in record.items() if k not in ("stdout", "stderr")}
        self._write(
            "INSERT INTO attempt (command_id, record, stdout, stderr) VALUES (?, ?, ?, ?)",
            (command_id, pickle.dumps(meta, pickle.HIGHEST_PROTOCOL), _encode(record["stdout"]),
             _encode(record["stderr"])),
        )
        self._active = True
        for listener in self.listeners:
            listener.on_attempt(record, outcome)

    def outcome(self, nodeid: str, outcome: str, message: str = "", worker: str = "main") -> None:
        """The final outcome of *nodeid*'s run on *worker* (``passed``, ``failed``, ``skipped``, ``xfailed``, ``xpassed``).

        Given again (a teardown that failed after its call), it replaces the first.
        """
        key = (nodeid, worker)
        if key not in self._live:
            self._started(nodeid)
        run = self._run(nodeid, worker, new=False)
        self._write("UPDATE command SET outcome = ?, message = ? WHERE id = ?", (outcome, message, run.id))
        self._finished(key, run)
        self._active = True

    def fail_unfinished(self, message: str) -> None:
        """Count every command without a final outcome as failed with *message* (a run that ended without a stop lost them)."""
        self._write("UPDATE command SET outcome = 'failed', message = ? WHERE outcome IS NULL", (message,))

    def lost(self, nodeid: str, worker: str) -> None:
        """*worker* died while running *nodeid*: a rerun of that run may come from any other worker."""
        key = (nodeid, worker)
        run = self._live.get(key)
        if run is not None and not run.finished:
            del self._live[key]
            self._orphans.setdefault(nodeid, []).append(run)

    # -- questions about single commands (each an index lookup) ---------------------------

    def __len__(self) -> int:
        """The number of commands known (expected or reported)."""
        if self._count < 0:
            self._count = self._execute("SELECT count(*) FROM command").fetchone()[0]
        return self._count

    def __contains__(self, nodeid: object) -> bool:
        return self._execute("SELECT 1 FROM command WHERE nodeid = ?", (nodeid,)).fetchone() is not None

    @property
    def active(self) -> bool:
        """Whether any command started, was reported or got an outcome."""
        return self._active

    def _row(self, nodeid: str, worker: str | None, columns: str) -> tuple[Any, ...] | None:
        # The row of *worker*'s run of *nodeid* when it is in memory, else *nodeid*'s first.
        run = self._live.get((nodeid, worker)) if worker is not None else None
        if run is not None:
            return self._execute(f"SELECT {columns} FROM command WHERE id = ?", (run.id,)).fetchone()
        return self._execute(
            f"SELECT {columns} FROM command WHERE nodeid = ? ORDER BY run LIMIT 1", (nodeid,)
        ).fetchone()

    def info(self, nodeid: str, worker: str | None = None) -> CommandInfo | None:
        """What is known of *nodeid* (of its run on *worker*, if given and in flight), without its records;
        ``None`` for an unknown command."""
        row = self._row(nodeid, worker, "command, file, line, attempts")
        return None if row is None else CommandInfo(nodeid, *row)

    def files(self) -> int:
        """The number of distinct batch files of the known commands."""
        return self._execute("SELECT count(DISTINCT file) FROM command").fetchone()[0]

    def seq(self, nodeid: str, worker: str | None = None) -> int:
        """*nodeid*'s position (1-based) among the commands in results order (of its run on *worker*, if
        given and in flight); a command first heard of after the first call gets the next free number."""
        if not self._sequenced:
            # Once, when every command is known; a temporary table keeps it one sort.
            self._sequenced = True
            # In one transaction, so that the spool moving to memory replays the three together.
            numbered = f"CREATE TEMP TABLE numbered AS SELECT id, row_number() OVER (ORDER BY {_ORDER}) AS n FROM command"
            self._write_uncommitted(numbered, ())
            self._write_uncommitted("UPDATE command SET seq = (SELECT n FROM numbered WHERE numbered.id = command.id)", ())
            self._write_uncommitted("DROP TABLE numbered", ())
            self._commit_if_due()
        row = self._row(nodeid, worker, "id, seq")
        if row is not None and row[1] is not None:
            return row[1]
        command_id = row[0] if row is not None else self._new_run(nodeid).id
        number = self._execute("SELECT coalesce(max(seq), 0) + 1 FROM command").fetchone()[0]
        self._write("UPDATE command SET seq = ? WHERE id = ?", (number, command_id))
        return number

    # -- reading it back ------------------------------------------------------------------

    def results_with_records(self, *, output: bool = True) -> Iterator[tuple[CommandResult, list[dict[str, Any]]]]:
        """``(result, attempt records)`` per command, in file and line order, one at a time.

        A record is :meth:`~pytest_batchrunner.plugin.items.CommandItem.attempt_record`'s
        dict, with the attempt's kept output (empty strings with ``output=False``,
        which reads less). Nothing is held between two steps.
        """
        # One joined pass (commands in file order, each one's attempts in order),
        # not a query per command: a third of the time of writing 100,000 results.
        columns = "a.record, a.stdout, a.stderr" if output else "a.record, NULL, NULL"
        rows = self._execute(
            "SELECT c.id, c.nodeid, c.command, c.file, c.line, c.outcome, c.message, c.attempts, c.run, "
            f"{columns} FROM command c LEFT JOIN attempt a ON a.command_id = c.id ORDER BY {_ORDER_JOINED}, a.id"
        )
        # Attempts started that no report spoke of: each makes one of its
        # nodeid's unclaimed runs a running one (interrupted, not "not run").
        pending = dict(self._pending)
        in_flight = self._claimed | {run.id for runs in self._orphans.values() for run in runs}

        def running(row: tuple[Any, ...], records: list[dict[str, Any]]) -> bool:
            if row[0] in in_flight:
                return True
            left = pending.get(row[1], 0)
            if left and row[5] is None and not records:
                pending[row[1]] = left - 1
                return True
            return False

        current: tuple[Any, ...] | None = None
        records: list[dict[str, Any]] = []
        for row in rows:
            if current is None or row[0] != current[0]:
                if current is not None:
                    yield _result(current, records, running(current, records), self.interrupted), records
                current, records = row[:9], []
            blob = row[9]
            if blob is not None:
                out, err = row[10], row[11]
                records.append({**pickle.loads(blob), "stdout": _decode(out) if out is not None else "",
                                "stderr": _decode(err) if err is not None else ""})
        if current is not None:
            yield _result(current, records, running(current, records), self.interrupted), records

    def results(self, *, output: bool = True) -> Iterator[CommandResult]:
        """One :class:`CommandResult` per command, in file and line order, one at a time (a streaming pass).

        With ``output=False``, ``stdout`` and ``stderr`` are empty (the rest is exact).
        """
        for result, _records in self.results_with_records(output=output):
            yield result

    def summary(self, results: Iterable[CommandResult] | None = None) -> dict[str, Any]:
        """The BatchRunner summary dict (original keys first).

        Without *results*, it is counted from the spool in one pass that reads no
        output (and kept until the recorder changes).
        """
        end = self.finished if self.finished is not None else time.time()
        wall = end - self.started
        if results is not None:
            return summarize(results, wall_seconds=wall, mode=self.mode, max_retries=self.max_retries,
                             workers=self.workers, interrupted=self.interrupted)
        key = (self.interrupted, self.finished)
        if self._summary is not None and (self._summary[0] == key or self._db is None):
            return dict(self._summary[1])
        counter = SummaryCounter()
        for result in self.results(output=False):
            counter.add(result)
        summary = counter.summary(wall_seconds=wall, mode=self.mode, max_retries=self.max_retries,
                                  workers=self.workers, interrupted=self.interrupted)
        self._summary = (key, summary)
        return dict(summary)

    def failed(self) -> Iterator[CommandResult]:
        """The failed and interrupted commands, in file order, one at a time."""
        for result in self.results():
            if result.status in ("failed", "interrupted"):
                yield result


class _Run:
    """A run in memory: its row in the spool, and whether it has its final outcome."""

    __slots__ = ("finished", "id")

    def __init__(self, command_id: int) -> None:
        self.id = command_id
        self.finished = False


def _encode(text: str) -> bytes:
    # surrogatepass: whatever string a record holds comes back as it was.
    return text.encode("utf-8", "surrogatepass")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


class SummaryCounter:
    """The summary's counters, fed one result at a time: memory does not grow with the run."""

    def __init__(self) -> None:
        self.total = self.ran = self.successful = self.failed = 0
        self.timed_out = self.flaky = self.reruns = self.skipped = self.not_run = 0
        self.durations = 0
        self.duration_sum = 0.0
        self.duration_min: float | None = None
        self.duration_max: float | None = None

    def add(self, r: CommandResult) -> None:
        """Count *r*."""
        self.total += 1
        if r.status in ("passed", "failed", "xpassed", "interrupted"):
            self.ran += 1
        if r.success:
            self.successful += 1
        if r.status in ("failed", "interrupted"):
            self.failed += 1
        if r.attempt_log:
            d = r.duration_ms
            self.durations += 1
            self.duration_sum += d
            self.duration_min = d if self.duration_min is None else min(self.duration_min, d)
            self.duration_max = d if self.duration_max is None else max(self.duration_max, d)
        if r.timed_out and not r.success:
            self.timed_out += 1
        if r.flaky:
            self.flaky += 1
        self.reruns += max(0, r.attempts - 1)
        if r.status in ("skipped", "xfailed"):
            self.skipped += 1
        if r.status == "not run":
            self.not_run += 1

    def summary(
        self, *, wall_seconds: float, mode: str, max_retries: int, workers: int = 1, interrupted: bool = False
    ) -> dict[str, Any]:
        """The summary dict of what was counted.

        ``success_rate`` is the percentage of successful commands among those that
        ran to an outcome (skipped and never-run commands are not counted), not
        rounded, as the original's (1,999 of 2,000 is ``99.95``, never ``100.0``);
        ``None`` when no command ran (every one skipped, deselected or not run). Command durations are the last attempt's, as the
        original's.
        """
        n = self.durations
        return {
            "total_commands": self.total,
            "successful": self.successful,
            "failed": self.failed,
            "success_rate": 100.0 * self.successful / self.ran if self.ran else None,
            "total_duration_ms": round(wall_seconds * 1000, 3),
            "avg_command_duration_ms": round(self.duration_sum / n, 3) if n else 0.0,
            "min_command_duration_ms": round(self.duration_min, 3) if self.duration_min is not None else 0.0,
            "max_command_duration_ms": round(self.duration_max, 3) if self.duration_max is not None else 0.0,
            "mode": mode,
            "max_retries": max_retries,
            "workers": workers,
            "timed_out": self.timed_out,
            "flaky": self.flaky,
            "reruns": self.reruns,
            "skipped": self.skipped,
            "not_run": self.not_run,
            "interrupted": interrupted,
        }


def summarize(
    results: Iterable[CommandResult],
    *,
    wall_seconds: float,
    mode: str,
    max_retries: int,
    workers: int = 1,
    interrupted: bool = False,
) -> dict[str, Any]:
    """Compute the summary of *results* (any iterable, read once); see :meth:`SummaryCounter.summary`."""
    counter = SummaryCounter()
    for r in results:
        counter.add(r)
    return counter.summary(
        wall_seconds=wall_seconds, mode=mode, max_retries=max_retries, workers=workers, interrupted=interrupted
    )


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


_LOGGED = ("attempt", "success", "exit_code", "signal", "timed_out", "timeout", "status",
           "duration_ms", "timestamp", "started", "worker", "host", "leftovers")


def _result(row: tuple[Any, ...], records: list[dict[str, Any]], running: bool, interrupted: bool) -> CommandResult:
    _id, nodeid, command, file, line, outcome, message, _attempts, run = row
    last = records[-1] if records else None
    if outcome is None:
        # An attempt was recorded: it ran, whatever stopped the run (-x, Ctrl+C).
        outcome = "interrupted" if records or (running and interrupted) else "not run"
    success = outcome in ("passed", "xpassed")
    # An attempt killed as the run stopped says so (the key is left out of the others).
    attempt_log = [{k: r.get(k) for k in _LOGGED} | ({"interrupted": True} if r.get("interrupted") else {})
                   for r in records]
    if not message and last is not None and not success:
        message = last["status"]
    stderr = last["stderr"] if last else ""
    exit_code = original_exit_code(last)
    if exit_code == -1 and not success:
        # The original's convention for a timeout: -1, and the reason in stderr.
        reason = _reason(last, outcome, message)
        if reason:
            stderr = (stderr if not stderr or stderr.endswith("\n") else stderr + "\n") + reason + "\n"
    return CommandResult(
        command=command or (last["command"] if last else nodeid),
        success=success,
        exit_code=exit_code,
        stdout=last["stdout"] if last else "",
        stderr=stderr,
        duration_ms=last["duration_ms"] if last else 0.0,
        timestamp=records[0]["timestamp"] if records else None,
        file=file,
        line=line,
        attempts=len(records),
        timed_out=bool(last and last["timed_out"]),
        signal=last["signal"] if last else None,
        status=outcome,
        flaky=success and len(records) > 1,
        interrupted=outcome == "interrupted",
        message=message,
        stdout_bytes=last["stdout_bytes"] if last else 0,
        stderr_bytes=last["stderr_bytes"] if last else 0,
        leftovers=[p for r in records for p in r["leftovers"]],
        nodeid=nodeid,
        attempt_log=attempt_log,
        attempts_duration_ms=round(sum(r["duration_ms"] for r in records), 3),
        run=run,
    )


def original_exit_code(record: dict[str, Any] | None) -> int:
    """The exit code the original's ``subprocess.run`` would have given for *record*'s attempt."""
    if record is None or record["timed_out"] or record.get("interrupted"):
        return -1
    if record["exit_code"] is not None:
        return int(record["exit_code"])
    number = signal_number(record["signal"])
    return -number if number else -1


def _reason(record: dict[str, Any] | None, outcome: str, message: str) -> str:
    """Why a failed command has no exit code, in the original's words where it had some."""
    if record is not None and record["timed_out"]:
        seconds = record.get("timeout")
        return f"Command timed out after {seconds:g} seconds" if seconds else record["status"]
    if outcome == "not run":
        return "Command not run: the run was stopped before it started" if not message else f"Command not run: {message}"
    if outcome == "interrupted":
        return "Command interrupted: the run was stopped while it ran"
    return record["status"] if record is not None else message

