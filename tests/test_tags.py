"""Tags are markers for ``-m`` alone: a name that pytest, a plugin or a ``conftest.py`` acts on is refused.

Real runs with real batch files, in-process and under ``-n 2`` (the ``run``
fixture of tests/conftest.py); the ini file's own markers stay usable as tags.
"""

from __future__ import annotations

import pytest

COLLECTION_ERROR = {"inprocess": pytest.ExitCode.INTERRUPTED, "xdist": pytest.ExitCode.TESTS_FAILED}


def write(pytester: pytest.Pytester, name: str, text: str) -> None:
    (pytester.path / name).write_text(text, encoding="utf-8")


def clean(result: pytest.RunResult) -> str:
    """The run's output, checked to hold no INTERNALERROR and no traceback."""
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text
    assert "Traceback" not in text
    return text


def test_a_tag_naming_pytest_timeouts_marker_is_a_collection_error(pytester: pytest.Pytester, run, mode: str) -> None:
    # A bare timeout marker stopped pytest-timeout with an INTERNALERROR; _x was a raw traceback.
    write(pytester, "one.batch", "touch ran; exit 1 # batch: tags=timeout\n")
    write(pytester, "u.batch", "touch ran # batch: tags=_x\n")
    result = run()
    text = clean(result)
    assert result.ret == COLLECTION_ERROR[mode]
    assert result.parseoutcomes() == {"errors": 2}
    assert (
        "batch file error: one.batch:1: bad value for batch setting 'tags': "
        "'timeout' is pytest-timeout's marker and cannot be a tag; use timeout= instead"
    ) in text
    assert (
        "batch file error: u.batch:1: bad value for batch setting 'tags': "
        "'_x' is not a valid tag name: a marker name cannot start with an underscore"
    ) in text
    assert not (pytester.path / "ran").exists()


REFUSED = {
    "skip": "'skip' is pytest's marker and cannot be a tag; use skip= instead",
    "skipif": "'skipif' is pytest's marker and cannot be a tag; use skip= instead",
    "xfail": "'xfail' is pytest's marker and cannot be a tag; use xfail= instead",
    "parametrize": "'parametrize' is pytest's marker and cannot be a tag",
    "usefixtures": "'usefixtures' is pytest's marker and cannot be a tag",
    "filterwarnings": "'filterwarnings' is pytest's marker and cannot be a tag",
    "tryfirst": "'tryfirst' is pytest's marker and cannot be a tag",
    "trylast": "'trylast' is pytest's marker and cannot be a tag",
    "timeout": "'timeout' is pytest-timeout's marker and cannot be a tag; use timeout= instead",
    "flaky": "'flaky' is pytest-rerunfailures' marker and cannot be a tag; use retries= instead",
    "xdist_group": "'xdist_group' is pytest-xdist's marker and cannot be a tag; use group= instead",
}


def test_markers_with_an_effect_are_refused_even_when_their_plugin_is_off(pytester: pytest.Pytester) -> None:
    # With pytest-timeout, rerunfailures and xdist off, nothing registers their
    # markers, yet each would act again as soon as its plugin is back on.
    for name in REFUSED:
        write(pytester, f"{name}.batch", f"touch ran_{name} # batch: tags=ok,{name}\n")
    # On a line of defaults, the error names that line, not the commands after it.
    write(pytester, "defaults.batch", "echo a\n# batch: tags=flaky\ntouch ran_defaults\n")
    files = sorted(path.name for path in pytester.path.glob("*.batch"))
    result = pytester.runpytest_subprocess(
        *files, "-p", "no:cacheprovider", "-p", "no:timeout", "-p", "no:rerunfailures", "-p", "no:xdist"
    )
    text = clean(result)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert result.parseoutcomes() == {"errors": len(REFUSED) + 1}
    for name, why in REFUSED.items():
        assert f"{name}.batch:1: bad value for batch setting 'tags': {why}\n" in text, name
    assert "defaults.batch:2: bad value for batch setting 'tags': 'flaky' is pytest-rerunfailures'" in text
    assert not list(pytester.path.glob("ran_*"))


def test_plugins_and_conftests_markers_are_refused_the_ini_files_are_tags(pytester: pytest.Pytester, run) -> None:
    pytester.makeini(
        "[pytest]\n"
        "markers =\n"
        "    slow: the project's own, for selection\n"
        "    db: the project's, but its conftest.py acts on it too\n"
        "    timeout: registering it does not make it the project's\n"
    )
    pytester.makepyfile(
        webplug='def pytest_configure(config):\n    config.addinivalue_line("markers", "webserver(port): starts one")\n',
        conftest=(
            "def pytest_configure(config):\n"
            '    config.addinivalue_line("markers", "network: needs the network")\n'
            '    config.addinivalue_line("markers", "db: gives a database")\n'
        ),
    )
    write(pytester, "plugin.batch", "echo p # batch: tags=webserver\n")
    write(pytester, "conftest.batch", "echo c # batch: tags=network\n")
    write(pytester, "both.batch", "echo b # batch: tags=db\n")
    write(pytester, "ini.batch", "echo i # batch: tags=timeout\n")
    result = run("-p", "webplug")
    text = clean(result)
    by_plugin = (
        "is a marker registered by a plugin or a conftest.py, which may act on it; "
        "a tag may only name a marker that nothing but the ini file registers"
    )
    assert f"plugin.batch:1: bad value for batch setting 'tags': 'webserver' {by_plugin}" in text
    assert f"conftest.batch:1: bad value for batch setting 'tags': 'network' {by_plugin}" in text
    assert f"both.batch:1: bad value for batch setting 'tags': 'db' {by_plugin}" in text
    assert "ini.batch:1: bad value for batch setting 'tags': 'timeout' is pytest-timeout's marker" in text
    assert result.parseoutcomes() == {"errors": 4}
    # The ini file's marker and a new name are tags: selected by -m, accepted by --strict-markers.
    write(pytester, "mine.batch", "echo slow # batch: tags=slow\necho fresh # batch: tags=fresh\necho plain\n")
    result = run("mine.batch", "-p", "webplug", "--strict-markers", "-m", "slow or fresh", "-rA")
    text = clean(result)
    assert result.ret == pytest.ExitCode.OK
    assert result.parseoutcomes()["passed"] == 2
    assert "PASSED mine.batch::echo slow" in text and "PASSED mine.batch::echo fresh" in text
    assert "mine.batch::echo plain" not in text
    # Markers set with -o are the ini file's too (read before any plugin adds its own).
    result = run("mine.batch", "-o", "markers=fresh: set on the command line", "-m", "fresh", "-rA")
    text = clean(result)
    assert result.ret == pytest.ExitCode.OK
    assert "PASSED mine.batch::echo fresh" in text
    assert "mine.batch::echo slow" not in text
