"""Reads a job definition from YAML into typed objects, or explains every problem at once.

`check_job_definition` never raises for bad input: it returns a report of problems, each with the
line and column of the YAML source, the offending text and a fix. `parse_job_definition` raises
`InvalidDefinition` with that report when any problem is an error.

Dialects worth knowing:
- durations are Go-style (`90s`, `5m`, `4h`, `1h30m`, `250ms`) plus `d` for days; a bare number is refused;
- `cron_trigger` takes 5 fields (minute hour day-of-month month day-of-week) or 6 with *seconds
  first*, as Formicary writes them (`0 */5 * * * *` = every five minutes at second 0);
- a task without `method` is KUBERNETES, as in Formicary; FORK_JOB and AWAIT_FORKED_JOB are aliases.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from croniter import croniter
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from queen.domain import dag
from queen.domain._yaml_reader import Node, Reader
from queen.domain.errors import InvalidDefinition
from queen.domain.job_definition import (
    EXIT_CODE_KEYWORDS,
    MANUAL_EXIT_CODES,
    ApprovalInput,
    ApprovalPolicy,
    ArtifactsConfig,
    CacheConfig,
    ContainerSpec,
    FanOut,
    InputType,
    JobDefinition,
    NotifyChannel,
    NotifyWhen,
    QuorumRule,
    Resources,
    RetryBackoffPolicy,
    SlaAction,
    SlaStep,
    SubWorkflow,
    TaskDefinition,
    TaskMethod,
    TimeoutAction,
    Webhook,
)
from queen.domain.problems import Problem, ProblemCode, Severity

__all__ = [
    "MAX_DEFINITION_BYTES",
    "MAX_TASKS",
    "DefinitionReport",
    "check_job_definition",
    "parse_job_definition",
]

MAX_DEFINITION_BYTES = 1024 * 1024
MAX_TASKS = 500
_MAX_EXIT_CODE = 999  # process exit codes (0-255) and HTTP statuses (100-599)
_NAME_LIMIT = 100

_Read = Callable[[Reader, Node], Any]


@dataclass(frozen=True, slots=True)
class DefinitionReport:
    """The outcome of checking a definition: the parsed job when there is no error, and every problem."""

    definition: JobDefinition | None
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.WARNING)

    @property
    def ok(self) -> bool:
        return self.definition is not None


def parse_job_definition(text: str | bytes, *, source: str = "<definition>") -> JobDefinition:
    """The typed job definition; raises `InvalidDefinition` listing every problem when there is an error."""
    report = check_job_definition(text, source=source)
    if report.definition is None:
        raise InvalidDefinition(report.problems, source=source)
    return report.definition


def check_job_definition(text: str | bytes, *, source: str = "<definition>") -> DefinitionReport:
    """Check a definition and return all its problems; never raises for bad input."""
    del source  # kept in the signature so callers name the file in one place
    size = len(text.encode("utf-8", errors="replace")) if isinstance(text, str) else len(text)
    if size > MAX_DEFINITION_BYTES:
        problem = Problem(
            Severity.ERROR,
            ProblemCode.TOO_LARGE,
            f"the definition is {size} bytes; the limit is {MAX_DEFINITION_BYTES} bytes (1 MiB)",
            1,
            1,
            fix="split it into several job types and link them with JOB_FORK or sub_workflow",
        )
        return DefinitionReport(None, (problem,))
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = Problem(
                Severity.ERROR,
                ProblemCode.YAML_SYNTAX,
                f"the definition is not UTF-8 text (byte {exc.start})",
                1,
                1,
                fix="save the file as UTF-8",
            )
            return DefinitionReport(None, (problem,))
    # YAML 1.2 breaks lines only at \n and \r; str.splitlines() would also break at U+2028 and others,
    # and every line number after such a character would be off by one.
    lines = re.split(r"\r\n|\r|\n", text)
    reader = Reader(lines)
    root = _load_yaml(text, reader)
    definition = _read_job(reader, root) if root is not None else None
    problems = tuple(sorted(reader.problems, key=lambda p: (p.line, p.column, p.code)))
    if any(p.is_error for p in problems):
        return DefinitionReport(None, problems)
    return DefinitionReport(definition, problems)


# -- YAML ----------------------------------------------------------------------------------------


def _load_yaml(text: str, reader: Reader) -> Node | None:
    yaml = YAML(typ="rt", pure=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            documents = list(yaml.load_all(text))
    except MarkedYAMLError as exc:
        _report_yaml_error(reader, exc)
        return None
    except ReaderError as exc:
        line, column = _position(text, exc.position)
        reader.report(
            Severity.ERROR,
            ProblemCode.YAML_SYNTAX,
            f"invalid YAML: the character #x{exc.character:04x} is not allowed in YAML text",
            line,
            column,
            text=reader.lines[line].strip() if line < len(reader.lines) else "",
            fix="remove the control character (or write it as an escape inside double quotes)",
        )
        return None
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        reader.report(
            Severity.ERROR,
            ProblemCode.YAML_SYNTAX,
            f"invalid YAML: {type(exc).__name__}: {str(exc)[:200]}",
            0,
            0,
            fix="check the file with a YAML linter",
        )
        return None
    for warning in caught:
        reader.report(
            Severity.WARNING,
            ProblemCode.YAML_SYNTAX,
            f"YAML: {str(warning.message).splitlines()[0]}",
            0,
            0,
            fix="give every anchor (&name) a distinct name",
        )
    documents = [doc for doc in documents if doc is not None]
    if not documents:
        reader.report(
            Severity.ERROR,
            ProblemCode.MISSING_FIELD,
            "the definition is empty",
            0,
            0,
            fix="start with `job_type: my-job` and a `tasks:` list",
        )
        return None
    if len(documents) > 1:
        reader.report(
            Severity.ERROR,
            ProblemCode.YAML_SYNTAX,
            f"the file holds {len(documents)} YAML documents; a job definition is exactly one",
            0,
            0,
            fix="remove the `---` separators, or upload each job in its own file",
        )
        return None
    root = Node(documents[0], 0, 0, "")
    if not isinstance(root.value, CommentedMap):
        reader.report(
            Severity.ERROR,
            ProblemCode.NOT_A_MAPPING,
            "a job definition must be a mapping with job_type and tasks at its top level",
            0,
            0,
            fix="start with `job_type: my-job` and a `tasks:` list",
        )
        return None
    return root


def _position(text: str, offset: int) -> tuple[int, int]:
    """0-based (line, column) of a character offset, with YAML's line breaks."""
    before = re.split(r"\r\n|\r|\n", text[:offset])
    return len(before) - 1, len(before[-1])


