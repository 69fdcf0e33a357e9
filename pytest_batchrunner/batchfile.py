"""Parse ``.batch`` files into :class:`CommandSpec` objects.

Plain Python, no pytest import: the pytest collector, the Python API and the
command line all read batch files through :func:`parse_batch_file`.

The format:

* one command per line, run by ``/bin/sh -c`` exactly as written;
* blank lines and lines whose first non-blank character is ``#`` are skipped;
* a line ending in an odd number of backslashes continues on the next line; the
  physical lines are handed to the shell joined by newlines, so the shell does
  the backslash-newline removal itself;
* CRLF line endings and a UTF-8 byte order mark are accepted;
* a trailing ``# batch: key=value ...`` comment (ignored by the shell) holds
  per-line settings, and a line holding only ``# batch: ...`` sets the defaults
  for the lines after it, until the next such line.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import shlex
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_batchrunner.values import non_negative_float, non_negative_int, share, timeout_seconds

__all__ = [
    "BatchFileError",
    "CommandSpec",
    "LineSettings",
    "display_command",
    "item_names",
    "split_nodeid",
    "one_line",
    "printable",
    "parse_batch_file",
    "parse_batch_text",
    "read_batch_file",
    "not_a_regular_file",
]

_BOM = b"\xef\xbb\xbf"
_DIRECTIVE = re.compile(r"batch:(?=\s|$)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class BatchFileError(ValueError):
    """A batch file cannot be read; the message names the file, the line and the problem."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, problem: str) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class LineSettings:
    """Settings from ``# batch:`` comments; ``None`` means "not set on this line"."""

    timeout: float | None = None
    timeout_share: float | None = None
    """``timeout=300%``: 3.0, a share of the command's usual duration (see the plugin's relative timeouts)."""
    retries: int | None = None
    retry_delay: float | None = None
    retry_on: tuple[int, ...] | None = None
    expect: int | None = None
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    skip: str | None = None
    xfail: str | None = None
    tags: tuple[str, ...] = ()
    group: str | None = None
    sequential: bool = False

    def over(self, defaults: LineSettings) -> LineSettings:
        """These settings, falling back to *defaults* key by key (``env`` and ``tags`` merge)."""
        merged = {}
        if self.timeout is not None or self.timeout_share is not None:
            # A line's own timeout, absolute or relative, replaces the default's, whichever kind it is.
            defaults = dataclasses.replace(defaults, timeout=None, timeout_share=None)
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(defaults, f.name)
            if f.name == "env":
                names = {name for name, _ in mine}
                merged[f.name] = tuple(kv for kv in theirs if kv[0] not in names) + mine
            elif f.name == "tags":
                merged[f.name] = tuple(dict.fromkeys(theirs + mine))
            elif f.name == "sequential":
                merged[f.name] = mine or theirs
            else:
                merged[f.name] = theirs if mine is None else mine
        return LineSettings(**merged)


@dataclass(frozen=True)
class CommandSpec:
    """One command of a batch file.

    ``command`` is the text handed to ``/bin/sh -c``, exactly as written (physical
    lines joined by ``\\n``, carriage returns removed). ``display`` is the same
    command on one line without its ``# batch:`` comment: what item names are
    made of.
    """

    path: str
    line: int
    command: str
    display: str
    settings: LineSettings = field(default_factory=LineSettings)
    reported: str = ""
    """The command as every report gives it: as written, without its ``# batch:`` comment (default: ``command``)."""

    def __post_init__(self) -> None:
        if not self.reported:
            object.__setattr__(self, "reported", self.command)


