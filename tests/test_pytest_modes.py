"""pytest's own modes with the plugin installed: none crashes, and none runs a command.

Every line of the batch file is ``touch ran-N``: a ``ran-*`` file after the run
means a command ran where pytest's mode runs no test.
"""

from __future__ import annotations

import pytest

COMMANDS = 3


@pytest.fixture
def batch(pytester: pytest.Pytester) -> str:
    pytester.path.joinpath("cmds.batch").write_text("".join(f"touch ran-{n}\n" for n in range(1, COMMANDS + 1)))
    return "cmds.batch"


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR>" not in output and "Traceback (most recent call last)" not in output, output
    assert sorted(p.name for p in pytester.path.glob("ran-*")) == [], output
    return result


N2_JOBS2 = ("-n", "2", "--batch-jobs", "2")


@pytest.mark.parametrize(
    "mode, extra",
    [("--help", ()), ("-h", N2_JOBS2), ("--version", ()), ("--version", N2_JOBS2), ("--markers", ()),
     ("--markers", N2_JOBS2), ("--fixtures", ()), ("--fixtures", N2_JOBS2)],
)
def test_information_modes(pytester: pytest.Pytester, batch: str, mode: str, extra: tuple[str, ...]) -> None:
    result = _run(pytester, mode, *extra, batch)
    assert result.ret == pytest.ExitCode.OK
    if mode in ("--help", "-h"):
        # argparse %-formats each option's help: a bare % there was a crash (ValueError).
        result.stdout.fnmatch_lines(["*--batch-timeout=PERCENT*", "*batch_timeout (string):*"])
        assert result.stdout.str().count("e.g. 300%;") == 2  # the option's help and the ini value's


SESSION_EXTRAS = [(), ("--batch-jobs", "2"), ("-n", "1"), ("-n", "1", "--batch-jobs", "2"), N2_JOBS2]


@pytest.mark.parametrize(
    "mode, extra",
    # pytest-xdist does not distribute a --co run: -n adds nothing there.
    [("--co", ()), ("--co", ("--batch-jobs", "2")), ("--co", N2_JOBS2)]
    + [(mode, extra) for mode in ("--setup-plan", "--setup-only") for extra in SESSION_EXTRAS],
)
def test_session_modes_run_no_command(pytester: pytest.Pytester, batch: str, mode: str, extra: tuple[str, ...]) -> None:
    result = _run(pytester, mode, *extra, batch)
    assert result.ret == pytest.ExitCode.OK
    out = result.stdout.str()
    # No run, so no run's summary ("Not run: 3" was claimed for commands started ahead).
    assert "BatchRunner summary" not in out and "Not run" not in out, out
    if mode == "--co":
        result.stdout.fnmatch_lines([f"*{COMMANDS} tests collected*"])
