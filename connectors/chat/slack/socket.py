"""Socket Mode: Slack's events over a WebSocket the gateway opens, for deployments without a public URL.

slack_sdk's aiohttp SocketModeClient keeps the connection (hello, pings, reconnecting when Slack
asks with a `disconnect` envelope or the socket drops). We take each `events_api` envelope, run
it through the same parser as the Events API webhook, record it durably, and only then ack it:
an envelope Slack never saw acked is delivered again (then deduped by message id), so a crash
between receiving and recording loses nothing.

The SDK hands each envelope to its listener in a task of its own; the listener only queues it,
and one loop here records and acks in arrival order, which keeps a customer's messages in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import structlog
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from connectors.base import MalformedPayload, ParseResult, PollContext

# What the socket needs of its connector, handed in as callables so that this module does not
# import the connector that starts it.
ParsePayload = Callable[[Any, int], ParseResult]

log = structlog.get_logger("connectors.slack.socket")

# The SDK logs every frame it receives (customers' words) at debug level.
_sdk_log = logging.getLogger("connectors.chat.slack.socket_mode")
_sdk_log.setLevel(logging.INFO)


async def run_socket_mode(
    *,
    instance: str,
    app_token: str,
    web_client: AsyncWebClient,
    parse_payload: ParsePayload,
    ctx: PollContext,
    ping_interval: float = 5.0,
) -> None:
    """Run until cancelled; raises when recording fails, so the gateway restarts it (unacked
    envelopes then come again). `parse_payload` is the Events API parser of the connector, so
    both ways in parse alike; `web_client` is authenticated with the app-level token."""
    queue: asyncio.Queue[SocketModeRequest] = asyncio.Queue()

    async def listener(_client: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
        queue.put_nowait(request)

    client = SocketModeClient(
        app_token=app_token,
        web_client=web_client,
        logger=_sdk_log,
        ping_interval=ping_interval,
    )
    client.socket_mode_request_listeners.append(listener)
    try:
        await client.connect()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
        log.info("slack.socket_connected", instance=instance)
        while True:
            request = await queue.get()
            await _handle(instance, parse_payload, ctx, request)
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
    finally:
        await client.close()  # type: ignore[no-untyped-call]


async def _handle(instance: str, parse_payload: ParsePayload, ctx: PollContext, request: SocketModeRequest) -> None:
    if request.type != "events_api":
        # Interactivity and slash commands are not conversations; acked so Slack stops resending.
        return
    payload: Any = request.payload
    try:
        result = parse_payload(payload, int(time.time() * 1000))
    except MalformedPayload as exc:
        await ctx.dead_letter(json.dumps(payload).encode(), str(exc))
        log.warning("slack.socket_malformed", instance=instance, reason=str(exc))
        return
    if result.messages or result.statuses:
        await ctx.record(result)


__all__ = ["run_socket_mode"]
