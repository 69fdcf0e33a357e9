"""Run the tests that touch the foundation plugins on the oldest versions ``pyproject.toml`` allows.

``python tests/oldest_versions.py [pytest arguments]``: makes a virtual environment
in the temporary folder, installs each ``name>=X`` dependency at ``name==X`` (with the
test tools the chosen files need), the project without its dependencies, and runs
:data:`FILES` with ``-n 2`` (or the arguments given). The README's test command runs it
after the suite, which runs on the newest releases.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FILES = [
    # pytest-xdist's scheduler protocol and setupnodes hook, a worker that dies, a rerun after a crash
    # (pytest-rerunfailures' crash hook), pytest's modes with and without workers.
    "tests/test_scheduling.py::test_which_dist_modes_the_plugin_schedules",
    "tests/test_scheduling.py::test_a_crashed_sequential_step_ends_its_group",
    "tests/test_scheduling.py::test_a_crash_is_rerun_only_as_reruns_allow",
    "tests/test_scheduling.py::test_workers_that_collected_different_commands_are_named",
    "tests/test_scheduling.py::test_a_crash_under_dist_each_counts_each_run_once",
    "tests/test_worker_loss.py",
    "tests/test_pytest_modes.py",
    # -x and --maxfail across workers (xdist < 3.7 ran on, or lost what had started ahead).
    "tests/test_jobs.py::test_exitfirst_kills_commands_in_flight",
    "tests/test_jobs.py::test_exitfirst_reports_the_commands_that_ran_ahead_as_they_ended",
    "tests/test_jobs.py::test_maxfail_starts_nothing_after_the_last_allowed_failure",
    # The canaries of docs/internals.md that hold on every version allowed (pytest-rerunfailures' helpers and
    # item state are read only where they exist: theirs check the newest).
    "tests/test_jobs.py::test_canary_resolve_timeout_matches_pytest_timeout",
    "tests/test_jobs.py::test_canary_xdist_worker_queue_reaches_ahead",
    "tests/test_reports.py::test_canary_pytest_junitxml_takes_its_path_from_the_option_at_configure",
    "tests/test_reports.py::test_canary_pytest_junitxml_keeps_its_testcases_in_a_list_the_plugin_trims",
    "tests/test_reports.py::test_canary_pytest_junitxml_names_testcases_as_the_rewrite_finds_them",
    "tests/test_plugin.py::test_canary_pytest_capture_manager_the_command_items_leave_out",
    "tests/test_plugin.py::test_canary_pytest_lf_file_skipping_plugin_name",
    "tests/test_plugin.py::test_canary_pytest_value_repr_fields_the_failure_report_sets",
    "tests/test_live.py::test_canary_pytest_terminal_reporter_writes_to_sys_stdout_of_its_configure",
]
TEST_TOOLS = ["junitparser", "xmlschema", "pyte"]


def floors(pyproject: str) -> list[str]:
    """``name==X`` for each ``name>=X`` in ``[project] dependencies``."""
    block = re.search(r"^dependencies\s*=\s*\[(.*?)\]", pyproject, re.S | re.M)
    if block is None:
        raise SystemExit("oldest_versions: no dependencies list in pyproject.toml")
    pins = [f"{name}=={version}" for name, version in re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9][^",;]*)"', block.group(1))]
    if not pins:
        raise SystemExit("oldest_versions: no name>=X dependency in pyproject.toml")
    return pins


def main(argv: list[str]) -> int:
    pins = floors((ROOT / "pyproject.toml").read_text())
    home = Path(tempfile.gettempdir()) / "pytest-batchrunner-oldest"
    python = home / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *pins, *TEST_TOOLS], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
    print(f"oldest versions: {' '.join(pins)}", flush=True)
    return subprocess.run([str(python), "-m", "pytest", *(argv or ["-n", "2", *FILES])], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