def _report_yaml_error(reader: Reader, exc: MarkedYAMLError) -> None:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line if mark is not None else 0
    column = mark.column if mark is not None else 0
    problem = (exc.problem or "").strip()
    if "duplicate key" in problem:
        reader.report(
            Severity.ERROR,
            ProblemCode.DUPLICATE_KEY,
            f"invalid YAML: {problem}",
            line,
            column,
            text=reader.lines[line].strip() if line < len(reader.lines) else "",
            fix="remove or rename one of the two keys",
        )
        return
    if "\t" in problem or "tab" in problem.lower():
        reader.report(
            Severity.ERROR,
            ProblemCode.YAML_SYNTAX,
            "invalid YAML: a tab character is used for indentation; YAML indents with spaces only",
            line,
            column,
            text=reader.lines[line].strip() if line < len(reader.lines) else "",
            fix="replace the tab with spaces",
        )
        return
    if _explain_colon(reader, line, exc):
        return
    context = f" ({exc.context.strip()})" if exc.context else ""
    reader.report(
        Severity.ERROR,
        ProblemCode.YAML_SYNTAX,
        f"invalid YAML: {problem}{context}",
        line,
        column,
        text=reader.lines[line].strip() if line < len(reader.lines) else "",
        fix="check the indentation and quoting around this line",
    )


def _explain_colon(reader: Reader, line: int, exc: MarkedYAMLError) -> bool:
    """Recognise the classic mistake: an unquoted `: ` in a plain scalar (a script line, a description).

    YAML then reads the text before it as a mapping key, and the rest usually fails to parse.
    """
    candidates = [line]
    if exc.context_mark is not None and exc.context_mark.line != line:
        candidates.append(exc.context_mark.line)
    for number in candidates:
        if not 0 <= number < len(reader.lines):
            continue
        source = reader.lines[number]
        stripped = source.lstrip()
        indent = len(source) - len(stripped)
        if stripped.startswith("- "):
            prefix = "- "
        else:
            key, sep, _ = stripped.partition(": ")
            if not sep or not key or key[0] in "\"'" or " " in key.strip():
                continue
            prefix = key + ": "
        content = stripped[len(prefix) :].rstrip()
        if content.startswith("{{"):
            reader.report(
                Severity.ERROR,
                ProblemCode.WRONG_TYPE,
                "invalid YAML: the value starts with `{`, so YAML reads a mapping where a template line "
                "was meant",
                number,
                indent + len(prefix),
                text=stripped,
                fix=f"quote the whole value: {prefix}{_double_quoted(content)}",
            )
            return True
        if not content or content[0] in "\"'|>[{&*!":
            continue
        colon = content.find(": ")
        # `task_type: a` under a dash is a mapping on purpose; an unquoted `: ` inside a command has
        # words before it (`echo Endpoint: http://...`)
        if colon < 0 or (prefix == "- " and " " not in content[:colon].strip()):
            continue
        quoted = prefix + _double_quoted(content)
        reader.report(
            Severity.ERROR,
            ProblemCode.COLON_IN_PLAIN_SCALAR,
            "invalid YAML: this line holds an unquoted `: `, so YAML read the text before it as a "
            "mapping key (making the line a mapping, not a string) and then could not parse the rest",
            number,
            indent + len(prefix) + colon,
            text=stripped,
            fix=f"quote the whole value: {quoted}",
        )
        return True
    return False


