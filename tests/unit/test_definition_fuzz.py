"""Fuzz tests of the job-definition checker: any input gets a report of problems, never a crash."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from queen.domain.definition_parser import check_job_definition, parse_job_definition
from queen.domain.errors import InvalidDefinition

pytestmark = pytest.mark.unit

PLAYBOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks"
VALID_PLAYBOOKS = ("secure-go-cicd.yaml", "aws-region-failover.yaml")
ALL_PLAYBOOKS = (*VALID_PLAYBOOKS, "aws-region-failover.as-published.yaml")
TEXTS = {name: (PLAYBOOKS / name).read_text(encoding="utf-8") for name in ALL_PLAYBOOKS}


def _fuzz_settings(examples: int) -> settings:
    # Deterministic in CI (derandomize), no example database written into the repo, no per-example deadline:
    # the pure-Python YAML parser takes a few milliseconds per playbook.
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def assert_report_is_sound(text: str | bytes) -> None:
    """The invariants every report holds, whatever the input."""
    report = check_job_definition(text)
    source = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    line_count = len(source.splitlines())
    for problem in report.problems:
        assert problem.line >= 1, problem
        assert problem.column >= 1, problem
        assert problem.line <= line_count + 1, problem
        assert problem.message, problem
    assert report.ok == (not report.errors)
    assert report.ok == (report.definition is not None)
    assert set(report.errors) | set(report.warnings) == set(report.problems)
    if report.definition is not None:
        assert report.definition.tasks
        assert len({task.task_type for task in report.definition.tasks}) == len(report.definition.tasks)
    # parse raises InvalidDefinition exactly when the report has an error; any other exception fails the test
    if report.ok:
        assert parse_job_definition(text) == report.definition
    else:
        with pytest.raises(InvalidDefinition) as caught:
            parse_job_definition(text)
        assert caught.value.problems == report.problems


# -- (a) random text and bytes -------------------------------------------------------------------

_YAML_FRAGMENTS = (
    "job_type: j\n",
    "tasks:\n",
    "- task_type: a\n",
    "- task_type: b\n",
    "  method: SHELL\n",
    "  method: MANUAL\n",
    "  script:\n",
    "    - echo hi\n",
    "    - echo a: b\n",
    "  on_completed: b\n",
    "  on_exit_code:\n",
    "    APPROVED: a\n",
    "  timeout: 5m\n",
    "  container: {image: alpine}\n",
    "&a ",
    "*a",
    "<<: *a\n",
    "{",
    "}",
    "[",
    "]",
    ": ",
    ":",
    "- ",
    "? ",
    ",",
    "\n",
    "  ",
    "\t",
    "'",
    '"',
    "#",
    "---\n",
    "...\n",
    "!!str ",
    "!!binary ",
    "!custom ",
    "|\n",
    ">-\n",
    "%YAML 1.2\n",
    "%TAG ! tag:x,2024:\n",
    "\\",
    "\ufeff",
    "\u2028",
    "\x85",
    "\r",
    "é",
    "🐜",
)
yaml_like_text = st.lists(st.sampled_from(_YAML_FRAGMENTS), max_size=40).map("".join)


@_fuzz_settings(600)
@given(st.text(max_size=400))
def test_random_text_gets_a_report(text: str) -> None:
    assert_report_is_sound(text)


@_fuzz_settings(300)
@given(st.binary(max_size=400))
def test_random_bytes_get_a_report(data: bytes) -> None:
    assert_report_is_sound(data)


@_fuzz_settings(800)
@given(yaml_like_text)
def test_yaml_like_text_gets_a_report(text: str) -> None:
    assert_report_is_sound(text)


# -- (b) structural mutations of the valid playbooks ---------------------------------------------

_FIELD_NAMES = (
    "job_type",
    "tasks",
    "task_type",
    "method",
    "script",
    "before_script",
    "after_script",
    "container",
    "image",
    "description",
    "on_completed",
    "on_failed",
    "on_exit_code",
    "APPROVED",
    "REJECTED",
    "TIMED_OUT",
    "COMPLETED",
    "FAILED",
    "1",
    "dependencies",
    "artifacts",
    "paths",
    "expires_after",
    "always_run",
    "allow_failure",
    "retry",
    "timeout",
    "delay_between_retries",
    "retry_backoff_policy",
    "initial_delay",
    "max_delay",
    "multiplier",
    "cron_trigger",
    "tags",
    "variables",
    "environment",
    "approval_policy",
    "min_approvals",
    "quorum",
    "group",
    "min",
    "sla",
    "after",
    "action",
    "sla_deadline",
    "timeout_action",
    "inputs",
    "name",
    "type",
    "values",
    "default",
    "url",
    "headers",
    "fork_job_type",
    "await_forked_tasks",
    "messaging_request_queue",
    "fan_out",
    "items",
    "sub_workflow",
    "notify",
    "email",
    "recipients",
    "webhook",
    "cache",
    "resources",
    "services",
    "job_variables",
    "max_concurrency",
)
_INTERESTING_TEXT = (
    "",
    " ",
    "SHELL",
    "DOCKER",
    "KUBERNETES",
    "MANUAL",
    "HTTP_GET",
    "JOB_FORK",
    "FORK_JOB",
    "JOB_FORK_AWAIT",
    "AWAIT_FORKED_JOB",
    "MESSAGING",
    "SHEL",
    "FATAL",
    "RESTART_TASK",
    "EXECUTING",
    "ERR_X",
    "no-op",
    "APPROVED",
    "REJECTED",
    "enum",
    "number",
    "ESCALATE",
    "AUTO_REJECT",
    "5m",
    "90",
    "-1s",
    "1h30m",
    "999999d",
    "{{ .Var }}",
    "echo a: b",
    "0 */5 * * * *",
    "* * * *",
    "build",
    "cleanup",
    "deploy-staging",
    "check-primary-status",
    "verify-failover",
    "notify-completion",
    "alpine:latest",
    "~",
    "null",
    "true",
    "0x1F",
    "1e3",
    "&a",
    "*a",
    "- x",
    "\t",
    "a\u2028b",
    "x" * 5000,
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(_INTERESTING_TEXT)
    | st.dates()
)
_keys = (
    st.sampled_from(_FIELD_NAMES) | st.text(max_size=12) | st.integers(-5, 1000) | st.booleans() | st.none()
)
yaml_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=12,
)


def _safe_yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.allow_unicode = True
    return yaml


def _load_plain(name: str) -> Any:
    return _safe_yaml().load(TEXTS[name])


def _dump_plain(data: Any) -> str:
    stream = io.StringIO()
    _safe_yaml().dump(data, stream)
    return stream.getvalue()


PLAIN_PLAYBOOKS = {name: _load_plain(name) for name in VALID_PLAYBOOKS}


def _containers(value: Any) -> list[Any]:
    """Every mapping and list inside `value`, itself included."""
    found: list[Any] = []
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            found.append(current)
            stack.extend(current.values())
        elif isinstance(current, list):
            found.append(current)
            stack.extend(current)
    return found


def _mutate_once(data: st.DataObject, document: Any) -> Any:
    containers = _containers(document)
    if not containers:
        return data.draw(yaml_values)
    target = data.draw(st.sampled_from(containers))
    operation = data.draw(
        st.sampled_from(("delete", "replace", "rename", "insert", "duplicate-task", "shuffle-tasks", "root"))
    )
    tasks = document.get("tasks") if isinstance(document, dict) else None
    if operation == "root":
        return data.draw(yaml_values)
    if operation in ("duplicate-task", "shuffle-tasks") and isinstance(tasks, list) and tasks:
        if operation == "duplicate-task":
            tasks.insert(
                data.draw(st.integers(0, len(tasks))), copy.deepcopy(data.draw(st.sampled_from(tasks)))
            )
        else:
            tasks[:] = data.draw(st.permutations(tasks))
        return document
    if isinstance(target, dict):
        if operation == "insert" or not target:
            target[data.draw(_keys)] = data.draw(yaml_values)
            return document
        key = data.draw(st.sampled_from(list(target)))
        if operation == "delete":
            del target[key]
        elif operation == "rename":
            target[data.draw(_keys)] = target.pop(key)
        else:
            target[key] = data.draw(yaml_values)
        return document
    if operation == "insert" or not target:
        target.insert(data.draw(st.integers(0, len(target))), data.draw(yaml_values))
        return document
    index = data.draw(st.integers(0, len(target) - 1))
    if operation == "delete":
        del target[index]
    else:
        target[index] = data.draw(yaml_values)
    return document


@_fuzz_settings(300)
@given(st.sampled_from(VALID_PLAYBOOKS), st.integers(min_value=1, max_value=6), st.data())
def test_structural_mutations_get_a_report(name: str, count: int, data: st.DataObject) -> None:
    document = copy.deepcopy(PLAIN_PLAYBOOKS[name])
    for _ in range(count):
        document = _mutate_once(data, document)
    assert_report_is_sound(_dump_plain(document))


@_fuzz_settings(120)
@given(st.sampled_from(VALID_PLAYBOOKS), st.data())
def test_one_task_field_replaced_by_any_value_gets_a_report(name: str, data: st.DataObject) -> None:
    document = copy.deepcopy(PLAIN_PLAYBOOKS[name])
    task = data.draw(st.sampled_from(document["tasks"]))
    task[data.draw(st.sampled_from(_FIELD_NAMES))] = data.draw(yaml_values)
    assert_report_is_sound(_dump_plain(document))


def test_structural_mutation_helpers_round_trip_the_playbooks() -> None:
    for name in VALID_PLAYBOOKS:
        report = check_job_definition(_dump_plain(PLAIN_PLAYBOOKS[name]))
        assert not report.errors, report.errors


# -- (c) line-level mutations of the YAML text ---------------------------------------------------


def _mutate_lines(data: st.DataObject, lines: list[str]) -> list[str]:
    if not lines:
        return [data.draw(st.text(max_size=20))]
    index = data.draw(st.integers(0, len(lines) - 1))
    line = lines[index]
    operation = data.draw(
        st.sampled_from(
            ("delete", "duplicate", "swap", "colon", "indent", "dedent", "tab", "insert", "truncate", "char")
        )
    )
    if operation == "delete":
        del lines[index]
    elif operation == "duplicate":
        lines.insert(index, line)
    elif operation == "swap":
        other = data.draw(st.integers(0, len(lines) - 1))
        lines[index], lines[other] = lines[other], lines[index]
    elif operation == "colon":
        at = data.draw(st.integers(0, len(line)))
        lines[index] = line[:at] + ": " + line[at:]
    elif operation == "indent":
        lines[index] = " " * data.draw(st.integers(1, 6)) + line
    elif operation == "dedent":
        lines[index] = line[data.draw(st.integers(1, 6)) :] if line.startswith(" ") else line.lstrip()
    elif operation == "tab":
        lines[index] = "\t" + line.lstrip(" ")
    elif operation == "insert":
        lines.insert(index, data.draw(st.sampled_from(_YAML_FRAGMENTS) | st.text(max_size=30)).rstrip("\n"))
    elif operation == "truncate":
        lines[index] = line[: data.draw(st.integers(0, len(line)))]
    else:
        at = data.draw(st.integers(0, len(line)))
        lines[index] = line[:at] + data.draw(st.sampled_from(_YAML_FRAGMENTS) | st.characters()) + line[at:]
    return lines


@_fuzz_settings(500)
@given(st.sampled_from(ALL_PLAYBOOKS), st.integers(min_value=1, max_value=4), st.data())
def test_line_mutations_get_a_report(name: str, count: int, data: st.DataObject) -> None:
    lines = TEXTS[name].split("\n")
    for _ in range(count):
        lines = _mutate_lines(data, lines)
    assert_report_is_sound("\n".join(lines))
