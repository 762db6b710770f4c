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
from typing import TYPE_CHECKING, Any

import structlog
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from connectors.base import MalformedPayload, PollContext

if TYPE_CHECKING:
    from connectors.chat.slack.connector import SlackConnector

log = structlog.get_logger("connectors.slack.socket")

# The SDK logs every frame it receives (customers' words) at debug level.
_sdk_log = logging.getLogger("connectors.chat.slack.socket_mode")
_sdk_log.setLevel(logging.INFO)


async def run_socket_mode(connector: SlackConnector, ctx: PollContext, *, ping_interval: float = 5.0) -> None:
    """Run until cancelled; raises when recording fails, so the gateway restarts it (unacked
    envelopes then come again)."""
    settings = connector.settings
    assert settings.app_token is not None  # the settings refuse socket_mode without it
    queue: asyncio.Queue[SocketModeRequest] = asyncio.Queue()

    async def listener(_client: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
        queue.put_nowait(request)

    client = SocketModeClient(
        app_token=settings.app_token.reveal(),
        web_client=connector.web_client(token=settings.app_token.reveal()),
        logger=_sdk_log,
        ping_interval=ping_interval,
    )
    client.socket_mode_request_listeners.append(listener)
    try:
        await client.connect()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
        log.info("slack.socket_connected", instance=connector.instance)
        while True:
            request = await queue.get()
            await _handle(connector, ctx, request)
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
    finally:
        await client.close()  # type: ignore[no-untyped-call]


async def _handle(connector: SlackConnector, ctx: PollContext, request: SocketModeRequest) -> None:
    if request.type != "events_api":
        # Interactivity and slash commands are not conversations; acked so Slack stops resending.
        return
    payload: Any = request.payload
    try:
        result = connector.parse_payload(payload, int(time.time() * 1000))
    except MalformedPayload as exc:
        await ctx.dead_letter(json.dumps(payload).encode(), str(exc))
        log.warning("slack.socket_malformed", instance=connector.instance, reason=str(exc))
        return
    if result.messages or result.statuses:
        await ctx.record(result)


__all__ = ["run_socket_mode"]
