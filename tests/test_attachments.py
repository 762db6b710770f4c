"""Files the gateway keeps (email attachments, originals) and serves to agents at
GET /v1/attachments/{id}: stored once per content, behind the bearer token, and served so that a
browser cannot run customer content in our origin."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from apphelpers import bearer, make_app

from conversation.keys import Keys
from conversation.store import Store
from conversation.store.files import AttachmentStore
from gateway.workers.pollers import StorePollContext

Client = TestClient[Any, Any]


@pytest.fixture
async def client(aiohttp_client: Any, redis_client: aioredis.Redis, key_prefix: str) -> Client:
    app = make_app(redis_client, key_prefix, public_url="https://gw.example")
    return await aiohttp_client(app)  # type: ignore[no-any-return]


@pytest.fixture
def files(redis_client: aioredis.Redis, key_prefix: str) -> AttachmentStore:
    return AttachmentStore(redis_client, Keys(key_prefix), public_url="https://gw.example/")


async def test_keeping_a_file_twice_stores_it_once(files: AttachmentStore, redis_client: aioredis.Redis,
                                                   key_prefix: str) -> None:
    url = await files.keep("invoice.pdf", "application/pdf", b"%PDF-1.4 one")
    assert url.startswith("https://gw.example/v1/attachments/")
    file_id = url.rpartition("/")[2]
    first = await files.get(file_id)
    assert first is not None and (first.name, first.content_type, first.data) == (
        "invoice.pdf", "application/pdf", b"%PDF-1.4 one")
    assert await files.keep("invoice.pdf", "application/pdf", b"%PDF-1.4 one") == url
    again = await files.get(file_id)
    assert again is not None and again.created_ms == first.created_ms
    assert len([k async for k in redis_client.scan_iter(match=f"{key_prefix}:att:*")]) == 1
    # another name or type is another file
    assert await files.keep("copy.pdf", "application/pdf", b"%PDF-1.4 one") != url
    assert await files.get("0" * 32) is None and await files.get("../../etc") is None


async def test_agents_download_kept_files_with_their_token(client: Client, files: AttachmentStore,
                                                           redis_client: aioredis.Redis, key_prefix: str) -> None:
    url = await files.keep("façade photo.png", "image/png", b"\x89PNG-data")
    path = url.removeprefix("https://gw.example")
    assert (await client.get(path)).status == 401  # no token, no file
    auth = await bearer(redis_client, key_prefix, "agent")
    resp = await client.get(path, headers=auth)
    assert resp.status == 200 and await resp.read() == b"\x89PNG-data"
    assert resp.content_type == "image/png"
    assert resp.headers["Content-Disposition"] == (
        "inline; filename=\"fa?ade photo.png\"; filename*=UTF-8''fa%C3%A7ade%20photo.png")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Security-Policy"].startswith("sandbox")

    missing = await client.get("/v1/attachments/" + "0" * 32, headers=auth)
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"


async def test_customer_html_and_unknown_types_cannot_run_in_our_origin(
    client: Client, files: AttachmentStore, redis_client: aioredis.Redis, key_prefix: str
) -> None:
    auth = await bearer(redis_client, key_prefix, "agent")
    html = await files.keep("message.html", "text/html", b"<p>hi</p>")
    resp = await client.get(html.removeprefix("https://gw.example"), headers=auth)
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "sandbox" in resp.headers["Content-Security-Policy"]
    svg = await files.keep("x.svg", "image/svg+xml", b"<svg onload='alert(1)'/>")
    resp = await client.get(svg.removeprefix("https://gw.example"), headers=auth)
    assert resp.headers["Content-Disposition"].startswith("attachment;")


async def test_a_pollers_context_keeps_files_where_the_api_serves_them(
    client: Client, redis_client: aioredis.Redis, key_prefix: str
) -> None:
    store = Store(redis_client, prefix=key_prefix)
    ctx = StorePollContext(store, "mail", AttachmentStore(redis_client, Keys(key_prefix), public_url="https://gw.example"))
    url = await ctx.keep_attachment("original.eml", "message/rfc822", b"Subject: hi\r\n\r\nbody\r\n")
    auth = await bearer(redis_client, key_prefix, "agent")
    resp = await client.get(url.removeprefix("https://gw.example"), headers=auth)
    assert resp.status == 200 and await resp.read() == b"Subject: hi\r\n\r\nbody\r\n"
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="original.eml"')
    # without a configured public URL, the URL is relative to the gateway
    bare = StorePollContext(store, "mail")
    assert (await bare.keep_attachment(None, "text/plain", b"x")).startswith("/v1/attachments/")
