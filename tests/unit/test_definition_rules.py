"""One test per validation rule of the job-definition language: the exact problem, where, and its fix."""

from __future__ import annotations

import warnings
from datetime import timedelta
from textwrap import dedent

import pytest

from queen.domain.definition_parser import (
    MAX_DEFINITION_BYTES,
    MAX_TASKS,
    DefinitionReport,
    check_job_definition,
    parse_job_definition,
)
from queen.domain.durations import DurationError, format_duration, parse_duration
from queen.domain.errors import InvalidDefinition
from queen.domain.job_definition import InputType, TaskMethod, TimeoutAction
from queen.domain.problems import Problem, ProblemCode, Severity

pytestmark = pytest.mark.unit

C = ProblemCode

METHODS_FIX = (
    "use one of: AWAIT_FORKED_JOB, DOCKER, EXPIRE_ARTIFACTS, FORK_JOB, HTTP_DELETE, HTTP_GET, "
    "HTTP_POST_FORM, HTTP_POST_JSON, HTTP_PUT_FORM, HTTP_PUT_JSON, JOB_FORK, JOB_FORK_AWAIT, KUBERNETES, "
    "MANUAL, MESSAGING, "
    "SHELL, WEBSOCKET"
)
NO_CONTAINER_FIX = "add `container: {image: alpine:latest}`, or set `method: SHELL` to run on the Ant's host"
TARGETS_FIX = (
    "name a task of this job, or one of FATAL, RESTART_TASK, RESTART_JOB, PAUSE_JOB, EXECUTING, COMPLETED, "
    "FAILED, ERR_<CODE>, no-op"
)
EXIT_CODE_KEYS = "APPROVED, COMPLETED, FAILED, REJECTED, SKIPPED, TIMED_OUT"
NAME_RULE = "must start with a letter or digit and hold only letters, digits, `-`, `_` and `.` (at most 100)"
START_FIX = "start with `job_type: my-job` and a `tasks:` list"
COLON_MESSAGE = (
    "invalid YAML: this line holds an unquoted `: `, so YAML read the text before it as a mapping key "
    "(making the line a mapping, not a string) and then could not parse the rest"
)
CRON_FIX = 'e.g. "0 2 * * *" for 02:00 every day, or "0 */5 * * * *" every five minutes'


def yaml(text: str) -> str:
    """Inline YAML written indented in the test; line 1 is the first line after the opening quotes."""
    return dedent(text)


def check(text: str | bytes) -> DefinitionReport:
    return check_job_definition(text)


# The helpers take Problem's fields in Problem's own positional order, so expected values read like it.
def error(  # noqa: PLR0917
    code: ProblemCode, line: int, column: int, message: str, text: str = "", fix: str = ""
) -> Problem:
    return Problem(Severity.ERROR, code, message, line, column, text, fix)


def warning(  # noqa: PLR0917
    code: ProblemCode, line: int, column: int, message: str, text: str = "", fix: str = ""
) -> Problem:
    return Problem(Severity.WARNING, code, message, line, column, text, fix)


def shell_job(extra: str = "", *, job_extra: str = "") -> str:
    """A valid one-task job; `extra` adds task lines (from line 6), `job_extra` top lines (from line 2)."""
    return f"job_type: j\n{job_extra}tasks:\n- task_type: a\n  method: SHELL\n  script: [echo hi]\n{extra}"


def unreachable(task_type: str, line: int) -> Problem:
    return warning(
        C.UNREACHABLE_TASK,
        line,
        14,
        f'task "{task_type}" is never reached: no route from the first task leads to it',
        task_type,
        f'route a task\'s on_completed, on_failed or on_exit_code to "{task_type}", mark it always_run, '
        "or remove it",
    )


def test_the_minimal_job_is_valid() -> None:
    report = check(shell_job())

    assert report.problems == ()
    assert report.ok
    assert report.definition is not None
    (task,) = report.definition.tasks
    assert (task.task_type, task.method, task.script) == ("a", TaskMethod.SHELL, ("echo hi",))


# -- YAML ----------------------------------------------------------------------------------------

YAML_CASES = [
    pytest.param(
        "job_type: j\ntasks: [\n",
        error(
            C.YAML_SYNTAX,
            3,
            1,
            "invalid YAML: expected the node content, but found '<stream end>' (while parsing a flow node)",
            "",
            "check the indentation and quoting around this line",
        ),
        id="unclosed-flow-sequence",
    ),
    pytest.param(
        "job_type: j\n  bad: indent\ntasks: x\n",
        error(
            C.YAML_SYNTAX,
            2,
            6,
            "invalid YAML: mapping values are not allowed here",
            "bad: indent",
            "check the indentation and quoting around this line",
        ),
        id="mapping-values-not-allowed",
    ),
    pytest.param(
        "job_type: *x\n",
        error(
            C.YAML_SYNTAX,
            1,
            11,
            "invalid YAML: found undefined alias 'x'",
            "job_type: *x",
            "check the indentation and quoting around this line",
        ),
        id="undefined-alias",
    ),
    pytest.param(
        shell_job(job_extra="job_type: k\n"),
        error(
            C.DUPLICATE_KEY,
            2,
            1,
            'invalid YAML: found duplicate key "job_type" with value "k" (original value: "j")',
            "job_type: k",
            "remove or rename one of the two keys",
        ),
        id="duplicate-top-level-key",
    ),
    pytest.param(
        shell_job("  method: DOCKER\n"),
        error(
            C.DUPLICATE_KEY,
            6,
            3,
            'invalid YAML: found duplicate key "method" with value "DOCKER" (original value: "SHELL")',
            "method: DOCKER",
            "remove or rename one of the two keys",
        ),
        id="duplicate-task-key",
    ),
    pytest.param("", error(C.MISSING_FIELD, 1, 1, "the definition is empty", "", START_FIX), id="empty"),
    pytest.param(
        "# only a comment\n\n",
        error(C.MISSING_FIELD, 1, 1, "the definition is empty", "", START_FIX),
        id="only-comments",
    ),
    pytest.param(
        "job_type: a\n---\njob_type: b\n",
        error(
            C.YAML_SYNTAX,
            1,
            1,
            "the file holds 2 YAML documents; a job definition is exactly one",
            "",
            "remove the `---` separators, or upload each job in its own file",
        ),
        id="two-documents",
    ),
    pytest.param(
        "- job_type: a\n- job_type: b\n",
        error(
            C.NOT_A_MAPPING,
            1,
            1,
            "a job definition must be a mapping with job_type and tasks at its top level",
            "",
            START_FIX,
        ),
        id="top-level-list",
    ),
    pytest.param(
        "just some words\n",
        error(
            C.NOT_A_MAPPING,
            1,
            1,
            "a job definition must be a mapping with job_type and tasks at its top level",
            "",
            START_FIX,
        ),
        id="top-level-scalar",
    ),
    pytest.param(
        b"job_type: j\n\xff\xfe\n",
        error(
            C.YAML_SYNTAX, 1, 1, "the definition is not UTF-8 text (byte 12)", "", "save the file as UTF-8"
        ),
        id="not-utf-8",
    ),
    pytest.param(
        "job_type: j\ndescription: Note: this is bad\ntasks: []\n",
        error(
            C.COLON_IN_PLAIN_SCALAR,
            2,
            18,
            COLON_MESSAGE,
            "description: Note: this is bad",
            'quote the whole value: description: "Note: this is bad"',
        ),
        id="unquoted-colon-in-a-field-value",
    ),
    pytest.param(
        shell_job("  after_script:\n    - echo a: b: c\n"),
        error(
            C.COLON_IN_PLAIN_SCALAR,
            7,
            13,
            COLON_MESSAGE,
            "- echo a: b: c",
            'quote the whole value: - "echo a: b: c"',
        ),
        id="unquoted-colons-in-a-script-line",
    ),
]