def _double_quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# -- job -----------------------------------------------------------------------------------------


def _read_job(reader: Reader, root: Node) -> JobDefinition | None:
    fields = reader.fields(root, _JOB_FIELDS.keys() | {"tasks", "job_type"}, elsewhere=_TASK_ONLY)
    job_type = _read_name(reader, fields.get("job_type"), "job_type", root)
    values = _read_fields(reader, fields, _JOB_FIELDS)
    if "cron_trigger" in values:
        _check_cron(reader, fields["cron_trigger"], values["cron_trigger"])
    if "notify" in fields:
        reader.warning(
            ProblemCode.NOT_SUPPORTED,
            "notify is not delivered by this Queen yet: no email, chat or webhook is sent when the job "
            "ends (approval reminders and escalations use the approval policy's recipients and the job's "
            "webhook)",
            fields["notify"],
            fix="remove notify, or follow the job with `formicary submit --wait` or WatchJobRequest",
        )

    tasks_node = fields.get("tasks")
    tasks: list[TaskDefinition] = []
    task_nodes: dict[str, Node] = {}
    if tasks_node is None:
        reader.report(
            Severity.ERROR,
            ProblemCode.MISSING_FIELD,
            "the job has no tasks",
            root.line,
            root.column,
            fix="add a `tasks:` list with at least one `- task_type: ...` entry",
        )
    elif not isinstance(tasks_node.value, CommentedSeq) or not tasks_node.value:
        reader.error(
            ProblemCode.WRONG_TYPE,
            "tasks must be a non-empty list of tasks",
            tasks_node,
            fix="write each task as a `- task_type: ...` item under `tasks:`",
        )
    elif len(tasks_node.value) > MAX_TASKS:
        reader.error(
            ProblemCode.TOO_MANY_TASKS,
            f"the job has {len(tasks_node.value)} tasks; the limit is {MAX_TASKS}",
            tasks_node,
            text="tasks",
            fix="split the job and link the parts with JOB_FORK or sub_workflow",
        )
    else:
        for item in reader.items(tasks_node):
            task = _read_task(reader, item)
            if task is None:
                continue
            if task.task_type in task_nodes:
                first = task_nodes[task.task_type]
                reader.error(
                    ProblemCode.DUPLICATE_TASK_TYPE,
                    f'task_type "{task.task_type}" is defined twice (first at line {first.line + 1})',
                    _field_node(reader, item, "task_type"),
                    text=task.task_type,
                    fix="give each task a unique task_type",
                )
                continue
            task_nodes[task.task_type] = item
            tasks.append(task)

    if job_type is None or not tasks or any(p.is_error for p in reader.problems):
        if tasks:
            dag.check(tuple(tasks), _Locator(reader, task_nodes), reader)
        return None
    definition = JobDefinition(job_type=job_type, tasks=tuple(tasks), **values)
    dag.check(definition.tasks, _Locator(reader, task_nodes), reader)
    return definition


def _read_name(reader: Reader, node: Node | None, what: str, parent: Node) -> str | None:
    if node is None:
        reader.report(
            Severity.ERROR,
            ProblemCode.MISSING_FIELD,
            f"{parent.path or 'the job'} has no {what}",
            parent.line,
            parent.column,
            fix=f"add `{what}: a-name` (letters, digits, `-`, `_`, `.`)",
        )
        return None
    name = reader.text(node, allow_empty=False)
    if name is None:
        return None
    if not _is_name(name):
        reader.error(
            ProblemCode.BAD_VALUE,
            f'{what} "{name}" must start with a letter or digit and hold only letters, digits, `-`, `_` '
            f"and `.` (at most {_NAME_LIMIT})",
            node,
            fix="rename it, e.g. " + _suggest_name(name),
        )
        return None
    if what == "task_type" and dag.is_reserved_target(name):
        reader.error(
            ProblemCode.BAD_VALUE,
            f'task_type "{name}" is a reserved route word',
            node,
            fix=f"rename the task, e.g. {name.lower()}-task",
        )
        return None
    return name


def _is_name(name: str) -> bool:
    return (
        0 < len(name) <= _NAME_LIMIT
        and name[0].isascii()
        and name[0].isalnum()
        and all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)
    )


def _suggest_name(name: str) -> str:
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in name.strip())
    cleaned = cleaned.strip("-_.")[:_NAME_LIMIT] or "my-task"
    return cleaned


def _check_cron(reader: Reader, node: Node, expression: str) -> None:
    parts = expression.split()
    valid = False
    if len(parts) in (5, 6):
        try:
            valid = bool(croniter.is_valid(expression, second_at_beginning=len(parts) == 6))
        except (ValueError, TypeError, KeyError):
            valid = False
    if not valid:
        reader.error(
            ProblemCode.BAD_CRON,
            f'cron_trigger "{expression}" is not a cron expression of 5 fields '
            "(minute hour day month weekday) or 6 with seconds first",
            node,
            fix='e.g. "0 2 * * *" for 02:00 every day, or "0 */5 * * * *" every five minutes',
        )


