"""The store's pure parts: the canonical digest of definitions, JSON conversion, the UTC column type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from queen.domain.definition_parser import parse_job_definition
from queen.domain.states import JobState
from queen.store._column_types import UTCDateTime
from queen.store._json import freeze, to_json_value
from queen.store.definitions import canonical_definition, definition_digest

pytestmark = pytest.mark.unit

PLAYBOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks"

HELLO = """\
job_type: hello
tasks:
- task_type: greet
  method: SHELL
  script: [echo hello]
  variables: {a: 1, b: two}
"""


def digest(text: str) -> str:
    return definition_digest(parse_job_definition(text))


@pytest.mark.parametrize("name", ["secure-go-cicd.yaml", "aws-region-failover.yaml"])
def test_every_example_playbook_has_a_stable_canonical_form(name: str) -> None:
    text = (PLAYBOOKS / name).read_text(encoding="utf-8")
    canonical = canonical_definition(parse_job_definition(text))
    assert canonical == canonical_definition(parse_job_definition(text))
    assert digest(text) == digest("# a comment\n" + text + "\n# another\n")


def test_layout_comments_and_key_order_do_not_count() -> None:
    reordered = """\
# greeting
job_type: hello
tasks:
  - script:
      - echo hello   # says hello
    method: SHELL
    variables:
      b: two
      a: 1
    task_type: greet
"""
    assert digest(reordered) == digest(HELLO)


def test_meaningful_changes_count() -> None:
    assert digest(HELLO.replace("echo hello", "echo bye")) != digest(HELLO)
    assert digest(HELLO.replace("a: 1", "a: 2")) != digest(HELLO)
    assert digest(HELLO + "description: now described\n") != digest(HELLO)


def test_json_values_and_frozen_copies() -> None:
    when = datetime(2030, 1, 1, tzinfo=UTC)
    assert to_json_value({"s": JobState.READY, "t": when, "d": timedelta(minutes=1), "l": (1, [2])}) == {
        "s": "READY",
        "t": "2030-01-01T00:00:00+00:00",
        "d": 60.0,
        "l": [1, [2]],
    }
    with pytest.raises(TypeError):
        to_json_value({"x": object()})
    frozen = freeze({"a": [1, {"b": 2}]})
    assert frozen["a"] == (1, {"b": 2})
    with pytest.raises(TypeError):
        frozen["a"] = 1


def test_utc_column_type_refuses_naive_and_normalizes_to_utc() -> None:
    column = UTCDateTime()
    local = datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert column.process_bind_param(local, sqlite.dialect()) == datetime(2030, 1, 1, 10)
    assert column.process_bind_param(local, postgresql.dialect()) == datetime(2030, 1, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        column.process_bind_param(datetime(2030, 1, 1), sqlite.dialect())
    read = column.process_result_value(datetime(2030, 1, 1, 10), sqlite.dialect())
    assert read == datetime(2030, 1, 1, 10, tzinfo=UTC)
    assert read is not None
    assert read.tzinfo is UTC
