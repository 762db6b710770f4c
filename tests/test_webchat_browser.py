"""The real widget in headless Chromium: the demo page, a customer typing, an agent answering.

Uses Debian's chromium through Playwright's executable_path (never `playwright install`); .ci/run
installs it. Skipped, with the reason, only where no chromium is installed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator

import pytest

from gateway.testing import GatewayUnderTest

_WANTED = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM = _WANTED if os.path.exists(_WANTED) else shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason=f"chromium is not installed ({_WANTED}); apt-get install -y chromium",
)


@pytest.fixture
async def gw(redis_url: str, key_prefix: str, redis_client: object) -> AsyncIterator[GatewayUnderTest]:
    # As `make run` has it: no secret at all, the demo page at /.
    async with GatewayUnderTest(redis_url, prefix=key_prefix, connectors={"webchat": {"kind": "webchat"}},
                                partitions=2, lease_ttl=2.0, shutdown_grace=1.0) as gateway:
        yield gateway


async def test_widget_in_chromium_sends_and_shows_the_agents_reply(gw: GatewayUnderTest) -> None:
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(gw.url("/"))
            await page.click(".ogc-launcher")
            await page.fill(".ogc-input", "Hello <b>from</b> the browser")
            await page.press(".ogc-input", "Enter")
            mine = page.locator(".ogc-mine[data-id]")
            await expect(mine).to_have_count(1, timeout=10_000)
            # Text stays text: the markup a visitor types is shown, never interpreted.
            await expect(mine.locator(".ogc-text")).to_have_text("Hello <b>from</b> the browser")
            assert await page.locator(".ogc-mine b").count() == 0

            cid = await page.evaluate(
                "() => localStorage.getItem('omnichat:' + location.origin + '/webchat/webchat:customer')")
            assert cid
            deadline = time.monotonic() + 10
            while not (await gw.store.timeline.list_messages(cid))[0]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)

            agent = await gw.token("agent", "carol")
            status, body = await gw.api("POST", f"/v1/conversations/{cid}/messages", agent,
                                        json={"text": "Hi! How can we help?"})
            assert status == 202, body
            theirs = page.locator(".ogc-theirs")
            await expect(theirs).to_have_count(1, timeout=10_000)
            await expect(theirs.locator(".ogc-text")).to_have_text("Hi! How can we help?")
            assert errors == []
        finally:
            await browser.close()
