"""The SDK's public names are pinned: adding or removing one is a decision, made here on purpose."""

from __future__ import annotations

import pytest

import sdk

pytestmark = pytest.mark.unit

PUBLIC = {
    # the client
    "Client",
    "DEFAULT_ADDRESS",
    "ADDRESS_VARIABLE",
    "resolve_address",
    # errors
    "FormicaryError",
    "NotFound",
    "AlreadyExists",
    "DuplicateUserKey",
    "InvalidArgument",
    "InvalidDefinition",
    "ValidationProblem",
    "FailedPrecondition",
    "PermissionDenied",
    "Unauthenticated",
    "ResourceExhausted",
    "Unimplemented",
    "Unavailable",
    "DeadlineExceeded",
    "Cancelled",
    "InternalError",
    # types
    "JobState",
    "TaskState",
    "JobDefinition",
    "TaskDefinition",
    "DefinitionUpload",
    "JobRequest",
    "TaskExecution",
    "JobRequestEvent",
    "LogLine",
    "Artifact",
    "Ant",
    "Approval",
    "Health",
    "ComponentHealth",
}


def test_the_public_names_are_exactly_the_pinned_ones() -> None:
    assert set(sdk.__all__) == PUBLIC
    assert len(sdk.__all__) == len(PUBLIC)  # no duplicates


def test_every_public_name_is_importable_and_none_is_a_protobuf_type() -> None:
    for name in sdk.__all__:
        value = getattr(sdk, name)
        assert not getattr(value, "__module__", "").startswith(("formicary.", "google.")), name


def test_every_error_derives_from_the_one_root() -> None:
    errors = [getattr(sdk, n) for n in sdk.__all__ if isinstance(getattr(sdk, n), type)]
    for error in errors:
        if issubclass(error, Exception):
            assert issubclass(error, sdk.FormicaryError), error
