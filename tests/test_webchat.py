"""The web chat end to end: sessions, live sockets, the HTTP fallback, identity and limits.

Every test runs the whole gateway (HTTP, ingest workers, dispatcher) on real Redis and talks to
it as the widget and agents do: aiohttp WebSocket clients, the session endpoint, the inbox API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import jwt
import pytest

from connectors.chat.webchat.tokens import sign_identity_token
from conversation.model import Identity
from gateway.testing import GatewayUnderTest

SECRET = "s3cret-identity-key-for-tests-0123456789"
SHOP = "https://shop.example.com"
TIMEOUT = 10.0


def chat_config(**overrides: object) -> dict[str, dict[str, object]]:
    return {"chat": {"kind": "webchat", "identity_secret": SECRET, "allowed_origins": [SHOP], **overrides}}


@pytest.fixture
async def gw(redis_url: str, key_prefix: str, redis_client: object) -> AsyncIterator[GatewayUnderTest]:
    async with GatewayUnderTest(redis_url, prefix=key_prefix, connectors=chat_config(), partitions=2,
                                lease_ttl=2.0, shutdown_grace=1.0) as gateway:
        yield gateway


async def new_session(gw: GatewayUnderTest, body: dict[str, Any] | None = None, *, origin: str | None = SHOP,
                      instance: str = "chat") -> tuple[int, dict[str, Any]]:
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession() as http, http.post(
            gw.url(f"/webchat/{instance}/session"), json=body or {}, headers=headers) as resp:
        return resp.status, await resp.json()


class Client:
    """A browser-less widget: one WebSocket, frames collected as they come."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, http: aiohttp.ClientSession) -> None:
        self.ws = ws
        self.http = http
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, gw: GatewayUnderTest, token: str, cursor: str | None = None,
                      origin: str = SHOP) -> Client:
        http = aiohttp.ClientSession()
        params = {"visitor_token": token, **({"cursor": cursor} if cursor else {})}
        try:
            ws = await http.ws_connect(gw.url("/webchat/chat/ws"), params=params, headers={"Origin": origin})
        except BaseException:
            await http.close()
            raise
        return cls(ws, http)

    async def send(self, text: str, client_id: str) -> None:
        await self.ws.send_json({"type": "message", "text": text, "client_id": client_id})

    async def until(self, pred: Callable[[dict[str, Any]], bool], within: float = TIMEOUT) -> dict[str, Any]:
        frame: dict[str, Any]
        for frame in self.frames:
            if pred(frame):
                return frame
        async with asyncio.timeout(within):
            while True:
                msg = await self.ws.receive()
                assert msg.type is aiohttp.WSMsgType.TEXT, f"socket ended: {msg.type} {msg.data!r}"
                frame = msg.json()
                self.frames.append(frame)
                if pred(frame):
                    return frame

    async def quiet(self, seconds: float = 0.5) -> list[dict[str, Any]]:
        """Frames that arrive within `seconds` (expected: none)."""
        got: list[dict[str, Any]] = []
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    msg = await self.ws.receive()
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        return got
                    got.append(msg.json())
        return got

    def messages(self) -> list[dict[str, Any]]:
        return [f["message"] for f in self.frames if f["type"] == "message"]

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()


