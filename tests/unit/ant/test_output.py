"""Reading a task's output: lines, set-output, step markers, the bounded stdout (ant.executors)."""

from __future__ import annotations

import shutil

import pytest

from ant.executors import LogStream
from ant.executors.lines import LineSplitter, split_long_line
from ant.executors.output import ContextScope, OutputCollector, parse_set_output
from ant.executors.script import Marker, ScriptPlan

pytestmark = pytest.mark.unit


class ListSink:
    def __init__(self) -> None:
        self.lines: list[tuple[LogStream, str]] = []

    async def emit(self, stream: LogStream, text: str) -> None:
        self.lines.append((stream, text))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("::set-output name=version::1.2.3", (ContextScope.TASK, "version", "1.2.3")),
        ("  ::set-output name=empty::", (ContextScope.TASK, "empty", "")),
        ("::set-output name=url::http://x::y", (ContextScope.TASK, "url", "http://x::y")),
        ("::set-job-output name=IMAGE_TAG::abc", (ContextScope.JOB, "IMAGE_TAG", "abc")),
        ("::set-output name=a.b-c_d::v", (ContextScope.TASK, "a.b-c_d", "v")),
    ],
)
def test_set_output_lines(line: str, expected: tuple[ContextScope, str, str]) -> None:
    value = parse_set_output(line)
    assert value is not None
    assert (value.scope, value.name, value.value) == expected


@pytest.mark.parametrize(
    "line",
    ["set-output name=a::b", "::set-output name=::b", "::set-output a=b", "echo ::set-output name=a::b", ""],
)
def test_other_lines_set_nothing(line: str) -> None:
    assert parse_set_output(line) is None


def test_lines_are_cut_at_newlines_across_chunks() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"hel") == []
    assert splitter.feed(b"lo\r\nwor") == ["hello"]
    assert splitter.feed(b"ld\n\n") == ["world", ""]
    assert splitter.feed(b"tail") == []
    assert splitter.flush() == ["tail"]
    assert splitter.flush() == []


def test_bad_utf8_is_replaced() -> None:
    assert LineSplitter().feed(b"caf\xc3\xa9 \xff!\n") == ["café \ufffd!"]


def test_long_lines_are_split_on_character_boundaries() -> None:
    text = "é" * 100  # 200 bytes
    pieces = split_long_line(text, max_bytes=33)
    assert "".join(pieces) == text
    assert all(len(p.encode()) <= 33 for p in pieces)
    splitter = LineSplitter(max_bytes=10)
    assert splitter.feed(b"x" * 25) == ["x" * 10, "x" * 10]
    assert splitter.feed(b"\n") == ["x" * 5]


def test_a_plan_quotes_commands_and_numbers_its_steps() -> None:
    plan = ScriptPlan.build(["echo 'it''s'", "false"])
    script = plan.render()
    assert "set -e" in script
    assert "eval 'echo '\"'\"'it'\"'\"''\"'\"'s'\"'\"''" in script
    assert plan.parse_marker(f"{plan.token} step 2") == ("", Marker("step", 2))
    assert plan.parse_marker(f"partial{plan.token} step 1") == ("partial", Marker("step", 1))
    assert plan.parse_marker(f"{plan.token} exit 3") == ("", Marker("exit", 3))
    assert plan.parse_marker(f"{plan.token} step two") is None
    assert plan.parse_marker("::formicary-0000000000000000:: step 1") is None
    assert plan.command(2) == "false"
    assert plan.command(3) == ""
    assert plan.command(None) == ""
    assert ScriptPlan.build([]).token != plan.token


def test_pipefail_is_probed_only_when_the_shell_is_unknown() -> None:
    plan = ScriptPlan.build(["true"])
    probe = "(set -o pipefail) 2>/dev/null && set -o pipefail"
    assert plan.render().splitlines()[:2] == [probe, "set -e"]  # a container's sh: test at run time
    assert plan.render(pipefail=True).splitlines()[:2] == ["set -o pipefail", "set -e"]  # bash: no subshell
    assert plan.render(pipefail=False).splitlines()[0] == "set -e"


