"""The product brief's playbooks: the valid two parse as expected, the as-published one fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from queen.domain.definition_parser import check_job_definition, parse_job_definition
from queen.domain.errors import InvalidDefinition
from queen.domain.job_definition import JobDefinition, TaskMethod
from queen.domain.problems import Problem, ProblemCode, Severity

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "tests" / "fixtures" / "playbooks"
SECURE_GO = PLAYBOOKS / "secure-go-cicd.yaml"
FAILOVER = PLAYBOOKS / "aws-region-failover.yaml"
FAILOVER_AS_PUBLISHED = PLAYBOOKS / "aws-region-failover.as-published.yaml"

KUBERNETES = TaskMethod.KUBERNETES
MANUAL = TaskMethod.MANUAL


def _parse(path: Path) -> JobDefinition:
    return parse_job_definition(path.read_text(encoding="utf-8"), source=str(path))


def _line(path: Path, number: int) -> str:
    return path.read_text(encoding="utf-8").splitlines()[number - 1]


@pytest.mark.parametrize("name", ["secure-go-cicd.yaml", "aws-region-failover.yaml"])
def test_examples_are_the_fixture_playbooks(name: str) -> None:
    assert (REPO / "examples" / name).read_bytes() == (PLAYBOOKS / name).read_bytes()


# -- secure-go-cicd ------------------------------------------------------------------------------


def test_secure_go_cicd_tasks_in_order_with_methods_and_routes() -> None:
    job = _parse(SECURE_GO)

    assert job.job_type == "secure-go-cicd"
    assert job.description == "Build, scan, and deploy a Go application with a manual production gate."
    routes = [(t.task_type, t.method, t.on_completed, t.on_failed, dict(t.on_exit_code)) for t in job.tasks]
    assert routes == [
        ("build", KUBERNETES, "security-scan", "", {}),
        ("security-scan", KUBERNETES, "deploy-staging", "", {}),
        ("deploy-staging", KUBERNETES, "verify-production-deploy", "", {}),
        (
            "verify-production-deploy",
            MANUAL,
            "",
            "",
            {"APPROVED": "promote-production", "REJECTED": "rollback-staging"},
        ),
        ("promote-production", KUBERNETES, "cleanup", "", {}),
        ("rollback-staging", KUBERNETES, "cleanup", "", {}),
        ("cleanup", KUBERNETES, "", "", {}),
    ]
    assert job.first_task.task_type == "build"
    assert job.methods == frozenset({KUBERNETES, MANUAL})


def test_secure_go_cicd_artifacts_dependencies_and_flags() -> None:
    job = _parse(SECURE_GO)
    by_type = {task.task_type: task for task in job.tasks}

    assert by_type["build"].artifacts.paths == ("my-app",)
    assert by_type["security-scan"].artifacts.paths == ("gosec-report.sarif",)
    assert by_type["deploy-staging"].artifacts.paths == ()
    assert {name: task.dependencies for name, task in by_type.items() if task.dependencies} == {
        "deploy-staging": ("build",),
        "promote-production": ("build",),
    }
    assert [name for name, task in by_type.items() if task.allow_failure] == ["security-scan"]
    assert [name for name, task in by_type.items() if task.always_run] == ["cleanup"]
    assert by_type["build"].container is not None
    assert by_type["build"].container.image == "golang:1.24-alpine"
    assert by_type["security-scan"].container is not None
    assert by_type["security-scan"].container.image == "securego/gosec:latest"
    assert by_type["verify-production-deploy"].container is None
    assert by_type["verify-production-deploy"].script == ()
    assert by_type["verify-production-deploy"].description.startswith("Staging deployment complete.")


def test_secure_go_cicd_scripts_keep_the_written_text() -> None:
    job = _parse(SECURE_GO)
    by_type = {task.task_type: task for task in job.tasks}

    assert by_type["build"].script == ('echo "Building Go binary..."', "go build -o my-app ./...")
    # the comment between the two script lines is not a command
    assert by_type["security-scan"].script == (
        'echo "Running SAST scan with gosec..."',
        "gosec -fmt=sarif -out=gosec-report.sarif ./...",
    )
    assert by_type["deploy-staging"].script == (
        'echo "Deploying ./my-app to staging..."',
        "sleep 5",
        'echo "Staging deployment complete. Endpoint: http://staging.example.com"',
    )


def test_secure_go_cicd_unquoted_colon_in_a_script_line_is_one_warning() -> None:
    report = check_job_definition(SECURE_GO.read_bytes())

    assert report.ok
    assert report.problems == (
        Problem(
            Severity.WARNING,
            ProblemCode.COLON_IN_PLAIN_SCALAR,
            "tasks[2].script[2] holds an unquoted `: `, so YAML reads it as a mapping; it is taken as the "
            "command written on the line",
            34,
            7,
            'echo "Staging deployment complete. Endpoint: http://staging.example.com"',
            'quote the whole line: "echo \\"Staging deployment complete. Endpoint: http://staging.example.com\\""',
        ),
    )
    assert _line(SECURE_GO, 34)[6:] == report.problems[0].text


# -- aws-region-failover -------------------------------------------------------------------------


def test_failover_tasks_in_order_with_methods_and_routes() -> None:
    job = _parse(FAILOVER)

    assert job.job_type == "aws-region-failover"
    routes = [(t.task_type, t.method, t.on_completed, t.on_failed, dict(t.on_exit_code)) for t in job.tasks]
    assert routes == [
        ("check-primary-status", KUBERNETES, "no-op", "provision-secondary-infra", {}),
        ("provision-secondary-infra", KUBERNETES, "verify-failover", "", {}),
        (
            "verify-failover",
            MANUAL,
            "",
            "",
            {"APPROVED": "switch-dns", "REJECTED": "teardown-secondary-infra"},
        ),
        ("switch-dns", KUBERNETES, "notify-completion", "", {}),
        ("teardown-secondary-infra", KUBERNETES, "notify-completion", "", {}),
        ("notify-completion", KUBERNETES, "", "", {}),
    ]


def test_failover_artifacts_flags_and_images() -> None:
    job = _parse(FAILOVER)
    by_type = {task.task_type: task for task in job.tasks}

    assert by_type["provision-secondary-infra"].artifacts.paths == ("terraform.tfstate",)
    assert [name for name, task in by_type.items() if task.artifacts.paths] == ["provision-secondary-infra"]
    assert [name for name, task in by_type.items() if task.always_run] == ["notify-completion"]
    assert not any(task.allow_failure for task in job.tasks)
    assert not any(task.dependencies for task in job.tasks)
    images = {name: task.container.image for name, task in by_type.items() if task.container is not None}
    assert images == {
        "check-primary-status": "alpine:latest",
        "provision-secondary-infra": "hashicorp/terraform:light",
        "switch-dns": "amazon/aws-cli",
        "teardown-secondary-infra": "hashicorp/terraform:light",
        "notify-completion": "alpine:latest",
    }


def test_failover_scripts_keep_the_written_text() -> None:
    job = _parse(FAILOVER)
    by_type = {task.task_type: task for task in job.tasks}

    assert by_type["check-primary-status"].script == (
        'echo "Pinging primary region endpoint... it\'s down! Initiating failover procedure."',
        "exit 1",
    )
    # line 21, quoted in the fixed playbook, is the command with its JSON intact
    assert by_type["provision-secondary-infra"].script[-1] == (
        """echo '{"aws_instance.dr_server": {"id": "i-12345dr"}}' > terraform.tfstate"""
    )
    assert by_type["provision-secondary-infra"].script[1] == "sleep 10"
    assert by_type["switch-dns"].script[0] == (
        'echo "CRITICAL: Switching production DNS records to the us-west-2 environment..."'
    )


def test_failover_no_op_target_is_accepted_and_the_only_warning_is_the_colon() -> None:
    report = check_job_definition(FAILOVER.read_bytes())

    assert report.ok
    assert [(p.severity, p.code, p.line, p.column) for p in report.problems] == [
        (Severity.WARNING, ProblemCode.COLON_IN_PLAIN_SCALAR, 36, 7),
    ]
    assert report.problems[0].message == (
        "tasks[3].script[0] holds an unquoted `: `, so YAML reads it as a mapping; it is taken as the "
        "command written on the line"
    )
    assert report.problems[0].fix == (
        'quote the whole line: "echo \\"CRITICAL: Switching production DNS records to the us-west-2 '
        'environment...\\""'
    )


# -- aws-region-failover, as published -----------------------------------------------------------


def test_failover_as_published_is_rejected_with_one_error_at_line_21() -> None:
    report = check_job_definition(FAILOVER_AS_PUBLISHED.read_bytes(), source=str(FAILOVER_AS_PUBLISHED))

    assert not report.ok
    assert report.definition is None
    assert report.problems == report.errors
    (error,) = report.errors
    written = _line(FAILOVER_AS_PUBLISHED, 21)
    assert error.severity is Severity.ERROR
    assert error.code is ProblemCode.COLON_IN_PLAIN_SCALAR
    assert error.line == 21
    # the column is the unquoted `: ` that YAML took for a key separator
    assert error.column == written.index('": ') + 2
    assert written[error.column - 1 : error.column + 1] == ": "
    assert error.message == (
        "invalid YAML: this line holds an unquoted `: `, so YAML read the text before it as a mapping key "
        "(making the line a mapping, not a string) and then could not parse the rest"
    )
    assert error.text == written.strip()


def test_failover_as_published_fix_is_the_line_of_the_fixed_playbook() -> None:
    (error,) = check_job_definition(FAILOVER_AS_PUBLISHED.read_bytes()).problems

    assert error.fix == "quote the whole value: " + _line(FAILOVER, 21).strip()


def test_failover_as_published_differs_from_the_fix_only_at_line_21() -> None:
    published = FAILOVER_AS_PUBLISHED.read_text(encoding="utf-8").splitlines()
    fixed = FAILOVER.read_text(encoding="utf-8").splitlines()

    assert len(published) == len(fixed)
    assert [number for number, (a, b) in enumerate(zip(published, fixed, strict=True), 1) if a != b] == [21]


def test_parse_failover_as_published_raises_invalid_definition_with_the_problems() -> None:
    text = FAILOVER_AS_PUBLISHED.read_text(encoding="utf-8")

    with pytest.raises(InvalidDefinition) as caught:
        parse_job_definition(text, source="aws-region-failover.as-published.yaml")

    assert caught.value.problems == check_job_definition(text).problems
    assert caught.value.source == "aws-region-failover.as-published.yaml"
    assert len(caught.value.problems) == 1
    assert str(caught.value).startswith(
        "1 error(s) in job definition aws-region-failover.as-published.yaml; first: 21:38: invalid YAML: "
    )


def test_check_accepts_text_and_bytes_alike() -> None:
    for path in (SECURE_GO, FAILOVER, FAILOVER_AS_PUBLISHED):
        assert check_job_definition(path.read_bytes()) == check_job_definition(
            path.read_text(encoding="utf-8")
        )
