"""Task templates: Formicary's `{{.Name}}` and Jinja's `{{ Name }}`, rendered in a sandbox, compiled once."""

from __future__ import annotations

import pytest

from queen.domain.errors import InvalidArgument
from queen.domain.templating import render

pytestmark = pytest.mark.unit


def test_the_same_template_renders_each_request_its_own_values() -> None:
    template = "deploy {{.JobID}} to {{ region }}"
    assert render(template, {"JobID": 7, "region": "eu"}) == "deploy 7 to eu"
    assert render(template, {"JobID": 8, "region": "us"}) == "deploy 8 to us"


def test_text_without_a_template_is_returned_as_is() -> None:
    assert render("make test", {}) == "make test"


@pytest.mark.parametrize(
    "template",
    ["{{ missing }}", "{{ unclosed", "{{ ''.__class__.__mro__ }}"],
    ids=["missing variable", "syntax error", "unsafe attribute"],
)
def test_a_bad_template_is_refused_every_time(template: str) -> None:
    for _ in range(2):  # a compiled template is kept; a refusal is not remembered as a success
        with pytest.raises(InvalidArgument, match="template"):
            render(template, {})
