"""The Lua scripts behind every atomic change, loaded with the activity prelude.

Each script in conversation/lua/ is prefixed with the activity type codes (generated from
conversation.activity) and `_activity.lua`, so a script that changes a thread writes its activity
entries in the same call. `run` is EVALSHA (falling back to EVAL once after a restart emptied
the script cache); `batch` runs one script for many key/argument sets in one pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from conversation.activity import lua_prelude

Call = tuple[list[str], list[Any]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


INCLUDE = "--@include "


def load_sources() -> dict[str, str]:
    """Every script's full source, prelude included, by name. A line `--@include _x.lua` is
    replaced by that file (helpers a few scripts share, such as the push ranking's)."""
    folder = resources.files("conversation") / "lua"
    prelude = lua_prelude() + (folder / "_activity.lua").read_text()

    def expand(text: str) -> str:
        return "".join((folder / line[len(INCLUDE):].strip()).read_text() if line.startswith(INCLUDE) else line
                       for line in text.splitlines(keepends=True))

    return {
        path.name.removesuffix(".lua"): prelude + expand(path.read_text())
        for path in folder.iterdir()
        if path.name.endswith(".lua") and not path.name.startswith("_")
    }


class Scripts:
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(source) for name, source in load_sources().items()
        }

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._scripts[name](keys=keys, args=args)

    async def batch(self, name: str, calls: Sequence[Call]) -> list[Any]:
        """Run one script for many key/arg sets in one round trip.

        redis-py's Script objects in a pipeline first send SCRIPT EXISTS, a second round trip on
        the ack path; plain EVALSHA is pipelined instead, and a server that lost its script cache
        (a restart) gets the script loaded and the failed calls repeated.
        """
        if len(calls) == 1:  # a Script call is EVALSHA, falling back to EVAL: one round trip
            return [await self.run(name, calls[0][0], calls[0][1])]
        if not calls:
            return []
        script = self._scripts[name]
        if script.sha is None:
            script.sha = _text(await self.redis.script_load(script.script))
        results = await self._pipeline_evalsha(script.sha, calls)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            script.sha = _text(await self.redis.script_load(script.script))
            redone = await self._pipeline_evalsha(script.sha, [calls[i] for i in missing])
            for i, r in zip(missing, redone, strict=True):
                results[i] = r
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results

    async def run_with(self, name: str, keys: list[str], args: list[Any],
                       also: Callable[[Any], None]) -> Any:
        """Run a script and, in the same round trip, the commands `also` adds to the pipeline
        (after it, in order). A server that lost its script cache gets the script loaded and the
        script run again; the other commands ran the first time."""
        script = self._scripts[name]
        if script.sha is None:
            script.sha = _text(await self.redis.script_load(script.script))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            also(pipe)
            results = list(await pipe.execute(raise_on_error=False))
        if isinstance(results[0], NoScriptError):
            script.sha = _text(await self.redis.script_load(script.script))
            results[0] = await self.run(name, keys, args)
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results[0]

    async def _pipeline_evalsha(self, sha: str, calls: Sequence[Call]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))


__all__ = ["Call", "Scripts", "load_sources"]
