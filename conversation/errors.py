"""What the core refuses, and how the store fails, as exceptions adapters map to their answers.

The store's own failures are redis-py's exceptions under names of ours, so that adapters catch
them without importing Redis (the layers allow only conversation/ to).
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as _RedisConnectionError
from redis.exceptions import MaxConnectionsError as _MaxConnectionsError
from redis.exceptions import RedisError as _RedisError
from redis.exceptions import TimeoutError as _RedisTimeoutError

# Any failure of the store: Redis unreachable, timed out, refused a command.
StoreError = _RedisError
# Redis cannot be reached (or answered too late): retrying later is the remedy.
StoreUnavailable: tuple[type[Exception], ...] = (_RedisConnectionError, _RedisTimeoutError)


class StoreBusy(_MaxConnectionsError):
    """Every connection of this process's pool stayed in use for the whole pool timeout.

    Redis is up; this process is asking more of it at once than its pool allows. A subclass of
    redis-py's MaxConnectionsError (itself a ConnectionError), so code that retries on
    connection errors retries on this too, while adapters can tell it apart and say so.
    """


class NotFound(Exception):
    pass


class OptedOut(Exception):
    """The recipient opted out of this channel (STOP): the reply must not be sent."""


class NoChannel(ValueError):
    """There is no channel this reply can go out on."""


class NotAllowed(PermissionError):
    """The actor may not make this change (an agent reassigning someone else's conversation)."""


class StillMalformed(ValueError):
    """Replaying a dead letter did not help: the connector still cannot parse the payload."""


__all__ = ["NoChannel", "NotAllowed", "NotFound", "OptedOut", "StillMalformed", "StoreBusy", "StoreError",
           "StoreUnavailable"]
