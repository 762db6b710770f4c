"""Slack Events API payloads (the same over HTTP and in Socket Mode envelopes) as our messages.

Pure functions: no I/O, so the webhook can acknowledge within Slack's three seconds.

Ids, chosen so that Slack's repeats collapse in the core's dedupe (SET NX on the provider id):
- a message is ``<channel>:<ts>``: a retried delivery (X-Slack-Retry-Num, or an unacked Socket
  Mode envelope sent again) and the double delivery of one message as `message` and
  `app_mention` all carry the same channel and ts, whatever their event_id;
- an edit is ``<channel>:<ts>~edit:<edited ts>``, a deletion ``<channel>:<ts>~deleted``.

Where a reply goes (`thread_ref`, handed back to send() through the thread's context):
``<channel>:<thread ts>`` to answer in a Slack thread, or ``<channel>`` for a top-level answer.
A customer who wrote in a thread is answered there; a top-level message in a channel (Slack
Connect) is answered in a thread under it, so that support talk does not flood the channel; a
top-level direct message is answered top-level, as a person would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.base import MalformedPayload
from connectors.chat.slack.mrkdwn import mrkdwn_to_text
from conversation.model import Attachment, Identity, InboundMessage, MessageEdit

# Message subtypes that are a person writing; everything else (joins, topic changes, bots,
# channel housekeeping) is acknowledged and ignored.
_PERSON_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})


def _ms(ts: str) -> int:
    try:
        return int(float(ts) * 1000)
    except ValueError:
        raise MalformedPayload(f"ts {ts!r} is not a Slack timestamp") from None


def bot_user_ids(payload: Mapping[str, Any], configured: str | None) -> set[str]:
    """Our own bot user: configured, or named in the event's authorizations (is_bot)."""
    ours = {configured} if configured else set()
    for auth in payload.get("authorizations") or ():
        if isinstance(auth, Mapping) and auth.get("is_bot") and auth.get("user_id"):
            ours.add(str(auth["user_id"]))
    return ours


def parse_event_callback(
    payload: Mapping[str, Any], *, instance: str, received_at_ms: int, bot_user_id: str | None = None
) -> list[InboundMessage]:
    """The messages (and edits) in one `event_callback` payload; [] for events we ignore."""
    event = payload.get("event")
    if not isinstance(event, Mapping):
        raise MalformedPayload("event_callback without an event object")
    kind = event.get("type")
    if kind not in ("message", "app_mention"):
        return []
    ours = bot_user_ids(payload, bot_user_id)
    subtype = event.get("subtype")
    if subtype == "message_changed":
        return _edit(payload, event, instance, received_at_ms, ours, deleted=False)
    if subtype == "message_deleted":
        return _edit(payload, event, instance, received_at_ms, ours, deleted=True)
    if subtype not in _PERSON_SUBTYPES or _from_bot(event, ours):
        return []
    channel, ts, user = _require(event, "channel"), _require(event, "ts"), _require(event, "user")
    team = _team(payload, event)
    thread_ts = event.get("thread_ts")
    extra = {"event_id": str(payload.get("event_id") or ""), "channel": channel, "ts": ts, "team": team}
    if thread_ts:
        extra["thread_ts"] = str(thread_ts)
    channel_type = event.get("channel_type")
    if channel_type:
        extra["channel_type"] = str(channel_type)
    if thread_ts:
        thread_ref = f"{channel}:{thread_ts}"
    elif channel_type == "im":
        thread_ref = channel
    else:
        thread_ref = f"{channel}:{ts}"
    return [InboundMessage(
        instance=instance,
        channel="slack",
        provider_message_id=f"{channel}:{ts}",
        sender=Identity("slack", f"{team}:{user}"),
        text=mrkdwn_to_text(str(event.get("text") or "")),
        attachments=_files(event),
        received_at_ms=received_at_ms,
        extra={k: v for k, v in extra.items() if v},
        thread_ref=thread_ref,
    )]


def _edit(
    payload: Mapping[str, Any], event: Mapping[str, Any], instance: str, received_at_ms: int, ours: set[str],
    *, deleted: bool,
) -> list[InboundMessage]:
    channel = _require(event, "channel")
    if deleted:
        before = event.get("previous_message")
        if not isinstance(before, Mapping) or _from_bot(before, ours) or not before.get("user"):
            return []
        ts = str(event.get("deleted_ts") or before.get("ts") or "")
        if not ts:
            raise MalformedPayload("message_deleted without deleted_ts")
        return [InboundMessage(
            instance=instance, channel="slack", provider_message_id=f"{channel}:{ts}~deleted",
            sender=Identity("slack", f"{_team(payload, before)}:{before['user']}"),
            received_at_ms=received_at_ms, extra={"event_id": str(payload.get("event_id") or ""), "channel": channel,
                                                  "ts": ts},
            edit=MessageEdit(target=f"{channel}:{ts}", deleted=True, at_ms=_ms(str(event.get("event_ts") or ts))),
        )]
    after = event.get("message")
    if not isinstance(after, Mapping) or _from_bot(after, ours) or not after.get("user"):
        return []
    edited = after.get("edited")
    # Slack also sends message_changed when it unfurls a link or counts thread replies; only a
    # change the person made carries `edited`.
    if not isinstance(edited, Mapping) or not edited.get("ts"):
        return []
    ts, edited_ts = _require(after, "ts"), str(edited["ts"])
    return [InboundMessage(
        instance=instance, channel="slack", provider_message_id=f"{channel}:{ts}~edit:{edited_ts}",
        sender=Identity("slack", f"{_team(payload, after)}:{after['user']}"),
        text=mrkdwn_to_text(str(after.get("text") or "")),
        received_at_ms=received_at_ms,
        extra={"event_id": str(payload.get("event_id") or ""), "channel": channel, "ts": ts},
        edit=MessageEdit(target=f"{channel}:{ts}", at_ms=_ms(edited_ts)),
    )]


def _from_bot(message: Mapping[str, Any], ours: set[str]) -> bool:
    return bool(message.get("bot_id")) or message.get("subtype") == "bot_message" or message.get("user") in ours


def _team(payload: Mapping[str, Any], message: Mapping[str, Any]) -> str:
    # In a Slack Connect channel the writer's own workspace is user_team; the payload's team_id
    # is the workspace the app is installed in.
    team = message.get("user_team") or message.get("team") or payload.get("team_id")
    if not team:
        raise MalformedPayload("the message names no team (user_team, team or team_id)")
    return str(team)


def _require(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not value or not isinstance(value, str):
        raise MalformedPayload(f"the message has no {key}")
    return value


def _files(event: Mapping[str, Any]) -> tuple[Attachment, ...]:
    """Files the customer shared, as links to Slack; fetching them needs the bot token
    (Authorization: Bearer), which agents' tools or a proxy supply."""
    out = []
    for f in event.get("files") or ():
        if not isinstance(f, Mapping) or f.get("mode") == "tombstone":
            continue
        url = f.get("url_private_download") or f.get("url_private")
        if not url:
            # Over the workspace's file limit (hidden_by_limit): say so rather than drop it.
            out.append(Attachment(url=f"slack-file:{f.get('id', '')}", name=f.get("name") or None,
                                  refused="Slack withholds this file (hidden_by_limit)"))
            continue
        size = f.get("size")
        out.append(Attachment(
            url=str(url), content_type=str(f.get("mimetype") or "application/octet-stream"),
            name=str(f["name"]) if f.get("name") else None, size=size if isinstance(size, int) else None,
        ))
    return tuple(out)


__all__ = ["bot_user_ids", "parse_event_callback"]