@pytest.mark.parametrize(("text", "expected"), YAML_CASES)
def test_yaml_problems_are_one_error_each(text: str | bytes, expected: Problem) -> None:
    report = check(text)

    assert report.problems == (expected,)
    assert report.definition is None


def test_a_tab_in_the_indentation_is_not_explained_as_an_unquoted_colon() -> None:
    # BUG: `_explain_colon` fires on any error line holding `key: value`, and says to quote the task.
    text = "job_type: j\ntasks:\n\t- task_type: a\n"

    (problem,) = check(text).problems

    assert (problem.severity, problem.code, problem.line, problem.column) == (
        Severity.ERROR,
        C.YAML_SYNTAX,
        3,
        1,
    )
    assert "\\t" in problem.message or "tab" in problem.message.lower()
    assert '"task_type: a"' not in problem.fix


def test_a_misindented_task_is_not_explained_as_an_unquoted_colon() -> None:
    # BUG: the parser error is about indentation (`expected <block end>, but found '<block sequence start>'`),
    # yet the report says the line holds an unquoted `: ` and suggests `- "task_type: b"` (a string).
    text = "job_type: j\ntasks:\n- task_type: a\n  method: SHELL\n - task_type: b\n   method: SHELL\n"

    (problem,) = check(text).problems

    assert (problem.severity, problem.code, problem.line, problem.column) == (
        Severity.ERROR,
        C.YAML_SYNTAX,
        5,
        2,
    )
    assert '"task_type: b"' not in problem.fix


def test_a_template_line_starting_with_braces_is_explained() -> None:
    # BUG (unhelpful message): `- {{ .Cmd }} run` is the classic template mistake; the report is the parser's
    # "expected <block end>, but found '<scalar>'" at the word after the braces, with no hint to quote it.
    text = shell_job("  after_script:\n    - {{ .Cmd }} run\n")

    (problem,) = check(text).problems

    assert (problem.severity, problem.line) == (Severity.ERROR, 7)
    assert "`{`" in problem.message
    assert problem.fix == 'quote the whole value: - "{{ .Cmd }} run"'


def test_a_control_character_is_reported_at_its_line_in_one_line() -> None:
    # BUG: ruamel's ReaderError is not a MarkedYAMLError, so it lands at 1:1 and its message spans two lines
    # (`...not allowed\n  in "<unicode string>", position 28`), which breaks `FILE:LINE:COLUMN:` output.
    text = "job_type: j\ndescription: a\x0cb\ntasks: []\n"

    (problem,) = check(text).problems

    assert (problem.severity, problem.code, problem.line, problem.column) == (
        Severity.ERROR,
        C.YAML_SYNTAX,
        2,
        15,
    )
    assert "\n" not in problem.message
    assert "#x000c" in problem.message


def test_a_reused_anchor_does_not_escape_as_a_python_warning() -> None:
    # BUG: ruamel's ReusedAnchorWarning goes to `warnings` (stderr of `formicary lint`, and an exception under
    # `-W error`) instead of becoming a Problem; `check_job_definition` must never raise for bad input.
    text = shell_job(job_extra="description: &a one\nplatform: &a two\n")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = check(text)

    assert report.definition is not None


def test_text_after_a_unicode_line_separator_is_read_from_the_right_line() -> None:
    # BUG: Reader splits the source with str.splitlines(), which also breaks at U+2028/U+2029/U+0085; YAML 1.2
    # (ruamel) does not. Every later line is then off by one: here the recovered command becomes "pt:".
    text = (
        'job_type: j\ndescription: "before\u2028after"\ntasks:\n- task_type: a\n  method: SHELL\n'
        "  script:\n    - echo Endpoint: http://x\n"
    )

    report = check(text)

    assert report.definition is not None
    assert report.definition.tasks[0].script == ("echo Endpoint: http://x",)
    (problem,) = report.problems
    assert (problem.code, problem.line, problem.text) == (
        C.COLON_IN_PLAIN_SCALAR,
        7,
        "echo Endpoint: http://x",
    )


# -- fields --------------------------------------------------------------------------------------

