"""`formicary lint`: offline checks of job definitions, printed as `FILE:LINE:COLUMN: severity: message`."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from sdk.cli import build_app

pytestmark = pytest.mark.unit

PLAYBOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks"
SECURE_GO = PLAYBOOKS / "secure-go-cicd.yaml"
FAILOVER = PLAYBOOKS / "aws-region-failover.yaml"
FAILOVER_AS_PUBLISHED = PLAYBOOKS / "aws-region-failover.as-published.yaml"

SECURE_GO_WARNING = (
    "{file}:34:7: warning: tasks[2].script[2] holds an unquoted `: `, so YAML reads it as a mapping; it is "
    "taken as the command written on the line (fix: quote the whole line: "
    '"echo \\"Staging deployment complete. Endpoint: http://staging.example.com\\"")'
)
FAILOVER_WARNING = (
    "{file}:36:7: warning: tasks[3].script[0] holds an unquoted `: `, so YAML reads it as a mapping; it is "
    "taken as the command written on the line (fix: quote the whole line: "
    '"echo \\"CRITICAL: Switching production DNS records to the us-west-2 environment...\\"")'
)
AS_PUBLISHED_ERROR = (
    "{file}:21:38: error: invalid YAML: this line holds an unquoted `: `, so YAML read the text before it "
    "as a mapping key (making the line a mapping, not a string) and then could not parse the rest "
    "(fix: quote the whole value: - "
    """"echo '{{\\"aws_instance.dr_server\\": {{\\"id\\": \\"i-12345dr\\"}}}}' > terraform.tfstate")"""
)


def lint(*args: str | Path) -> Result:
    return CliRunner().invoke(build_app(), ["lint", *map(str, args)])


def test_lint_is_registered_by_the_installed_entry_point() -> None:
    result = CliRunner().invoke(build_app(), ["--help"])

    assert result.exit_code == 0
    assert "lint" in result.stdout


@pytest.mark.parametrize(
    ("path", "expected_warning", "summary"),
    [
        (SECURE_GO, SECURE_GO_WARNING, "ok: job_type secure-go-cicd, 7 tasks"),
        (FAILOVER, FAILOVER_WARNING, "ok: job_type aws-region-failover, 6 tasks"),
    ],
)
def test_a_valid_playbook_exits_0_and_prints_its_warnings(
    path: Path, expected_warning: str, summary: str
) -> None:
    result = lint(path)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [expected_warning.format(file=path)]
    assert result.stderr.splitlines() == [f"{path}: {summary}"]


def test_the_as_published_playbook_exits_1_with_the_error_at_line_21() -> None:
    result = lint(FAILOVER_AS_PUBLISHED)

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [AS_PUBLISHED_ERROR.format(file=FAILOVER_AS_PUBLISHED)]
    assert "ok:" not in result.stderr


def test_a_missing_file_exits_1(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    result = lint(missing)

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{missing}:1:1: error: cannot read the file: No such file or directory"
    ]
    assert result.stdout == ""


@pytest.mark.parametrize("flag", ["--quiet", "-q"])
def test_quiet_hides_warnings_and_the_summary(flag: str) -> None:
    result = lint(flag, SECURE_GO, FAILOVER)

    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == ""


def test_quiet_still_prints_errors() -> None:
    result = lint("--quiet", FAILOVER_AS_PUBLISHED)

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [AS_PUBLISHED_ERROR.format(file=FAILOVER_AS_PUBLISHED)]


def test_every_file_is_checked_and_one_failure_fails_the_run() -> None:
    result = lint(SECURE_GO, FAILOVER_AS_PUBLISHED, FAILOVER)

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        SECURE_GO_WARNING.format(file=SECURE_GO),
        AS_PUBLISHED_ERROR.format(file=FAILOVER_AS_PUBLISHED),
        FAILOVER_WARNING.format(file=FAILOVER),
    ]
    assert result.stderr.splitlines() == [
        f"{SECURE_GO}: ok: job_type secure-go-cicd, 7 tasks",
        f"{FAILOVER}: ok: job_type aws-region-failover, 6 tasks",
    ]


def test_every_problem_of_a_file_is_printed(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        "job_type: j\ndescripton: x\ntasks:\n- task_type: a\n  method: SHELL\n  script: [x]\n  retry: x\n"
        "  on_completed: nope\n",
        encoding="utf-8",
    )

    result = lint(path)

    assert result.exit_code == 1
    assert [line.split(": ", 2)[:2] for line in result.stdout.splitlines()] == [
        [f"{path}:2:1", "error"],
        [f"{path}:7:10", "error"],
        [f"{path}:8:17", "error"],
    ]


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(b"job_type: \xff\n")

    result = lint(path)

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}:1:1: error: the definition is not UTF-8 text (byte 10) (fix: save the file as UTF-8)"
    ]


def test_no_file_is_a_usage_error() -> None:
    result = lint()

    assert result.exit_code == 2
