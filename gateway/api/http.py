"""Request parsing and response encoding shared by the API's handlers."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from aiohttp import web

from conversation.model import Conversation
from conversation.service.access import Scope
from conversation.voice.locales import preferred_language
from gateway.api.errors import ApiError, invalid_parameter
from gateway.appkeys import CONFIG, CORE
from gateway.auth import PRINCIPAL, Principal

# Agent requests are small JSON documents; a tighter cap than the webhooks' keeps a client from
# making the gateway buffer megabytes per request.
API_MAX_BODY = 64 * 1024
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_IDEMPOTENCY_KEY = 200

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json")


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


async def scope(request: web.Request) -> Scope:
    """What the caller may see (conversation.service.access)."""
    me = principal(request)
    return await request.config_dict[CORE].access.scope(me.name, me.role.value)


async def seen(request: web.Request, cid: str) -> Conversation:
    """The conversation, when the caller may see it: 404 when there is none, 403 when it is
    someone else's queue's."""
    me = principal(request)
    return await request.config_dict[CORE].access.conversation(cid, me.name, me.role.value)


def body_limit(request: web.Request) -> int:
    return min(API_MAX_BODY, request.config_dict[CONFIG].gateway.max_body_bytes)


async def read_json(request: web.Request, kind: type[T]) -> T:
    """Decode the body as `kind`; unknown fields, wrong types and oversize bodies are refused."""
    limit = body_limit(request)
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"the body exceeds {limit} bytes")
    body = bytearray()
    # Read by chunks rather than trusting Content-Length: a chunked body declares no length.
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "payload_too_large", f"the body exceeds {limit} bytes")
    if not body.strip():
        raise ApiError(400, "invalid_json", "a JSON body is required")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        if "got `float`" not in str(exc):
            raise ApiError(400, "invalid_body", str(exc)) from None
        # JSON has one number type: 4.0 is the integer 4 (as JSON Schema says), 4.5 is not.
        try:
            return msgspec.convert(_integral(msgspec.json.decode(body)), kind)
        except msgspec.ValidationError as again:
            raise ApiError(400, "invalid_body", str(again)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


def accept_language(request: web.Request) -> str | None:
    """The caller's preferred language (Accept-Language, by q), or None when it names none."""
    return preferred_language(request.headers.get("Accept-Language"))


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def query_limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    # int() would also take " 5", "1_0" and non-ASCII digits; the contract says an integer.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise invalid_parameter(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def query_choice(request: web.Request, name: str, choices: list[str]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in choices:
        raise invalid_parameter(f"{name} must be one of {', '.join(choices)}")
    return value or None


def allow_query(request: web.Request, *names: str) -> None:
    """Refuse parameters the endpoint does not know: `?stauts=open` must not list everything."""
    unknown = sorted(set(request.query) - set(names))
    if unknown:
        allowed = f"; this endpoint takes {', '.join(names)}" if names else ""
        raise invalid_parameter(f"unknown query parameter {', '.join(unknown)}{allowed}")