def parse_batch_file(path: str | os.PathLike[str]) -> list[CommandSpec]:
    """Read and parse a batch file.

    Raises :class:`FileNotFoundError` for a missing file and
    :class:`BatchFileError` for a file that is not valid UTF-8 or holds a bad line.
    """
    return parse_batch_text(read_batch_file(path), path)


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def not_a_regular_file(path: str | os.PathLike[str]) -> str | None:
    """What *path* is when it is not a regular file (``"a FIFO"``...), following symlinks; else ``None``.

    A missing path is ``None``: reading it gives the usual :class:`FileNotFoundError`.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return "a symbolic link loop" if exc.errno == errno.ELOOP else None
    return _kind(mode)


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def read_batch_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a batch file, which must be a regular file (symlinks followed).

    A FIFO would block the reader forever and ``/dev/zero`` never ends: both are
    a :class:`BatchFileError`, decided on the opened file itself (opened without
    blocking), so nothing can swap it in between.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise BatchFileError(path, None, f"not a regular file ({kind}); batch files must be regular files")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def parse_batch_text(
    data: bytes | str,
    path: str | os.PathLike[str] = "<commands>",
    *,
    check_tag: Callable[[str], str | None] | None = None,
) -> list[CommandSpec]:
    """Parse the content of a batch file (bytes are decoded as strict UTF-8).

    *check_tag*, if given, is asked about each name of a ``tags=`` where it is
    written: what it returns, if not ``None``, is why that name cannot be a tag
    (the pytest plugin refuses markers that something gives a meaning to), and
    becomes a :class:`BatchFileError` for that line.
    """
    if isinstance(data, bytes):
        text = _decode(data, path)
    else:
        text = data[1:] if data.startswith("\ufeff") else data
    path = os.fspath(path)
    specs: list[CommandSpec] = []
    defaults = LineSettings()
    physical = text.split("\n")
    if physical and physical[-1] == "":
        physical.pop()
    i = 0
    while i < len(physical):
        start = i
        raw = physical[i].rstrip("\r")
        i += 1
        if "\x00" in raw:
            raise BatchFileError(path, start + 1, "contains a NUL byte, which no shell command can hold")
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            body = stripped[1:].lstrip()
            if _DIRECTIVE.match(body):
                defaults = _parse_settings(body[len("batch:"):], path, start + 1, check_tag)
            continue
        parts = [raw]
        while _continues(parts[-1]):
            if i >= len(physical):
                raise BatchFileError(
                    path, start + 1, "the last line ends with a backslash but no line follows it"
                )
            nxt = physical[i].rstrip("\r")
            if "\x00" in nxt:
                raise BatchFileError(path, i + 1, "contains a NUL byte, which no shell command can hold")
            parts.append(nxt)
            i += 1
        command = "\n".join(parts).strip() if len(parts) > 1 else raw.strip()
        # Fast path (the common line): no '#', so no settings comment to look for.
        if "#" in command:
            body, settings_text = _split_settings_comment(command)
        else:
            body, settings_text = command, None
        settings = defaults
        if settings_text is not None:
            settings = _parse_settings(settings_text, path, start + 1, check_tag).over(defaults)
        display = one_line(body).strip() if len(parts) > 1 else body
        specs.append(CommandSpec(path, start + 1, command, display or command, settings, body or command))
    return specs


def display_command(command: str) -> str:
    """*command* as :attr:`CommandSpec.display` shows it: on one line, without its ``# batch:`` comment.

    For reports that hold only the command's text (the records carry ``command``).
    """
    body = _split_settings_comment(command)[0] if "#" in command else command
    return (one_line(body).strip() if "\n" in body else body) or command


def one_line(command: str) -> str:
    """*command* on one line: each backslash-newline and the indentation after it become one space."""
    return re.sub(r"[ \t]*\\\n\s*", " ", command).replace("\n", " ")


_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    r"""*text* with control characters (C0 but tab, DEL, C1) as ``\xNN``: safe to show on a terminal.

    A command or a file name holding ESC or BEL could otherwise retitle the
    terminal window or move its cursor. A file name's bytes that are not UTF-8
    (surrogate escapes in Python) show as ``\xNN`` too: no report, terminal or
    pytest-xdist message can encode them as they are.
    """
    if _CONTROLS.search(text) is None:
        return text
    return _CONTROLS.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, escaped by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}"


_ID_BRACKETS = str.maketrans("[]", "()")


def item_names(specs: list[CommandSpec]) -> list[str]:
    """Unique, deterministic item names for *specs*, in order.

    The name is the command as displayed, control characters escaped
    (:func:`printable`), with two changes so that every id round-trips through
    pytest's parsing of ids (``pytest "file.batch::<name>"``, ``--deselect``,
    the ``--lf`` cache) on every pytest: ``::`` (where pytest splits an id)
    becomes ``: :``, a leading ``:`` gets a space before it (``: x`` is
    `` : x``: the id's ``::`` is never followed by a ``:``, so
    :func:`split_nodeid` finds it), and ``[`` / ``]`` (pytest 9.2 reads ``[...]`` as
    parameters, and shows an id with a ``[`` but no final ``]`` with a stray
    one) become ``(`` / ``)``. A repeated name gets `` (2)``, `` (3)``... in the
    order of the file, so inserting other lines never renames it.
    """
    seen: dict[str, int] = {}
    names = []
    for spec in specs:
        base = re.sub(r"^(?=:)|:(?=:)", lambda m: m.group() + " ", printable(spec.display)).translate(_ID_BRACKETS)
        count = seen.get(base, 0) + 1
        seen[base] = count
        name = base if count == 1 else f"{base} ({count})"
        while count > 1 and name in seen:  # "x (2)" was itself a command
            count += 1
            name = f"{base} ({count})"
        # Remember how far the search went: the names skipped stay taken, so the
        # next repeat starts after them (thousands of lines named "x (2)",
        # "x (3)"... would otherwise make this quadratic).
        seen[base] = count
        seen.setdefault(name, 1)
        names.append(name)
    return names


def split_nodeid(nodeid: str) -> tuple[str, str]:
    """``(file, name)`` of a command's node id: names never hold ``::`` nor start with ``:`` (:func:`item_names`),
    so the file, which may hold ``::``, ends at the last ``::``. The one place a command's id is taken apart."""
    path, _, name = nodeid.rpartition("::")
    return path, name