FIELD_CASES = [
    pytest.param(
        shell_job(job_extra="descripton: x\n"),
        (
            error(
                C.UNKNOWN_FIELD,
                2,
                1,
                'unknown field "descripton" in the job; did you mean "description"?',
                "descripton",
                'rename it: did you mean "description"?',
            ),
        ),
        id="unknown-job-field",
    ),
    pytest.param(
        shell_job(job_extra="zzqqxx: 1\n"),
        (
            error(
                C.UNKNOWN_FIELD,
                2,
                1,
                'unknown field "zzqqxx" in the job',
                "zzqqxx",
                "remove it, or check the spelling against the docs",
            ),
        ),
        id="unknown-job-field-without-suggestion",
    ),
    pytest.param(
        shell_job("  contianer:\n    image: alpine\n"),
        (
            error(
                C.UNKNOWN_FIELD,
                6,
                3,
                'unknown field "contianer" in tasks[0]; did you mean "container"?',
                "contianer",
                'rename it: did you mean "container"?',
            ),
        ),
        id="unknown-task-field",
    ),
    pytest.param(
        shell_job("  artifacts:\n    path: [out.txt]\n"),
        (
            error(
                C.UNKNOWN_FIELD,
                7,
                5,
                'unknown field "path" in tasks[0].artifacts; did you mean "paths"?',
                "path",
                'rename it: did you mean "paths"?',
            ),
        ),
        id="unknown-nested-field",
    ),
    pytest.param(
        shell_job(job_extra="script: [x]\n"),
        (
            error(
                C.MISPLACED_FIELD,
                2,
                1,
                '"script" is not a field of the job; it belongs to a task (under `tasks:`)',
                "script",
                'move "script" to a task (under `tasks:`)',
            ),
        ),
        id="task-field-at-job-level",
    ),
    pytest.param(
        shell_job(job_extra="task_type: a\n"),
        (
            error(
                C.MISPLACED_FIELD,
                2,
                1,
                '"task_type" is not a field of the job; it belongs to a task (under `tasks:`)',
                "task_type",
                'move "task_type" to a task (under `tasks:`)',
            ),
        ),
        id="task-type-at-job-level",
    ),
    pytest.param(
        shell_job("  cron_trigger: '* * * * *'\n"),
        (
            error(
                C.MISPLACED_FIELD,
                6,
                3,
                '"cron_trigger" is not a field of tasks[0]; it belongs to the job\'s top level',
                "cron_trigger",
                'move "cron_trigger" to the job\'s top level',
            ),
        ),
        id="job-field-at-task-level",
    ),
    pytest.param(
        shell_job("  job_type: k\n"),
        (
            error(
                C.MISPLACED_FIELD,
                6,
                3,
                '"job_type" is not a field of tasks[0]; it belongs to the job\'s top level',
                "job_type",
                'move "job_type" to the job\'s top level',
            ),
        ),
        id="job-type-at-task-level",
    ),
    pytest.param(
        shell_job(job_extra="1: one\n"),
        (
            error(
                C.WRONG_TYPE,
                2,
                1,
                "field names must be text, not a number (1) in the job",
                "1",
                "use one of the documented field names",
            ),
        ),
        id="number-as-field-name",
    ),
    pytest.param(
        "tasks:\n- task_type: a\n  method: SHELL\n  script: [x]\n",
        (
            error(
                C.MISSING_FIELD,
                1,
                1,
                "the job has no job_type",
                "",
                "add `job_type: a-name` (letters, digits, `-`, `_`, `.`)",
            ),
        ),
        id="missing-job-type",
    ),
    pytest.param(
        "job_type: j\ndescription: nothing to do\n",
        (
            error(
                C.MISSING_FIELD,
                1,
                1,
                "the job has no tasks",
                "",
                "add a `tasks:` list with at least one `- task_type: ...` entry",
            ),
        ),
        id="missing-tasks",
    ),
    pytest.param(
        "job_type: j\ntasks: []\n",
        (
            error(
                C.WRONG_TYPE,
                2,
                8,
                "tasks must be a non-empty list of tasks",
                "[]",
                "write each task as a `- task_type: ...` item under `tasks:`",
            ),
        ),
        id="empty-tasks",
    ),
    pytest.param(
        "job_type: j\ntasks:\n  a: 1\n",
        (
            error(
                C.WRONG_TYPE,
                3,
                3,
                "tasks must be a non-empty list of tasks",
                "a: 1",
                "write each task as a `- task_type: ...` item under `tasks:`",
            ),
        ),
        id="tasks-as-a-mapping",
    ),
    pytest.param(
        "job_type: j\ntasks:\n- just words\n",
        (
            error(
                C.WRONG_TYPE,
                3,
                3,
                "tasks[0] must be a mapping of fields, not a string",
                "just words",
                "write a task as `key: value` lines indented under it",
            ),
        ),
        id="task-not-a-mapping",
    ),
    pytest.param(
        "job_type: j\ntasks:\n- method: SHELL\n  script: [x]\n",
        (
            error(
                C.MISSING_FIELD,
                3,
                3,
                "tasks[0] has no task_type",
                "",
                "add `task_type: a-name` (letters, digits, `-`, `_`, `.`)",
            ),
        ),
        id="missing-task-type",
    ),
    pytest.param(
        shell_job("  on_completed: b\n- task_type: b\n  method: SHELL\n  script: [x]\n")
        + "- task_type: b\n  method: SHELL\n  script: [y]\n",
        (
            error(
                C.DUPLICATE_TASK_TYPE,
                10,
                14,
                'task_type "b" is defined twice (first at line 7)',
                "b",
                "give each task a unique task_type",
            ),
        ),
        id="duplicate-task-type",
    ),
    pytest.param(
        "job_type: j\ntasks:\n- task_type: my task!\n  method: SHELL\n  script: [x]\n",
        (
            error(
                C.BAD_VALUE, 3, 14, f'task_type "my task!" {NAME_RULE}', "my task!", "rename it, e.g. my-task"
            ),
        ),
        id="bad-task-type-name",
    ),
    pytest.param(
        "job_type: -j\ntasks:\n- task_type: a\n  method: SHELL\n  script: [x]\n",
        (error(C.BAD_VALUE, 1, 11, f'job_type "-j" {NAME_RULE}', "-j", "rename it, e.g. j"),),
        id="bad-job-type-name",
    ),
    pytest.param(
        "job_type: j\ntasks:\n- task_type: FATAL\n  method: SHELL\n  script: [x]\n",
        (
            error(
                C.BAD_VALUE,
                3,
                14,
                'task_type "FATAL" is a reserved route word',
                "FATAL",
                "rename the task, e.g. fatal-task",
            ),
        ),
        id="reserved-word-as-task-type",
    ),
    pytest.param(
        "job_type: j\ntasks:\n- task_type: ERR_DISK\n  method: SHELL\n  script: [x]\n",
        (
            error(
                C.BAD_VALUE,
                3,
                14,
                'task_type "ERR_DISK" is a reserved route word',
                "ERR_DISK",
                "rename the task, e.g. err_disk-task",
            ),
        ),
        id="error-code-as-task-type",
    ),
]


@pytest.mark.parametrize(("text", "expected"), FIELD_CASES)
def test_field_rules(text: str, expected: tuple[Problem, ...]) -> None:
    report = check(text)

    assert report.problems == expected
    assert report.definition is None


def test_an_unknown_nested_field_is_not_reported_again_as_a_missing_container() -> None:
    # BUG (cascade): the container is written (with a typo inside); the report adds 'task "a" runs with DOCKER
    # but has no container image' with the fix "add `container: ...`", which would make a duplicate key.
    text = (
        "job_type: j\ntasks:\n- task_type: a\n  method: DOCKER\n"
        "  container:\n    imag: alpine\n  script: [x]\n"
    )

    assert check(text).problems == (
        error(
            C.MISSING_FIELD,
            6,
            5,
            "tasks[0].container has no image",
            "imag: alpine",
            "add `image:` under tasks[0].container",
        ),
        error(
            C.UNKNOWN_FIELD,
            6,
            5,
            'unknown field "imag" in tasks[0].container; did you mean "image"?',
            "imag",
            'rename it: did you mean "image"?',
        ),
    )


def test_a_field_without_a_value_is_reported_on_its_own_line() -> None:
    # BUG: a null value takes ruamel's position of the *next* token, so `retry:` (line 6) is reported at
    # line 7 with the text of line 7.
    text = shell_job("  retry:\n  timeout: 5s\n")

    (problem,) = check(text).problems

    assert (problem.code, problem.line, problem.message) == (
        C.WRONG_TYPE,
        6,
        "tasks[0].retry must be a whole number, not nothing (null)",
    )
    assert "timeout" not in problem.text


