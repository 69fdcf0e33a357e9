"""Report paths that are not plain files: devices, pipes, FIFOs, symlinks, directories, the same
file twice, an input file; reports that cannot be written. Checked before any command runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

COMMANDS = "touch ran\nexit 3\n"


@pytest.fixture
def batch(pytester: pytest.Pytester) -> Path:
    path = pytester.path / "cmds.batch"
    path.write_text(COMMANDS)
    return path


def test_junit_to_stdout_through_a_pipe(pytester: pytest.Pytester, batch: Path, mode: str, no_leftovers: str) -> None:
    extra = "-n 2" if mode == "xdist" else ""
    shell = f"{sys.executable} -m pytest cmds.batch -p no:cacheprovider -q --junitxml=/dev/stdout {extra} | cat"
    done = subprocess.run(["bash", "-c", shell + "; exit ${PIPESTATUS[0]}"], cwd=pytester.path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    xml = done.stdout[done.stdout.index("<?xml"):]
    xml = xml[: xml.index("</testsuites>") + len("</testsuites>")]
    cases = {case.get("name"): case for case in ET.fromstring(xml).iter("testcase")}
    assert cases["exit 3"].find("failure").get("message") == "exit code 3"
    assert "Traceback" not in done.stdout + done.stderr


def test_symlinks_are_followed_and_stay(pytester: pytest.Pytester, batch: Path, run) -> None:
    (pytester.path / "out").mkdir()
    os.symlink("out/real.xml", pytester.path / "link.xml")
    os.symlink("out/real.json", pytester.path / "link.json")
    result = run("cmds.batch", "--junitxml=link.xml", "--batch-json=link.json")
    assert result.ret == 1
    assert os.path.islink(pytester.path / "link.xml") and os.path.islink(pytester.path / "link.json")
    ET.parse(pytester.path / "out" / "real.xml")
    assert json.loads((pytester.path / "out" / "real.json").read_text())["summary"]["failed"] == 1


def test_fifo_gets_the_report_written_straight(pytester: pytest.Pytester, batch: Path, run) -> None:
    fifo = pytester.path / "results.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as f:
            received.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    result = run("cmds.batch", f"--batch-json={fifo}")
    reader.join(10)
    assert result.ret == 1
    assert json.loads(received[0])["summary"]["total_commands"] == 2
    assert fifo.is_fifo()


def test_a_fifo_nobody_reads_is_named_not_a_hang(pytester: pytest.Pytester, batch: Path, run) -> None:
    os.mkfifo(pytester.path / "nobody.fifo")
    result = run("cmds.batch", "--batch-json=nobody.fifo", timeout=60)
    assert result.ret == 3
    result.stdout.fnmatch_lines(["*--batch-json *nobody.fifo: not written: a FIFO with no reader*"])


def test_full_device_is_named_with_exit_status_3(pytester: pytest.Pytester, batch: Path, run) -> None:
    result = run("cmds.batch", "--batch-json=/dev/full", "--junitxml=/dev/full")
    assert result.ret == 3
    result.stdout.fnmatch_lines(["*BatchRunner report errors*"])
    result.stdout.fnmatch_lines(["*--batch-json /dev/full: not written: No space left on device*"])
    result.stdout.fnmatch_lines(["*--junitxml /dev/full: not written: No space left on device*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")


@pytest.fixture
def small_filesystem(tmp_path: Path):
    """A real 64 KiB tmpfs, mounted for the test (root only: elsewhere the test says why it cannot run)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"a small tmpfs cannot be mounted here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_filesystem_names_the_reports_and_leaves_no_partial_file(
    pytester: pytest.Pytester, run, small_filesystem: Path
) -> None:
    # A failing command printing 40 KB: neither the JSON nor the JUnit report fits in what is left of 64 KiB.
    (pytester.path / "cmds.batch").write_text("head -c 40000 /dev/zero | tr '\\0' x; exit 3\n")
    (small_filesystem / "filler").write_bytes(b"f" * 32 * 1024)
    json_path, junit_path = small_filesystem / "r.json", small_filesystem / "j.xml"
    result = run("cmds.batch", f"--batch-json={json_path}", f"--junitxml={junit_path}", "-o", "junit_logging=all")
    assert result.ret == 3, result.stdout.str()
    result.stdout.fnmatch_lines([f"*--batch-json {json_path}: not written: *No space left on device*"])
    result.stdout.fnmatch_lines([f"*--junitxml {junit_path}: not written: *No space left on device*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    # Nothing half-written, no temporary file left behind; what was there stays.
    assert sorted(p.name for p in small_filesystem.iterdir()) == ["filler"]
    # pytest's own line names the user's path, not a temporary file of ours.
    assert "batchrunner-junit-" not in result.stdout.str()


def test_unwritable_junit_path_is_named_and_leaves_nothing(pytester: pytest.Pytester, batch: Path, run) -> None:
    (pytester.path / "afile").write_text("keep")
    result = run("cmds.batch", "--junitxml=afile/junit.xml", "--batch-json=afile/r.json")
    assert result.ret == 3
    result.stdout.fnmatch_lines(["*--junitxml *afile/junit.xml: not written: *"])
    result.stdout.fnmatch_lines(["*--batch-json *afile/r.json: not written: *"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert (pytester.path / "afile").read_text() == "keep"
    assert sorted(p.name for p in pytester.path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-json=cmds.batch"], "*--batch-json *cmds.batch is the same file as the batch file *cmds.batch*"),
        (["--batch-json=none/../cmds.batch"], "*--batch-json *none/../cmds.batch is the same file as the batch file *"),
        (["--junitxml=sub/../r.xml", "--batch-json=r.xml"], "*--batch-json *r.xml is the same file as --junitxml *r.xml*"),
        (["--batch-json=link.json", "--batch-joblog=real.json"], "*--batch-joblog *real.json is the same file as --batch-json *link.json*"),
        (["--junitxml=adir"], "*--junitxml*adir*"),
        (["--batch-html=r.html", "--batch-markdown=link.json", "--batch-json=real.json"],
         "*--batch-markdown *link.json is the same file as --batch-json *real.json*"),
    ],
    ids=["json-is-the-input", "json-is-the-input-through-a-missing-folder", "two-reports", "through-a-symlink", "directory", "html-markdown-json"],
)
def test_unusable_paths_are_refused_before_anything_runs(
    pytester: pytest.Pytester, batch: Path, run, args: list[str], message: str
) -> None:
    (pytester.path / "adir").mkdir()
    (pytester.path / "sub").mkdir()
    os.symlink("real.json", pytester.path / "link.json")
    result = run("cmds.batch", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert not (pytester.path / "ran").exists()
    assert batch.read_text() == COMMANDS


def test_a_step_summary_that_is_the_batch_file_is_refused(
    pytester: pytest.Pytester, batch: Path, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Appending the Markdown to the batch file would make the next run execute it.
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", "./cmds.batch")
    result = run("cmds.batch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*$GITHUB_STEP_SUMMARY *cmds.batch is the same file as the batch file *cmds.batch*"])
    assert not (pytester.path / "ran").exists()
    assert batch.read_text() == COMMANDS
