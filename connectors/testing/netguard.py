"""The kit's network guard: parse() must do no I/O, and the kit proves it by refusing sockets."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


# --- the network guard ----------------------------------------------------------------------------


class ForbiddenNetworkAccess(BaseException):
    """Raised inside code that must not touch the network.

    A BaseException so that a connector's ``except Exception`` cannot swallow it; the guard also
    records every attempt, so swallowing it would not hide the I/O anyway.
    """


@contextlib.contextmanager
def forbid_network(owner: str) -> Iterator[list[str]]:
    """Make socket connects and name lookups fail while the block runs; yields the attempts made.

    Patches the socket module, which http.client, urllib3/requests, aiohttp's resolver (through
    getaddrinfo) and asyncio's transports all go through.
    """
    attempts: list[str] = []

    def refuse(name: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            shown = ", ".join([*(repr(a) for a in args if not isinstance(a, socket.socket)),
                               *(f"{k}={v!r}" for k, v in kwargs.items())])
            attempt = f"{name}({shown})"
            attempts.append(attempt)
            raise ForbiddenNetworkAccess(f"{owner} tried network I/O: {attempt}")

        return refused

    targets: list[tuple[Any, str]] = [
        (socket.socket, "connect"),
        (socket.socket, "connect_ex"),
        (socket.socket, "sendto"),
        (socket, "create_connection"),
        (socket, "getaddrinfo"),
        (socket, "gethostbyname"),
        (socket, "gethostbyname_ex"),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name in targets]
    for obj, name, _ in saved:
        setattr(obj, name, refuse(f"socket.socket.{name}" if obj is socket.socket else f"socket.{name}"))
    try:
        yield attempts
    finally:
        for obj, name, original in saved:
            setattr(obj, name, original)
