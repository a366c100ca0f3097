"""The task methods an Ant can run: our own `str` enum, so executors never see the wire enum."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CONTAINER_METHODS", "HTTP_METHODS", "Method"]


class Method(StrEnum):
    """A method an Ant executes. Methods the Queen runs itself (MANUAL, JOB_FORK, ...) are not here."""

    SHELL = "SHELL"
    DOCKER = "DOCKER"
    KUBERNETES = "KUBERNETES"
    HTTP_GET = "HTTP_GET"
    HTTP_POST_FORM = "HTTP_POST_FORM"
    HTTP_POST_JSON = "HTTP_POST_JSON"
    HTTP_PUT_FORM = "HTTP_PUT_FORM"
    HTTP_PUT_JSON = "HTTP_PUT_JSON"
    HTTP_DELETE = "HTTP_DELETE"


HTTP_METHODS = frozenset(
    {
        Method.HTTP_GET,
        Method.HTTP_POST_FORM,
        Method.HTTP_POST_JSON,
        Method.HTTP_PUT_FORM,
        Method.HTTP_PUT_JSON,
        Method.HTTP_DELETE,
    }
)
"""Methods the HTTP executor serves."""

CONTAINER_METHODS = frozenset({Method.DOCKER, Method.KUBERNETES})
"""Methods that run the scripts in a container; `--local-fallback` can run them with SHELL."""
