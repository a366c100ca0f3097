"""The Ant's settings (ant.settings): the list of them, their parsing, their defaults."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from pydantic import ValidationError

from ant.executors import Method
from ant.settings import AntSettings

pytestmark = pytest.mark.unit

SUPPORTED = {
    "queen_address", "ant_id", "methods", "tags", "capacity", "labels", "host", "work_dir", "keep_work_dirs",
    "local_fallback", "credential", "cost_factor", "register_timeout", "reconnect_initial_backoff",
    "reconnect_backoff_cap", "refused_retry_interval", "shutdown_grace", "ack_timeout", "log_flush_interval",
    "log_linger", "protocol_version", "log_max_pending_lines", "log_resend_lines", "kill_grace",
    "after_script_timeout", "http_timeout", "api_timeout", "kubernetes_namespace", "kubernetes_poll_interval",
    "artifact_transfer_timeout", "artifact_stall_timeout", "artifact_reconnect_timeout", "log_format",
}  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FORMICARY_ANT_"):
            monkeypatch.delenv(name)


def test_every_supported_setting_is_listed_and_described() -> None:
    assert set(AntSettings.model_fields) == SUPPORTED
    for name, field in AntSettings.model_fields.items():
        assert field.description, f"{name} has no description"


def test_defaults() -> None:
    settings = AntSettings()
    assert settings.methods == [Method.SHELL]
    assert settings.capacity == 4
    assert settings.ant_id.endswith(f"-{os.getpid()}")
    assert not settings.local_fallback
    assert settings.credential is None
    assert settings.log_flush_interval <= timedelta(milliseconds=500)


def test_environment_lists_and_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORMICARY_ANT_METHODS", "shell, DOCKER,HTTP_GET")
    monkeypatch.setenv("FORMICARY_ANT_TAGS", "linux,gpu")
    monkeypatch.setenv("FORMICARY_ANT_LABELS", "zone=eu-1, type = m5")
    monkeypatch.setenv("FORMICARY_ANT_CAPACITY", "8")
    monkeypatch.setenv("FORMICARY_ANT_CREDENTIAL", "tok")
    monkeypatch.setenv("FORMICARY_ANT_LOCAL_FALLBACK", "true")
    settings = AntSettings()
    assert settings.methods == [Method.SHELL, Method.DOCKER, Method.HTTP_GET]
    assert settings.tags == ["linux", "gpu"]
    assert settings.labels == {"zone": "eu-1", "type": "m5"}
    assert settings.capacity == 8
    assert settings.credential is not None
    assert settings.credential.get_secret_value() == "tok"
    assert "tok" not in repr(settings)
    assert settings.local_fallback


def test_options_as_the_cli_passes_them() -> None:
    settings = AntSettings(queen_address="q:1", methods="SHELL,KUBERNETES", tags="a", capacity=2, ant_id="x")
    assert settings.methods == [Method.SHELL, Method.KUBERNETES]
    assert (settings.queen_address, settings.tags, settings.ant_id) == ("q:1", ["a"], "x")


@pytest.mark.parametrize(
    "bad",
    [
        {"methods": "MANUAL"},
        {"methods": ""},
        {"methods": "SHELL,SHELL"},
        {"capacity": 0},
        {"labels": "novalue"},
        {"log_flush_interval": timedelta(seconds=1)},
        {"artifact_stall_timeout": timedelta(0)},
        {"nonsense": 1},
    ],
)
def test_invalid_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AntSettings(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["0", "4", "two"])
def test_a_protocol_version_the_ant_does_not_speak_is_refused_with_its_name(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("FORMICARY_ANT_PROTOCOL_VERSION", value)
    with pytest.raises(ValidationError, match="protocol_version"):
        AntSettings()
