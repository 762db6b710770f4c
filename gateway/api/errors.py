"""Every failure of the API, aiohttp's own included, answered as {"error": {"code", "message"}}."""

from __future__ import annotations

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from conversation.capabilities import TextTooLong, WindowClosed
from conversation.errors import NoChannel, NotAllowed, NotFound, OptedOut, StillMalformed, StoreBusy, StoreUnavailable
from conversation.service.agents import AgentExists
from conversation.service.assignment import AtCapacity, NotOnline
from conversation.service.replies import UnknownTemplate
from conversation.service.voice import UnknownChannel
from conversation.voice import MissingVariable, RenderFailed, UnknownIntent
from gateway.auth import Forbidden, Unauthorized
from gateway.errors import error_response

log = structlog.get_logger(__name__)


class ApiError(Exception):
    """Raised by handlers to answer with an error; `code` is part of the public contract."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def invalid_parameter(message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", message)


def invalid_body(message: str) -> ApiError:
    """The body decoded but its fields do not fit together."""
    return ApiError(400, "invalid_body", message)


# Domain exceptions that mean the same thing wherever they surface.
_DOMAIN: list[tuple[type[Exception], int, str]] = [
    (NotFound, 404, "not_found"),
    (OptedOut, 409, "opted_out"),
    (NoChannel, 422, "no_channel"),
    (TextTooLong, 422, "text_too_long"),
    (StillMalformed, 422, "still_malformed"),
    (MissingVariable, 422, "missing_variable"),
    (AgentExists, 409, "agent_exists"),
    (AtCapacity, 409, "at_capacity"),
    (NotOnline, 409, "not_online"),
    (RenderFailed, 422, "render_failed"),
    (Forbidden, 403, "forbidden"),
    (NotAllowed, 403, "forbidden"),
]

# Refusals that name what may be asked for instead, under `field`.
_WITH_CHOICES: dict[type[Exception], tuple[int, str, str]] = {
    WindowClosed: (409, "window_closed", "templates"),
    UnknownTemplate: (422, "unknown_template", "templates"),
    UnknownIntent: (422, "unknown_intent", "intents"),
    UnknownChannel: (422, "unknown_channel", "channels"),
}


def _choices(exc: Exception) -> list[str]:
    return list(getattr(exc, "templates", None) or getattr(exc, "known", None) or [])


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except Unauthorized as exc:
        resp = error_response(401, "unauthorized", str(exc))
        resp.headers["WWW-Authenticate"] = 'Bearer realm="omnigateway"'
        return resp
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects are answers, not errors
        resp = error_response(exc.status, _HTTP_CODES.get(exc.status, _snake(exc.reason)), _message(exc))
        if "Allow" in exc.headers:  # 405 must say what is allowed
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except (WindowClosed, UnknownTemplate, UnknownIntent, UnknownChannel) as exc:
        # What may be asked for instead (WhatsApp's approved templates, the voice's intents...).
        status, code, field = _WITH_CHOICES[type(exc)]
        return web.json_response({"error": {"code": code, "message": str(exc), field: _choices(exc)}},
                                 status=status)
    except StoreBusy:
        # Redis is fine; this process has every connection of its pool in use (a burst).
        log.warning("api.store_busy", path=request.path)
        return error_response(503, "busy", "the gateway is handling too many requests at once; retry shortly",
                              retry_after=1)
    except StoreUnavailable:
        log.warning("api.redis_unavailable", path=request.path)
        return error_response(503, "unavailable", "the store is unreachable; retry shortly", retry_after=1)
    except Exception as exc:
        for kind, status, code in _DOMAIN:
            if isinstance(exc, kind):
                return error_response(status, code, str(exc) or code.replace("_", " "))
        log.exception("api.unhandled", path=request.path)
        return error_response(500, "internal", "internal error; it has been logged")


def _snake(reason: str) -> str:
    return "_".join(reason.lower().split()) or "error"


def _message(exc: web.HTTPException) -> str:
    # aiohttp's default body is "404: Not Found"; its reason alone reads better in JSON.
    text = exc.text or ""
    return exc.reason if not text or text.startswith(f"{exc.status}:") else text
