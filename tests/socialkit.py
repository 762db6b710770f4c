"""What the social channel tests share: reading the API, metrics and message states."""

from __future__ import annotations

import re
import time
from typing import Any

from gateway.testing import GatewayUnderTest, eventually


async def customer_id(gw: GatewayUnderTest, token: str, identity: str) -> str | None:
    kind, _, address = identity.partition(":")
    status, body = await gw.api("GET", f"/v1/customers?identity={kind}:{address.replace('+', '%2B')}", token)
    assert status == 200, body
    items = body["items"]  # type: ignore[index]
    return str(items[0]["id"]) if items else None


async def wait_customer(gw: GatewayUnderTest, token: str, identity: str) -> str:
    cid: str = await eventually(lambda: customer_id(gw, token, identity), what=f"a customer for {identity}")
    return cid


async def messages(gw: GatewayUnderTest, token: str, cid: str) -> list[dict[str, Any]]:
    status, page = await gw.api("GET", f"/v1/conversations/{cid}/messages?limit=100", token)
    assert status == 200, page
    return list(page["items"])  # type: ignore[index]


async def wait_messages(gw: GatewayUnderTest, token: str, cid: str, count: int) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        found = await messages(gw, token, cid)
        return found if len(found) >= count else None

    found: list[dict[str, Any]] = await eventually(enough, what=f"{count} messages in {cid}")
    return found


async def wait_status(gw: GatewayUnderTest, token: str, cid: str, mid: str, want: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        for m in await messages(gw, token, cid):
            if m["id"] == mid and m["status"] == want:
                return m
        return None

    found: dict[str, Any] = await eventually(reached, what=f"message {mid} {want}")
    return found


async def wait_retry(gw: GatewayUnderTest, token: str, cid: str, mid: str) -> tuple[dict[str, Any], float]:
    """The message once a transient failure scheduled its next attempt, and when that is due."""
    from datetime import datetime

    async def scheduled() -> dict[str, Any] | None:
        for m in await messages(gw, token, cid):
            if m["id"] == mid and m["attempts"] >= 1 and m["next_attempt_at"]:
                return m
        return None

    found: dict[str, Any] = await eventually(scheduled, what=f"a retry of {mid}")
    due = datetime.fromisoformat(found["next_attempt_at"].replace("Z", "+00:00")).timestamp()
    return found, due


async def reply(gw: GatewayUnderTest, token: str, cid: str, body: dict[str, Any],
                expect: int = 202) -> dict[str, Any]:
    status, answer = await gw.api("POST", f"/v1/conversations/{cid}/messages", token, json=body)
    assert status == expect, answer
    return answer  # type: ignore[return-value]


async def conversation(gw: GatewayUnderTest, token: str, cid: str) -> dict[str, Any]:
    status, body = await gw.api("GET", f"/v1/conversations/{cid}", token)
    assert status == 200, body
    return body  # type: ignore[return-value]


async def skipped_count(gw: GatewayUnderTest, instance: str, reason: str) -> float:
    """omnigateway_webhook_skipped_total for one instance and reason, as /metrics shows it."""
    assert gw._session is not None
    async with gw._session.get(gw.url("/metrics")) as resp:  # type: ignore[attr-defined]
        text = await resp.text()
    pattern = rf'^omnigateway_webhook_skipped_total\{{instance="{instance}",reason="{reason}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def age_window(gw: GatewayUnderTest, redis_client: Any, cid: str, instance: str, channel: str,
                     hours: float) -> None:
    """The customer last wrote on this instance and medium `hours` ago."""
    await redis_client.hset(gw.store.keys.thread(cid), f"in:{instance}:{channel}",
                            int((time.time() - hours * 3600) * 1000))


__all__ = ["age_window", "conversation", "customer_id", "messages", "reply", "skipped_count", "wait_customer",
           "wait_messages", "wait_retry", "wait_status"]
