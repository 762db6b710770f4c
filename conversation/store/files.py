"""Files the gateway keeps itself: what a provider only hands over inline (email attachments, the
sanitized HTML and the original of an email), served to agents at GET /v1/attachments/{id}.

They live in Redis, beside the threads that point at them: every web and worker process of a
deployment shares Redis, while a file on one machine's disk would be missing on the others.
Sizes are bounded by the connectors' limits (email: max_attachment_bytes per file, max_message_bytes
for an original). Ids are content hashes of (type, name, bytes), so keeping the same file again
(an IMAP rescan, a retried record) writes the same key and stores nothing twice.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import NamedTuple

import redis.asyncio as aioredis

from conversation.keys import Keys

_ID = re.compile(r"^[0-9a-f]{32}$")


class StoredFile(NamedTuple):
    id: str
    name: str | None
    content_type: str
    data: bytes
    created_ms: int


class AttachmentStore:
    def __init__(self, client: aioredis.Redis, keys: Keys, *, public_url: str = "") -> None:
        self.redis = client
        self.keys = keys
        # Without the deployment's public URL, kept files get URLs relative to the gateway.
        self.public_url = public_url.rstrip("/")

    def with_public_url(self, public_url: str) -> AttachmentStore:
        return AttachmentStore(self.redis, self.keys, public_url=public_url)

    @staticmethod
    def file_id(name: str | None, content_type: str, data: bytes) -> str:
        digest = hashlib.sha256()
        for piece in (content_type.encode(), (name or "").encode("utf-8", "surrogatepass"), data):
            digest.update(len(piece).to_bytes(8, "big"))  # length-prefixed: no two inputs collide
            digest.update(piece)
        return digest.hexdigest()[:32]

    def url(self, file_id: str) -> str:
        return f"{self.public_url}/v1/attachments/{file_id}"

    async def put(self, name: str | None, content_type: str, data: bytes) -> str:
        """Store a file (idempotently) and return its id."""
        file_id = self.file_id(name, content_type, data)
        key = self.keys.attachment(file_id)
        # HSETNX on the data keeps the first write's timestamp when the same file comes again.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "c", int(time.time() * 1000))
            pipe.hset(key, mapping={"d": data, "t": content_type, "n": name or ""})
            await pipe.execute()
        return file_id

    async def keep(self, name: str | None, content_type: str, data: bytes) -> str:
        """Store a file and return the URL agents fetch it from (with their bearer token)."""
        return self.url(await self.put(name, content_type, data))

    async def get(self, file_id: str) -> StoredFile | None:
        if not _ID.match(file_id):
            return None
        # The client does not decode responses: keys and values are bytes.
        raw = {_b(k): _b(v) for k, v in (await self.redis.hgetall(self.keys.attachment(file_id))).items()}
        if b"d" not in raw:
            return None
        return StoredFile(
            id=file_id,
            name=raw.get(b"n", b"").decode() or None,
            content_type=raw.get(b"t", b"application/octet-stream").decode(),
            data=raw[b"d"],
            created_ms=int(raw.get(b"c", b"0")),
        )


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


__all__ = ["AttachmentStore", "StoredFile"]
