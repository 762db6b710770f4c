"""Small pieces of state the shell keeps through the store: a polling connector's cursor, keys the
gateway generates for instances configured without one, and the store's own health."""

from __future__ import annotations

import secrets

import redis.asyncio as aioredis

from conversation.keys import Keys


class State:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    async def load_poll_state(self, instance: str, name: str) -> bytes | None:
        value = await self.redis.get(self.keys.poll_state(instance, name))
        if value is None:
            return None
        return value if isinstance(value, bytes) else str(value).encode()

    async def save_poll_state(self, instance: str, name: str, value: bytes) -> None:
        await self.redis.set(self.keys.poll_state(instance, name), value)

    async def generated_key(self, instance: str, name: str, nbytes: int = 32) -> bytes:
        """A random key made once and kept, so every process and restart uses the same one."""
        key = self.keys.instance_secret(instance, name)
        await self.redis.set(key, secrets.token_hex(nbytes), nx=True)
        value = await self.redis.get(key)
        assert value is not None
        return bytes.fromhex(value.decode() if isinstance(value, bytes) else str(value))

    async def ping(self) -> bool:
        return bool(await self.redis.ping())


__all__ = ["State"]