def test_tasks_without_a_value_is_reported_on_its_own_line() -> None:
    # BUG: same as above; `tasks:` on the last line is reported at line 3, past the end of the file.
    (problem,) = check("job_type: j\ntasks:\n").problems

    assert (problem.code, problem.line, problem.message) == (
        C.WRONG_TYPE,
        2,
        "tasks must be a non-empty list of tasks",
    )


# -- routes and the graph ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "FATAL",
        "RESTART_TASK",
        "RESTART_JOB",
        "PAUSE_JOB",
        "EXECUTING",
        "COMPLETED",
        "FAILED",
        "ERR_SOMETHING",
        "ERR_429",
        "no-op",
    ],
)
def test_reserved_route_targets_are_accepted(target: str) -> None:
    text = shell_job(f"  on_completed: {target}\n  on_failed: {target}\n  on_exit_code:\n    3: {target}\n")

    report = check(text)

    assert report.problems == ()
    assert report.definition is not None
    task = report.definition.tasks[0]
    assert (task.on_completed, task.on_failed, dict(task.on_exit_code)) == (target, target, {"3": target})


def test_unknown_route_target_suggests_the_task() -> None:
    text = shell_job(
        "  on_completed: seccond\n- task_type: second\n  method: SHELL\n  script: [x]\n  always_run: true\n"
    )

    assert check(text).problems == (
        error(
            C.UNKNOWN_ROUTE_TARGET,
            6,
            17,
            'task "a" routes on_completed to "seccond", which is neither a task of this job nor a reserved '
            'word; did you mean "second"?',
            "seccond",
            'rename it: did you mean "second"?',
        ),
    )


def test_unknown_route_target_suggests_a_reserved_word() -> None:
    assert check(shell_job("  on_failed: fatl\n")).problems == (
        error(
            C.UNKNOWN_ROUTE_TARGET,
            6,
            14,
            'task "a" routes on_failed to "fatl", which is neither a task of this job nor a reserved word; '
            'did you mean "FATAL"?',
            "fatl",
            'rename it: did you mean "FATAL"?',
        ),
    )


def test_unknown_route_target_on_an_exit_code_points_at_that_code() -> None:
    assert check(shell_job("  on_exit_code:\n    2: zzzz\n")).problems == (
        error(
            C.UNKNOWN_ROUTE_TARGET,
            7,
            8,
            'task "a" routes on_exit_code.2 to "zzzz", which is neither a task of this job nor a reserved '
            "word",
            "zzzz",
            TARGETS_FIX,
        ),
    )


def test_unknown_dependency_suggests_the_task() -> None:
    text = shell_job(
        "  dependencies: [bild]\n- task_type: build\n  method: SHELL\n  script: [x]\n  always_run: true\n"
    )

    assert check(text).problems == (
        error(
            C.UNKNOWN_DEPENDENCY,
            6,
            17,
            'task "a" lists "bild" in dependencies, but the job has no such task; did you mean "build"?',
            "bild",
            'rename it: did you mean "build"?',
        ),
    )


def test_a_task_depending_on_itself() -> None:
    assert check(shell_job("  dependencies: [a]\n")).problems == (
        error(
            C.UNKNOWN_DEPENDENCY,
            6,
            17,
            'task "a" lists itself in dependencies',
            "a",
            "remove a from dependencies",
        ),
    )


def _task(name: str, extra: str = "") -> str:
    return f"- task_type: {name}\n  method: SHELL\n  script: [x]\n{extra}"


def test_a_cycle_of_two_tasks_is_reported_once() -> None:
    text = "job_type: j\ntasks:\n" + _task("a", "  on_completed: b\n") + _task("b", "  on_completed: a\n")

    assert check(text).problems == (
        error(
            C.CYCLE,
            10,
            17,
            "the tasks form a cycle, so the job would never end: a → b → a",
            "a",
            'route on_completed of "b" to a later task, or use RESTART_JOB / EXECUTING to repeat work on '
            "purpose",
        ),
    )


def test_a_cycle_of_three_tasks_through_every_kind_of_route_is_reported_once() -> None:
    text = (
        "job_type: j\ntasks:\n"
        + _task("a", "  on_completed: b\n")
        + _task("b", "  on_failed: c\n")
        + _task("c", "  on_exit_code:\n    3: a\n")
    )

    assert check(text).problems == (
        error(
            C.CYCLE,
            15,
            8,
            "the tasks form a cycle, so the job would never end: a → b → c → a",
            "a",
            'route on_exit_code.3 of "c" to a later task, or use RESTART_JOB / EXECUTING to repeat work on '
            "purpose",
        ),
    )


@pytest.mark.parametrize(("route", "column"), [("on_completed", 17), ("on_failed", 14)])
def test_a_task_routing_to_itself_is_an_error(route: str, column: int) -> None:
    assert check(shell_job(f"  {route}: a\n")).problems == (
        error(
            C.CYCLE,
            6,
            column,
            f'task "a" routes {route} to itself, which would run it forever',
            "a",
            "use `retry: N` to try again on failure, or route a specific exit code to EXECUTING for a "
            "sensor loop",
        ),
    )


def test_a_task_routing_an_exit_code_to_itself_is_a_sensor_loop() -> None:
    report = check(shell_job("  on_exit_code:\n    1: a\n    2: EXECUTING\n"))

    assert report.problems == ()
    assert report.definition is not None
    assert dict(report.definition.tasks[0].on_exit_code) == {"1": "a", "2": "EXECUTING"}


def test_an_unreachable_task_is_a_warning_and_the_job_is_still_returned() -> None:
    report = check(shell_job() + _task("b"))

    assert report.problems == (unreachable("b", 6),)
    assert report.ok
    assert report.definition is not None
    assert [task.task_type for task in report.definition.tasks] == ["a", "b"]


def test_an_always_run_task_needs_no_route() -> None:
    assert check(shell_job() + _task("b", "  always_run: true\n")).problems == ()


MANUAL_FIX = "add `on_exit_code: {APPROVED: <next task>, REJECTED: <rollback task>}`"
MANUAL_MESSAGE = (
    'MANUAL task "gate" handles neither APPROVED nor REJECTED in on_exit_code, so the decision would not '
    "choose a path"
)


def test_a_manual_task_without_on_exit_code() -> None:
    text = "job_type: j\ntasks:\n- task_type: gate\n  method: MANUAL\n  on_completed: a\n" + _task("a")

    assert check(text).problems == (error(C.MANUAL_UNROUTED, 3, 14, MANUAL_MESSAGE, "gate", MANUAL_FIX),)


def test_a_manual_task_routing_only_timed_out() -> None:
    text = (
        "job_type: j\ntasks:\n- task_type: gate\n  method: MANUAL\n  on_exit_code:\n    TIMED_OUT: a\n"
        + _task("a")
    )

    assert check(text).problems == (error(C.MANUAL_UNROUTED, 6, 5, MANUAL_MESSAGE, "gate", MANUAL_FIX),)


