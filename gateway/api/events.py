"""`GET /v1/events`: the agents' live stream, as Server-Sent Events.

Events come from the activity-derived events stream in Redis (conversation.service.publisher),
so a change made by any process (a webhook taken by another web process, a send the dispatcher
made) reaches every stream. An event's id is `<stream entry id>-<n>`, the entry's id in Redis
and the event's place in it: the same on every process, so a client that reconnects anywhere
with `Last-Event-ID` resumes exactly after it. Each process follows the stream once
(gateway.live) and wakes its streams, which then read from their own cursor; a slow client only
delays itself. Events are filtered to what the token may see (conversation.service.access).

    event: message.created
    id: 1733100000000-0-2
    data: {"conversation_id": "...", "message": {...}, "activity": "message_received"}
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import msgspec
import structlog
from aiohttp import web

from conversation.errors import NotFound, StoreError
from conversation.model import Event, EventType
from conversation.service.access import Scope
from conversation.store import Store
from gateway.api.http import allow_query, scope
from gateway.appkeys import STORE
from gateway.live import LiveHub

log = structlog.get_logger("gateway.events")
routes = web.RouteTableDef()

EVENTS_HUB: web.AppKey[LiveHub] = web.AppKey("events_hub")
KEEPALIVE_SECONDS = 15.0
BATCH = 200
_ID = re.compile(r"^(\d+-\d+)-(\d+)$")
_encoder = msgspec.json.Encoder()

# The names clients see, by the activity an event derives from.
_CONVERSATION_EVENTS = {
    "assigned": "conversation.assigned", "unassigned": "conversation.assigned",
    "transferred": "conversation.transferred",
    "status_changed": "conversation.status", "reopened": "conversation.status",
}


def event_name(event: Event) -> str:
    if event.type is EventType.MESSAGE_CREATED:
        return "message.created"
    if event.type is EventType.MESSAGE_STATUS:
        return "message.status"
    if event.type is EventType.MESSAGE_UPDATED:
        return "message.updated"
    return _CONVERSATION_EVENTS.get(event.activity or "", "conversation.updated")


class _Waker:
    def __init__(self) -> None:
        self.flag = asyncio.Event()
        self.closed = False

    def wake(self) -> None:
        self.flag.set()

    def close(self) -> None:
        """The gateway is stopping: end the stream now (clients reconnect elsewhere, resuming)."""
        self.closed = True
        self.flag.set()

    async def wait(self) -> None:
        """Until woken, or KEEPALIVE_SECONDS (the stream then says it is alive)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flag.wait(), KEEPALIVE_SECONDS)
        self.flag.clear()


OPEN_STREAMS: web.AppKey[set[_Waker]] = web.AppKey("events_streams")


def parse_last_event_id(raw: str | None) -> tuple[str, int] | None:
    match = _ID.match(raw or "")
    return (match.group(1), int(match.group(2))) if match else None


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    allow_query(request)
    store = request.config_dict[STORE]
    allowed = await scope(request)
    hub = request.config_dict[EVENTS_HUB]
    resume = parse_last_event_id(request.headers.get("Last-Event-ID"))
    cursor = resume or (await store.events.last_id(), 1 << 30)  # from now: past everything in the last entry
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    waker = _Waker()
    streams = request.config_dict[OPEN_STREAMS]
    streams.add(waker)
    hub.subscribe_all(waker)
    if not hub.started:
        hub.start()
    # Read only once the hub follows the stream: an event after that wakes this stream, and
    # everything before it is in the first read.
    with contextlib.suppress(TimeoutError):  # Redis is down: the stream still says so, and retries
        await asyncio.wait_for(hub.ready.wait(), 10)
    try:
        await response.write(b"retry: 2000\n: connected\n\n")
        while not waker.closed:
            try:
                batch = await store.events.since(cursor[0], cursor[1], BATCH)
            except StoreError as exc:
                log.warning("events.read_failed", error=str(exc))
                batch = []
            for entry_id, n, event in batch:
                cursor = (entry_id, n)
                payload = await _payload(store, event, allowed)
                if payload is not None:
                    await response.write(f"event: {event_name(event)}\nid: {entry_id}-{n}\ndata: ".encode()
                                         + payload + b"\n\n")
            if len(batch) < BATCH:
                if not batch:
                    await response.write(b": keepalive\n\n")
                await waker.wait()
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.unsubscribe_all(waker)
        streams.discard(waker)
    return response


async def _payload(store: Store, event: Event, allowed: Scope) -> bytes | None:
    """The event's data, or None when the caller may not see its conversation (or it is gone)."""
    try:
        conv = await store.threads.get_conversation(event.conversation_id)
    except NotFound:
        return None
    if not allowed.allows(conv):
        return None
    body: dict[str, object] = {"conversation_id": event.conversation_id, "activity": event.activity,
                               "activity_id": event.id}
    if event.message_id is not None:
        try:
            body["message"] = await store.timeline.get_message(event.message_id)
        except NotFound:
            return None
    else:
        body["conversation"] = conv
    if event.status is not None:
        body["status"] = event.status
    return _encoder.encode(body)


def setup(app: web.Application) -> None:
    """One follower of the events stream per process, for every agent's stream."""
    open_streams: set[_Waker] = set()
    app[OPEN_STREAMS] = open_streams

    async def hub(app: web.Application) -> AsyncIterator[None]:
        live = LiveHub(app[STORE].events)
        app[EVENTS_HUB] = live
        yield
        await live.stop()  # started by the first stream: a process nobody streams from reads nothing

    async def end_streams(app: web.Application) -> None:
        for stream in list(open_streams):
            stream.close()

    app.cleanup_ctx.append(hub)
    app.on_shutdown.append(end_streams)


__all__ = ["EVENTS_HUB", "event_name", "parse_last_event_id", "routes", "setup"]
