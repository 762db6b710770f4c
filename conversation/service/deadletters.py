"""Dead letters, for an operator: what each one holds, readable, and its replay.

An inbound dead letter keeps the request whole (method, URL, headers, the body byte for byte as
latin-1), so it can be parsed again once the parser or the configuration is fixed; `readable`
shows it as an operator wants to read it: a form body as its fields, JSON as JSON, with the
reason and the time. An outbound one names a message that ran out of attempts; replaying it puts
the message back in the queue with a fresh count.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

from conversation.activity import Actor
from conversation.errors import NotFound
from conversation.model import InboundMessage, StatusUpdate, from_ms
from conversation.service.publisher import Publisher
from conversation.store import Store
from conversation.store.deadletters import StreamName

# Parses a kept inbound request again: (messages, statuses), or StillMalformed.
Reparse = Callable[[dict[str, str]], tuple[Sequence[InboundMessage], Sequence[StatusUpdate]]]

MAX_SHOWN_TEXT = 64 * 1024


def _header(headers: dict[str, str], name: str) -> str:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), "")


def readable(fields: dict[str, str]) -> dict[str, Any]:
    """A dead letter as an operator reads it: reason, time, where it came from, and the payload
    decoded by its content type (form fields, JSON, or text)."""
    out: dict[str, Any] = {"reason": fields.get("reason", "")}
    at_ms = int(fields.get("received_at_ms") or 0)
    out["received_at"] = from_ms(at_ms).isoformat() if at_ms else None
    for name, shown in (("instance", "instance"), ("method", "method"), ("path", "path"),
                        ("message_id", "message_id"), ("attempts", "attempts"), ("partition", "partition"),
                        ("entry_id", "ingest_entry_id")):
        if fields.get(name):
            out[shown] = fields[name]
    if "body" not in fields:
        return out
    body = fields["body"].encode("latin-1")  # the bytes as they arrived
    try:
        headers = json.loads(fields.get("headers") or "{}")
    except json.JSONDecodeError:
        headers = {}
    content_type = _header(headers, "Content-Type").partition(";")[0].strip().lower()
    out["content_type"] = content_type or None
    text = body.decode("utf-8", errors="replace")
    payload: Any
    if content_type == "application/x-www-form-urlencoded":
        pairs = parse_qsl(text, keep_blank_values=True)
        form: dict[str, Any] = {}
        for key, value in pairs:
            form[key] = [*form[key], value] if isinstance(form.get(key), list) else (
                [form[key], value] if key in form else value)
        payload = form
    elif content_type.endswith("json") or text.lstrip().startswith(("{", "[")):
        try:
            payload = json.loads(text)
        except json.JSONDecodeError:
            payload = text[:MAX_SHOWN_TEXT]
    else:
        payload = text[:MAX_SHOWN_TEXT]
    out["payload"] = payload
    return out


class DeadLetterReplays:
    def __init__(self, store: Store, publisher: Publisher) -> None:
        self.store = store
        self.publisher = publisher

    async def replay(self, stream: StreamName, entry_id: str, *, reparse: Reparse, actor: Actor) -> dict[str, Any]:
        """Run a dead letter through the pipeline again, and remove it once that worked."""
        store = self.store
        fields = await store.dead_letters.get(stream, entry_id)
        if fields is None:
            raise NotFound(f"no dead letter {stream}:{entry_id}")
        if stream == "outbound":
            mid = fields["message_id"]
            requeued, logged = await store.delivery.requeue(mid, actor)
            await self.publisher.logged(logged)
            if requeued:
                await store.outbox.enqueue({"m": mid, "a": "0"})
            await store.dead_letters.delete(stream, entry_id)
            return {"replayed": "outbound", "message_id": mid}
        messages, statuses = reparse(fields)  # the signature was checked when it arrived
        ids = await store.ingest.record(messages, statuses)
        await store.dead_letters.delete(stream, entry_id)
        return {
            "replayed": "inbound",
            "messages": len(messages),
            "statuses": len(statuses),
            "duplicates": sum(1 for i in ids[: len(messages)] if i is None),
        }


__all__ = ["DeadLetterReplays", "Reparse", "readable"]