@pytest.mark.parametrize("decision", ["APPROVED", "REJECTED"])
def test_a_manual_task_handling_one_decision_is_enough(decision: str) -> None:
    text = (
        f"job_type: j\ntasks:\n- task_type: gate\n  method: MANUAL\n  on_exit_code:\n    {decision}: a\n"
        + _task("a")
    )

    assert check(text).problems == ()


def test_a_manual_script_is_never_run() -> None:
    text = (
        "job_type: j\ntasks:\n- task_type: gate\n  method: MANUAL\n  script: [echo x]\n"
        "  on_exit_code:\n    APPROVED: COMPLETED\n"
    )

    assert check(text).problems == (
        warning(
            C.MISPLACED_FIELD,
            5,
            11,
            'task "gate" is MANUAL: its script is never run',
            "[echo x]",
            "remove script, or move the work to a task before or after the gate",
        ),
    )


# -- exit codes ----------------------------------------------------------------------------------


def test_approved_on_a_task_that_is_not_manual() -> None:
    assert check(shell_job("  on_exit_code:\n    APPROVED: COMPLETED\n")).problems == (
        error(
            C.BAD_EXIT_CODE,
            7,
            5,
            "on_exit_code APPROVED is only produced by MANUAL tasks, and this task is SHELL",
            "APPROVED",
            "route COMPLETED/FAILED or a numeric exit code instead, or make the task `method: MANUAL`",
        ),
    )


@pytest.mark.parametrize("key", ["OOPS", "1000", "-1", "1.5"])
def test_bad_exit_code_key(key: str) -> None:
    assert check(shell_job(f"  on_exit_code:\n    {key}: FATAL\n")).problems == (
        error(
            C.BAD_EXIT_CODE,
            7,
            5,
            f'on_exit_code key "{key}" is neither an exit code (0-999) nor one of {EXIT_CODE_KEYS}',
            key,
            "use a number such as 1 or 404, or an outcome such as FAILED",
        ),
    )


def test_exit_code_keys_are_normalised() -> None:
    report = check(
        shell_job("  on_exit_code:\n    '404': FATAL\n    0: COMPLETED\n    failed: RESTART_TASK\n")
    )

    assert report.problems == ()
    assert report.definition is not None
    assert dict(report.definition.tasks[0].on_exit_code) == {
        "404": "FATAL",
        "0": "COMPLETED",
        "FAILED": "RESTART_TASK",
    }


# -- durations, methods, types -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "message", "fix"),
    [
        (
            "5x",
            "tasks[0].timeout: '5x' is not a duration; a duration is like 90s, 5m, 4h or 1h30m",
            "e.g. 30s or 1h30m",
        ),
        (
            "90",
            "tasks[0].timeout: '90' has no unit; a duration is like 90s, 5m, 4h or 1h30m",
            "write 90s for seconds",
        ),
        (
            "-1s",
            "tasks[0].timeout: '-1s' is not a duration; a duration is like 90s, 5m, 4h or 1h30m",
            "e.g. 30s or 1h30m",
        ),
        (
            "[5m]",
            "tasks[0].timeout must be a duration like 90s, 5m, 4h or 1h30m, not a list",
            "write a number followed by a unit: ms, s, m, h or d",
        ),
    ],
)
def test_bad_duration(written: str, message: str, fix: str) -> None:
    assert check(shell_job(f"  timeout: {written}\n")).problems == (
        error(C.BAD_DURATION, 6, 12, message, written, fix),
    )


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("4h", timedelta(hours=4)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("250ms", timedelta(milliseconds=250)),
    ],
)
def test_good_duration(written: str, expected: timedelta) -> None:
    report = check(shell_job(f"  timeout: {written}\n  delay_between_retries: {written}\n"))

    assert report.problems == ()
    assert report.definition is not None
    task = report.definition.tasks[0]
    assert (task.timeout, task.delay_between_retries) == (expected, expected)


def test_bad_method_suggests_the_closest() -> None:
    # BUG (cascade): with `method: SHEL` the task also gets 'runs with KUBERNETES ... has no container
    # image': the unreadable method silently falls back to the default, and the author is told about a
    # method they never wrote.
    text = "job_type: j\ntasks:\n- task_type: a\n  method: SHEL\n  script: [x]\n"

    assert check(text).problems == (
        error(C.BAD_METHOD, 4, 11, 'unknown method "SHEL"; did you mean "SHELL"?', "SHEL", METHODS_FIX),
    )


def test_method_without_a_value_is_one_problem_on_its_line() -> None:
    # BUG: two errors at line 5 (the next key): the null position, and the KUBERNETES-default cascade.
    text = "job_type: j\ntasks:\n- task_type: a\n  method:\n  script: [x]\n"

    (problem,) = check(text).problems

    assert (problem.code, problem.line, problem.message) == (
        C.WRONG_TYPE,
        4,
        "tasks[0].method must be a string, not nothing (null)",
    )


def test_method_aliases_fork_job_and_await_forked_job() -> None:
    text = (
        "job_type: j\ntasks:\n- task_type: fork\n  method: FORK_JOB\n  fork_job_type: child\n"
        "  on_completed: wait\n"
        "- task_type: wait\n  method: AWAIT_FORKED_JOB\n  await_forked_tasks: [fork]\n"
    )

    report = check(text)

    assert [(p.severity, p.code, p.line) for p in report.problems] == [
        (Severity.WARNING, C.NOT_SUPPORTED, 4),
        (Severity.WARNING, C.NOT_SUPPORTED, 8),
    ]
    assert report.definition is not None
    assert [task.method for task in report.definition.tasks] == [
        TaskMethod.JOB_FORK,
        TaskMethod.JOB_FORK_AWAIT,
    ]
    assert report.definition.tasks[0].fork_job_type == "child"
    assert report.definition.tasks[1].await_forked_tasks == ("fork",)


def test_the_default_method_is_kubernetes_and_needs_a_container() -> None:
    assert check("job_type: j\ntasks:\n- task_type: a\n  script: [x]\n").problems == (
        error(
            C.MISSING_FIELD,
            3,
            3,
            'task "a" runs with KUBERNETES (KUBERNETES is the default when `method` is omitted) but has no '
            "container image",
            "task_type: a",
            NO_CONTAINER_FIX,
        ),
    )


def test_the_default_method_with_a_container() -> None:
    report = check("job_type: j\ntasks:\n- task_type: a\n  container:\n    image: alpine\n  script: [x]\n")

    assert report.problems == ()
    assert report.definition is not None
    task = report.definition.tasks[0]
    assert task.method is TaskMethod.KUBERNETES
    assert task.container is not None
    assert task.container.image == "alpine"


