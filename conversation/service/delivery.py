"""A reply on its way out: the send lifecycle and what providers report back.

The dispatcher (gateway/workers/dispatch.py) reads the outbound queue and, for each entry, asks
`begin` whether and what to send; it calls the connector, and reports the outcome with `sent`,
`failed` or `retry`. Everything that decides lives here:

- A send takes the message's send lease (conversation.store.leases), so two dispatchers never send
  one message at once, and checks the attempt the entry stands for against the message's own
  count, so a duplicate entry (a retried API request, a reclaimed entry whose first owner only
  stalled) sends nothing. A message whose provider id is recorded is never sent again.
- Transient failures come back after a backoff with full jitter over the upper half of an
  exponential ceiling, never sooner than the provider's Retry-After; the last allowed attempt
  failing dead-letters the message. Permanent failures fail it at once with the provider's reason.
- An instance that declares a send rate is paced across every process; a paced send waits for
  its turn in the delay set and spends no attempt.
- Status reports move delivery forward only; those that arrive before we know the provider id
  are parked and applied when the send records it. Watermarks (read up to a time) mark every
  earlier message of that recipient.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Mapping

import msgspec
import structlog

from conversation.activity import Actor
from conversation.channels import Channel
from conversation.errors import NotFound, OptedOut
from conversation.ids import split_message_id
from conversation.model import DeliveryStatus, Identity, Message, Outbound, StatusUpdate
from conversation.service.publisher import Publisher
from conversation.service.replies import Replies, ReplyIntent
from conversation.store import Lease, Store

log = structlog.get_logger("conversation.delivery")


class DeliveryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    max_attempts: int = 8
    # Seconds a send may stay unacknowledged before another dispatcher reclaims it as crashed.
    visibility_timeout: float = 30.0
    backoff_base: float = 1.0
    backoff_cap: float = 300.0

    @property
    def send_timeout(self) -> float:
        """A send must end well before another worker may reclaim it."""
        return self.visibility_timeout * 0.8


class SendJob(msgspec.Struct, frozen=True, kw_only=True):
    """One send to make now: the message, what to hand the connector, and the lease held."""

    message: Message
    attempt: int
    outbound: Outbound
    lease: Lease
    threaded: bool

    @property
    def instance(self) -> str:
        return self.message.instance or ""


class Deliveries:
    def __init__(self, store: Store, channels: Mapping[str, Channel], replies: Replies, publisher: Publisher,
                 policy: DeliveryPolicy | None = None, *, owner: str | None = None) -> None:
        self.store = store
        self.channels = channels
        self.replies = replies
        self.publisher = publisher
        self.policy = policy or DeliveryPolicy()
        self.owner = owner or f"d-{uuid.uuid4().hex[:10]}"

    # --- the send ----------------------------------------------------------------------------

    async def message_of(self, fields: Mapping[bytes, bytes]) -> str | None:
        """The message an outbound entry sends: named, or stored now from the reply it carries
        (its writer died between queueing and storing it)."""
        if b"m" in fields:
            return fields[b"m"].decode()
        try:
            intent = msgspec.json.decode(fields[b"r"], type=ReplyIntent)
        except (KeyError, msgspec.DecodeError) as exc:
            log.error("delivery.unreadable_entry", error=str(exc))
            return None
        try:
            message, created = await self.replies.store_intent(intent)
        except (OptedOut, NotFound):
            return None  # refused when the API tried too, and the request failed: nothing to send
        if created:
            log.warning("delivery.reply_recovered", message_id=message.id)
        return message.id

    async def begin(self, mid: str, attempt: int, *, reclaimed: bool = False) -> tuple[str, SendJob | None]:
        """Whether this entry should send `mid` now: ("send", job), or why not ("busy", "gone",
        "done", "stale", "paced", "failed") with no job. The caller releases a job's lease."""
        store = self.store
        cid, seq = split_message_id(mid)
        lease = store.leases.sending(cid, seq, f"{self.owner}:{uuid.uuid4().hex[:8]}",
                                     int(self.policy.visibility_timeout * 1000))
        if not await lease.acquire():
            return "busy", None  # another dispatcher is sending it right now
        handed_over = False
        try:
            try:
                message, stored = await store.timeline.get_stored(mid)
            except NotFound:
                return "gone", None
            if message.provider_message_id or message.status is not DeliveryStatus.QUEUED:
                return "done", None
            attempts = message.attempts
            # A fresh entry stands for attempt `attempts`; a reclaimed one may redo the attempt
            # its crashed owner started. Anything else is a duplicate entry.
            expected = {attempts, attempts - 1} if reclaimed else {attempts}
            if attempt not in expected:
                return "stale", None
            channel = self.channels.get(message.instance or "")
            if channel is None:
                await self._fail(mid, f"connector instance {message.instance!r} is not configured")
                return "failed", None
            caps = channel.capabilities_for(message.channel)
            if caps.rate_limit_per_second:
                wait = await self._pace(message.instance or "", caps.rate_limit_per_second)
                if wait is not None:
                    await store.outbox.delay(mid, attempt, int((time.time() + wait) * 1000))
                    return "paced", None
            await store.delivery.update(mid, DeliveryStatus.QUEUED, attempts=attempt + 1)
            kind, _, address = (message.to or "").partition(":")
            subject, references = (await store.threads.context(cid, message.instance or "")
                                   if caps.threads else (None, []))
            outbound = Outbound(
                message_id=mid, channel=message.channel, to=Identity(kind, stored.to_address or address),
                text=message.text, attachments=tuple(message.attachments), subject=subject,
                references=tuple(references), reply_to_provider_id=references[-1] if references else None,
                template=stored.template, tag=stored.tag, html=stored.html,
            )
            handed_over = True  # the job holds the lease now; the caller releases it
            return "send", SendJob(message=message, attempt=attempt, outbound=outbound, lease=lease,
                                   threaded=caps.threads)
        finally:
            if not handed_over:
                await lease.release()

    async def _pace(self, instance: str, per_second: float) -> float | None:
        """None when a send on `instance` may go now, else the seconds until it may."""
        limit = max(1, math.floor(per_second))
        allowed, wait = await self.store.rate_limits.hit(f"send:{instance}", limit, limit / per_second)
        return None if allowed else max(wait, 0.001)

    async def sent(self, job: SendJob, provider_id: str) -> None:
        store, mid = self.store, job.message.id
        _, _, logged = await store.delivery.update(mid, DeliveryStatus.SENT, provider_id=provider_id)
        await self.publisher.logged(logged)
        if job.threaded:
            await store.threads.note_thread_reference(job.message.conversation_id, job.instance, provider_id)
        for early in await store.delivery.link_provider_id(mid, job.instance, provider_id):
            await self.apply_status(mid, early)

    async def failed(self, job: SendJob, reason: str, *, opted_out: bool = False, window_closed: bool = False) -> None:
        """The provider refused the message for good (invalid address, unsubscribed, outside
        its reply window...)."""
        to = job.outbound.to
        if opted_out and to.kind:
            change = await self.store.threads.set_opt_out(job.message.conversation_id, to, True, Actor("system"))
            await self.publisher.changed([change])
        if window_closed:
            await self.store.threads.close_window(job.message.conversation_id, job.instance, job.message.channel)
        await self._fail(job.message.id, reason)

    async def retry(self, job: SendJob, reason: str, retry_after: float | None) -> str:
        """A transient failure: "retry" (scheduled with a backoff) or "dead" (out of attempts)."""
        mid, attempt = job.message.id, job.attempt
        if attempt + 1 >= self.policy.max_attempts:
            final = f"gave up after {attempt + 1} attempts: {reason}"
            await self.store.dead_letters.record({"message_id": mid, "reason": final, "attempts": str(attempt + 1)},
                                                 "outbound")
            await self._fail(mid, final, dead_letter=True)
            return "dead"
        delay = self.backoff(attempt, retry_after)
        due_ms = int((time.time() + delay) * 1000)
        # The message shows why it waits and until when, before the retry is scheduled.
        await self.store.delivery.update(mid, DeliveryStatus.QUEUED, next_attempt_ms=due_ms, last_error=reason)
        await self.store.outbox.delay(mid, attempt + 1, due_ms)
        log.info("delivery.retry", attempt=attempt + 1, delay=round(delay, 3), reason=reason)
        return "retry"

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Jitter over the upper half of an exponential ceiling (retries spread out, yet never
        bunch at zero), and never sooner than the provider asked."""
        ceiling = min(self.policy.backoff_cap, self.policy.backoff_base * 2**attempt)
        delay = random.uniform(ceiling / 2, ceiling)
        return max(delay, retry_after or 0.0)

    async def _fail(self, mid: str, reason: str, *, dead_letter: bool = False) -> None:
        _, _, logged = await self.store.delivery.update(mid, DeliveryStatus.FAILED, error=reason,
                                                        dead_letter=dead_letter)
        await self.publisher.logged(logged)

    # --- what providers and channels report ------------------------------------------------------

    async def status_report(self, update: StatusUpdate) -> None:
        """A provider's delivery report, from the ingest log."""
        if update.is_watermark:
            await self._watermark(update)
            return
        mid = await self.store.delivery.locate(update)
        if mid is None:
            # The callback outran our own record of the send; it is parked and applied when the
            # send links the provider id.
            log.debug("delivery.status_parked", instance=update.instance)
            return
        await self.apply_status(mid, update)

    async def _watermark(self, update: StatusUpdate) -> None:
        assert update.recipient is not None
        cid = await self.store.identities.known(update.recipient)
        if cid is None:
            return
        for mid in await self.store.delivery.up_to(cid, update.instance, update.recipient, update.up_to_ms):
            await self.apply_status(mid, update)

    async def apply_status(self, mid: str, update: StatusUpdate) -> None:
        _, _, logged = await self.store.delivery.update(mid, update.status, error=update.error)
        await self.publisher.logged(logged)
        if update.window_closed:
            message = await self.store.timeline.get_message(mid)
            await self.store.threads.close_window(message.conversation_id, update.instance, message.channel)

    async def shown(self, messages: list[Message]) -> None:
        """Replies a channel itself showed the customer (the web chat widget): delivered."""
        for m in messages:
            if m.status is DeliveryStatus.SENT:
                _, _, logged = await self.store.delivery.update(m.id, DeliveryStatus.DELIVERED)
                await self.publisher.logged(logged)


__all__ = ["Deliveries", "DeliveryPolicy", "SendJob"]
