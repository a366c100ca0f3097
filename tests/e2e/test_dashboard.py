"""The dashboard in a real browser (headless Chromium driven by Playwright) against a Queen and an Ant
as real processes: upload the DR playbook through the upload form, submit it, watch it stop at the
gate with live log lines, open the artifact under review, approve with the keyboard, and see the job
COMPLETED with `switch-dns` drawn as completed in the DAG.

Screenshots go to the test's tmp_path (`dashboard-at-gate.png`, `dashboard-completed.png`; pytest
prints the folder when the test fails, and `--basetemp` chooses it). Every request the page makes to a
host other than the Queen is refused and fails the test: the dashboard must need nothing from outside.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Request, Route, async_playwright, expect

from tests.e2e.conftest import REPO, free_port
from tests.fixtures.processes import ManagedProcess, start_ant, start_queen
from tests.fixtures.waiting import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Authentication (when the Queen requires it) is not what this test is about: the Queen acts as its
# local identity, as `formicary dev` does.
QUEEN_ENV = {
    "FORMICARY_QUEEN_HEARTBEAT_INTERVAL": "1",
    "FORMICARY_QUEEN_ANT_LOST_AFTER": "10",
    "FORMICARY_QUEEN_AUTH_REQUIRED": "false",
}
ANT_ENV = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}  # no engine: --local-fallback runs SHELL
PLAYBOOK = REPO / "examples" / "aws-region-failover.yaml"
_REST_URL = re.compile(r"REST API on (http://\S+)")
_LONG = 45_000  # ms: the playbook sleeps 10 s before the gate and 5 s after it


def _browser_or_skip() -> None:
    if CHROMIUM.exists():
        return
    why = f"{CHROMIUM} is not installed (scripts/test installs the Debian package chromium)"
    if os.environ.get("FORMICARY_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[str]:
    """A Queen (SQLite) and an Ant with --local-fallback; yields the Queen's HTTP URL."""
    port = free_port()
    queen = await start_queen(
        tmp_path / "queen",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'q.db'}",
        grpc_port=port,
        env=QUEEN_ENV,
    )
    ant: ManagedProcess | None = None
    try:
        ant = await start_ant(
            tmp_path / "ant",
            queen_port=port,
            ant_id="ant-dashboard",
            methods="SHELL,KUBERNETES,DOCKER",
            capacity=4,
            extra=["--local-fallback"],
            env=ANT_ENV,
        )
        found = await assert_eventually(lambda: _REST_URL.search(queen.output()), message="the REST URL")
        yield found.group(1).replace("127.0.0.1", "localhost")
    finally:
        if ant is not None:
            await ant.stop()
        await queen.stop()


async def test_upload_submit_review_the_artifact_and_approve_in_the_browser(
    system: str, tmp_path: Path
) -> None:
    _browser_or_skip()
    base = system
    outside: list[str] = []
    problems: list[str] = []

    async def only_the_queen(route: Route, request: Request) -> None:
        if urlsplit(request.url).netloc == urlsplit(base).netloc:
            await route.continue_()
        else:
            outside.append(request.url)
            await route.abort()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                viewport={"width": 1366, "height": 900}, accept_downloads=True
            )
            await context.route("**/*", only_the_queen)
            page = await context.new_page()
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)

            # upload the playbook through the form
            await page.goto(f"{base}/definitions")
            await page.get_by_label("YAML file").set_input_files(str(PLAYBOOK))
            await page.get_by_role("button", name="Upload").click()
            await expect(page.locator("#upload-result")).to_contain_text(
                "Uploaded aws-region-failover version 1"
            )
            await expect(page.locator("#definitions")).to_contain_text("aws-region-failover")

            # its page: the DAG, and the form that submits it
            await page.get_by_role("link", name="Open aws-region-failover").click()
            await expect(page.locator('#dag [data-task="switch-dns"]')).to_be_visible()
            await page.get_by_role("button", name="Submit job request").click()
            await expect(page).to_have_url(re.compile(r"/requests/\d+$"))

            # live: log lines while provisioning, then the gate
            await expect(page.locator("#log")).to_contain_text("Simulating 'terraform apply'", timeout=_LONG)
            heading = page.locator("#request-heading")
            await expect(heading).to_have_attribute("data-state", "MANUAL_APPROVAL_REQUIRED", timeout=_LONG)
            dag = page.locator("#dag")
            await expect(dag.locator('[data-task="check-primary-status"]')).to_have_attribute(
                "data-state", "FAILED"
            )
            await expect(dag.locator('[data-task="verify-failover"]')).to_have_attribute(
                "data-state", "MANUAL_APPROVAL_REQUIRED"
            )
            await expect(dag.locator('[data-task="switch-dns"]')).to_have_attribute("data-state", "")
            gate = page.locator("#approval-verify-failover")
            await expect(gate).to_contain_text("VERIFY COSTS")
            await expect(gate).to_contain_text("0 of 1 approval")

            # open the artifact under review, and download it
            await gate.get_by_role("button", name="View terraform.tfstate").click()
            await expect(page.locator("#artifact-content")).to_contain_text('"aws_instance.dr_server"')
            async with page.expect_download() as download_info:
                await (
                    page.locator("#artifacts").get_by_role("link", name="Download terraform.tfstate").click()
                )
            download = await download_info.value
            saved = tmp_path / "downloaded.tfstate"
            await download.save_as(saved)
            assert '"i-12345dr"' in saved.read_text()
            await page.screenshot(path=str(tmp_path / "dashboard-at-gate.png"), full_page=True)

            # approve with the keyboard: type the comment, Tab to Approve, Enter
            await gate.get_by_label("Comment").fill("costs checked")
            await page.keyboard.press("Tab")
            await expect(gate.get_by_role("button", name="Approve")).to_be_focused()
            await page.keyboard.press("Enter")
            await expect(gate).to_contain_text("Approved verify-failover")

            # the job completes; switch-dns is drawn as completed
            await expect(heading).to_have_attribute("data-state", "COMPLETED", timeout=_LONG)
            switch_dns = dag.locator('[data-task="switch-dns"]')
            await expect(switch_dns).to_have_attribute("data-state", "COMPLETED")
            await expect(switch_dns).to_contain_text("COMPLETED")
            await expect(dag.locator('[data-task="teardown-secondary-infra"]')).to_have_attribute(
                "data-state", ""
            )
            row = page.locator('#tasks tr[data-task="switch-dns"]')
            await expect(row).to_contain_text("ant-dashboard")
            await expect(row.locator("td.mono")).to_have_text(re.compile(r"^0"))
            await expect(gate).to_have_attribute("data-state", "APPROVED")
            await expect(gate).to_contain_text("costs checked")
            await expect(page.locator("#log")).to_contain_text("DNS failover complete")
            await page.screenshot(path=str(tmp_path / "dashboard-completed.png"), full_page=True)

            # the other pages render what the API says
            await page.get_by_role("link", name="Ants").click()
            await expect(page.locator('#ants [data-ant="ant-dashboard"]')).to_contain_text("connected")
            await page.get_by_role("link", name="Approvals").click()
            await expect(page.get_by_text("Nothing is waiting for a decision.")).to_be_visible()
            await page.get_by_role("link", name="Job requests").click()
            await expect(page.locator("#requests tbody tr").first).to_have_attribute(
                "data-state", "COMPLETED"
            )
        finally:
            await browser.close()

    assert not outside, f"the dashboard reached outside the Queen: {outside}"
    assert not problems, problems