@pytest.mark.parametrize(
    ("method", "message", "fix"),
    [
        (
            "HTTP_GET",
            'task "a" is HTTP_GET but has no url',
            "add `url: https://...` (or the URL as the script line)",
        ),
        (
            "JOB_FORK",
            'task "a" is JOB_FORK but names no job to fork',
            "add `fork_job_type: the-child-job-type`",
        ),
        (
            "JOB_FORK_AWAIT",
            'task "a" is JOB_FORK_AWAIT but awaits no forked task',
            "add `await_forked_tasks: [the-fork-task]`",
        ),
        (
            "MESSAGING",
            'task "a" is MESSAGING but has no messaging_request_queue',
            "add `messaging_request_queue: queue-name`",
        ),
        ("SHELL", 'task "a" runs with SHELL but has no script', "add `script:` with at least one command"),
    ],
)
def test_a_method_without_the_field_it_needs(method: str, message: str, fix: str) -> None:
    text = f"job_type: j\ntasks:\n- task_type: a\n  method: {method}\n"

    problems = check(text).problems

    assert problems[0] == error(C.MISSING_FIELD, 4, 11, message, method, fix)
    # a Queen-side method this Queen does not run yet is also said so (test_what_the_queen_does_not_run)
    assert [p.code for p in problems[1:]] == ([C.NOT_SUPPORTED] if method.startswith("JOB_FORK") else [])


def test_what_the_queen_does_not_run_is_refused_or_said() -> None:
    text = dedent(
        """\
        job_type: j
        notify:
          email: {recipients: [ops@example.com]}
        tasks:
        - task_type: a
          method: SHELL
          script: [echo hi]
          fan_out: {items: [x, y]}
          webhook: {url: "https://example.com/hook"}
          on_completed: b
        - task_type: b
          method: SHELL
          script: [echo hi]
          sub_workflow: {job_type: child}
          on_completed: c
        - task_type: c
          method: EXPIRE_ARTIFACTS
        """
    )

    report = check(text)

    assert report.definition is None
    assert [(p.severity, p.line, p.message) for p in report.problems] == [
        (
            Severity.WARNING,
            3,
            "notify is not delivered by this Queen yet: no email, chat or webhook is sent when the job "
            "ends (approval reminders and escalations use the approval policy's recipients and the "
            "job's webhook)",
        ),
        (Severity.ERROR, 8, 'task "a" uses fan_out, which this Queen does not run yet'),
        (
            Severity.WARNING,
            9,
            'task "a" has a webhook, which this Queen does not call (the job\'s webhook is called when '
            "an approval is escalated)",
        ),
        (Severity.ERROR, 14, 'task "b" uses sub_workflow, which this Queen does not run yet'),
        (
            Severity.WARNING,
            17,
            'task "c" is EXPIRE_ARTIFACTS, which this Queen does not run yet: the task fails with '
            "ERR_UNSUPPORTED_METHOD when the job reaches it",
        ),
    ]
    assert {p.code for p in report.problems} == {C.NOT_SUPPORTED}
    assert all(p.fix for p in report.problems)


def test_an_http_task_with_a_url() -> None:
    report = check(
        "job_type: j\ntasks:\n- task_type: a\n  method: HTTP_GET\n  url: https://example.com/health\n"
    )

    assert report.problems == ()
    assert report.definition is not None
    assert report.definition.tasks[0].url == "https://example.com/health"


WRONG_TYPE_CASES = [
    pytest.param(
        shell_job("  retry: three\n"),
        error(
            C.WRONG_TYPE,
            6,
            10,
            "tasks[0].retry must be a whole number, not a string",
            "three",
            "write a number between 0 and 100, without quotes",
        ),
        id="string-for-retry",
    ),
    pytest.param(
        shell_job("  retry: '3'\n"),
        error(
            C.WRONG_TYPE,
            6,
            10,
            "tasks[0].retry must be a whole number, not a string",
            "3",
            "write a number between 0 and 100, without quotes",
        ),
        id="quoted-number-for-retry",
    ),
    pytest.param(
        shell_job("  retry: 101\n"),
        error(
            C.BAD_VALUE,
            6,
            10,
            "tasks[0].retry must be between 0 and 100, not 101",
            "101",
            "use a number between 0 and 100",
        ),
        id="retry-out-of-range",
    ),
    pytest.param(
        shell_job('  always_run: "true"\n'),
        error(
            C.WRONG_TYPE,
            6,
            15,
            "tasks[0].always_run must be true or false, not a string",
            "true",
            "write true without quotes",
        ),
        id="quoted-true-for-always-run",
    ),
    pytest.param(
        shell_job("  allow_failure: 1\n"),
        error(
            C.WRONG_TYPE,
            6,
            18,
            "tasks[0].allow_failure must be true or false, not a number",
            "1",
            "write true or false, without quotes",
        ),
        id="number-for-allow-failure",
    ),
    pytest.param(
        shell_job(job_extra="description: {summary: x}\n"),
        error(
            C.WRONG_TYPE,
            2,
            14,
            "description starts with `{`, so YAML read it as a mapping instead of text",
            "{summary: x}",
            'quote the whole value: "{summary: x}"',
        ),
        id="mapping-for-description",
    ),
    pytest.param(
        "job_type: j\ntasks:\n- task_type: a\n  method: SHELL\n  script:\n    - {{ .Cmd }}\n",
        error(
            C.WRONG_TYPE,
            6,
            7,
            "tasks[0].script[0] starts with `{`, so YAML read it as a mapping instead of text",
            "{{ .Cmd }}",
            'quote the whole value: "{{ .Cmd }}"',
        ),
        # BUG (cascade): the report also says 'task "a" runs with SHELL but has no script' at line 4.
        id="mapping-for-a-script-line-starting-with-braces",
    ),
    pytest.param(
        shell_job(job_extra="description: [a, b]\n"),
        # BUG: the fix is built from Python's str() of the value: 'quote it: "[\'a\', \'b\']"'.
        error(
            C.WRONG_TYPE, 2, 14, "description must be a string, not a list", "[a, b]", 'quote it: "[a, b]"'
        ),
        id="list-for-description",
    ),
    pytest.param(
        shell_job(job_extra="description: true\n"),
        # BUG: the fix is built from Python's str() of the value: 'quote it: "True"'.
        error(C.WRONG_TYPE, 2, 14, "description must be a string, not a boolean", "true", 'quote it: "true"'),
        id="boolean-for-description",
    ),
]


@pytest.mark.parametrize(("text", "expected"), WRONG_TYPE_CASES)
def test_wrong_types(text: str, expected: Problem) -> None:
    assert check(text).problems == (expected,)


def test_script_lines_of_other_scalar_types_are_the_commands_they_spell() -> None:
    report = check(
        "job_type: j\ntasks:\n- task_type: a\n  method: SHELL\n  script:\n    - true\n    - 42\n    - false\n"
    )

    assert report.problems == ()
    assert report.definition is not None
    assert report.definition.tasks[0].script == ("true", "42", "false")


