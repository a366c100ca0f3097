"""The shell script that runs a task's commands in one session and says which command failed.

Why one generated script: the commands of `before_script` and `script` share one shell session (a `cd`
or an `export` carries over), as GitLab does. Each command is passed to `eval` (quoted, so its text is
never re-parsed as part of ours) under `set -e` (and `pipefail` where the shell has it): the first
failing command ends the script with its status. Before each command the script writes a *step marker*
line to stderr: `<token> step <n>`. The executor strips those lines from the log (writing `$ <command>`
as a SYSTEM line instead) and, when the script exits non-zero, the last marker names the failed
command. That holds whatever stopped the shell: a failing command, `exit 3`, a syntax error inside the
command, or a kill on timeout. The token is random per script, so a task cannot forge markers by
accident. Known limit: a command that redirects the shell's own stderr for good (`exec 2>/dev/null`)
hides later markers, and failed_command is then the last command seen.

`combined()` puts the main commands and the after_script into one script (for KUBERNETES, where a
second pod would be costly): each runs in its own subshell and the after part also reports its exit
status with an `<token> exit <rc>` marker. (The subshells stand alone, never in an `&&`/`||` list,
where shells would ignore their `set -e`.)
"""

from __future__ import annotations

import re
import secrets
import shlex
from dataclasses import dataclass

__all__ = ["Marker", "ScriptPlan"]

_PIPEFAIL = "(set -o pipefail) 2>/dev/null && set -o pipefail"


@dataclass(frozen=True, slots=True)
class Marker:
    """A parsed marker line: `kind` is "step" (with the 1-based command number) or "exit" (status)."""

    kind: str
    value: int


@dataclass(frozen=True, slots=True)
class ScriptPlan:
    """Commands to run in one shell session, and how to recognise its marker lines."""

    commands: tuple[str, ...]
    token: str

    @classmethod
    def build(cls, commands: tuple[str, ...] | list[str]) -> ScriptPlan:
        return cls(tuple(commands), f"::formicary-{secrets.token_hex(8)}::")

    def render(self) -> str:
        """The POSIX sh script running the commands with step markers, stopping at the first failure."""
        lines = [_PIPEFAIL, "set -e"]
        for number, command in enumerate(self.commands, start=1):
            lines.append(f"printf '%s step %s\\n' {shlex.quote(self.token)} {number} >&2")
            lines.append(f"eval {shlex.quote(command)}")
        return "\n".join(lines) + "\n"

    def render_with_after(self, after: ScriptPlan) -> str:
        """Main commands, then `after`'s whatever happened; exits with the main part's status."""
        return (
            f"( {self.render()} )\n"
            "__frm_rc=$?\n"
            f"( {after.render()} )\n"
            "__frm_after_rc=$?\n"
            f"printf '%s exit %s\\n' {shlex.quote(after.token)} \"$__frm_after_rc\" >&2\n"
            'exit "$__frm_rc"\n'
        )

    def parse_marker(self, line: str) -> Marker | None:
        """The marker this line carries, or None for an ordinary line."""
        if not line.startswith(self.token):
            return None
        match = _MARKER.fullmatch(line[len(self.token) :])
        if match is None:
            return None
        return Marker(match.group(1), int(match.group(2)))

    def command(self, step: int | None) -> str:
        """The text of command number `step` (1-based); empty if unknown."""
        if step is None or not 1 <= step <= len(self.commands):
            return ""
        return self.commands[step - 1]


_MARKER = re.compile(r" (step|exit) (\d+)")
