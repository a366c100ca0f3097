"""Session-wide test configuration: the fixture modules under tests/fixtures, registered as plugins."""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.databases",
    "tests.fixtures.object_stores",
    "tests.fixtures.engine",
    "tests.fixtures.otlp",
]


def pytest_configure(config: pytest.Config) -> None:
    """Queens started by tests bind their REST port on any free port, never the default 7777."""
    del config
    os.environ.setdefault("FORMICARY_QUEEN_HTTP_PORT", "0")
