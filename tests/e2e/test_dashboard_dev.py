"""The embedded system as `./scripts/run` starts it (`formicary dev`, which that script execs): the
brief's two curl commands, verbatim but for the port, upload a playbook and submit it; the job runs on
the embedded Ant up to its gate; the dashboard is served at `/` and the command prints its URL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import REPO, free_port
from tests.fixtures.waiting import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

# As the brief writes them.
BRIEF_UPLOAD = (
    'curl -X POST http://localhost:7777/api/jobs/definitions -H "Content-Type: application/yaml" '
    "--data-binary @playbook.yaml"
)
BRIEF_SUBMIT = (
    'curl -X POST http://localhost:7777/api/jobs/requests -H "Content-Type: application/json" -d '
    '\'{"job_type": "secure-go-cicd"}\''
)
_STOP_GRACE = 15.0


@dataclass
class Dev:
    process: asyncio.subprocess.Process
    log: Path
    http_port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _tools(folder: Path) -> str:
    """Stand-ins for `go` and `gosec`, which this host lacks (the test provides them, not the product)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in {
        "go": '#!/bin/sh\nprintf \'#!/bin/sh\\necho my-app\\n\' > "$3"\nchmod +x "$3"\n',
        "gosec": "#!/bin/sh\necho '{\"runs\": []}' > gosec-report.sarif\n",
    }.items():
        path = folder / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(folder)


@pytest.fixture
async def dev(tmp_path: Path) -> AsyncIterator[Dev]:
    """`formicary dev` from the repository root (so examples/ is loaded, as by ./scripts/run)."""
    command = Path(sys.executable).parent / "formicary"
    if not command.exists():
        pytest.skip(f"{command} is not installed (pip install -e .)")
    http_port, grpc_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("FORMICARY_QUEEN_")}
    env.update(
        PYTHONUNBUFFERED="1",
        PATH=f"{_tools(tmp_path / 'tools')}:{os.environ.get('PATH', '')}",
        DOCKER_HOST="unix:///nonexistent/docker.sock",  # no engine: --local-fallback runs SHELL
    )
    log = tmp_path / "dev.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            str(command),
            "dev",
            "--http-port",
            str(http_port),
            "--grpc-port",
            str(grpc_port),
            "--data-dir",
            str(tmp_path / "data"),
            cwd=REPO,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
        )
    running = Dev(process, log, http_port)
    try:
        await assert_eventually(
            lambda: "formicary: try:" in running.output() or process.returncode is not None,
            timeout=60,
            message="formicary dev started",
        )
        assert process.returncode is None, running.output()
        yield running
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)  # it stops its Ant child, then itself
            try:
                async with asyncio.timeout(_STOP_GRACE):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


async def _curl(command: str, port: int, cwd: Path) -> tuple[int, dict[str, Any]]:
    """Run a brief's curl command as written (only the port differs); the HTTP status and JSON body."""
    args = shlex.split(command.replace("localhost:7777", f"localhost:{port}"))
    args[1:1] = ["--silent", "--show-error", "--write-out", "\n%{http_code}"]
    process = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    text, _, status = out.decode().rpartition("\n")
    return int(status), json.loads(text)


async def test_the_brief_curl_commands_work_verbatim_against_formicary_dev(dev: Dev, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "examples" / "secure-go-cicd.yaml", work / "playbook.yaml")

    uploaded_status, uploaded = await _curl(BRIEF_UPLOAD, dev.http_port, work)
    submitted_status, submitted = await _curl(BRIEF_SUBMIT, dev.http_port, work)

    # examples/ was loaded at start: the identical upload is answered 200 (no new version), else 201
    assert uploaded_status in (200, 201), uploaded
    assert uploaded["job_type"] == "secure-go-cicd"
    assert submitted_status == 201, submitted
    assert (submitted["job_type"], submitted["job_state"]) == ("secure-go-cicd", "PENDING")

    base = f"http://localhost:{dev.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:

        async def at_the_gate() -> dict[str, Any] | None:
            found: dict[str, Any] = (await http.get(f"/api/jobs/requests/{submitted['id']}")).json()
            assert found["job_state"] not in ("FAILED", "CANCELLED"), found
            return found if found["job_state"] == "MANUAL_APPROVAL_REQUIRED" else None

        waiting = await assert_eventually(
            at_the_gate, timeout=60, interval=0.2, message="the job reached its gate"
        )
        page = await http.get("/")

    assert waiting is not None
    tasks = {t["task_type"]: t["task_state"] for t in waiting["execution"]["tasks"]}
    assert tasks["deploy-staging"] == "COMPLETED"
    assert tasks["verify-production-deploy"] == "MANUAL_APPROVAL_REQUIRED"
    assert page.status_code == 200
    assert "/dashboard/assets/js/main.js" in page.text
    assert f"formicary: dashboard: {base}/" in dev.output()
