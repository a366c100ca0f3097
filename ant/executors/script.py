"""The shell script that runs a task's commands in one session and says which command failed.

Why one generated script: the commands of `before_script` and `script` share one shell session (a `cd`
or an `export` carries over), as GitLab does. Each command is passed to `eval` (quoted, so its text is
never re-parsed as part of ours) under `set -e` (and `pipefail` where the shell has it): the first
failing command ends the script with its status. Before each command the script writes a *step marker*
line, `<token> step <n>`, to stdout (so it is ordered exactly with the command's output). The executor
strips those lines from the log (writing `$ <command>` as a SYSTEM line instead) and, when the script
exits non-zero, the last marker names the failed command, whatever stopped the shell: a failing
command, `exit 3`, a syntax error inside the command, a kill on timeout. The token is random per
script, so a task cannot forge markers by accident. A marker written after output that did not end
with a newline is found inside the line and split off. Known limit: a command that redirects the
shell's own stdout for good (`exec >/dev/null`) hides later markers; failed_command is then the last
command seen.

A script of ONE simple command (plain words: no quoting, expansion, redirection or other shell syntax,
naming an external program found on the task's PATH, not a builtin) needs no shell session at all:
`direct_program()` gives the program and argv to exec instead, which saves starting a shell per task
phase (bash costs more than the program itself for `true`, `make`, `./gradlew build`-sized steps it is
the difference between one and two process starts). Output, exit status, environment, working
directory and process group are the same; only what the shell itself would add (SHLVL, `_`) is not
there.

Running one command per `sh -c` would make failure reporting trivial but would lose the shared session
the definition language promises; a shell `trap` on ERR/EXIT would miss kills and syntax errors.

`render_with_after()` puts the main commands and the after_script into one script (for KUBERNETES,
where a second pod would be costly): each runs in its own subshell and the after part also reports its
exit status with an `<token> exit <rc>` marker. (The subshells stand alone, never in an `&&`/`||`
list, where shells would ignore their `set -e`.)
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
from dataclasses import dataclass

__all__ = ["Marker", "ScriptPlan"]

_PIPEFAIL_IF_ANY = "(set -o pipefail) 2>/dev/null && set -o pipefail"


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

    def render(self, *, pipefail: bool | None = None) -> str:
        """The POSIX sh script running the commands with step markers, stopping at the first failure.

        `pipefail`: True when the shell is known to have `set -o pipefail` (bash), False when it is
        known not to; None (a shell in a container) tests for it at run time, in a subshell.
        """
        lines = [_PIPEFAIL_IF_ANY] if pipefail is None else ["set -o pipefail"] if pipefail else []
        lines.append("set -e")
        for number, command in enumerate(self.commands, start=1):
            lines.append(f"printf '%s step %s\\n' {shlex.quote(self.token)} {number}")
            lines.append(f"eval {shlex.quote(command)}")
        return "\n".join(lines) + "\n"

    def direct_program(self, search_path: str) -> tuple[str, list[str]] | None:
        """What to exec without a shell when this plan is one simple command (see the module's docstring)
        whose program is on `search_path` (the task's PATH): the program's path there (exec'd as is, not
        searched for again) and the argv, `argv[0]` as written; None when it needs the shell."""
        if len(self.commands) != 1 or not _SIMPLE.fullmatch(self.commands[0]):
            return None
        argv = self.commands[0].split()
        program = argv[0]
        if "=" in program or "/" in program or program in _SHELL_WORDS:
            return None  # an assignment, a path (relative to the shell's cwd), a builtin or keyword
        if program == "echo" and any(arg.startswith("-") for arg in argv[1:]):
            return None  # options of the builtin and of coreutils' echo differ
        executable = shutil.which(program, mode=os.X_OK, path=search_path)
        if executable is None:
            return None  # the shell reports "command not found" (status 127) as users know it
        return executable, argv

    def render_with_after(self, after: ScriptPlan) -> str:
        """Main commands, then `after`'s whatever happened; exits with the main part's status."""
        return (
            f"( {self.render()} )\n"
            "__frm_rc=$?\n"
            f"( {after.render()} )\n"
            "__frm_after_rc=$?\n"
            f"printf '%s exit %s\\n' {shlex.quote(after.token)} \"$__frm_after_rc\"\n"
            'exit "$__frm_rc"\n'
        )

    def parse_marker(self, line: str) -> tuple[str, Marker] | None:
        """(text before the marker, the marker) if the line ends with one of this plan's markers."""
        start = line.find(self.token)
        if start < 0:
            return None
        match = _MARKER.fullmatch(line[start + len(self.token) :])
        if match is None:
            return None
        return line[:start], Marker(match.group(1), int(match.group(2)))

    def command(self, step: int | None) -> str:
        """The text of command number `step` (1-based); empty if unknown."""
        if step is None or not 1 <= step <= len(self.commands):
            return ""
        return self.commands[step - 1]


_MARKER = re.compile(r" (step|exit) (\d+)")
# Words of characters no POSIX shell or bash treats specially (no quotes, $, `, globs, ~, braces,
# redirections, separators, comments), separated by spaces.
_SIMPLE = re.compile(r"[A-Za-z0-9_./:@%+,=-]+(?: +[A-Za-z0-9_./:@%+,=-]+)*")
# bash's builtins and keywords (`compgen -b -k`), except `true` and `false`, whose programs behave alike;
# `echo` is allowed without options (see direct_program).
_SHELL_WORDS = frozenset(
    """. : [ alias bg bind break builtin caller case cd command compgen complete compopt continue coproc
    declare dirs disown do done elif else enable esac eval exec exit export fc fg fi for function
    getopts hash help history if in jobs kill let local logout mapfile popd printf pushd pwd read
    readarray readonly return select set shift shopt source suspend test then time times trap type
    typeset ulimit umask unalias unset until wait while""".split()  # noqa: SIM905 - as `compgen` prints it
)
