"""The `formicary` command survives a broken plugin: its other commands still work, and it says why."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import sdk.cli

pytestmark = pytest.mark.unit


class _EntryPoint:
    def __init__(self, name: str, target: Any) -> None:
        self.name = name
        self._target = target

    def load(self) -> Any:
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def _hello(app: typer.Typer) -> None:
    @app.command("hello")
    def hello() -> None:
        typer.echo("hello")


def test_a_broken_plugin_does_not_hide_the_others(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plugins = [_EntryPoint("broken", ImportError("no module named nowhere")), _EntryPoint("hello", _hello)]
    monkeypatch.setattr(sdk.cli, "entry_points", lambda group: plugins)

    app = sdk.cli.build_app()
    said = capsys.readouterr().err
    result = CliRunner().invoke(app, ["hello"])

    assert result.exit_code == 0
    assert "hello" in result.stdout
    assert "the 'broken' commands are unavailable: ImportError: no module named nowhere" in said
