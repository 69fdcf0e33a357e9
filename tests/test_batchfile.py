"""The batch file parser: format rules, settings and error messages."""

from __future__ import annotations

import pytest

from pytest_batchrunner.batchfile import BatchFileError, LineSettings, item_names, parse_batch_text


def commands(text: bytes | str) -> list[str]:
    return [s.command for s in parse_batch_text(text, "cmds.batch")]


def test_lines_blanks_and_comments() -> None:
    text = "echo a\n\n   \n# a comment\n   # indented comment\necho b # trailing stays\n"
    specs = parse_batch_text(text, "cmds.batch")
    assert [s.command for s in specs] == ["echo a", "echo b # trailing stays"]
    assert [s.line for s in specs] == [1, 6]


def test_crlf_and_bom() -> None:
    data = b"\xef\xbb\xbfecho one\r\necho two\r\n"
    assert commands(data) == ["echo one", "echo two"]


def test_continuation_lines_are_handed_to_the_shell_as_written() -> None:
    text = "make \\\n  build \\\n  -j4\necho after\n"
    specs = parse_batch_text(text, "cmds.batch")
    assert specs[0].command == "make \\\n  build \\\n  -j4"
    assert specs[0].display == "make build -j4"
    assert specs[1].line == 4


def test_escaped_backslash_does_not_continue() -> None:
    assert commands("echo a\\\\\necho b\n") == ["echo a\\\\", "echo b"]


def test_continuation_at_end_of_file_is_an_error() -> None:
    with pytest.raises(BatchFileError, match=r"cmds.batch:2: the last line ends with a backslash"):
        parse_batch_text("echo a\nmake \\\n", "cmds.batch")


def test_invalid_utf8_names_file_line_and_byte() -> None:
    with pytest.raises(BatchFileError) as info:
        parse_batch_text(b"echo ok\necho \xff\xfe bad\n", "cmds.batch")
    message = str(info.value)
    assert message.startswith("cmds.batch:2: not valid UTF-8")
    assert "ff" in message and "column 6" in message


def test_nul_byte_is_an_error() -> None:
    with pytest.raises(BatchFileError, match=r"cmds.batch:1: contains a NUL byte"):
        parse_batch_text(b"echo \x00\n", "cmds.batch")


def test_empty_and_comment_only_files_have_no_commands() -> None:
    assert commands(b"") == []
    assert commands("# nothing\n\n") == []


def test_names_are_unique_deterministic_and_safe_for_node_ids() -> None:
    specs = parse_batch_text("echo hi\necho a::b\necho hi\necho hi (2)\necho hi\n", "c.batch")
    assert item_names(specs) == ["echo hi", "echo a: :b", "echo hi (2)", "echo hi (2) (2)", "echo hi (3)"]
    assert all("::" not in name for name in item_names(specs))


def test_line_settings_and_defaults() -> None:
    text = (
        "# batch: retries=2 tags=deploy\n"
        "make build   # batch: timeout=600 retries=0\n"
        "./health.sh  # batch: retry-on=75,124 retry-delay=0.5 env=A=1 env=B='x y'\n"
        "# batch:\n"
        "echo '# batch: not settings'\n"
        "test -e x    # batch: expect=1 cwd=sub skip=\"not today\" group=g sequential xfail\n"
    )
    build, health, quoted, last = parse_batch_text(text, "c.batch")
    assert build.command == "make build   # batch: timeout=600 retries=0"
    assert build.display == "make build"
    assert build.settings.timeout == 600 and build.settings.retries == 0
    assert build.settings.tags == ("deploy",)
    assert health.settings.retries == 2 and health.settings.retry_on == (75, 124)
    assert health.settings.retry_delay == 0.5
    assert health.settings.env == (("A", "1"), ("B", "x y"))
    assert quoted.settings == LineSettings() and quoted.display == "echo '# batch: not settings'"
    assert last.settings.expect == 1 and last.settings.cwd == "sub"
    assert last.settings.skip == "not today" and last.settings.xfail == ""
    assert last.settings.group == "g" and last.settings.sequential


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("true # batch: colour=red", "c.batch:1: unknown batch setting 'colour'"),
        ("true # batch: timeout=abc", "c.batch:1: bad value for batch setting 'timeout': 'abc' is not a number"),
        ("true # batch: timeout=0", "c.batch:1: bad value for batch setting 'timeout'"),
        ("true # batch: retries=-1", "c.batch:1: bad value for batch setting 'retries'"),
        ("true # batch: expect=300", "c.batch:1: bad value for batch setting 'expect'"),
        ("true # batch: env=1X=2", "c.batch:1: bad value for batch setting 'env'"),
        ("true # batch: timeout", "c.batch:1: batch setting 'timeout' needs a value"),
        ("true # batch: skip='unclosed", "c.batch:1: cannot read '# batch:' settings"),
        ("true # batch: sequential=yes", "c.batch:1: bad value for batch setting 'sequential'"),
    ],
)
def test_bad_settings_name_file_line_and_key(line: str, message: str) -> None:
    with pytest.raises(BatchFileError) as info:
        parse_batch_text(line + "\n", "c.batch")
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ("_x", "'_x' is not a valid tag name: a marker name cannot start with an underscore"),
        ("ok,__init__", "'__init__' is not a valid tag name: a marker name cannot start with an underscore"),
        ("not", "'not' is not a valid tag name: -m could not select it"),
        ("slow-one", "'slow-one' is not a valid tag name (letters, digits, underscores)"),
        ("smoke,timeout", "'timeout' is pytest-timeout's marker and cannot be a tag; use timeout= instead"),
        ("flaky", "'flaky' is pytest-rerunfailures' marker and cannot be a tag; use retries= instead"),
        ("skipif", "'skipif' is pytest's marker and cannot be a tag; use skip= instead"),
        ("parametrize", "'parametrize' is pytest's marker and cannot be a tag"),
    ],
)
def test_tags_must_be_marker_names_that_m_can_select(tags: str, problem: str) -> None:
    with pytest.raises(BatchFileError) as info:
        parse_batch_text(f"true # batch: tags={tags}\n", "c.batch")
    assert str(info.value).startswith(f"c.batch:1: bad value for batch setting 'tags': {problem}")


def test_check_tag_refuses_a_name_on_the_line_that_sets_it() -> None:
    text = "echo a\n# batch: tags=ok,theirs\necho b\n"

    def check(name: str) -> str | None:
        return f"'{name}' is taken" if name == "theirs" else None

    with pytest.raises(BatchFileError) as info:
        parse_batch_text(text, "c.batch", check_tag=check)
    # The defaults line, not the command that inherits the tag.
    assert str(info.value) == "c.batch:2: bad value for batch setting 'tags': 'theirs' is taken"
    assert parse_batch_text("echo a # batch: tags=ok\n", "c.batch", check_tag=check)[0].settings.tags == ("ok",)
