"""`formicary ant`: the command is registered and its options validated before anything starts."""

from __future__ import annotations

import os

import pytest
import typer
from typer.testing import CliRunner

from ant.cli import register

pytestmark = pytest.mark.unit


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    for name in list(os.environ):
        if name.startswith("FORMICARY_ANT_"):
            monkeypatch.delenv(name)
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Formicary."""

    register(app)
    return app


def test_the_ant_command_and_its_options(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["ant", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in (
        "--queen",
        "--methods",
        "--tags",
        "--capacity",
        "--local-fallback",
        "--work-dir",
        "--ant-id",
    ):
        assert option in result.output


@pytest.mark.parametrize(
    "arguments",
    [["--methods", "MANUAL"], ["--methods", "SHELL,SHELL"], ["--capacity", "0"]],
)
def test_bad_options_are_refused_before_starting(app: typer.Typer, arguments: list[str]) -> None:
    result = CliRunner().invoke(app, ["ant", *arguments])
    assert result.exit_code == 2