async def test_the_collector_strips_markers_keeps_stdout_and_reads_outputs() -> None:
    sink = ListSink()
    collector = OutputCollector(sink)
    plan = ScriptPlan.build(["make", "make test"])
    collector.track(plan)
    await collector.line(LogStream.STDOUT, f"{plan.token} step 1")
    await collector.line(LogStream.STDOUT, "building")
    await collector.line(LogStream.STDERR, "a warning")
    await collector.line(LogStream.STDOUT, f"done{plan.token} step 2")
    await collector.line(LogStream.STDOUT, "::set-output name=result::ok")
    await collector.line(LogStream.STDOUT, "::set-job-output name=tag::v1")
    assert sink.lines == [
        (LogStream.SYSTEM, "$ make"),
        (LogStream.STDOUT, "building"),
        (LogStream.STDERR, "a warning"),
        (LogStream.STDOUT, "done"),
        (LogStream.SYSTEM, "$ make test"),
        (LogStream.STDOUT, "::set-output name=result::ok"),
        (LogStream.STDOUT, "::set-job-output name=tag::v1"),
    ]
    assert collector.last_step(plan) == 2
    assert collector.stdout == (
        "building",
        "done",
        "::set-output name=result::ok",
        "::set-job-output name=tag::v1",
    )
    assert collector.task_context == {"result": "ok"}
    assert collector.job_context == {"tag": "v1"}


async def test_the_kept_stdout_is_a_bounded_tail() -> None:
    collector = OutputCollector(ListSink(), max_stdout_lines=3)
    for n in range(10):
        await collector.line(LogStream.STDOUT, f"l{n}")
    assert collector.stdout == ("[formicary: 7 earlier lines omitted]", "l7", "l8", "l9")
    by_bytes = OutputCollector(ListSink(), max_stdout_bytes=25)
    for n in range(10):
        await by_bytes.line(LogStream.STDOUT, f"line-{n}")
    assert by_bytes.stdout[-1] == "line-9"
    assert sum(len(x) + 1 for x in by_bytes.stdout[1:]) <= 25


async def test_context_values_are_bounded() -> None:
    collector = OutputCollector(ListSink(), max_context_values=2, max_value_bytes=5)
    for name in ("a", "b", "c"):
        await collector.line(LogStream.STDOUT, f"::set-output name={name}::0123456789")
    assert collector.task_context == {"a": "01234", "b": "01234"}
    assert any("'c' ignored" in w for w in collector.warnings)
    assert any("cut to 5 bytes" in w for w in collector.warnings)


async def test_context_values_are_bounded_in_total() -> None:
    collector = OutputCollector(ListSink(), max_context_bytes=30)
    await collector.line(LogStream.STDOUT, "::set-output name=a::" + "x" * 20)
    await collector.line(LogStream.STDOUT, "::set-output name=b::" + "y" * 20)
    await collector.line(LogStream.STDOUT, "::set-output name=a::short")
    await collector.line(LogStream.STDOUT, "::set-output name=c::" + "z" * 10)
    assert collector.task_context == {"a": "short", "c": "z" * 10}
    assert any("'b' ignored" in w for w in collector.warnings)


@pytest.mark.parametrize(
    ("commands", "argv"),
    [
        (["true"], ["true"]),
        (["ls -la /tmp"], ["ls", "-la", "/tmp"]),
        (["make test VERBOSE=1"], ["make", "test", "VERBOSE=1"]),
        (["echo hello world"], ["echo", "hello", "world"]),
        (["true", "true"], None),  # two commands share a session: the shell runs them
        (["cd /tmp"], None),  # builtins and keywords change or need the shell
        (["export A=1"], None),
        (["A=1 env"], None),  # an assignment
        (["echo -e x"], None),  # the builtin's options differ from coreutils'
        (['echo "$HOME"'], None),  # quotes, expansions
        (["ls *"], None),
        (["ls ~"], None),
        (["true && false"], None),
        (["ls > out"], None),
        (["true # comment"], None),
        (["./build.sh"], None),  # a path: relative to the shell's working directory
        (["no-such-program-7f3a"], None),  # the shell says "command not found"
        (["  true"], None),
    ],
)
def test_one_simple_command_runs_without_a_shell(commands: list[str], argv: list[str] | None) -> None:
    found = ScriptPlan.build(commands).direct_program("/usr/local/bin:/usr/bin:/bin")
    assert (found[1] if found is not None else None) == argv
    if found is not None:  # exec'd by the path where it was found, argv[0] as written
        assert found[0] == shutil.which(argv[0], path="/usr/local/bin:/usr/bin:/bin")


def test_a_program_is_looked_up_on_the_tasks_path_only() -> None:
    assert ScriptPlan.build(["true"]).direct_program("/nonexistent") is None
