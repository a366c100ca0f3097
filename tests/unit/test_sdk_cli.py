"""The `formicary` command survives a broken plugin: its other commands still work, and it says why."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import sdk.cli

pytestmark = pytest.mark.unit


class _EntryPoint:
    def __init__(self, name: str, target: Any, value: str = "") -> None:
        self.name = name
        self.value = value or f"plugins.{name}:register"
        self._target = target
        self.loaded = 0

    def load(self) -> Any:
        self.loaded += 1
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


def _bye(app: typer.Typer) -> None:
    @app.command("bye")
    def bye() -> None:
        typer.echo("bye")

    @app.command("ciao")
    def ciao() -> None:
        typer.echo("ciao")


def test_a_command_line_loads_only_the_plugin_it_invokes(monkeypatch: pytest.MonkeyPatch) -> None:
    hello = _EntryPoint("hello", _hello)
    bye = _EntryPoint("bye", _bye, "plugins.bye:register")
    ciao = _EntryPoint("ciao", _bye, "plugins.bye:register")  # the same register under its other command
    broken = _EntryPoint("broken", ImportError("never loaded"))
    monkeypatch.setattr(sdk.cli, "entry_points", lambda group: [broken, bye, ciao, hello])

    result = CliRunner().invoke(sdk.cli.build_app(argv=["--token", "t", "ciao"]), ["ciao"])
    assert (result.exit_code, result.stdout.strip()) == (0, "ciao")
    assert (broken.loaded, bye.loaded, ciao.loaded, hello.loaded) == (0, 0, 1, 0)

    result = CliRunner().invoke(sdk.cli.build_app(argv=["status", "7"]), ["--help"])  # a client command
    assert result.exit_code == 0
    assert "hello" not in result.stdout
    assert (broken.loaded, bye.loaded, ciao.loaded, hello.loaded) == (0, 0, 1, 0)

    result = CliRunner().invoke(sdk.cli.build_app(argv=["--help"]), ["hello"])  # no command: all, once each
    assert (result.exit_code, result.stdout.strip()) == (0, "hello")
    assert (broken.loaded, bye.loaded + ciao.loaded, hello.loaded) == (1, 2, 1)
