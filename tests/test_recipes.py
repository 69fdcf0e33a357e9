"""The README's CI recipes, run as written: each shard one after another on this machine, then the merge.

The shell lines are read from the README itself (GitHub Actions, GitLab CI,
Kubernetes Indexed Job), with the CI's variables set as the CI would set them,
so a recipe that stops working fails here. The merged results must be those of
one run of the whole batch.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
CI_BATCH = (
    "echo build  # batch: sequential group=release\n"
    "echo lint\n"
    "echo test  # batch: sequential group=release\n"
    "false\n"
    "echo docs\n"
    "echo package  # batch: sequential group=release\n"
    "echo audit\n"
)
COMPARED = ("nodeid", "command", "status", "exit_code", "stdout", "line")


def recipe(title: str) -> str:
    """The code block after the README paragraph starting with **title**."""
    text = README.read_text()
    start = text.index(f"**{title}**")
    block = re.search(r"```yaml\n(.*?)```", text[start:], re.S)
    assert block is not None, title
    return block.group(1)


def shell(line: str, cwd: Path, env: dict[str, str]) -> int:
    """Run a recipe's shell line, with this interpreter's pytest and batchrunner."""
    line = re.sub(r"(^|; )pytest ", rf"\1{sys.executable} -m pytest ", line)
    line = line.replace("batchrunner merge ", f"{sys.executable} -m batchrunner merge ")
    done = subprocess.run(["sh", "-c", line], cwd=cwd, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120)
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return done.returncode


def steps(block: str, prefix: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"{prefix}((?:pytest|batchrunner) .*)$", block, re.M)]


def github(cwd: Path) -> Path:
    block = recipe("GitHub Actions")
    shard, merge = steps(block, r"- run: ")
    total = len(re.search(r"shard: \[([^\]]*)\]", block).group(1).split(","))  # type: ignore[union-attr]
    for k in range(1, total + 1):
        assert shell(shard.replace("${{ matrix.shard }}", str(k)), cwd, {}) in (0, 1)
    assert shell(merge, cwd, {}) == 1  # "false" failed
    return cwd / "results.json"


def gitlab(cwd: Path) -> Path:
    block = recipe("GitLab CI")
    shard, merge = steps(block, r"    - ")
    total = int(re.search(r"parallel: (\d+)", block).group(1))  # type: ignore[union-attr]
    for k in range(1, total + 1):
        assert shell(shard, cwd, {"CI_NODE_INDEX": str(k), "CI_NODE_TOTAL": str(total)}) in (0, 1)
    assert shell(merge, cwd, {}) == 1
    return cwd / "results.json"


def kubernetes(cwd: Path) -> Path:
    block = recipe("Kubernetes")
    (shard,) = steps(block, r"            - ")
    total = int(re.search(r"completions: (\d+)", block).group(1))  # type: ignore[union-attr]
    results = cwd / "results"
    results.mkdir()
    for index in range(total):
        # The pod's status: 0, since a failed command is not a reason to retry the pod.
        assert shell(shard.replace(" /results/", f" {results}/"), cwd, {"JOB_COMPLETION_INDEX": str(index)}) == 0
    text = README.read_text()
    merge = re.search(r"in a pod that mounts the volume:\n`(batchrunner merge [^`]*)`", text)
    assert merge is not None
    assert shell(merge.group(1).replace(" /results/", f" {results}/"), cwd, {}) == 1
    return results / "results.json"


@pytest.mark.parametrize("run_recipe", [github, gitlab, kubernetes], ids=lambda f: f.__name__)
def test_recipe_merges_to_one_run(run_recipe, tmp_path: Path, no_leftovers: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "ci.batch").write_text(CI_BATCH)
    whole = subprocess.run([sys.executable, "-m", "pytest", "ci.batch", "-p", "no:cacheprovider", "--batch-json",
                            "whole.json"], cwd=tmp_path, capture_output=True, timeout=120)
    assert whole.returncode == 1
    merged = json.loads(run_recipe(tmp_path).read_text())
    one = json.loads((tmp_path / "whole.json").read_text())
    assert [{k: r[k] for k in COMPARED} for r in merged["results"]] == [{k: r[k] for k in COMPARED} for r in one["results"]]
    for key in ("total_commands", "successful", "failed", "success_rate", "not_run"):
        assert merged["summary"][key] == one["summary"][key]