def test_a_script_line_with_an_unquoted_colon_is_recovered_with_a_warning() -> None:
    report = check(shell_job("  after_script:\n    - echo url: http://x  # comment\n"))

    assert report.definition is not None
    assert report.definition.tasks[0].after_script == ("echo url: http://x",)
    assert report.problems == (
        warning(
            C.COLON_IN_PLAIN_SCALAR,
            7,
            7,
            "tasks[0].after_script[0] holds an unquoted `: `, so YAML reads it as a mapping; it is taken as "
            "the command written on the line",
            "echo url: http://x",
            'quote the whole line: "echo url: http://x"',
        ),
    )


# -- limits --------------------------------------------------------------------------------------


def _padded_to(size: int) -> str:
    base = shell_job()
    padding = size - len(base.encode()) - 2
    text = base + "#" + "x" * padding + "\n"
    assert len(text.encode()) == size
    return text


def test_a_definition_of_exactly_one_mebibyte_is_read() -> None:
    assert check(_padded_to(MAX_DEFINITION_BYTES)).ok


@pytest.mark.parametrize("as_bytes", [False, True])
def test_a_definition_over_one_mebibyte(as_bytes: bool) -> None:
    text = _padded_to(MAX_DEFINITION_BYTES + 1)

    assert check(text.encode() if as_bytes else text).problems == (
        error(
            C.TOO_LARGE,
            1,
            1,
            "the definition is 1048577 bytes; the limit is 1048576 bytes (1 MiB)",
            "",
            "split it into several job types and link them with JOB_FORK or sub_workflow",
        ),
    )