# -- tasks ---------------------------------------------------------------------------------------


def _read_task(reader: Reader, node: Node) -> TaskDefinition | None:
    if not reader.mapping(node, "a task"):
        return None
    fields = reader.fields(node, _TASK_FIELDS.keys() | {"task_type"}, elsewhere=_JOB_ONLY)
    task_type = _read_name(reader, fields.get("task_type"), "task_type", node)
    values = _read_fields(reader, fields, _TASK_FIELDS)
    if task_type is None:
        return None
    method_known = "method" in values or "method" not in fields
    values.setdefault("method", TaskMethod.KUBERNETES)
    method: TaskMethod = values["method"]
    if "on_exit_code" in values:
        values["on_exit_code"] = _read_exit_codes(reader, fields["on_exit_code"], method)
        if values["on_exit_code"] is None:
            del values["on_exit_code"]
    task = TaskDefinition(task_type=task_type, **_rename(values))
    if method_known:
        # needs are checked against what is *written*: a field written wrongly has its own problem
        _check_method_needs(reader, node, fields, task)
        _check_not_run(reader, fields, task)
    return task


def _rename(values: dict[str, Any]) -> dict[str, Any]:
    if "except" in values:
        values["except_"] = values.pop("except")
    return values


def _read_exit_codes(reader: Reader, node: Node, method: TaskMethod) -> dict[str, str] | None:
    if not reader.mapping(node, "on_exit_code"):
        return None
    routes: dict[str, str] = {}
    for key, value in reader.entries(node):
        code = _exit_code_key(reader, key, method)
        target = reader.text(value, allow_empty=False)
        if code is None or target is None:
            continue
        routes[code] = target.strip()
    return routes


def _exit_code_key(reader: Reader, key: Node, method: TaskMethod) -> str | None:
    raw = key.value
    code: str | None = None
    number = raw.strip() if isinstance(raw, str) else raw
    if isinstance(number, str) and number.isdigit():
        number = int(number)
    if isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= _MAX_EXIT_CODE:
        code = str(number)
    elif isinstance(raw, str) and raw.strip().upper() in EXIT_CODE_KEYWORDS:
        code = raw.strip().upper()
    if code is None:
        reader.error(
            ProblemCode.BAD_EXIT_CODE,
            f'on_exit_code key "{raw}" is neither an exit code (0-{_MAX_EXIT_CODE}) nor one of '
            f"{', '.join(sorted(EXIT_CODE_KEYWORDS))}",
            key,
            text=str(raw),
            fix="use a number such as 1 or 404, or an outcome such as FAILED",
        )
        return None
    if code in MANUAL_EXIT_CODES and method is not TaskMethod.MANUAL:
        reader.error(
            ProblemCode.BAD_EXIT_CODE,
            f"on_exit_code {code} is only produced by MANUAL tasks, and this task is {method}",
            key,
            text=str(raw),
            fix="route COMPLETED/FAILED or a numeric exit code instead, or make the task `method: MANUAL`",
        )
        return None
    return code


def _check_method_needs(reader: Reader, node: Node, fields: Mapping[str, Node], task: TaskDefinition) -> None:
    """Fields a method cannot do without, and fields that make no sense for it."""
    where = f'task "{task.task_type}"'
    method = task.method
    if method in (TaskMethod.DOCKER, TaskMethod.KUBERNETES) and "container" not in fields:
        default = "" if "method" in fields else " (KUBERNETES is the default when `method` is omitted)"
        reader.error(
            ProblemCode.MISSING_FIELD,
            f"{where} runs with {method}{default} but has no container image",
            fields.get("method", node),
            fix="add `container: {image: alpine:latest}`, or set `method: SHELL` to run on the Ant's host",
        )
    if method.is_http and "url" not in fields and "script" not in fields:
        reader.error(
            ProblemCode.MISSING_FIELD,
            f"{where} is {method} but has no url",
            fields.get("method", node),
            fix="add `url: https://...` (or the URL as the script line)",
        )
    if method is TaskMethod.JOB_FORK and "fork_job_type" not in fields and "sub_workflow" not in fields:
        reader.error(
            ProblemCode.MISSING_FIELD,
            f"{where} is JOB_FORK but names no job to fork",
            fields.get("method", node),
            fix="add `fork_job_type: the-child-job-type`",
        )
    if method is TaskMethod.JOB_FORK_AWAIT and "await_forked_tasks" not in fields:
        reader.error(
            ProblemCode.MISSING_FIELD,
            f"{where} is JOB_FORK_AWAIT but awaits no forked task",
            fields.get("method", node),
            fix="add `await_forked_tasks: [the-fork-task]`",
        )
    if method is TaskMethod.MESSAGING and "messaging_request_queue" not in fields:
        reader.error(
            ProblemCode.MISSING_FIELD,
            f"{where} is MESSAGING but has no messaging_request_queue",
            fields.get("method", node),
            fix="add `messaging_request_queue: queue-name`",
        )
    if method in (TaskMethod.SHELL, TaskMethod.DOCKER, TaskMethod.KUBERNETES) and "script" not in fields:
        reader.error(
            ProblemCode.MISSING_FIELD,
            f"{where} runs with {method} but has no script",
            fields.get("method", node),
            fix="add `script:` with at least one command",
        )
    if "approval_policy" in fields and method is not TaskMethod.MANUAL:
        reader.error(
            ProblemCode.MISPLACED_FIELD,
            f"{where} has an approval_policy but is {method}; only MANUAL tasks wait for approval",
            fields["approval_policy"],
            text="approval_policy",
            fix="set `method: MANUAL`, or remove approval_policy",
        )
    if method is TaskMethod.MANUAL:
        for name in ("script", "before_script", "after_script", "container"):
            if name in fields:
                reader.warning(
                    ProblemCode.MISPLACED_FIELD,
                    f"{where} is MANUAL: its {name} is never run",
                    fields[name],
                    fix=f"remove {name}, or move the work to a task before or after the gate",
                )


