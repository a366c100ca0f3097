"""Session-wide test configuration: the fixture modules under tests/fixtures, registered as plugins."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.databases",
    "tests.fixtures.object_stores",
    "tests.fixtures.engine",
]
