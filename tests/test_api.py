"""The inbox API as an agent's client sees it: shapes, filters, paging, changes, errors."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from apphelpers import bearer, make_app, seed
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from connectors.base import OverflowRule, WebhookRequest
from connectors.sms.twilio import TwilioConnector
from connectors.testing.fake_twilio import inbound_message_params
from conversation.model import Identity
from conversation.store import Store
from gateway.appkeys import STORE
from gateway.replay import dead_letter_fields
from gateway.testing import free_port

Client = TestClient[Any, Any]
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")
ACCOUNT_SID = "AC" + "3" * 32
AUTH_TOKEN = "f" * 32


class StrictSms(TwilioConnector):
    """An SMS channel that refuses long text instead of splitting it."""

    capabilities = msgspec.structs.replace(TwilioConnector.capabilities, overflow=OverflowRule.REFUSE)


@pytest.fixture
async def connectors() -> AsyncIterator[dict[str, Any]]:
    settings = {"kind": "twilio", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
                "from_number": "+15550001111", "api_base_url": "http://127.0.0.1:9"}
    built = {name: kind.from_config(name, settings, public_url="http://127.0.0.1:9")
             for name, kind in (("sms", TwilioConnector), ("strict", StrictSms))}
    yield built
    for conn in built.values():
        await conn.aclose()


@pytest.fixture
async def client(aiohttp_client: Any, redis_client: aioredis.Redis, key_prefix: str,
                 connectors: dict[str, Any]) -> Client:
    return await aiohttp_client(make_app(redis_client, key_prefix, connectors))  # type: ignore[no-any-return]


@pytest.fixture
def store(client: Client) -> Store:
    assert client.app is not None
    store: Store = client.app[STORE]
    return store


@pytest.fixture
async def admin(redis_client: aioredis.Redis, key_prefix: str) -> dict[str, str]:
    return await bearer(redis_client, key_prefix, "admin", "root")


@pytest.fixture
async def ana(redis_client: aioredis.Redis, key_prefix: str) -> dict[str, str]:
    return await bearer(redis_client, key_prefix, "agent", "ana")


@pytest.fixture
async def ben(redis_client: aioredis.Redis, key_prefix: str) -> dict[str, str]:
    return await bearer(redis_client, key_prefix, "agent", "ben")


@pytest.fixture
async def sue(redis_client: aioredis.Redis, key_prefix: str) -> dict[str, str]:
    return await bearer(redis_client, key_prefix, "supervisor", "sue")


async def get(client: Client, path: str, headers: dict[str, str], expect: int = 200, **query: Any) -> Any:
    resp = await client.get(path, params=query or None, headers=headers)
    body = await resp.json()
    assert resp.status == expect, body
    assert resp.content_type == "application/json"
    return body


async def post(client: Client, path: str, headers: dict[str, str], json: Any, expect: int = 200) -> Any:
    resp = await client.post(path, json=json, headers=headers)
    body = await resp.json()
    assert resp.status == expect, body
    return body


async def walk(client: Client, path: str, headers: dict[str, str], limit: int, **query: Any) -> list[list[str]]:
    """Every page of a list, as lists of ids, following next_cursor to the end."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        params = {**query, "limit": limit, **({"cursor": cursor} if cursor else {})}
        page = await get(client, path, headers, **params)
        pages.append([item["id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "paging does not end"


def error_code(body: Any) -> str:
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return str(body["error"]["code"])


# --- reading ---------------------------------------------------------------------------------------


async def test_a_conversation_has_the_contract_shape(client: Client, store: Store,
                                                     ana: dict[str, str]) -> None:
    cid = await seed(store, "+34600999888", "Hola", name="Lucía")
    listed = await get(client, "/v1/conversations", ana)
    assert listed["next_cursor"] is None
    [conv] = listed["items"]
    assert conv["id"] == cid
    assert conv["customer"]["id"] == cid and conv["customer"]["name"] == "Lucía"
    assert {"kind": "phone", "address": "+34600999888"} in [
        {"kind": i["kind"], "address": i["address"]} for i in conv["customer"]["identities"]]
    assert (conv["status"], conv["queue"], conv["assignee"], conv["priority"]) == ("open", "default", None, 5)
    assert ISO_UTC.match(conv["last_message_at"])
    one = await get(client, f"/v1/conversations/{cid}", ana)
    windows = one.pop("reply_windows")
    assert conv.pop("reply_windows") is None  # listings do not compute windows
    assert one == conv
    # SMS has no customer-service window: reachable, open, never closing.
    assert {"instance": "sms", "channel": "sms", "open": True, "closes_at": None} in windows


async def test_messages_have_the_contract_shape_and_page_by_cursor(client: Client, store: Store,
                                                                   ana: dict[str, str]) -> None:
    cid = ""
    for n in range(5):
        cid = await seed(store, "+34600999888", f"message {n}")
    first = await get(client, f"/v1/conversations/{cid}/messages", ana, limit=2)
    msg = first["items"][0]
    for key, want in (("direction", "inbound"), ("channel", "sms"), ("instance", "sms"),
                      ("text", "message 0"), ("attachments", []), ("status", "received"), ("error", None)):
        assert msg[key] == want, key
    assert ISO_UTC.match(msg["created_at"]) and msg["id"]
    assert first["next_cursor"] == first["items"][-1]["id"]
    pages = await walk(client, f"/v1/conversations/{cid}/messages", ana, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    everything = await get(client, f"/v1/conversations/{cid}/messages", ana)
    assert [m["text"] for m in everything["items"]] == [f"message {n}" for n in range(5)]
    assert [i for p in pages for i in p] == [m["id"] for m in everything["items"]]


async def test_a_cursor_from_elsewhere_is_refused(client: Client, store: Store, ana: dict[str, str]) -> None:
    a = await seed(store, "+34600000001")
    b = await seed(store, "+34600000002")
    other = (await get(client, f"/v1/conversations/{b}/messages", ana))["items"][0]["id"]
    for cursor in (other, "garbage", "x.1"):
        body = await get(client, f"/v1/conversations/{a}/messages", ana, 400, cursor=cursor)
        assert error_code(body) == "invalid_parameter"
    body = await get(client, "/v1/conversations", ana, 400, cursor="!!not-base64!!")
    assert error_code(body) == "invalid_parameter"


async def test_unknown_things_are_404(client: Client, admin: dict[str, str]) -> None:
    for path in ("/v1/conversations/nope", "/v1/conversations/nope/messages", "/v1/customers/nope",
                 "/v1/no-such-thing"):
        assert error_code(await get(client, path, admin, 404)) == "not_found"
    for path in ("/v1/conversations/nope/assign", "/v1/conversations/nope/status"):
        body = {"assignee": None} if path.endswith("assign") else {"status": "open"}
        assert error_code(await post(client, path, admin, body, 404)) == "not_found"


async def test_a_wrong_method_is_405_with_allow(client: Client, admin: dict[str, str]) -> None:
    resp = await client.put("/v1/conversations", headers=admin)
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]
    assert error_code(await resp.json()) == "method_not_allowed"


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", " 5", "\uff11\uff10"])  # fullwidth digits
async def test_limit_out_of_bounds_is_400(client: Client, ana: dict[str, str], limit: str) -> None:
    for path in ("/v1/conversations", "/v1/dead-letters"):
        resp = await client.get(path, params={"limit": limit}, headers=ana)
        if path == "/v1/dead-letters":
            assert resp.status == 403  # roles are checked before parameters
            continue
        assert resp.status == 400
        assert error_code(await resp.json()) == "invalid_parameter"


async def test_limit_bounds_themselves_are_fine(client: Client, store: Store, ana: dict[str, str]) -> None:
    for n in range(3):
        await seed(store, f"+3460000000{n}")
    assert len((await get(client, "/v1/conversations", ana, limit=1))["items"]) == 1
    assert len((await get(client, "/v1/conversations", ana, limit=100))["items"]) == 3


# --- lists and paging ----------------------------------------------------------------------------


@pytest.mark.parametrize("same_instant", [False, True])
async def test_paging_walks_every_conversation_once(client: Client, store: Store, ana: dict[str, str],
                                                    same_instant: bool) -> None:
    now = int(time.time() * 1000)
    ids = [await seed(store, f"+346000001{n:02d}", at_ms=now if same_instant else now + n) for n in range(23)]
    # A listing shows what the conversation shows: an unnamed customer has no name, not "".
    first = (await get(client, "/v1/conversations", ana, limit=1))["items"][0]
    one = await get(client, f"/v1/conversations/{first['id']}", ana)
    assert first | {"reply_windows": None} == one | {"reply_windows": None}
    assert first["customer"]["name"] is None
    for limit in (1, 5, 10, 50):
        pages = await walk(client, "/v1/conversations", ana, limit)
        seen = [i for p in pages for i in p]
        assert sorted(seen) == sorted(ids), f"limit={limit}"
        assert all(len(p) <= limit for p in pages)
    # most recent first, across page boundaries too
    stamps: list[datetime] = []
    cursor = None
    while True:
        page = await get(client, "/v1/conversations", ana, limit=4, **({"cursor": cursor} if cursor else {}))
        # Compared as times: the text of a whole second has no fraction and sorts apart from its
        # neighbours ("...21Z" after "...21.015Z").
        stamps += [datetime.fromisoformat(c["last_message_at"]) for c in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert len(stamps) == len(ids) and stamps == sorted(stamps, reverse=True)


async def test_paging_survives_many_conversations_of_the_same_millisecond(client: Client, store: Store,
                                                                         ana: dict[str, str]) -> None:
    # a burst from the ingest workers stamps many threads with one millisecond
    now = int(time.time() * 1000)
    ids = [await seed(store, f"+34600002{n:03d}", at_ms=now) for n in range(120)]
    seen = [i for p in await walk(client, "/v1/conversations", ana, 10) for i in p]
    assert sorted(seen) == sorted(ids)


async def test_a_queue_lists_its_live_threads_most_urgent_first(client: Client, store: Store,
                                                                ana: dict[str, str]) -> None:
    now = int(time.time() * 1000)
    low = [await seed(store, f"+3460000020{n}", queue="billing", priority=2, at_ms=now + n) for n in range(4)]
    high = await seed(store, "+34600000299", queue="billing", priority=8, at_ms=now + 10)
    other = await seed(store, "+34600000300", queue="default")
    pages = await walk(client, "/v1/conversations", ana, 2, queue="billing")
    assert [i for p in pages for i in p] == [high, *low]  # then who has waited longest
    assert other not in [i for p in await walk(client, "/v1/conversations", ana, 2, queue="billing") for i in p]
    assert (await get(client, "/v1/conversations", ana, queue="nobody"))["items"] == []


async def test_status_filter(client: Client, store: Store, ana: dict[str, str]) -> None:
    a = await seed(store, "+34600000401")
    b = await seed(store, "+34600000402")
    await post(client, f"/v1/conversations/{a}/status", ana, {"status": "resolved"})
    await post(client, f"/v1/conversations/{b}/status", ana, {"status": "pending"})

    def ids(body: Any) -> list[str]:
        return [c["id"] for c in body["items"]]

    assert ids(await get(client, "/v1/conversations", ana, status="resolved")) == [a]
    assert ids(await get(client, "/v1/conversations", ana, status="pending")) == [b]
    assert ids(await get(client, "/v1/conversations", ana, status="open")) == []
    assert sorted(ids(await get(client, "/v1/conversations", ana))) == sorted([a, b])
    # a resolved thread has left its queue; a pending one waits in it
    assert ids(await get(client, "/v1/conversations", ana, queue="default")) == [b]
    assert error_code(await get(client, "/v1/conversations", ana, 400, status="closed")) == "invalid_parameter"


async def test_a_new_message_reopens_a_resolved_thread_in_the_lists(client: Client, store: Store,
                                                                    ana: dict[str, str]) -> None:
    cid = await seed(store, "+34600000501")
    await post(client, f"/v1/conversations/{cid}/status", ana, {"status": "resolved"})
    await seed(store, "+34600000501", "me again")
    assert [c["id"] for c in (await get(client, "/v1/conversations", ana, status="open"))["items"]] == [cid]


# --- assignment ----------------------------------------------------------------------------------


async def test_agents_assign_themselves_and_see_their_inbox(client: Client, store: Store,
                                                            ana: dict[str, str], ben: dict[str, str]) -> None:
    cid = await seed(store, "+34600000601")
    other = await seed(store, "+34600000602")
    conv = await post(client, f"/v1/conversations/{cid}/assign", ana, {"assignee": "me"})
    assert conv["assignee"] == "ana"
    assert [c["id"] for c in (await get(client, "/v1/conversations", ana, assignee="me"))["items"]] == [cid]
    assert [c["id"] for c in (await get(client, "/v1/conversations", ben, assignee="ana"))["items"]] == [cid]
    assert (await get(client, "/v1/conversations", ben, assignee="me"))["items"] == []
    # agents cannot hand work to others, nor take or drop someone else's
    body = await post(client, f"/v1/conversations/{other}/assign", ana, {"assignee": "ben"}, 403)
    assert error_code(body) == "forbidden"
    assert error_code(await post(client, f"/v1/conversations/{cid}/assign", ben, {"assignee": "ben"}, 403))
    assert error_code(await post(client, f"/v1/conversations/{cid}/assign", ben, {"assignee": None}, 403))
    assert (await get(client, f"/v1/conversations/{cid}", ben))["assignee"] == "ana"
    # ana lets go of it
    assert (await post(client, f"/v1/conversations/{cid}/assign", ana, {"assignee": None}))["assignee"] is None
    assert (await get(client, "/v1/conversations", ana, assignee="me"))["items"] == []


async def test_an_agents_resolved_conversations_are_listed_with_both_filters(
        client: Client, store: Store, ana: dict[str, str], sue: dict[str, str]) -> None:
    now = int(time.time() * 1000)
    cid = await seed(store, "+34600000711", queue="billing", at_ms=now - 3000)
    live = await seed(store, "+34600000712", queue="billing", at_ms=now - 2000)
    other = await seed(store, "+34600000713", queue="billing", at_ms=now - 1000)
    for conv in (cid, live):
        await post(client, f"/v1/conversations/{conv}/assign", ana, {"assignee": "me"})
    await post(client, f"/v1/conversations/{other}/assign", sue, {"assignee": "ben"})
    await post(client, f"/v1/conversations/{cid}/status", ana, {"status": "resolved"})
    await post(client, f"/v1/conversations/{other}/status", sue, {"status": "resolved"})

    def ids(page: Any) -> list[str]:
        return [c["id"] for c in page["items"]]

    assert ids(await get(client, "/v1/conversations", ana, status="resolved")) == [other, cid]
    # Both filters: ana's resolved work, and only hers (this answered [] before).
    assert ids(await get(client, "/v1/conversations", ana, assignee="ana", status="resolved")) == [cid]
    assert ids(await get(client, "/v1/conversations", ana, assignee="me", status="resolved")) == [cid]
    assert ids(await get(client, "/v1/conversations", ana, assignee="ana", status="open")) == [live]
    assert ids(await get(client, "/v1/conversations", ana, assignee="ana")) == [live]  # live work, as before
    # The same for a queue: its resolved threads, not nothing.
    assert set(ids(await get(client, "/v1/conversations", ana, queue="billing", status="resolved"))) == {cid, other}
    assert ids(await get(client, "/v1/conversations", ana, queue="billing")) == [live]


async def test_supervisors_assign_anyone(client: Client, store: Store, ana: dict[str, str],
                                         sue: dict[str, str]) -> None:
    cid = await seed(store, "+34600000701")
    await post(client, f"/v1/conversations/{cid}/assign", ana, {"assignee": "ana"})
    assert (await post(client, f"/v1/conversations/{cid}/assign", sue, {"assignee": "ben"}))["assignee"] == "ben"
    assert [c["id"] for c in (await get(client, "/v1/conversations", sue, assignee="ben"))["items"]] == [cid]
    assert (await get(client, "/v1/conversations", sue, assignee="ana"))["items"] == []
    assert (await post(client, f"/v1/conversations/{cid}/assign", sue, {"assignee": None}))["assignee"] is None


async def test_changes_are_published_for_live_views(client: Client, store: Store, ana: dict[str, str]) -> None:
    cid = await seed(store, "+34600000801")
    await post(client, f"/v1/conversations/{cid}/status", ana, {"status": "pending"})
    events = [e for _, e in await store.events.read()]
    assert any(e.type == "thread.changed" and e.conversation_id == cid and e.status == "pending" for e in events)


# --- customers -----------------------------------------------------------------------------------


async def test_a_customer_has_its_identities(client: Client, store: Store, ana: dict[str, str]) -> None:
    cid = await seed(store, "+34600999888", name="Lucía")
    customer = await get(client, f"/v1/customers/{cid}", ana)
    assert customer["id"] == cid and customer["name"] == "Lucía"
    assert [(i["kind"], i["address"]) for i in customer["identities"]] == [("phone", "+34600999888")]


@pytest.mark.parametrize("identity", [
    "phone:+34600999888", "phone:0034 600 999 888", "phone:+34 600-999-888", "PHONE:+34 (600) 99 98 88",
    "whatsapp:+34600999888", "phone: 34600999888",  # an unencoded "+" arrives as a space
])
async def test_customers_are_found_by_any_spelling_of_their_phone(client: Client, store: Store,
                                                                  ana: dict[str, str], identity: str) -> None:
    cid = await seed(store, "+34600999888")
    assert [c["id"] for c in (await get(client, "/v1/customers", ana, identity=identity))["items"]] == [cid]


async def test_the_contract_query_string(client: Client, store: Store, ana: dict[str, str]) -> None:
    cid = await seed(store, "+34600999888")
    for qs in ("identity=phone:%2B34600999888", "identity=phone:+34600999888"):
        resp = await client.get(f"/v1/customers?{qs}", headers=ana)
        assert [c["id"] for c in (await resp.json())["items"]] == [cid]


async def test_customers_are_found_by_email_case_insensitively(client: Client, store: Store,
                                                               ana: dict[str, str]) -> None:
    cid = await seed(store, Identity("email", "lucia@example.com"), channel="email", instance="mail")
    for identity in ("email:lucia@example.com", "email:Lucia@EXAMPLE.com", "email: lucia@example.com "):
        assert [c["id"] for c in (await get(client, "/v1/customers", ana, identity=identity))["items"]] == [cid]


async def test_an_unknown_identity_is_an_empty_list(client: Client, ana: dict[str, str]) -> None:
    assert (await get(client, "/v1/customers", ana, identity="phone:+34600111222"))["items"] == []
    assert (await get(client, "/v1/customers", ana, identity="telegram:12345"))["items"] == []


async def test_a_plugins_identity_kind_is_found(client: Client, store: Store, ana: dict[str, str]) -> None:
    """A third-party connector brings its own identity kind; agents look its customers up too."""
    cid = await seed(store, Identity("matrix", "@ana:example.org"), channel="matrix", instance="matrix")
    found = await get(client, "/v1/customers", ana, identity="matrix:@ana:example.org")
    assert [c["id"] for c in found["items"]] == [cid]


@pytest.mark.parametrize("identity", ["phone:hello", "phone:", "phone:600999888", "+34600999888",
                                      "fax number:+34600999888", "email:nobody", ""])
async def test_a_malformed_identity_is_400(client: Client, ana: dict[str, str], identity: str) -> None:
    assert error_code(await get(client, "/v1/customers", ana, 400, identity=identity)) == "invalid_parameter"
    assert error_code(await get(client, "/v1/customers", ana, 400)) == "invalid_parameter"


# --- replies -------------------------------------------------------------------------------------


async def test_a_reply_is_queued_on_the_customers_channel(client: Client, store: Store,
                                                          ana: dict[str, str]) -> None:
    cid = await seed(store, "+34600999888", "Hola")
    resp = await client.post(f"/v1/conversations/{cid}/messages", json={"text": "Gracias"},
                             headers={**ana, "Idempotency-Key": "k-1"})
    assert resp.status == 202
    msg = await resp.json()
    assert (msg["direction"], msg["channel"], msg["instance"], msg["text"], msg["status"]) == (
        "outbound", "sms", "sms", "Gracias", "queued")
    assert ISO_UTC.match(msg["created_at"])
    assert await store.redis.xlen(store.keys.outbound_stream()) == 1
    # the same request again: the same message, nothing new sent
    again = await client.post(f"/v1/conversations/{cid}/messages", json={"text": "Gracias"},
                              headers={**ana, "Idempotency-Key": "k-1"})
    assert again.status == 202 and (await again.json())["id"] == msg["id"]
    timeline = (await get(client, f"/v1/conversations/{cid}/messages", ana))["items"]
    assert [m["text"] for m in timeline] == ["Hola", "Gracias"]


async def test_a_private_note_is_stored_not_sent(client: Client, store: Store, ana: dict[str, str]) -> None:
    cid = await seed(store, "+34600999888")
    note = await post(client, f"/v1/conversations/{cid}/messages", ana,
                      {"text": "VIP, be nice", "private": True}, 202)
    assert note["direction"] == "note"
    assert await store.redis.xlen(store.keys.outbound_stream()) == 0


async def test_replies_that_cannot_go_out(client: Client, store: Store, ana: dict[str, str]) -> None:
    cid = await seed(store, "+34600999888")
    body = await post(client, f"/v1/conversations/{cid}/messages", ana, {"text": "hi", "instance": "nope"}, 422)
    assert error_code(body) == "no_channel"
    body = await post(client, f"/v1/conversations/{cid}/messages", ana,
                      {"text": "x" * 2000, "instance": "strict"}, 422)
    assert error_code(body) == "text_too_long"
    body = await post(client, "/v1/conversations/nobody/messages", ana, {"text": "hi"}, 404)
    assert error_code(body) == "not_found"
    stopped = await seed(store, "+34600999777", "STOP", opt_out="stop")
    body = await post(client, f"/v1/conversations/{stopped}/messages", ana, {"text": "hi"}, 409)
    assert error_code(body) == "opted_out"
    assert await store.redis.xlen(store.keys.outbound_stream()) == 0


@pytest.mark.parametrize(("raw", "code"), [
    (b'{"text": "hi", "colour": "red"}', "invalid_body"),
    (b'{"text": ""}', "invalid_body"),
    (b'{"text": "   "}', "invalid_body"),
    (b'{"text": 5}', "invalid_body"),
    (b'{"text": "hi", "private": "yes"}', "invalid_body"),
    (b'{}', "invalid_body"),
    (b'["hi"]', "invalid_body"),
    (b'{"text": "hi"', "invalid_json"),
    (b'text=hi', "invalid_json"),
    (b'', "invalid_json"),
])
async def test_bad_reply_bodies_are_400(client: Client, store: Store, ana: dict[str, str], raw: bytes,
                                        code: str) -> None:
    cid = await seed(store, "+34600999888")
    resp = await client.post(f"/v1/conversations/{cid}/messages", data=raw,
                             headers={**ana, "Content-Type": "application/json"})
    assert resp.status == 400
    assert error_code(await resp.json()) == code


async def test_unknown_fields_are_named(client: Client, store: Store, ana: dict[str, str]) -> None:
    cid = await seed(store, "+34600999888")
    for path, body in (("assign", {"assignee": "me", "team": "x"}), ("status", {"status": "open", "why": 1}),
                       ("status", {"status": "closed"})):
        answer = await post(client, f"/v1/conversations/{cid}/{path}", ana, body, 400)
        assert error_code(answer) == "invalid_body"
    answer = await post(client, f"/v1/conversations/{cid}/assign", ana, {"assignee": "me", "team": "x"}, 400)
    assert "team" in answer["error"]["message"]


async def test_a_long_idempotency_key_is_refused(client: Client, store: Store, ana: dict[str, str]) -> None:
    cid = await seed(store, "+34600999888")
    resp = await client.post(f"/v1/conversations/{cid}/messages", json={"text": "hi"},
                             headers={**ana, "Idempotency-Key": "k" * 201})
    assert resp.status == 400 and error_code(await resp.json()) == "invalid_parameter"


async def test_oversize_bodies_are_413(client: Client, store: Store, ana: dict[str, str]) -> None:
    cid = await seed(store, "+34600999888")
    big = b'{"text": "' + b"x" * 70_000 + b'"}'
    resp = await client.post(f"/v1/conversations/{cid}/messages", data=big,
                             headers={**ana, "Content-Type": "application/json"})
    assert resp.status == 413 and error_code(await resp.json()) == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit still holds
        yield b'{"text": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}'

    resp = await client.post(f"/v1/conversations/{cid}/messages", data=chunks(),
                             headers={**ana, "Content-Type": "application/json"})
    assert resp.status == 413 and error_code(await resp.json()) == "payload_too_large"
    assert await store.redis.llen(store.keys.timeline(cid)) == 1


async def test_the_configured_body_limit_applies_when_tighter(aiohttp_client: Any, redis_client: aioredis.Redis,
                                                              key_prefix: str) -> None:
    client = await aiohttp_client(make_app(redis_client, key_prefix, max_body_bytes=2048))
    headers = await bearer(redis_client, key_prefix, "agent")
    cid = await seed(client.app[STORE], "+34600999888")
    body = await post(client, f"/v1/conversations/{cid}/messages", headers, {"text": "x" * 3000}, 413)
    assert error_code(body) == "payload_too_large"


# --- dead letters --------------------------------------------------------------------------------


def twilio_request(body: bytes) -> WebhookRequest:
    return WebhookRequest(method="POST", url="http://127.0.0.1:9/webhooks/sms/messages", path="messages",
                          headers={"Content-Type": "application/x-www-form-urlencoded"}, query={}, body=body,
                          received_at_ms=int(time.time() * 1000))


async def test_dead_letters_are_listed_paged_and_replayed(client: Client, store: Store,
                                                          admin: dict[str, str]) -> None:
    good = urlencode(inbound_message_params("+34600999888", "+15550001111", "rescued",
                                            account_sid=ACCOUNT_SID)).encode()
    await store.dead_letters.record(dead_letter_fields("sms", twilio_request(b"%%%"), "unparseable"))
    await store.dead_letters.record(dead_letter_fields("sms", twilio_request(good), "parser bug"))
    await store.dead_letters.record(dead_letter_fields("gone", twilio_request(good), "instance removed"))
    listed = await get(client, "/v1/dead-letters", admin)
    assert [d["stream"] for d in listed["items"]] == ["inbound"] * 3 and listed["next_cursor"] is None
    letter = listed["items"][1]
    assert letter["id"] == f"inbound:{letter['entry_id']}" and letter["fields"]["reason"] == "parser bug"
    assert await walk(client, "/v1/dead-letters", admin, 2) == [
        [d["id"] for d in listed["items"][:2]], [listed["items"][2]["id"]]]

    result = await post(client, f"/v1/dead-letters/{letter['id']}/replay", admin, None)
    assert result["replayed"] == "inbound" and result["messages"] == 1
    assert letter["id"] not in [d["id"] for d in (await get(client, "/v1/dead-letters", admin))["items"]]
    # replayed into the ingest log, where the pipeline's workers pick it up
    ingest = [await store.redis.xlen(store.keys.ingest_stream(p)) for p in range(store.partitions)]
    assert sum(ingest) == 1

    broken, gone = listed["items"][0]["id"], listed["items"][2]["id"]
    assert error_code(await post(client, f"/v1/dead-letters/{broken}/replay", admin, None, 422)) == "still_malformed"
    assert error_code(await post(client, f"/v1/dead-letters/{gone}/replay", admin, None, 422)) == "no_channel"
    for missing in ("inbound:1-0", "sideways:1-0", "nonsense"):
        assert error_code(await post(client, f"/v1/dead-letters/{missing}/replay", admin, None, 404)) == "not_found"


# --- the store unreachable -----------------------------------------------------------------------


async def test_redis_down_is_503(aiohttp_client: Any, key_prefix: str) -> None:
    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    client = await aiohttp_client(make_app(dead, key_prefix))
    try:
        resp = await client.get("/v1/conversations", headers={"Authorization": "Bearer ogt_whatever"})
        assert resp.status == 503 and error_code(await resp.json()) == "unavailable"
        assert resp.headers["Retry-After"]
    finally:
        await dead.aclose()