# What the language accepts (Formicary's fields and this project's additions) but this Queen does not
# run yet. A field that would change what runs is refused: without it the task would run once, as if it
# were not written. The others are accepted with a warning that says what happens instead.
_NOT_RUN_FIELDS = {
    "fan_out": "add one task per item for now (fan_out would run the task once per item)",
    "sub_workflow": "submit the child job from a task (the `formicary submit` command) for now",
}
_NOT_RUN_METHODS = frozenset({TaskMethod.JOB_FORK, TaskMethod.JOB_FORK_AWAIT, TaskMethod.EXPIRE_ARTIFACTS})


def _check_not_run(reader: Reader, fields: Mapping[str, Node], task: TaskDefinition) -> None:
    where = f'task "{task.task_type}"'
    for name, fix in _NOT_RUN_FIELDS.items():
        if name in fields:
            reader.error(
                ProblemCode.NOT_SUPPORTED,
                f"{where} uses {name}, which this Queen does not run yet",
                fields[name],
                text=name,
                fix=fix,
            )
    if task.method in _NOT_RUN_METHODS:
        reader.warning(
            ProblemCode.NOT_SUPPORTED,
            f"{where} is {task.method}, which this Queen does not run yet: the task fails with "
            "ERR_UNSUPPORTED_METHOD when the job reaches it",
            fields.get("method", fields["task_type"]),
            fix="route its failure with on_failed, or do the work in a SHELL task for now",
        )
    if "webhook" in fields:
        reader.warning(
            ProblemCode.NOT_SUPPORTED,
            f"{where} has a webhook, which this Queen does not call (the job's webhook is called when "
            "an approval is escalated)",
            fields["webhook"],
            fix="move the webhook to the job, or remove it",
        )


# -- field tables --------------------------------------------------------------------------------


