"""The ``batchrunner`` command: the original BatchRunner's command line, on :class:`~batchrunner.api.BatchRunner`.

Also ``python -m batchrunner`` and ``python -m pytest_batchrunner``. Exit status:
0 when every command succeeded, 1 when one failed or the input is bad (a
one-line message on stderr, no traceback), 2 for a usage error (argparse), 130
when interrupted (Ctrl+C or SIGTERM: running commands are killed, the reports
are written).
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from typing import TYPE_CHECKING

from pytest_batchrunner._version import __version__

if TYPE_CHECKING:
    from batchrunner.api import BatchRunner

# The engine is imported by main(), after run_and_exit() has set up its signal
# handling: a Ctrl+C during the import is then an interrupt, not a traceback.

EPILOG = """\
examples:
  batchrunner -f commands.txt
  batchrunner -f commands.txt --parallel --retries 2 -l run.log -o results.json
  batchrunner -c "make lint" "make test" --timeout 300 --junitxml junit.xml
  batchrunner merge shard-*.json -o results.json --junitxml junit.xml   (see 'batchrunner merge --help')

A commands file holds one command per line; blank lines and '#' comments are
skipped, a line ending in '\\' continues on the next one, and a trailing
'# batch: key=value ...' comment sets that line's timeout, retries, cwd, etc.
"""

EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``batchrunner`` command."""
    from batchrunner.api import DEFAULT_WORKERS
    from pytest_batchrunner.process.capture import DEFAULT_CAPTURE_BYTES
    from pytest_batchrunner.values import cli_bytes, cli_float, cli_int, cli_timeout

    parser = argparse.ArgumentParser(
        prog="batchrunner",
        description="Run a batch of shell commands, sequentially or in parallel, with retries,\n"
        "timeouts, logs and a summary (on pytest-batchrunner's engine).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-f", "--file", metavar="FILE", help="file of commands, one per line")
    source.add_argument("-c", "--commands", metavar="CMD", nargs="+", help="commands given inline")
    parser.add_argument("--parallel", action="store_true", help="run commands at once (default: one after another)")
    parser.add_argument("--workers", metavar="N", type=cli_int, default=DEFAULT_WORKERS,
                        help=f"commands run at once with --parallel (default: {DEFAULT_WORKERS})")
    parser.add_argument("--retries", metavar="N", type=cli_int, default=0,
                        help="tries again a failed command up to N times (default: 0)")
    parser.add_argument("--retry-delay", metavar="S", type=cli_float, default=1.0,
                        help="seconds between tries (default: 1.0)")
    parser.add_argument("--timeout", metavar="S", type=cli_timeout, default=None,
                        help="seconds each try may take before its processes are killed (default: none)")
    parser.add_argument("-l", "--log", metavar="FILE", help="append an audit log to FILE")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the results as JSON to FILE")
    parser.add_argument("--junitxml", metavar="FILE", help="write a JUnit XML report to FILE")
    parser.add_argument("--capture-bytes", metavar="N", type=cli_bytes, default=DEFAULT_CAPTURE_BYTES,
                        help="output kept per stream of each command: its start and its last N bytes "
                             f"(default: {DEFAULT_CAPTURE_BYTES}; the original kept all of it)")
    parser.add_argument("--version", action="version", version=f"batchrunner {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``batchrunner`` command with *argv* (default: ``sys.argv[1:]``); return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["merge"]:
        # The original had no positional argument, so "merge" can only be the subcommand.
        from batchrunner.merge import main as merge

        return merge(argv[1:])
    from batchrunner.api import BatchRunner

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("argument --workers: must be 1 or more")
    options = dict(
        mode="parallel" if args.parallel else "sequential",
        max_retries=args.retries,
        retry_delay_sec=args.retry_delay,
        timeout_sec=args.timeout,
        log_file=args.log,
        verbose=not args.quiet,
        workers=args.workers,
        junitxml=args.junitxml,
        capture_bytes=args.capture_bytes,
    )
    try:
        if args.file is not None:
            runner = BatchRunner.from_file(args.file, **options)
        else:
            runner = BatchRunner(args.commands, **options)
        # Errors of the engine's own checks name the options given here.
        runner._names_in_messages = CLI_OPTIONS
        # Before any command runs: a report must not replace the commands file or another report.
        _check_report_paths(args)
    except (OSError, ValueError) as exc:
        return _error(exc)
    try:
        try:
            _, summary = runner.run()
        except KeyboardInterrupt:
            _save(runner, args.output)
            if not args.quiet:  # the original's words, where it printed them
                print("\n[!] Interrupted by user", flush=True)
            print("[!] Interrupted: running commands were killed", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        except RuntimeError:
            # A report of the run's could not be written (--junitxml): the commands
            # ran, and the results JSON is still written before the error is named.
            if runner.results:
                _save(runner, args.output)
            raise
        _save(runner, args.output)
    except (OSError, RuntimeError, ValueError) as exc:
        return _error(exc)
    return 0 if summary["failed"] == 0 else 1


def run_and_exit() -> None:
    """The console script: :func:`main`, then exit with its status.

    The run's objects are frozen out of the garbage collector first: the
    interpreter's teardown then skips collecting pytest's module graph, about
    30 ms of every command line.
    """
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        # A CI runner's or timeout(1)'s SIGTERM, a closed terminal's SIGHUP, a
        # Ctrl+\ are a Ctrl+C: commands killed, reports written, 130.
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _interrupt)
    try:
        status = main()
    except KeyboardInterrupt:  # before the run began: nothing was started yet
        print("[!] Interrupted", file=sys.stderr)
        status = EXIT_INTERRUPTED
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except ValueError:
            pass  # closed
        except OSError:
            # A reader that went away (``| head``) must not turn the status into 120 at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
    gc.freeze()
    raise SystemExit(status)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


CLI_OPTIONS = {
    "--batch-log": "-l/--log",
    "--junitxml": "--junitxml",
    "--timeout": "--timeout",
    "--reruns-delay": "--retry-delay",
    "--reruns": "--retries",
    "--batch-jobs": "--workers",
    "--batch-capture-bytes": "--capture-bytes",
}
"""The engine's options, by the options of this command they come from."""

# The command line's names of the report options, as its messages give them.
REPORT_OPTIONS = (("-o/--output", "output"), ("-l/--log", "log"), ("--junitxml", "junitxml"))


def _check_report_paths(args: argparse.Namespace) -> None:
    """Refuse, naming both, a report path that is a directory, another report's file or the commands file."""
    from pytest_batchrunner.reports.files import ReportPathError, check_report_paths

    reports = []
    for option, dest in REPORT_OPTIONS:
        value = getattr(args, dest)
        if value is None:
            continue
        if not value.strip():
            raise ReportPathError(f"{option} needs a file name")
        reports.append((option, Path(value)))
    inputs = [("the commands file", Path(args.file))] if args.file is not None else []
    check_report_paths(reports, inputs)
    if args.log is not None:
        from batchrunner.api import check_log_opens

        check_log_opens("-l/--log", args.log)


def _save(runner: BatchRunner, output: str | None) -> None:
    if output is None:
        return
    try:
        runner.save_results(output)
    except OSError as exc:
        # Named as the user gave it, with the OS's words.
        raise ValueError(f"-o/--output {output}: not written: {exc.strerror or exc}") from None


def _error(exc: BaseException) -> int:
    message = str(exc) if not isinstance(exc, OSError) or not exc.filename else f"{exc.strerror}: {exc.filename}"
    print(f"[X] Error: {message}", file=sys.stderr, flush=True)
    return 1
