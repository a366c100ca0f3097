"""Typed reading of ruamel.yaml nodes that records every problem with its line, column and a fix."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from queen.domain.durations import DurationError, parse_duration
from queen.domain.problems import Problem, ProblemCode, Severity

__all__ = ["Node", "Reader"]

T = TypeVar("T")
E = TypeVar("E")

# Free-form values (variables, image definitions) are copied node by node; YAML aliases can make a small
# file expand into billions of nodes, so the copy stops after this many.
_NODE_BUDGET = 200_000
_TEXT_PREVIEW = 80


@dataclass(frozen=True, slots=True)
class Node:
    """A YAML value with its 0-based position, and the dotted path it was found at (for messages)."""

    value: Any
    line: int
    column: int
    path: str


def _type_name(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, CommentedMap | dict):
        return "a mapping"
    if isinstance(value, CommentedSeq | list):
        return "a list"
    if isinstance(value, date):
        return "a date"
    return type(value).__name__


def did_you_mean(word: str, candidates: Collection[str]) -> str:
    """`did you mean "x"?` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"?' if close else ""


class Reader:
    """Reads typed values out of YAML nodes; never raises on bad input, records a Problem instead."""

    def __init__(self, source_lines: list[str]) -> None:
        self.lines = source_lines
        self.problems: list[Problem] = []
        self._budget = _NODE_BUDGET

    # -- recording -------------------------------------------------------------------------------

    def report(
        self,
        severity: Severity,
        code: ProblemCode,
        message: str,
        line: int,
        column: int,
        *,
        text: str = "",
        fix: str = "",
    ) -> None:
        """Record a problem at a 0-based position (stored 1-based)."""
        self.problems.append(
            Problem(severity, code, message, line + 1, column + 1, _preview(text), fix),
        )

    def error(
        self, code: ProblemCode, message: str, node: Node, *, text: str | None = None, fix: str = ""
    ) -> None:
        self.report(
            Severity.ERROR,
            code,
            message,
            node.line,
            node.column,
            text=self.text_of(node) if text is None else text,
            fix=fix,
        )

    def warning(self, code: ProblemCode, message: str, node: Node, *, fix: str = "") -> None:
        self.report(Severity.WARNING, code, message, node.line, node.column, text=self.text_of(node), fix=fix)

    def text_of(self, node: Node) -> str:
        """The offending text: a string as it reads, else what is written in the source line."""
        if isinstance(node.value, str):
            return node.value
        if node.value is None:
            return ""
        if 0 <= node.line < len(self.lines):
            written = self.lines[node.line][node.column :]
            comment = written.find(" #")
            return (written[:comment] if comment >= 0 else written).strip()
        return str(node.value)

    # -- structure -------------------------------------------------------------------------------

    def mapping(self, node: Node, what: str) -> bool:
        """True when the node is a mapping; otherwise records a wrong-type problem."""
        if isinstance(node.value, CommentedMap):
            return True
        self.error(
            ProblemCode.WRONG_TYPE,
            f"{node.path or what} must be a mapping of fields, not {_type_name(node.value)}",
            node,
            fix=f"write {what} as `key: value` lines indented under it",
        )
        return False

    def fields(
        self,
        node: Node,
        allowed: Collection[str],
        *,
        elsewhere: dict[str, str] | None = None,
    ) -> dict[str, Node]:
        """The known fields of a mapping node; unknown ones are reported with a suggestion.

        `elsewhere` maps field names valid at another level to where they belong (e.g. a task field
        written at the job's top level), which makes a better message than "did you mean".
        """
        found: dict[str, Node] = {}
        mapping: CommentedMap = node.value
        for key in mapping:
            key_line, key_column = mapping.lc.key(key)
            value_line, value_column = mapping.lc.value(key)
            path = f"{node.path}.{key}" if node.path else str(key)
            if not isinstance(key, str):
                self.report(
                    Severity.ERROR,
                    ProblemCode.WRONG_TYPE,
                    f"field names must be text, not {_type_name(key)} ({key!r}) in {node.path or 'the job'}",
                    key_line,
                    key_column,
                    text=str(key),
                    fix="use one of the documented field names",
                )
                continue
            if key not in allowed:
                if elsewhere and key in elsewhere:
                    self.report(
                        Severity.ERROR,
                        ProblemCode.MISPLACED_FIELD,
                        f'"{key}" is not a field of {node.path or "the job"}; it belongs to {elsewhere[key]}',
                        key_line,
                        key_column,
                        text=key,
                        fix=f'move "{key}" to {elsewhere[key]}',
                    )
                    continue
                hint = did_you_mean(key, allowed)
                self.report(
                    Severity.ERROR,
                    ProblemCode.UNKNOWN_FIELD,
                    f'unknown field "{key}" in {node.path or "the job"}' + (f"; {hint}" if hint else ""),
                    key_line,
                    key_column,
                    text=key,
                    fix=f"rename it: {hint}" if hint else "remove it, or check the spelling against the docs",
                )
                continue
            if mapping[key] is None:
                # ruamel places a missing value at the *next* token; the problem is on the key's line
                value_line, value_column = key_line, key_column + len(key) + 1
            found[key] = Node(mapping[key], value_line, value_column, path)
        return found

    def items(self, node: Node) -> Iterator[Node]:
        """The items of a list node, each with its own position."""
        seq: CommentedSeq = node.value
        for index, item in enumerate(seq):
            line, column = seq.lc.item(index)
            yield Node(item, line, column, f"{node.path}[{index}]")

    def entries(self, node: Node) -> Iterator[tuple[Node, Node]]:
        """(key, value) nodes of a mapping node."""
        mapping: CommentedMap = node.value
        for key in mapping:
            key_line, key_column = mapping.lc.key(key)
            value_line, value_column = mapping.lc.value(key)
            yield (
                Node(key, key_line, key_column, node.path),
                Node(mapping[key], value_line, value_column, f"{node.path}.{key}"),
            )

    # -- scalars ---------------------------------------------------------------------------------

    def text(self, node: Node, *, allow_empty: bool = True) -> str | None:
        """A string; numbers are not silently turned into text except where a command is expected."""
        value = node.value
        if isinstance(value, str):
            if not allow_empty and not value.strip():
                self.error(
                    ProblemCode.BAD_VALUE, f"{node.path} must not be empty", node, fix="give it a value"
                )
                return None
            return value
        if isinstance(value, CommentedMap):
            self._mapping_instead_of_text(node)
            return None
        written = self.text_of(node)
        self.error(
            ProblemCode.WRONG_TYPE,
            f"{node.path} must be a string, not {_type_name(value)}",
            node,
            text=written,
            fix=f"quote it: {json.dumps(written, ensure_ascii=False)}"
            if value is not None
            else "give it a value",
        )
        return None

    def command(self, node: Node) -> str | None:
        """A script line: scalars of any type are the command they spell (`- true` runs `true`)."""
        value = node.value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, CommentedMap):
            recovered = self._one_line_pair(node)
            if recovered is not None:
                self.warning(
                    ProblemCode.COLON_IN_PLAIN_SCALAR,
                    f"{node.path} holds an unquoted `: `, so YAML reads it as a mapping; it is taken as "
                    "the command written on the line",
                    node,
                    fix=f"quote the whole line: {json.dumps(recovered, ensure_ascii=False)}",
                )
                return recovered
            self._mapping_instead_of_text(node)
            return None
        self.error(
            ProblemCode.WRONG_TYPE,
            f"{node.path} must be a command (a string), not {_type_name(value)}",
            node,
            fix="write the command as one line of text",
        )
        return None

    def _one_line_pair(self, node: Node) -> str | None:
        """The source text of a one-line `key: value` mapping made of plain scalars, else None.

        `- echo "Endpoint: http://x"` is valid YAML that means {'echo "Endpoint': 'http://x"'}; the
        brief's playbooks are written that way, and the author plainly meant the line as written.
        """
        mapping: CommentedMap = node.value
        if len(mapping) != 1 or not 0 <= node.line < len(self.lines):
            return None
        key = next(iter(mapping))
        item = mapping[key]
        key_line, _ = mapping.lc.key(key)
        value_line, _ = mapping.lc.value(key)
        scalar = item is None or (isinstance(item, str | int | float) and not isinstance(item, CommentedMap))
        if not isinstance(key, str) or not scalar or key_line != node.line:
            return None
        if item is not None and value_line != node.line:
            return None
        source = self.lines[node.line]
        end = len(source)
        comment = mapping.ca.items.get(key)
        if comment and len(comment) > 2 and comment[2] is not None:
            end = min(end, comment[2].column)
        text = source[node.column : end].rstrip()
        return text or None

    def _mapping_instead_of_text(self, node: Node) -> None:
        """Explain the two classic ways a line of text turns into a YAML mapping."""
        source = self.lines[node.line] if 0 <= node.line < len(self.lines) else ""
        content = source[node.column :].rstrip()
        if content.startswith("{{") or content.startswith("{"):
            self.error(
                ProblemCode.WRONG_TYPE,
                f"{node.path} starts with `{{`, so YAML read it as a mapping instead of text",
                node,
                text=content,
                fix=f"quote the whole value: {json.dumps(content, ensure_ascii=False)}",
            )
            return
        colon = content.find(": ")
        self.report(
            Severity.ERROR,
            ProblemCode.COLON_IN_PLAIN_SCALAR,
            f"{node.path} became a mapping, not text: the unquoted `: ` in it made YAML read "
            f"the part before it as a key",
            node.line,
            node.column + max(colon, 0),
            text=content,
            fix=f"quote the whole value: {json.dumps(content, ensure_ascii=False)}",
        )

    def integer(self, node: Node, *, minimum: int = 0, maximum: int = 1_000_000) -> int | None:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(
                ProblemCode.WRONG_TYPE,
                f"{node.path} must be a whole number, not {_type_name(value)}",
                node,
                fix=f"write a number between {minimum} and {maximum}, without quotes",
            )
            return None
        if not minimum <= value <= maximum:
            self.error(
                ProblemCode.BAD_VALUE,
                f"{node.path} must be between {minimum} and {maximum}, not {value}",
                node,
                fix=f"use a number between {minimum} and {maximum}",
            )
            return None
        return int(value)

    def number(self, node: Node, *, minimum: float = 0.0, maximum: float = 1e9) -> float | None:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(
                ProblemCode.WRONG_TYPE,
                f"{node.path} must be a number, not {_type_name(value)}",
                node,
                fix="write a number without quotes",
            )
            return None
        if not minimum <= float(value) <= maximum:
            self.error(
                ProblemCode.BAD_VALUE,
                f"{node.path} must be between {minimum:g} and {maximum:g}, not {value}",
                node,
                fix=f"use a number between {minimum:g} and {maximum:g}",
            )
            return None
        return float(value)

    def boolean(self, node: Node) -> bool | None:
        value = node.value
        if isinstance(value, bool):
            return value
        fix = "write true or false, without quotes"
        if isinstance(value, str) and value.strip().lower() in {"true", "false", "yes", "no", "on", "off"}:
            meant = "true" if value.strip().lower() in {"true", "yes", "on"} else "false"
            fix = f"write {meant} without quotes"
        self.error(
            ProblemCode.WRONG_TYPE,
            f"{node.path} must be true or false, not {_type_name(value)}",
            node,
            fix=fix,
        )
        return None

    def duration(self, node: Node) -> timedelta | None:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.error(
                ProblemCode.BAD_DURATION,
                f"{node.path} must be a duration like 90s, 5m, 4h or 1h30m, not {_type_name(value)}",
                node,
                fix="write a number followed by a unit: ms, s, m, h or d",
            )
            return None
        try:
            return parse_duration(str(value))
        except DurationError as exc:
            self.error(
                ProblemCode.BAD_DURATION,
                f"{node.path}: {exc}; a duration is like 90s, 5m, 4h or 1h30m",
                node,
                fix=f"write {value}s for seconds"
                if re.fullmatch(r"\d+", str(value).strip())
                else "e.g. 30s or 1h30m",
            )
            return None

    def choice(self, node: Node, parse: Callable[[str], E], names: Collection[str], what: str) -> E | None:
        """An enum value by name, with a did-you-mean for near misses."""
        raw = self.text(node)
        if raw is None:
            return None
        try:
            return parse(raw)
        except ValueError:
            hint = did_you_mean(raw.upper(), names) or did_you_mean(raw, names)
            self.error(
                ProblemCode.BAD_METHOD if what == "method" else ProblemCode.BAD_VALUE,
                f'unknown {what} "{raw}"' + (f"; {hint}" if hint else ""),
                node,
                fix=f"use one of: {', '.join(sorted(names))}",
            )
            return None

    # -- collections -----------------------------------------------------------------------------

    def text_list(
        self, node: Node, *, split_commas: bool = False, commands: bool = False
    ) -> tuple[str, ...] | None:
        """A list of strings; a single string is accepted as a one-item list (or comma-separated)."""
        value = node.value
        if isinstance(value, str) and not commands:
            parts = value.split(",") if split_commas else [value]
            return tuple(part.strip() for part in parts if part.strip())
        if isinstance(value, str) and commands:
            return (value,)
        if not isinstance(value, CommentedSeq):
            self.error(
                ProblemCode.WRONG_TYPE,
                f"{node.path} must be a list, not {_type_name(value)}",
                node,
                fix="write one `- item` per line under it, or `[a, b]`",
            )
            return None
        out: list[str] = []
        ok = True
        for item in self.items(node):
            text = self.command(item) if commands else self.text(item)
            if text is None:
                ok = False
            else:
                out.append(text)
        return tuple(out) if ok else None

    def text_map(self, node: Node) -> dict[str, str] | None:
        """A mapping of names to scalar values (numbers and booleans become their text)."""
        if not self.mapping(node, node.path):
            return None
        out: dict[str, str] = {}
        ok = True
        for key, value in self.entries(node):
            if not isinstance(key.value, str):
                self.error(
                    ProblemCode.WRONG_TYPE, f"keys of {node.path} must be text", key, text=str(key.value)
                )
                ok = False
                continue
            text = self.command(value) if not isinstance(value.value, CommentedSeq) else None
            if text is None:
                if isinstance(value.value, CommentedSeq):
                    self.error(
                        ProblemCode.WRONG_TYPE,
                        f"{value.path} must be a single value, not a list",
                        value,
                        fix="join the values into one string",
                    )
                ok = False
                continue
            out[key.value] = text
        return out if ok else None

    def plain(self, node: Node) -> Any:
        """A free-form value copied into plain dicts, lists and scalars (within the node budget)."""
        value = node.value
        self._budget -= 1
        if self._budget < 0:
            if self._budget == -1:
                self.error(
                    ProblemCode.TOO_COMPLEX,
                    f"{node.path} expands into more than {_NODE_BUDGET} values (YAML aliases?)",
                    node,
                    fix="write the values out plainly, without nested aliases",
                )
            return None
        if isinstance(value, CommentedMap):
            return {str(key.value): self.plain(item) for key, item in self.entries(node)}
        if isinstance(value, CommentedSeq):
            return [self.plain(item) for item in self.items(node)]
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        return str(value)

    def plain_map(self, node: Node) -> dict[str, Any] | None:
        if not self.mapping(node, node.path):
            return None
        result = self.plain(node)
        return result if isinstance(result, dict) else None


def _preview(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= _TEXT_PREVIEW else text[: _TEXT_PREVIEW - 1] + "…"