def _read_fields(reader: Reader, fields: Mapping[str, Node], table: Mapping[str, _Read]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, node in fields.items():
        read = table.get(name)
        if read is None:
            continue
        value = read(reader, node)
        if value is not None:
            values[name] = value
    return values


def _text(reader: Reader, node: Node) -> str | None:
    return reader.text(node)


def _target(reader: Reader, node: Node) -> str | None:
    value = reader.text(node, allow_empty=False)
    return value.strip() if value is not None else None


def _count(reader: Reader, node: Node) -> int | None:
    return reader.integer(node, minimum=0, maximum=100)


def _flag(reader: Reader, node: Node) -> bool | None:
    return reader.boolean(node)


def _list(reader: Reader, node: Node) -> tuple[str, ...] | None:
    return reader.text_list(node)


def _tags(reader: Reader, node: Node) -> tuple[str, ...] | None:
    return reader.text_list(node, split_commas=True)


def _commands(reader: Reader, node: Node) -> tuple[str, ...] | None:
    return reader.text_list(node, commands=True)


def _method(reader: Reader, node: Node) -> TaskMethod | None:
    names = [m.value for m in TaskMethod] + ["FORK_JOB", "AWAIT_FORKED_JOB"]
    return reader.choice(node, TaskMethod.from_text, names, "method")


def _concurrency(reader: Reader, node: Node) -> int | None:
    return reader.integer(node, minimum=1, maximum=100_000)


def _object(
    builder: Callable[..., Any],
    table: Mapping[str, _Read],
    *,
    required: tuple[str, ...] = (),
    renames: Mapping[str, str] | None = None,
) -> _Read:
    """A reader for a nested object: known fields only, `required` ones present, built with `builder`."""

    def read(reader: Reader, node: Node) -> Any:
        if not reader.mapping(node, node.path):
            return None
        fields = reader.fields(node, table.keys())
        missing = [name for name in required if name not in fields]
        for name in missing:
            reader.error(
                ProblemCode.MISSING_FIELD,
                f"{node.path} has no {name}",
                node,
                fix=f"add `{name}:` under {node.path}",
            )
        before = len(reader.problems)
        values = _read_fields(reader, fields, table)
        if missing or (len(reader.problems) > before and any(p.is_error for p in reader.problems[before:])):
            return None
        if renames:
            values = {renames.get(key, key): value for key, value in values.items()}
        return builder(**values)

    return read


def _object_list(read_one: _Read) -> _Read:
    def read(reader: Reader, node: Node) -> tuple[Any, ...] | None:
        if not isinstance(node.value, CommentedSeq):
            reader.error(
                ProblemCode.WRONG_TYPE,
                f"{node.path} must be a list, not a single value",
                node,
                fix="write each entry as a `- ` item",
            )
            return None
        out = [read_one(reader, item) for item in reader.items(node)]
        return tuple(out) if all(item is not None for item in out) else None

    return read


def _plain_list(reader: Reader, node: Node) -> tuple[dict[str, Any], ...] | None:
    if not isinstance(node.value, CommentedSeq):
        reader.error(ProblemCode.WRONG_TYPE, f"{node.path} must be a list", node, fix="write `- ` items")
        return None
    out = []
    for item in reader.items(node):
        value = reader.plain_map(item)
        if value is None:
            return None
        out.append(value)
    return tuple(out)


def _backoff(reader: Reader, node: Node) -> RetryBackoffPolicy | None:
    policy = _object(RetryBackoffPolicy, _BACKOFF_FIELDS)(reader, node)
    if not isinstance(policy, RetryBackoffPolicy):
        return None
    if policy.max_delay < policy.initial_delay:
        reader.error(
            ProblemCode.BAD_VALUE,
            f"{node.path}.max_delay is shorter than its initial_delay",
            node,
            fix="make max_delay at least initial_delay",
        )
        return None
    return policy


def _fan_out_items(reader: Reader, node: Node) -> tuple[str, ...] | str | None:
    if isinstance(node.value, str):
        return node.value  # a template that renders to a list at run time
    return reader.text_list(node, commands=True)


def _input(reader: Reader, node: Node) -> ApprovalInput | None:
    value = _object(ApprovalInput, _INPUT_FIELDS, required=("name",))(reader, node)
    if not isinstance(value, ApprovalInput):
        return None
    if value.type is InputType.ENUM and not value.values:
        reader.error(
            ProblemCode.MISSING_FIELD,
            f'input "{value.name}" is an enum without values',
            node,
            fix="add `values: [a, b]`",
        )
        return None
    if value.default is not None and not _default_fits(value):
        reader.error(
            ProblemCode.BAD_VALUE,
            f'the default of input "{value.name}" is not a valid {value.type}',
            node,
            fix="make the default match the input's type (and its values, for an enum)",
        )
        return None
    return value


def _default_fits(spec: ApprovalInput) -> bool:
    default = spec.default
    match spec.type:
        case InputType.BOOLEAN:
            return isinstance(default, bool)
        case InputType.NUMBER:
            return isinstance(default, int | float) and not isinstance(default, bool)
        case InputType.ENUM:
            return str(default) in spec.values
        case _:
            return isinstance(default, str)


def _scalar(reader: Reader, node: Node) -> str | float | bool | None:
    value = reader.plain(node)
    if isinstance(value, dict | list):
        reader.error(
            ProblemCode.WRONG_TYPE, f"{node.path} must be a single value", node, fix="write one value"
        )
        return None
    return value  # type: ignore[no-any-return]


def _approval_policy(reader: Reader, node: Node) -> ApprovalPolicy | None:
    policy = _object(ApprovalPolicy, _APPROVAL_FIELDS)(reader, node)
    if not isinstance(policy, ApprovalPolicy):
        return None
    afters = [step.after for step in policy.sla]
    if afters != sorted(afters):
        reader.error(
            ProblemCode.BAD_VALUE,
            f"the steps of {node.path}.sla must be in order of their `after`",
            node,
            fix="sort the SLA ladder from the earliest step to the latest",
        )
        return None
    if policy.timeout_action is not None and policy.sla_deadline is None:
        reader.error(
            ProblemCode.MISSING_FIELD,
            f"{node.path} has a timeout_action but no sla_deadline",
            node,
            fix="add `sla_deadline: 4h` (or remove timeout_action)",
        )
        return None
    names = [spec.name for spec in policy.inputs]
    if len(names) != len(set(names)):
        reader.error(
            ProblemCode.BAD_VALUE, f"{node.path}.inputs names an input twice", node, fix="rename one"
        )
        return None
    return policy


def _notify(reader: Reader, node: Node) -> tuple[NotifyChannel, ...] | None:
    if not reader.mapping(node, "notify"):
        return None
    channels: list[NotifyChannel] = []
    for key, value in reader.entries(node):
        if key.value not in _NOTIFY_CHANNELS:
            reader.error(
                ProblemCode.UNKNOWN_FIELD,
                f'unknown notification channel "{key.value}"',
                key,
                text=str(key.value),
                fix=f"use one of: {', '.join(sorted(_NOTIFY_CHANNELS))}",
            )
            continue
        channel = _read_channel(reader, str(key.value), value)
        if channel is not None:
            channels.append(channel)
    return tuple(channels)


def _read_channel(reader: Reader, channel: str, node: Node) -> NotifyChannel | None:
    def build(**values: Any) -> NotifyChannel:
        return NotifyChannel(channel=channel, **values)

    value = _object(build, _NOTIFY_FIELDS, required=("recipients",))(reader, node)
    return value if isinstance(value, NotifyChannel) else None


def _when(reader: Reader, node: Node) -> NotifyWhen | None:
    return reader.choice(node, NotifyWhen, [w.value for w in NotifyWhen], "notify `when`")


_BACKOFF_FIELDS: dict[str, _Read] = {
    "initial_delay": lambda r, n: r.duration(n),
    "multiplier": lambda r, n: r.number(n, minimum=1.0, maximum=100.0),
    "max_delay": lambda r, n: r.duration(n),
    "jitter": lambda r, n: r.number(n, minimum=0.0, maximum=1.0),
}
_CONTAINER_FIELDS: dict[str, _Read] = {
    "image": lambda r, n: r.text(n, allow_empty=False),
    "image_pull_policy": _text,
    "entrypoint": _commands,
    "cpu_limit": lambda r, n: r.command(n),
    "cpu_request": lambda r, n: r.command(n),
    "memory_limit": _text,
    "memory_request": _text,
    "volumes": lambda r, n: r.plain_map(n),
    "image_definition": lambda r, n: r.plain_map(n),
}
_ARTIFACTS_FIELDS: dict[str, _Read] = {"paths": _list, "expires_after": lambda r, n: r.duration(n)}
_CACHE_FIELDS: dict[str, _Read] = {
    "key": _text,
    "key_paths": _list,
    "paths": _list,
    "expires_after": lambda r, n: r.duration(n),
}
_RESOURCE_FIELDS: dict[str, _Read] = {
    "cpu": lambda r, n: r.command(n),
    "memory": _text,
    "disk_space": _text,
    "network": _text,
}
_SLA_FIELDS: dict[str, _Read] = {
    "after": lambda r, n: r.duration(n),
    "action": lambda r, n: r.choice(n, SlaAction, [a.value for a in SlaAction], "SLA action"),
    "to": _list,
    "message": _text,
}
_QUORUM_FIELDS: dict[str, _Read] = {
    "group": lambda r, n: r.text(n, allow_empty=False),
    "min": lambda r, n: r.integer(n, minimum=1, maximum=100),
}
_INPUT_FIELDS: dict[str, _Read] = {
    "name": lambda r, n: _read_name(r, n, "input name", n),
    "type": lambda r, n: r.choice(n, InputType, [t.value for t in InputType], "input type"),
    "required": _flag,
    "default": _scalar,
    "values": _list,
    "description": _text,
}
_APPROVAL_FIELDS: dict[str, _Read] = {
    "min_approvals": lambda r, n: r.integer(n, minimum=1, maximum=100),
    "allowed_users": _list,
    "allowed_roles": _list,
    "require_unanimous": _flag,
    "sla_deadline": lambda r, n: r.duration(n),
    "timeout_action": lambda r, n: r.choice(
        n, TimeoutAction, [a.value for a in TimeoutAction], "timeout_action"
    ),
    "escalation_recipients": _list,
    "escalation_message": _text,
    "quorum": _object_list(_object(QuorumRule, _QUORUM_FIELDS, required=("group", "min"))),
    "allow_self_approval": _flag,
    "reject_vetoes": _flag,
    "sla": _object_list(_object(SlaStep, _SLA_FIELDS, required=("after", "action"))),
    "inputs": _object_list(_input),
}
_FAN_OUT_FIELDS: dict[str, _Read] = {
    "items": _fan_out_items,
    "variable": lambda r, n: _read_name(r, n, "fan_out variable", n),
    "max_parallel": lambda r, n: r.integer(n, minimum=1, maximum=10_000),
}
_SUB_WORKFLOW_FIELDS: dict[str, _Read] = {
    "job_type": lambda r, n: _read_name(r, n, "job_type", n),
    "version": lambda r, n: r.command(n),
    "params": lambda r, n: r.plain_map(n),
    "await": _flag,
}
_WEBHOOK_FIELDS: dict[str, _Read] = {
    "url": lambda r, n: r.text(n, allow_empty=False),
    "headers": lambda r, n: r.text_map(n),
    "query": lambda r, n: r.text_map(n),
}
_NOTIFY_CHANNELS = frozenset({"email", "slack", "webhook"})
_NOTIFY_FIELDS: dict[str, _Read] = {"recipients": _list, "when": _when}

_SHARED_FIELDS: dict[str, _Read] = {
    "description": _text,
    "timeout": lambda r, n: r.duration(n),
    "retry": _count,
    "delay_between_retries": lambda r, n: r.duration(n),
    "retry_backoff_policy": _backoff,
    "pause_time": lambda r, n: r.duration(n),
    "tags": _tags,
    "webhook": _object(Webhook, _WEBHOOK_FIELDS, required=("url",)),
}
_JOB_FIELDS: dict[str, _Read] = {
    **_SHARED_FIELDS,
    "cron_trigger": lambda r, n: r.text(n, allow_empty=False),
    "hard_reset_after_retries": _count,
    "max_concurrency": _concurrency,
    "platform": _text,
    "required_params": _list,
    "job_variables": lambda r, n: r.plain_map(n),
    "public_plugin": _flag,
    "sem_version": lambda r, n: r.command(n),
    "skip_if": _text,
    "notify": _notify,
}
_TASK_FIELDS: dict[str, _Read] = {
    **_SHARED_FIELDS,
    "method": _method,
    "script": _commands,
    "before_script": _commands,
    "after_script": _commands,
    "container": _object(ContainerSpec, _CONTAINER_FIELDS, required=("image",)),
    "services": _plain_list,
    "variables": lambda r, n: r.plain_map(n),
    "environment": lambda r, n: r.text_map(n),
    "allow_failure": _flag,
    "always_run": _flag,
    "allow_start_if_completed": _flag,
    "on_completed": _target,
    "on_failed": _target,
    "on_exit_code": lambda r, n: n,  # read with the task's method known, in _read_task
    "dependencies": _list,
    "artifact_ids": _list,
    "artifacts": _object(ArtifactsConfig, _ARTIFACTS_FIELDS),
    "cache": _object(CacheConfig, _CACHE_FIELDS),
    "except": _text,
    "url": lambda r, n: r.text(n, allow_empty=False),
    "headers": lambda r, n: r.text_map(n),
    "query": lambda r, n: r.text_map(n),
    "resources": _object(Resources, _RESOURCE_FIELDS),
    "approval_policy": _approval_policy,
    "fork_job_type": lambda r, n: _read_name(r, n, "fork_job_type", n),
    "fork_job_version": lambda r, n: r.command(n),
    "await_forked_tasks": _list,
    "messaging_request_queue": _text,
    "messaging_reply_queue": _text,
    "report_stdout": _flag,
    "fan_out": _object(FanOut, _FAN_OUT_FIELDS, required=("items",)),
    "sub_workflow": _object(
        SubWorkflow, _SUB_WORKFLOW_FIELDS, required=("job_type",), renames={"await": "wait"}
    ),
    "privileged": _flag,
    "host_network": _flag,
    "network_mode": _text,
    "working_dir": _text,
    "node_selector": lambda r, n: r.text_map(n),
    "pod_labels": lambda r, n: r.text_map(n),
    "pod_annotations": lambda r, n: r.text_map(n),
    "cost_factor": lambda r, n: r.number(n, minimum=0.0, maximum=1e6),
}
_TASK_ONLY = dict.fromkeys(_TASK_FIELDS.keys() - _JOB_FIELDS.keys(), "a task (under `tasks:`)")
_TASK_ONLY["task_type"] = "a task (under `tasks:`)"
_JOB_ONLY = dict.fromkeys(_JOB_FIELDS.keys() - _TASK_FIELDS.keys(), "the job's top level")
_JOB_ONLY["job_type"] = "the job's top level"
_JOB_ONLY["tasks"] = "the job's top level"


# -- positions for the DAG checks ------------------------------------------------------------------


def _field_node(reader: Reader, task_node: Node, name: str) -> Node:
    mapping = task_node.value
    if isinstance(mapping, CommentedMap) and name in mapping:
        line, column = mapping.lc.value(name)
        return Node(mapping[name], line, column, f"{task_node.path}.{name}")
    return task_node


class _Locator:
    """Finds where a task, or one of its fields or routes, is written, for the DAG checks' problems."""

    def __init__(self, reader: Reader, task_nodes: Mapping[str, Node]) -> None:
        self._reader = reader
        self._tasks = task_nodes

    def task(self, task_type: str) -> Node:
        node = self._tasks[task_type]
        return _field_node(self._reader, node, "task_type")

    def field(self, task_type: str, name: str) -> Node:
        """`name` is a field (`on_completed`), `on_exit_code.<code>`, or `dependencies`."""
        node = self._tasks[task_type]
        if name.startswith("on_exit_code."):
            routes = node.value.get("on_exit_code") if isinstance(node.value, CommentedMap) else None
            code = name.split(".", 1)[1]
            if isinstance(routes, CommentedMap):
                for key in routes:
                    if str(key).strip().upper() == code or (
                        str(key).strip().isdigit() and str(int(key)) == code
                    ):
                        line, column = routes.lc.value(key)
                        return Node(routes[key], line, column, f"{node.path}.{name}")
            return _field_node(self._reader, node, "on_exit_code")
        return _field_node(self._reader, node, name)
