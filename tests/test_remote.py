"""Remote xdist workers (issue 12, point 5): real gateways on this machine.

``popen//chdir=DIR`` workers, a worker behind an execnet socket server on
127.0.0.1 and ``ssh=`` workers logged in to an sshd of the test's own on
127.0.0.1 collect the *copies* that ``--rsyncdir`` sends them, under ids of
their own. The controller learns every command and group from what they send
(see ``pytest_batchrunner/plugin/remote.py``): groups stay whole and in order,
interrupted runs count every command, commands run in the copy of the start
folder, and the reports say where commands ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import execnet
import pytest

BATCH = """\
# batch: group=release sequential
echo one >> order.txt
echo two >> order.txt
echo three >> order.txt
# batch: timeout=60
pwd
echo independent
"""

RSYNC_WARNING = ["-W", "ignore::DeprecationWarning"]  # xdist 3.x: --rsyncdir is deprecated (still works)


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    proj = pytester.path / "proj"
    proj.mkdir()
    (proj / "cmds.batch").write_text(BATCH)
    return proj


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, proj: Path, *args: str) -> pytest.RunResult:
    """pytest started in *proj* (the folder ``--rsyncdir`` sends), with remote gateways among *args*."""
    monkeypatch.chdir(proj)
    return pytester.runpytest_subprocess(
        *args, "--rsyncdir", str(proj), "-d", "-p", "no:cacheprovider", *RSYNC_WARNING, timeout=120
    )


def _results(path: Path) -> tuple[dict, list[dict]]:
    data = json.loads(path.read_text())
    return data["summary"], data["results"]


def _joblog_hosts(path: Path) -> dict[str, str]:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return {row[8]: row[1] for row in rows}


@pytest.fixture
def socket_server(pytester: pytest.Pytester, no_leftovers: str):
    """An execnet socket server on 127.0.0.1 (a free port), in a folder of its own; ``"127.0.0.1:PORT"``."""
    script = Path(execnet.__file__).parent / "script" / "socketserver.py"
    home = pytester.path / "server"
    home.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-u", str(script), "127.0.0.1:0"], cwd=home, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        line = server.stdout.readline()  # "... Entering Accept loop ('127.0.0.1', PORT)"
        match = re.search(r"'127\.0\.0\.1', (\d+)\)", line)
        assert match, line
        yield f"127.0.0.1:{match.group(1)}"
    finally:
        server.kill()
        server.wait(10)
        server.stdout.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-N", "", "-t", "ed25519", "-f", str(path)], check=True, timeout=30,
                   stdin=subprocess.DEVNULL)


@pytest.fixture
def ssh_server(pytester: pytest.Pytester, no_leftovers: str):
    """An sshd on 127.0.0.1 (a free port) that lets this user in with a key of the test's own.

    Yields the ``ssh=`` gateway spec's part for it: ``"127.0.0.1//ssh_config=CONFIG//python=PYTHON"``, the
    client config naming the port, the key and no host-key checks, and the remote worker running this Python.
    An ssh login does not inherit the controller's environment the way a ``popen`` worker does: the client
    sends, and sshd accepts, the suite's ``PYTEST_ADDOPTS`` (the plugins it turns off) and the test's token.
    """
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd) or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("no sshd on this machine (apt-get install openssh-server)")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation folder
    home = pytester.path / "sshd"
    home.mkdir()
    _keygen(home / "host_key")
    _keygen(home / "client_key")
    (home / "authorized_keys").write_text((home / "client_key.pub").read_text())
    port = _free_port()
    (home / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {home / 'host_key'}\n"
        f"AuthorizedKeysFile {home / 'authorized_keys'}\nPidFile {home / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin yes\nAcceptEnv PYTEST_ADDOPTS BATCHRUNNER_TEST_TOKEN\n"
    )
    config = home / "ssh_config"
    config.write_text(
        f"Host 127.0.0.1\n  Port {port}\n  User {pwd.getpwuid(os.geteuid()).pw_name}\n  IdentityFile {home / 'client_key'}\n"
        "  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
        "  BatchMode yes\n  SendEnv PYTEST_ADDOPTS BATCHRUNNER_TEST_TOKEN\n"
    )
    log = home / "sshd.log"
    with log.open("wb") as out:
        server = subprocess.Popen([sshd, "-D", "-e", "-f", str(home / "sshd_config")], stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while b"Server listening on 127.0.0.1" not in log.read_bytes():
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sshd did not start (exit status {server.poll()}):\n{log.read_text()}")
            time.sleep(0.02)
        yield f"127.0.0.1//ssh_config={config}//python={sys.executable}"
    finally:
        # The whole sshd session: SIGTERM, then SIGKILL for whatever of it is left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)


@pytest.fixture(params=["popen", "ssh"])
def gateway(request: pytest.FixtureRequest, pytester: pytest.Pytester) -> tuple[str, Path, str]:
    """``(--tx spec for two workers, the folder they work in, the host the reports name)``.

    ``popen//chdir=``: this machine (``:``); ``ssh=``: a real login to an sshd on
    127.0.0.1 (skipped without sshd).
    """
    work = pytester.path / f"{request.param}work"
    if request.param == "popen":
        return f"2*popen//chdir={work}", work, ":"
    ssh_server = request.getfixturevalue("ssh_server")
    return f"2*ssh={ssh_server}//chdir={work}", work, "127.0.0.1"


def test_remote_workers_keep_groups_whole_and_run_in_the_copy(pytester: pytest.Pytester, project: Path,
                                                              monkeypatch: pytest.MonkeyPatch, gateway, no_leftovers: str) -> None:
    spec, work, host = gateway
    result = _run(pytester, monkeypatch, project, str(project / "cmds.batch"), "--tx", spec,
                  "--batch-json=r.json", "--batch-joblog=j.log", "--junitxml=j.xml")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["Total Commands: 5 | Successful: 5 | Failed: 0*"])
    copy = work / "proj"
    # The group ran whole, in file order, in the copy; nothing ran in the original folder.
    assert (copy / "order.txt").read_text() == "one\ntwo\nthree\n"
    assert not (project / "order.txt").exists()
    summary, results = _results(project / "r.json")
    assert (summary["mode"], summary["workers"], summary["total_commands"]) == ("parallel", 2, 5)
    by_command = {r["command"]: r for r in results}
    assert by_command["pwd"]["stdout"] == f"{copy}\n"
    steps = [by_command[f"echo {n} >> order.txt"]["attempt_log"][0]["worker"] for n in ("one", "two", "three")]
    assert len(set(steps)) == 1, steps  # one worker ran the whole group
    assert {r["attempt_log"][0]["host"] for r in results} == {host}  # ":" for this machine, else the ssh login
    hosts = _joblog_hosts(project / "j.log")
    assert len(hosts) == 5
    assert set(hosts.values()) == {host}
    if host != ":":
        # Both workers came in through the sshd: one key login each.
        assert (pytester.path / "sshd" / "sshd.log").read_text().count("Accepted publickey for ") == 2


def test_an_interrupted_remote_run_counts_every_command(pytester: pytest.Pytester, project: Path,
                                                        monkeypatch: pytest.MonkeyPatch, gateway, no_leftovers: str) -> None:
    spec, _work, _host = gateway
    (project / "fail.batch").write_text("exit 4\nsleep 0.3\nsleep 0.3\nsleep 0.3\nsleep 0.3\nsleep 0.3\n")
    result = _run(pytester, monkeypatch, project, str(project / "fail.batch"), "--tx", spec, "-x", "--batch-json=r.json")
    assert result.ret in (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.INTERRUPTED)  # xdist stops with the latter
    summary, results = _results(project / "r.json")
    assert summary["total_commands"] == 6, result.stdout.str()
    assert len(results) == 6
    assert summary["failed"] == 1
    assert summary["successful"] + summary["not_run"] + summary["failed"] == 6
    result.stdout.fnmatch_lines(["Total Commands: 6 | *"])


def test_a_worker_behind_a_socket_server_is_named_in_the_reports(pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 socket_server: str, no_leftovers: str) -> None:
    remote = pytester.path / "remote"
    sockwork = pytester.path / "sockwork"
    result = _run(pytester, monkeypatch, project, str(project / "cmds.batch"),
                  "--tx", f"socket={socket_server}//chdir={sockwork}", "--tx", f"popen//chdir={remote}",
                  "--batch-json=r.json", "--batch-joblog=j.log")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["Total Commands: 5 | Successful: 5 | Failed: 0*"])
    hosts = _joblog_hosts(project / "j.log")
    assert set(hosts.values()) <= {":", socket_server}
    assert socket_server in hosts.values(), hosts
    summary, results = _results(project / "r.json")
    assert summary["workers"] == 2
    # The steps ran on one host, in order, in that host's copy.
    step_hosts = {hosts[f"echo {n} >> order.txt"] for n in ("one", "two", "three")}
    assert len(step_hosts) == 1
    copy = (sockwork if step_hosts == {socket_server} else remote) / "proj"
    assert (copy / "order.txt").read_text() == "one\ntwo\nthree\n"
    pwd = next(r for r in results if r["command"] == "pwd")
    assert pwd["stdout"] == f"{(sockwork if pwd['attempt_log'][0]['host'] == socket_server else remote) / 'proj'}\n"


def test_a_relative_path_with_rsyncdir_is_named_not_an_internal_error(pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       no_leftovers: str) -> None:
    remote = pytester.path / "remote"
    result = _run(pytester, monkeypatch, project, "cmds.batch", "--tx", f"popen//chdir={remote}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text
    assert "argument cmds.batch: remote xdist workers" in text
    assert f"give it as an absolute path inside {project}" in text


def test_without_rsyncdir_the_missing_root_is_named(pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch,
                                                      no_leftovers: str) -> None:
    remote = pytester.path / "remote"
    monkeypatch.chdir(project)
    result = pytester.runpytest_subprocess(str(project / "cmds.batch"), "--tx", f"popen//chdir={remote}", "-d",
                                           "-p", "no:cacheprovider", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text
    assert "add --rsyncdir DIR for the folder that holds it" in text


def test_the_readme_recipe_runs_as_written(pytester: pytest.Pytester, project: Path, socket_server: str,
                                           no_leftovers: str) -> None:
    """The README's command, with this machine's gateways for its ssh host and socket server."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = text.index("### Remote xdist workers")
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block is not None
    script = block.group(1)
    remote = pytester.path / "build1"
    script = script.replace("~/proj", str(project)).replace("ssh=build1//chdir=work", f"popen//chdir={remote}")
    script = script.replace("socket=10.0.0.7:8888", f"socket={socket_server}")
    assert "ssh=" not in script and "10.0.0.7" not in script, script
    (project / "ci.batch").write_text(BATCH)
    done = subprocess.run(["bash", "-c", "set -e\n" + script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Total Commands: 5 | Successful: 5" in done.stdout
    summary, results = _results(project / "results.json")
    assert (summary["workers"], summary["total_commands"]) == (3, 5)
    hosts = set(_joblog_hosts(project / "jobs.tsv").values())
    assert hosts <= {":", socket_server}, hosts
    # Every command ran in a copy of the project: the popen workers' or the socket server's default folder.
    copies = {remote / "proj", pytester.path / "server" / "pyexecnetcache" / "proj"}
    pwd = next(r for r in results if r["command"] == "pwd")
    assert Path(pwd["stdout"].strip()) in copies
    assert not (project / "order.txt").exists()