def _decode(data: bytes, path: str | os.PathLike[str]) -> str:
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start:exc.end].hex(" ")
        raise BatchFileError(
            path,
            line,
            f"not valid UTF-8 (byte {bad} at column {column}); save the file as UTF-8",
        ) from None


def _continues(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _split_settings_comment(command: str) -> tuple[str, str | None]:
    """Split off a trailing ``# batch: ...`` comment, honouring shell quoting.

    A ``#`` starts a comment only at the start of a word and outside quotes, as
    in the shell; ``echo '# batch: x'`` has no settings.
    """
    quote = ""
    escaped = False
    prev = " "
    for pos, ch in enumerate(command):
        if escaped:
            escaped = False
        elif quote == "'":
            if ch == "'":
                quote = ""
        elif ch == "\\":
            escaped = True
        elif quote == '"':
            if ch == '"':
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and prev in " \t\n;&|()":
            end = command.find("\n", pos)
            comment = command[pos + 1:] if end == -1 else command[pos + 1:end]
            body = comment.lstrip()
            if _DIRECTIVE.match(body) and end == -1:
                return command[:pos].rstrip(), body[len("batch:"):]
            if end == -1:
                break
        prev = ch
    return command, None


def _parse_settings(
    text: str, path: str, line: int, check_tag: Callable[[str], str | None] | None = None
) -> LineSettings:
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise BatchFileError(path, line, f"cannot read '# batch:' settings: {exc}") from None
    values: dict[str, object] = {}
    env: list[tuple[str, str]] = []
    for token in tokens:
        key, has_value, value = token.partition("=")
        parse = _KEYS.get(key)
        if parse is None:
            known = ", ".join(sorted(_KEYS))
            raise BatchFileError(path, line, f"unknown batch setting '{key}' (known: {known})")
        if key in _FLAGS and not has_value:
            values[_FLAGS[key]] = _FLAG_DEFAULTS[key]
            continue
        if not has_value:
            raise BatchFileError(path, line, f"batch setting '{key}' needs a value: {key}=...")
        try:
            parsed = parse(value)
            if key == "tags" and check_tag is not None:
                _check_tags(parsed, check_tag)  # type: ignore[arg-type]
        except ValueError as exc:
            raise BatchFileError(path, line, f"bad value for batch setting '{key}': {exc}") from None
        if key == "env":
            env.append(parsed)  # type: ignore[arg-type]
        elif key == "timeout" and isinstance(parsed, _Share):
            values["timeout_share"] = parsed.fraction
        else:
            values[key.replace("-", "_")] = parsed
    if env:
        values["env"] = tuple(env)
    return LineSettings(**values)  # type: ignore[arg-type]


def _seconds(value: str) -> float:
    """A delay: finite, 0 to :data:`~pytest_batchrunner.values.MAX_SECONDS`."""
    return non_negative_float(value)


@dataclass(frozen=True)
class _Share:
    """``timeout=300%``: a share of the usual duration, as a fraction (3.0)."""

    fraction: float


def _timeout(value: str) -> float | _Share:
    if value.strip().endswith("%"):
        return _Share(share(value))
    seconds = timeout_seconds(value)
    if seconds == 0:
        raise ValueError("'0' is not a timeout; leave the key out for no timeout")
    return seconds


def _count(value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"'{value}' is not a whole number, 0 or more")
    return non_negative_int(value)


def _exit_code(value: str) -> int:
    code = _count(value)
    if code > 255:
        raise ValueError(f"'{value}' is not an exit code (0 to 255)")
    return code


def _exit_codes(value: str) -> tuple[int, ...]:
    return tuple(_exit_code(v.strip()) for v in value.split(",") if v.strip()) or _fail(
        "give one or more exit codes, e.g. 75,124"
    )


# The operators of pytest's -m expressions: a tag so named could never be selected.
_MARK_OPERATORS = frozenset({"and", "or", "not"})
# Markers that pytest or the plugins the settings map onto act on, whether or
# not they are registered: a tag so named would change what its line does
# (``skip`` skips it, a bare ``timeout`` stops pytest-timeout with an
# INTERNALERROR). The pytest plugin also refuses markers that other plugins
# register (see ``check_tag`` of :func:`parse_batch_text`).
_RESERVED_TAGS: dict[str, tuple[str, str | None]] = {  # name: (whose marker, the setting that does it)
    "skip": ("pytest's", "skip="),
    "skipif": ("pytest's", "skip="),
    "xfail": ("pytest's", "xfail="),
    "parametrize": ("pytest's", None),
    "usefixtures": ("pytest's", None),
    "filterwarnings": ("pytest's", None),
    "tryfirst": ("pytest's", None),
    "trylast": ("pytest's", None),
    "timeout": ("pytest-timeout's", "timeout="),
    "flaky": ("pytest-rerunfailures'", "retries="),
    "xdist_group": ("pytest-xdist's", "group="),
}


def _names(value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    for name in names:
        if not name.isidentifier():
            raise ValueError(f"'{name}' is not a valid tag name (letters, digits, underscores)")
        if name.startswith("_"):
            # pytest refuses marker names starting with an underscore (with a traceback).
            raise ValueError(f"'{name}' is not a valid tag name: a marker name cannot start with an underscore")
        if name in _MARK_OPERATORS:
            raise ValueError(f"'{name}' is not a valid tag name: -m could not select it (and, or, not are its operators)")
        if name in _RESERVED_TAGS:
            owner, setting = _RESERVED_TAGS[name]
            instead = f"; use {setting} instead" if setting else ""
            raise ValueError(f"'{name}' is {owner} marker and cannot be a tag{instead}")
    return names or _fail("give one or more tags, e.g. tags=smoke,db")


def _check_tags(names: tuple[str, ...], check_tag: Callable[[str], str | None]) -> None:
    for name in names:
        problem = check_tag(name)
        if problem is not None:
            raise ValueError(problem)


def _env(value: str) -> tuple[str, str]:
    name, has_value, val = value.partition("=")
    if not has_value or not _ENV_NAME.match(name):
        raise ValueError(f"'{value}' is not NAME=VALUE")
    return name, val


def _nonempty(value: str) -> str:
    return value if value.strip() else _fail("must not be empty")


def _fail(message: str):  # type: ignore[no-untyped-def]
    raise ValueError(message)


_KEYS: dict[str, Callable[[str], Any]] = {
    "timeout": _timeout,
    "retries": _count,
    "retry-delay": _seconds,
    "retry-on": _exit_codes,
    "expect": _exit_code,
    "cwd": _nonempty,
    "env": _env,
    "skip": str,
    "xfail": str,
    "tags": _names,
    "group": _nonempty,
    "sequential": lambda value: _fail("'sequential' takes no value"),
}
# Keys that may stand alone; the value they take then.
_FLAGS = {"skip": "skip", "xfail": "xfail", "sequential": "sequential"}
_FLAG_DEFAULTS: dict[str, object] = {"skip": "", "xfail": "", "sequential": True}


def group_key(spec: CommandSpec) -> str | None:
    """The xdist group of a line: its ``group=``, or its file for a ``sequential`` line without one."""
    if spec.settings.group is not None:
        return spec.settings.group
    if spec.settings.sequential:
        return f"sequential:{spec.path}"
    return None