def text_is(text: str, status: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda f: (f["type"] == "message" and f["message"]["text"] == text
                      and (status is None or f["message"]["status"] == status))


async def wait_status(gw: GatewayUnderTest, token: str, cid: str, mid: str, wanted: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        status, body = await gw.api("GET", f"/v1/conversations/{cid}/messages?limit=100", token)
        assert status == 200, body
        assert isinstance(body, dict)
        found: dict[str, Any] = next(m for m in body["items"] if m["id"] == mid)
        if found["status"] in wanted:
            return found
        assert time.monotonic() < deadline, f"message stayed {found['status']}"
        await asyncio.sleep(0.05)


async def reply(gw: GatewayUnderTest, agent: str, cid: str, text: str, **extra: object) -> dict[str, Any]:
    status, body = await gw.api("POST", f"/v1/conversations/{cid}/messages", agent, json={"text": text, **extra})
    assert status == 202, body
    assert isinstance(body, dict)
    return body


# --- live fan-out -----------------------------------------------------------------------------


async def test_two_sockets_of_one_visitor_both_receive_the_agents_reply(gw: GatewayUnderTest) -> None:
    status, session = await new_session(gw)
    assert status == 200, session
    token, cid = session["visitor_token"], session["customer_id"]
    tab1, tab2 = await Client.connect(gw, token), await Client.connect(gw, token)
    try:
        await tab1.send("Where is my parcel?", "c1")
        for tab in (tab1, tab2):  # the visitor's own message reaches both tabs once stored
            echo = await tab.until(text_is("Where is my parcel?"))
            assert echo["message"]["direction"] == "inbound"
            assert echo["message"]["conversation_id"] == cid
            assert echo["message"]["channel"] == "webchat"

        agent = await gw.token("agent", "alice")
        sent = await reply(gw, agent, cid, "It ships today.")
        assert sent["status"] == "queued"
        for tab in (tab1, tab2):
            frame = await tab.until(text_is("It ships today."))
            # Shown once the real dispatcher sent it through webchat's send(), never while queued.
            assert frame["message"]["id"] == sent["id"]
            assert frame["message"]["direction"] == "outbound"
            assert frame["message"]["status"] in ("sent", "delivered")  # another tab may have been first
            assert frame["message"]["author"] == "alice"
        for tab in (tab1, tab2):
            assert [m["text"] for m in tab.messages()] == ["Where is my parcel?", "It ships today."]
        # The agent sees that an open widget received it.
        await wait_status(gw, agent, cid, sent["id"], {"delivered"})
    finally:
        await tab1.close()
        await tab2.close()


async def test_reconnect_with_cursor_gets_exactly_the_missed_messages(gw: GatewayUnderTest) -> None:
    _, session = await new_session(gw)
    token, cid = session["visitor_token"], session["customer_id"]
    agent = await gw.token("agent", "bob")
    tab = await Client.connect(gw, token)
    try:
        await tab.send("first", "m1")
        first = (await tab.until(text_is("first")))["message"]
        r1 = await reply(gw, agent, cid, "reply one")
        await tab.until(text_is("reply one"))
    finally:
        await tab.close()

    # Offline: two replies, an internal note and a message sent through the HTTP fallback.
    r2 = await reply(gw, agent, cid, "reply two")
    await reply(gw, agent, cid, "internal: check the warehouse", private=True)
    r3 = await reply(gw, agent, cid, "reply three")
    async with aiohttp.ClientSession() as http, http.post(
            gw.url("/webchat/chat/messages"), json={"type": "message", "text": "via http", "client_id": "m2"},
            headers={"Authorization": f"Bearer {token}", "Origin": SHOP}) as resp:
        assert resp.status == 202, await resp.text()
    for mid in (r2["id"], r3["id"]):
        await wait_status(gw, agent, cid, mid, {"sent"})
    deadline = time.monotonic() + TIMEOUT
    while not any(m.text == "via http" for m in (await gw.store.timeline.list_messages(cid, limit=50))[0]):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)

    cursor = r1["id"]
    tab = await Client.connect(gw, token, cursor=cursor)
    try:
        await tab.until(text_is("via http"))
        await tab.quiet(0.5)
        texts = [m["text"] for m in tab.messages()]
        assert texts == ["reply two", "reply three", "via http"], texts  # in thread order, nothing else
        assert len({m["id"] for m in tab.messages()}) == 3
        # Resending a message after the reconnect (same client_id) does not store it twice.
        await tab.send("first", "m1")
        await tab.quiet(0.8)
        thread, _ = await gw.store.timeline.list_messages(cid, limit=50)
        assert [m.text for m in thread].count("first") == 1
        assert first["provider_message_id"].endswith("/m1")
    finally:
        await tab.close()

    # The HTTP fallback's history answers the same question the same way.
    async with aiohttp.ClientSession() as http, http.get(
            gw.url("/webchat/chat/messages"), params={"cursor": cursor},
            headers={"Authorization": f"Bearer {token}"}) as resp:
        body = await resp.json()
    assert [m["text"] for m in body["items"]] == ["reply two", "reply three", "via http"]


# --- identity ---------------------------------------------------------------------------------


async def test_forged_identity_token_is_refused_and_only_a_verified_email_links(gw: GatewayUnderTest) -> None:
    existing = await gw.store.identities.resolve(Identity("email", "alice@example.com"))

    forged = sign_identity_token("not-the-site-secret-at-all-000000000", sub="42", email="alice@example.com")
    status, body = await new_session(gw, {"identity_token": forged})
    assert status == 403 and body["error"]["code"] == "invalid_identity_token"
    unsigned = jwt.encode({"sub": "42", "email": "alice@example.com", "exp": int(time.time()) + 60}, key="",
                          algorithm="none")
    status, _ = await new_session(gw, {"identity_token": unsigned})
    assert status == 403
    expired = sign_identity_token(SECRET, sub="42", email="alice@example.com", ttl_seconds=-120)
    status, _ = await new_session(gw, {"identity_token": expired})
    assert status == 403
    # Nothing of the refused tokens was linked to anyone.
    assert await gw.store.identities.known(Identity("webchat", "u:chat:42")) is None

    # A site that says the email is not verified gets a visitor of its own: no link.
    unverified = sign_identity_token(SECRET, sub="43", email="alice@example.com", email_verified=False)
    status, body = await new_session(gw, {"identity_token": unverified})
    assert status == 200 and body["customer_id"] != existing

    # A verified email joins the customer who has it.
    verified = sign_identity_token(SECRET, sub="42", email="Alice@Example.com", name="Alice")
    status, body = await new_session(gw, {"identity_token": verified})
    assert status == 200 and body["customer_id"] == existing
    # The same user from another browser is the same visitor and customer.
    status, again = await new_session(gw, {"identity_token": verified})
    assert again["customer_id"] == existing

    # Their chat lands in the existing customer's thread, under their name.
    tab = await Client.connect(gw, body["visitor_token"])
    try:
        await tab.send("hello, it is Alice", "a1")
        echo = await tab.until(text_is("hello, it is Alice"))
        assert echo["message"]["conversation_id"] == existing
    finally:
        await tab.close()
    customer = await gw.store.threads.get_customer(existing)
    assert customer.name == "Alice"

    # A new user with a verified email becomes a customer with both identities.
    status, fresh = await new_session(gw, {"identity_token": sign_identity_token(SECRET, sub="77",
                                                                                 email="new@example.com")})
    assert status == 200
    assert await gw.store.identities.known(Identity("email", "new@example.com")) == fresh["customer_id"]
    assert await gw.store.identities.known(Identity("webchat", "u:chat:77")) == fresh["customer_id"]


async def test_bad_visitor_tokens_are_refused(gw: GatewayUnderTest) -> None:
    _, session = await new_session(gw)
    forged = session["visitor_token"][:-4] + ("AAAA" if not session["visitor_token"].endswith("AAAA") else "BBBB")
    tab = await Client.connect(gw, forged)
    try:
        frame = await tab.until(lambda f: f["type"] == "error")
        assert frame["code"] == "invalid_token"
        closing = await tab.ws.receive()
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert tab.ws.close_code == 4401
    finally:
        await tab.close()
    async with aiohttp.ClientSession() as http, http.post(
            gw.url("/webchat/chat/messages"), json={"type": "message", "text": "x", "client_id": "x"},
            headers={"Authorization": f"Bearer {forged}"}) as resp:
        assert resp.status == 401
    # Renewing a session keeps the visitor (same customer); a forged token gets a new one.
    _, renewed = await new_session(gw, {"visitor_token": session["visitor_token"]})
    assert renewed["customer_id"] == session["customer_id"]
    _, other = await new_session(gw, {"visitor_token": forged})
    assert other["customer_id"] != session["customer_id"]
    status, body = await new_session(gw, {"email": "alice@example.com"})  # no unsigned claims at all
    assert status == 400 and body["error"]["code"] == "invalid_request"


# --- limits -----------------------------------------------------------------------------------


async def test_size_and_rate_limits_answer_with_error_frames_and_keep_the_socket(
        redis_url: str, key_prefix: str, redis_client: object) -> None:
    config = chat_config(messages_per_minute=3, max_message_chars=50)
    async with GatewayUnderTest(redis_url, prefix=key_prefix, connectors=config, partitions=2, lease_ttl=2.0,
                                shutdown_grace=1.0) as gw:
        _, session = await new_session(gw)
        tab = await Client.connect(gw, session["visitor_token"])
        try:
            await tab.send("x" * 51, "big")
            frame = await tab.until(lambda f: f["type"] == "error")
            assert frame["code"] == "message_too_long" and frame["client_id"] == "big"
            await tab.ws.send_str("not json")
            frame = await tab.until(lambda f: f["type"] == "error" and f["code"] == "invalid_frame")
            for i in range(3):
                await tab.send(f"message {i}", f"ok{i}")
            await tab.send("one too many", "over")
            frame = await tab.until(lambda f: f["type"] == "error" and f["code"] == "rate_limited")
            assert frame["client_id"] == "over" and frame["retry_after"] >= 1
            # Still connected: the accepted messages come back on the same socket.
            for i in range(3):
                await tab.until(text_is(f"message {i}"))
            assert not tab.ws.closed
            thread, _ = await gw.store.timeline.list_messages(session["customer_id"], limit=50)
            assert [m.text for m in thread] == ["message 0", "message 1", "message 2"]
            # The visitor's budget is theirs, not the socket's: the HTTP fallback shares it.
            async with aiohttp.ClientSession() as http, http.post(
                    gw.url("/webchat/chat/messages"), json={"type": "message", "text": "again", "client_id": "h"},
                    headers={"Authorization": f"Bearer {session['visitor_token']}"}) as resp:
                assert resp.status == 429
                assert (await resp.json())["error"]["code"] == "rate_limited"
        finally:
            await tab.close()


async def test_an_oversize_frame_gets_an_error_frame_up_to_the_hard_limit(
        redis_url: str, key_prefix: str, redis_client: object) -> None:
    async with GatewayUnderTest(redis_url, prefix=key_prefix, connectors=chat_config(), partitions=2,
                                lease_ttl=2.0, shutdown_grace=1.0) as gw:
        _, session = await new_session(gw)
        tab = await Client.connect(gw, session["visitor_token"])
        try:
            # 200 kB: far over the 2,000-character limit, still under the 1 MB the socket reads.
            await tab.send("x" * 200_000, "huge")
            frame = await tab.until(lambda f: f["type"] == "error")
            assert frame["code"] == "message_too_long"
            await tab.send("still here", "after")  # the socket stayed open
            await tab.until(text_is("still here"))
            assert not tab.ws.closed
            # Beyond the hard limit the socket is closed: reading it would buffer without bound.
            await tab.ws.send_str("x" * (1024 * 1024 + 1))
            msg = await tab.ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
            assert tab.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        finally:
            await tab.close()


async def test_rate_limit_per_ip_holds_across_visitors(redis_url: str, key_prefix: str, redis_client: object) -> None:
    config = chat_config(messages_per_minute_per_ip=2)
    async with GatewayUnderTest(redis_url, prefix=key_prefix, connectors=config, partitions=2, lease_ttl=2.0,
                                shutdown_grace=1.0) as gw, aiohttp.ClientSession() as http:
        statuses = []
        for i in range(3):  # three visitors, one address
            _, session = await new_session(gw)
            async with http.post(gw.url("/webchat/chat/messages"),
                                 json={"type": "message", "text": f"hi {i}", "client_id": "c"},
                                 headers={"Authorization": f"Bearer {session['visitor_token']}"}) as resp:
                statuses.append(resp.status)
        assert statuses == [202, 202, 429]


# --- origins ----------------------------------------------------------------------------------


async def test_origins_outside_allowed_origins_are_refused(gw: GatewayUnderTest) -> None:
    status, body = await new_session(gw, origin="https://evil.example.net")
    assert status == 403 and body["error"]["code"] == "origin_not_allowed"
    _, session = await new_session(gw)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await Client.connect(gw, session["visitor_token"], origin="https://evil.example.net")
    assert refused.value.status == 403
    async with aiohttp.ClientSession() as http:
        async with http.options(gw.url("/webchat/chat/messages"), headers={
                "Origin": SHOP, "Access-Control-Request-Method": "POST"}) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == SHOP
            assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        async with http.options(gw.url("/webchat/chat/messages"), headers={
                "Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"}) as resp:
            assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
        async with http.post(gw.url("/webchat/chat/messages"), headers={
                "Origin": "https://evil.example.net", "Authorization": f"Bearer {session['visitor_token']}"},
                json={"type": "message", "text": "hi", "client_id": "c"}) as resp:
            assert resp.status == 403
    # The gateway's own origin (the demo page) is always allowed.
    status, _ = await new_session(gw, origin=gw.base_url)
    assert status == 200


# --- the widget files and the demo -----------------------------------------------------------


async def test_widget_and_demo_page_are_served(gw: GatewayUnderTest) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.url("/webchat/chat/widget.js")) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/javascript"
            js = await resp.text()
            etag = resp.headers["ETag"]
        assert "textContent" in js and "innerHTML" not in js
        async with http.get(gw.url("/webchat/chat/widget.js"), headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304
        async with http.get(gw.url("/webchat/chat/widget.css")) as resp:
            assert resp.status == 200 and resp.content_type == "text/css"
        async with http.get(gw.url("/")) as resp:
            assert resp.status == 200
            page = await resp.text()
        assert '<script src="/webchat/chat/widget.js"' in page
        assert "token create" in page
        # The agent's commands name this gateway, wherever it runs.
        assert f"curl -s -H \"Authorization: Bearer $TOKEN\" {gw.url('/v1/conversations')}" in page
        assert "127.0.0.1:8080" not in page


async def test_generated_visitor_key_is_shared_by_every_process(
        redis_url: str, key_prefix: str, redis_client: object) -> None:
    # No secret configured (the `make run` default): two processes still accept each other's tokens.
    config: dict[str, dict[str, object]] = {"chat": {"kind": "webchat"}}
    async with GatewayUnderTest(redis_url, prefix=key_prefix, connectors=config, partitions=2, lease_ttl=2.0,
                                shutdown_grace=1.0) as one, \
            GatewayUnderTest(redis_url, prefix=key_prefix, connectors=config, partitions=2, lease_ttl=2.0,
                             shutdown_grace=1.0, run_workers=False) as two:
        status, session = await new_session(one, origin=None)
        assert status == 200
        tab = await Client.connect(two, session["visitor_token"], origin=two.base_url)
        try:
            await tab.send("hello across processes", "x1")
            await tab.until(text_is("hello across processes"))
        finally:
            await tab.close()
        # Identity tokens need a secret: without one they are refused, never trusted.
        status, body = await new_session(one, {"identity_token": sign_identity_token(SECRET, sub="1")}, origin=None)
        assert status == 403, body