def test_the_size_limit_counts_utf8_bytes_not_characters() -> None:
    text = shell_job(job_extra="description: " + "é" * (MAX_DEFINITION_BYTES // 2) + "\n")
    assert len(text) < MAX_DEFINITION_BYTES

    (problem,) = check(text).problems

    assert problem.code is C.TOO_LARGE


def _chain(count: int) -> str:
    tasks = "".join(
        _task(f"t{index}", f"  on_completed: t{index + 1}\n" if index < count - 1 else "")
        for index in range(count)
    )
    return "job_type: j\ntasks:\n" + tasks


def test_five_hundred_tasks_are_read() -> None:
    report = check(_chain(MAX_TASKS))

    assert report.problems == ()
    assert report.definition is not None
    assert len(report.definition.tasks) == MAX_TASKS


def test_more_than_five_hundred_tasks() -> None:
    assert check(_chain(MAX_TASKS + 1)).problems == (
        error(
            C.TOO_MANY_TASKS,
            3,
            1,
            "the job has 501 tasks; the limit is 500",
            "tasks",
            "split the job and link the parts with JOB_FORK or sub_workflow",
        ),
    )


def test_aliases_that_expand_past_the_node_budget() -> None:
    lists = "".join(
        f"    {name}: &{name} [{', '.join([f'*{previous}'] * 10)}]\n"
        for previous, name in zip("abcde", "bcdef", strict=True)
    )
    text = shell_job("  variables:\n    a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + lists)

    (problem,) = check(text).problems

    assert (problem.severity, problem.code) == (Severity.ERROR, C.TOO_COMPLEX)
    assert problem.message.endswith("expands into more than 200000 values (YAML aliases?)")


# -- cron ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("expression", ["every day", "61 * * * *", "* * * *", "0 0 */5 * * * *"])
def test_bad_cron(expression: str) -> None:
    assert check(shell_job(job_extra=f"cron_trigger: '{expression}'\n")).problems == (
        error(
            C.BAD_CRON,
            2,
            15,
            f'cron_trigger "{expression}" is not a cron expression of 5 fields '
            "(minute hour day month weekday) or 6 with seconds first",
            expression,
            CRON_FIX,
        ),
    )


@pytest.mark.parametrize(
    "expression", ["0 2 * * *", "*/15 9-17 * * MON-FRI", "0 */5 * * * *", "30 0 2 * * *"]
)
def test_good_cron(expression: str) -> None:
    report = check(shell_job(job_extra=f"cron_trigger: '{expression}'\n"))

    assert report.problems == ()
    assert report.definition is not None
    assert report.definition.cron_trigger == expression


# -- approval policies ---------------------------------------------------------------------------

GATE = (
    "job_type: j\ntasks:\n- task_type: gate\n  method: MANUAL\n  on_exit_code:\n    APPROVED: ok\n"
    "    REJECTED: ok\n  approval_policy:\n"
)
OK_TASK = _task("ok")


def test_approval_policy_on_a_task_that_is_not_manual() -> None:
    assert check(shell_job("  approval_policy:\n    min_approvals: 2\n")).problems == (
        error(
            C.MISPLACED_FIELD,
            7,
            5,
            'task "a" has an approval_policy but is SHELL; only MANUAL tasks wait for approval',
            "approval_policy",
            "set `method: MANUAL`, or remove approval_policy",
        ),
    )


def test_a_full_approval_policy() -> None:
    text = (
        GATE
        + "    min_approvals: 2\n    sla_deadline: 4h\n    timeout_action: AUTO_REJECT\n"
        + "    quorum:\n    - group: sre\n      min: 2\n"
        + "    sla:\n    - after: 1h\n      action: REMIND\n    - after: 2h\n      action: ESCALATE\n"
        + "    inputs:\n    - name: env\n      type: enum\n"
        + "      values: [staging, prod]\n      default: prod\n"
        + OK_TASK
    )

    report = check(text)

    assert report.problems == ()
    assert report.definition is not None
    policy = report.definition.tasks[0].approval_policy
    assert policy is not None
    assert (policy.min_approvals, policy.sla_deadline, policy.timeout_action) == (
        2,
        timedelta(hours=4),
        TimeoutAction.AUTO_REJECT,
    )
    assert [(rule.group, rule.min) for rule in policy.quorum] == [("sre", 2)]
    assert [step.after for step in policy.sla] == [timedelta(hours=1), timedelta(hours=2)]
    (spec,) = policy.inputs
    assert (spec.name, spec.type, spec.values, spec.default) == (
        "env",
        InputType.ENUM,
        ("staging", "prod"),
        "prod",
    )


APPROVAL_CASES = [
    pytest.param(
        "    quorum:\n    - group: sre\n",
        error(
            C.MISSING_FIELD,
            10,
            7,
            "tasks[0].approval_policy.quorum[0] has no min",
            "group: sre",
            "add `min:` under tasks[0].approval_policy.quorum[0]",
        ),
        id="quorum-without-min",
    ),
    pytest.param(
        "    quorum:\n    - group: sre\n      min: 0\n",
        error(
            C.BAD_VALUE,
            11,
            12,
            "tasks[0].approval_policy.quorum[0].min must be between 1 and 100, not 0",
            "0",
            "use a number between 1 and 100",
        ),
        id="quorum-min-zero",
    ),
    pytest.param(
        "    quorum:\n      group: sre\n      min: 2\n",
        error(
            C.WRONG_TYPE,
            10,
            7,
            "tasks[0].approval_policy.quorum must be a list, not a single value",
            "group: sre",
            "write each entry as a `- ` item",
        ),
        id="quorum-not-a-list",
    ),
    pytest.param(
        "    sla:\n    - after: 2h\n      action: ESCALATE\n    - after: 1h\n      action: REMIND\n",
        error(
            C.BAD_VALUE,
            9,
            5,
            "the steps of tasks[0].approval_policy.sla must be in order of their `after`",
            "sla:",
            "sort the SLA ladder from the earliest step to the latest",
        ),
        id="sla-ladder-out-of-order",
    ),
    pytest.param(
        "    sla:\n    - after: 2h\n      action: NAG\n",
        error(
            C.BAD_VALUE,
            11,
            15,
            'unknown SLA action "NAG"',
            "NAG",
            "use one of: AUTO_APPROVE, AUTO_REJECT, ESCALATE, REMIND, TIME_OUT",
        ),
        id="sla-unknown-action",
    ),
    pytest.param(
        "    inputs:\n    - name: env\n      type: enum\n",
        error(
            C.MISSING_FIELD,
            10,
            7,
            'input "env" is an enum without values',
            "name: env",
            "add `values: [a, b]`",
        ),
        id="enum-input-without-values",
    ),
    pytest.param(
        "    inputs:\n    - name: count\n      type: number\n      default: lots\n",
        error(
            C.BAD_VALUE,
            10,
            7,
            'the default of input "count" is not a valid number',
            "name: count",
            "make the default match the input's type (and its values, for an enum)",
        ),
        id="default-of-the-wrong-type",
    ),
    pytest.param(
        "    inputs:\n    - name: env\n      type: enum\n      values: [a, b]\n      default: c\n",
        error(
            C.BAD_VALUE,
            10,
            7,
            'the default of input "env" is not a valid enum',
            "name: env",
            "make the default match the input's type (and its values, for an enum)",
        ),
        id="enum-default-not-among-values",
    ),
    pytest.param(
        "    inputs:\n    - name: x\n    - name: x\n",
        error(
            C.BAD_VALUE, 9, 5, "tasks[0].approval_policy.inputs names an input twice", "inputs:", "rename one"
        ),
        id="input-named-twice",
    ),
    pytest.param(
        "    timeout_action: AUTO_REJECT\n",
        error(
            C.MISSING_FIELD,
            9,
            5,
            "tasks[0].approval_policy has a timeout_action but no sla_deadline",
            "timeout_action: AUTO_REJECT",
            "add `sla_deadline: 4h` (or remove timeout_action)",
        ),
        id="timeout-action-without-sla-deadline",
    ),
]


@pytest.mark.parametrize(("policy", "expected"), APPROVAL_CASES)
def test_approval_policy_rules(policy: str, expected: Problem) -> None:
    assert check(GATE + policy + OK_TASK).problems == (expected,)


# -- all problems at once ------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_in_source_order() -> None:
    text = shell_job("  retry: x\n  on_completed: nope\n", job_extra="descripton: x\n")

    report = check(text)

    assert [(p.code, p.line) for p in report.problems] == [
        (C.UNKNOWN_FIELD, 2),
        (C.WRONG_TYPE, 7),
        (C.UNKNOWN_ROUTE_TARGET, 8),
    ]
    assert report.errors == report.problems
    assert report.warnings == ()
    assert report.definition is None


def test_parse_raises_invalid_definition_with_every_problem() -> None:
    text = shell_job("  retry: x\n  on_completed: nope\n", job_extra="descripton: x\n")

    with pytest.raises(InvalidDefinition) as caught:
        parse_job_definition(text, source="job.yaml")

    assert caught.value.problems == check(text).problems
    assert len(caught.value.problems) == 3
    assert caught.value.source == "job.yaml"
    assert str(caught.value) == (
        '3 error(s) in job definition job.yaml; first: 2:1: unknown field "descripton" in the job; '
        'did you mean "description"?'
    )


def test_parse_returns_the_definition_despite_warnings() -> None:
    definition = parse_job_definition(shell_job() + _task("b"))

    assert [task.task_type for task in definition.tasks] == ["a", "b"]


def test_problem_format_is_file_line_column() -> None:
    problem = error(C.CYCLE, 3, 7, "a loop", "a", "break it")

    assert problem.format("job.yaml") == "job.yaml:3:7: error: a loop (fix: break it)"
    assert warning(C.CYCLE, 1, 2, "hm").format("x") == "x:1:2: warning: hm"


# -- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("4h", timedelta(hours=4)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("250ms", timedelta(milliseconds=250)),
        ("1.5h", timedelta(minutes=90)),
        (".5s", timedelta(milliseconds=500)),
        ("2d", timedelta(days=2)),
        ("0s", timedelta(0)),
        ("1h0m0s", timedelta(hours=1)),
        ("1500us", timedelta(microseconds=1500)),
        ("1µs", timedelta(microseconds=1)),
        (" 5m ", timedelta(minutes=5)),
        ("366d", timedelta(days=366)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration"),
        ("   ", "empty duration"),
        ("90", "'90' has no unit"),
        ("1.5", "'1.5' has no unit"),
        ("5x", "'5x' is not a duration"),
        ("-1s", "'-1s' is not a duration"),
        ("+1s", "'+1s' is not a duration"),
        ("1h 30m", "'1h 30m' is not a duration"),
        ("5m30", "'5m30' is not a duration"),
        ("5M", "'5M' is not a duration"),
        ("s", "'s' is not a duration"),
        ("1e3s", "'1e3s' is not a duration"),
        ("367d", "'367d' is longer than 366 days"),
    ],
)
def test_parse_duration_refuses(text: str, message: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(text)

    assert str(caught.value) == message


@pytest.mark.parametrize("text", ["１s", "٣m", "1０s"])
def test_parse_duration_refuses_non_ascii_digits(text: str) -> None:
    # BUG: `\d` and float() accept any Unicode digit, so "１s" (fullwidth one) is one second.
    with pytest.raises(DurationError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(days=2), "48h"),
        (timedelta(hours=4, seconds=1, milliseconds=5), "4h1s5ms"),
    ],
)
def test_format_duration(value: timedelta, expected: str) -> None:
    assert format_duration(value) == expected


def test_format_duration_of_a_negative_duration() -> None:
    # BUG: divmod floors toward minus infinity, so -5s formats as "-1h59m55s".
    assert format_duration(timedelta(seconds=-5)) == "-5s"


@pytest.mark.parametrize("text", ["90s", "5m", "4h", "1h30m", "250ms", "1h0m1s", "2d", "0s", "36h15m"])
def test_format_duration_round_trips(text: str) -> None:
    value = parse_duration(text)

    assert parse_duration(format_duration(value)) == value
