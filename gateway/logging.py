"""Structured logs that are safe to ship: customers' numbers, addresses and words never leave.

Everything goes through one handler on the root stdlib logger, so structlog's own events and
libraries' records (aiohttp's access log included) are rendered and masked by the same chain:
JSON lines when stderr is not a terminal, readable columns when it is.

Logs go to stderr because stdout belongs to the CLI's answers (`token create` prints the token as
its last stdout line, and nothing may follow it).

Masking, applied to every value of every event:
- phone numbers written with a leading ``+`` (or ``%2B`` in URLs): ``+34******222``;
- email addresses: ``j***@example.com``;
- bare digit runs under address-like keys (``from``, ``to``, ``address``, ``phone``...);
- values of message-content keys (``text``, ``body``, ``payload``...): ``<redacted 42 chars>``;
- `connectors.base.Secret` values and keys that look secret (``*token*``, ``*password*``...).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, TextIO

import msgspec
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from connectors.base import Secret

_CONTENT_KEYS = frozenset({"text", "body", "message_body", "payload"})
_SECRET_PARTS = ("token", "secret", "password", "passwd", "authorization", "api_key", "apikey", "cookie")
_ADDRESS_KEYS = frozenset({"from", "to", "address", "phone", "phone_number", "sender", "recipient", "wa_id"})
_MAX_DEPTH = 6

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*(@|%40)([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,})")
# E.164-ish: a "+" (or its URL encoding), then 7 to 15 digits with optional single separators.
# Requiring the "+" keeps timestamps, ports and ids readable.
_PHONE = re.compile(r"(?<!\d)(\+|%2[Bb])(\d(?:[ .\-]?\d){6,14})(?!\d)")
_BARE_DIGITS = re.compile(r"(?<!\d)\d{7,15}(?!\d)")


def _mask_digits(digits: str) -> str:
    n = len(digits)
    head, tail = (2, 3) if n >= 10 else (1, 2)
    return digits[:head] + "*" * (n - head - tail) + digits[-tail:]


def mask_text(value: str) -> str:
    """Mask every email address and +E.164 phone number inside free text."""
    if "@" in value or "%40" in value:
        value = _EMAIL.sub(lambda m: f"{m[1]}***{m[2]}{m[3]}", value)
    if "+" in value or "%2" in value:
        value = _PHONE.sub(lambda m: m[1] + _mask_digits(re.sub(r"\D", "", m[2])), value)
    return value


def redact(key: str, value: Any, depth: int = 0) -> Any:
    """The loggable form of `value` stored under `key`."""
    if isinstance(value, Secret):
        return "**********"
    lowered = key.lower()
    if any(part in lowered for part in _SECRET_PARTS):
        return "**********" if value else value
    if lowered in _CONTENT_KEYS and value is not None:
        if isinstance(value, str):
            return f"<redacted {len(value)} chars>"
        if isinstance(value, bytes | bytearray | memoryview):
            return f"<redacted {len(value)} bytes>"
        return "<redacted>"
    if isinstance(value, str):
        masked = mask_text(value)
        if lowered in _ADDRESS_KEYS:
            masked = _BARE_DIGITS.sub(lambda m: _mask_digits(m[0]), masked)
        return masked
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: redact(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(key, v, depth + 1) for v in value]
    return value


# The request being served, set by the app's request-id middleware. A plain ContextVar rather than
# structlog's bind_contextvars, which costs ten times as much on a path that runs per webhook.
REQUEST_ID: ContextVar[str | None] = ContextVar("omnigateway_request_id", default=None)


def add_request_id(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the id of the request being served, unless the event names one."""
    rid = REQUEST_ID.get()
    if rid is not None:
        event_dict.setdefault("request_id", rid)
    return event_dict


def mask_sensitive(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: see the module docstring for what is masked."""
    return {key: redact(key, value) for key, value in event_dict.items()}


_LEADING = ("timestamp", "level", "logger", "event")


def _leading_keys_first(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Readers scan JSON lines left to right: when, how bad, where, what; then the details."""
    head = {k: event_dict.pop(k) for k in _LEADING if k in event_dict}
    head.update(event_dict)
    return head


def _json_dumps(obj: Any, **_: Any) -> str:
    try:
        return msgspec.json.encode(obj, enc_hook=str).decode()
    except (TypeError, ValueError):  # keys msgspec will not encode; never lose a log line to it
        import json

        return json.dumps(obj, default=str)


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging through one masked renderer. Safe to call again."""
    stream = stream if stream is not None else sys.stderr
    json_lines = fmt == "json" or (fmt == "auto" and not _isatty(stream))
    numeric = _LEVELS.get(level.lower(), logging.INFO)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,  # whatever code binds with bind_contextvars
        add_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderers: list[Processor] = (
        [_leading_keys_first, structlog.processors.JSONRenderer(serializer=_json_dumps)]
        if json_lines
        else [structlog.dev.ConsoleRenderer(colors=_isatty(stream),
                                            exception_formatter=structlog.dev.plain_traceback)]
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become a string before masking: exception messages carry addresses too.
            structlog.processors.format_exc_info,
            mask_sensitive,
            *renderers,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # The twilio SDK's HTTP clients log every request (its parameters: To, Body) and its answer at
    # INFO, nine lines per send; an operator acts on none of them. Its warnings still show.
    logging.getLogger("twilio").setLevel(max(numeric, logging.WARNING))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: tests and the CLI reconfigure, and module-level loggers must follow.
        cache_logger_on_first_use=False,
    )


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


__all__ = ["REQUEST_ID", "add_request_id", "configure_logging", "mask_sensitive", "mask_text", "redact"]
