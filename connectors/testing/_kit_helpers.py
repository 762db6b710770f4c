"""Helpers of the conformance kit's tests."""

from __future__ import annotations

import contextlib
import types
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

import msgspec
import pytest
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from connectors.base import (
    Capabilities,
    OverflowRule,
    Secret,
    TextFormat,
    TextUnit,
    WebhookRequest,
)
from connectors.capabilities import measure
from conversation.model import Attachment

if TYPE_CHECKING:
    from gateway.testing import GatewayUnderTest
from connectors.testing.cases import (
    RECEIVED_AT_MS,
    PayloadCase,
)

# --- helpers --------------------------------------------------------------------------------------


def _webhook_request(case: PayloadCase, url: str, headers: Mapping[str, str], body: bytes) -> WebhookRequest:
    # The gateway hands connectors aiohttp's case-insensitive multidicts; so does the kit, so that
    # a connector cannot come to rely on a header's spelling.
    return WebhookRequest(
        method=case.method.upper(),
        url=url,
        path=case.path,
        headers=CIMultiDictProxy(CIMultiDict(headers)),
        query=MultiDictProxy(MultiDict(case.query)),
        body=body,
        received_at_ms=RECEIVED_AT_MS,
    )


def _replace_headers(request: WebhookRequest, headers: Mapping[str, str]) -> WebhookRequest:
    return msgspec.structs.replace(request, headers=CIMultiDictProxy(CIMultiDict(headers)))


def _plain(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items()}


def _garble(value: str) -> str:
    """A same-length value that differs in every character, so length checks cannot save it."""
    return "".join("1" if c == "0" else "0" for c in value) if value else "0"


async def _post(http: Any, gw: GatewayUnderTest, request: WebhookRequest) -> tuple[int, bytes, str]:
    url = gw.url(f"/webhooks/{request.url.split('/webhooks/', 1)[1]}")
    async with http.request(request.method, url, data=request.body or None, headers=_plain(request.headers),
                            allow_redirects=False) as resp:
        return int(resp.status), bytes(await resp.read()), str(resp.headers.get("Content-Type", ""))


def _capability_problems(label: str, caps: Capabilities) -> list[str]:
    problems: list[str] = []
    if not isinstance(caps.max_text_length, int) or caps.max_text_length <= 0:
        problems.append(f"{label}.max_text_length is {caps.max_text_length!r}: declare the longest text the "
                        "channel accepts, in text_unit (a positive integer)")
    if not isinstance(caps.text_unit, TextUnit):
        problems.append(f"{label}.text_unit is {caps.text_unit!r}: use a connectors.base.TextUnit")
    if not isinstance(caps.overflow, OverflowRule):
        problems.append(f"{label}.overflow is {caps.overflow!r}: use a connectors.base.OverflowRule")
    if not caps.formats:
        problems.append(f"{label}.formats is empty: declare at least TextFormat.PLAIN")
    for fmt in caps.formats:
        if not isinstance(fmt, TextFormat):
            problems.append(f"{label}.formats contains {fmt!r}, not a TextFormat (known: "
                            f"{', '.join(f.name for f in TextFormat)})")
    if caps.attachment_kinds:
        if caps.max_attachments <= 0:
            problems.append(f"{label} declares attachment_kinds {caps.attachment_kinds} but max_attachments is "
                            f"{caps.max_attachments}: allow at least one, or declare no kinds")
        if caps.max_attachment_bytes <= 0:
            problems.append(f"{label} declares attachment_kinds but max_attachment_bytes is "
                            f"{caps.max_attachment_bytes}: declare the provider's size limit")
        for kind in caps.attachment_kinds:
            if "/" not in kind:
                problems.append(f"{label}.attachment_kinds contains {kind!r}: use MIME types or prefixes such "
                                "as 'image/' or 'application/pdf'")
    elif caps.max_attachments or caps.max_attachment_bytes:
        problems.append(f"{label} allows attachments (max_attachments {caps.max_attachments}, "
                        f"max_attachment_bytes {caps.max_attachment_bytes}) but declares no attachment_kinds: "
                        "list the MIME types it accepts, or set both limits to 0")
    if caps.reply_window_seconds is not None and caps.reply_window_seconds <= 0:
        problems.append(f"{label}.reply_window_seconds is {caps.reply_window_seconds}: positive, or None for no window")
    if caps.outside_window is not None and caps.reply_window_seconds is None:
        problems.append(f"{label}.outside_window is {caps.outside_window!r} without a reply_window_seconds")
    if caps.outside_window not in (None, "template", "tag", "none"):
        problems.append(f"{label}.outside_window is {caps.outside_window!r}: 'template', 'tag', 'none' or None")
    if not 0 < caps.ack_deadline_seconds <= 60:
        problems.append(f"{label}.ack_deadline_seconds is {caps.ack_deadline_seconds}: declare how long the "
                        "provider waits for an answer before retrying (Slack 3, Twilio 15)")
    if caps.rate_limit_per_second is not None and caps.rate_limit_per_second <= 0:
        problems.append(f"{label}.rate_limit_per_second is {caps.rate_limit_per_second}: positive, or None")
    return problems


def _is_secret_type(tp: Any) -> bool:
    if tp is Secret:
        return True
    if get_origin(tp) in (Union, types.UnionType):
        return any(_is_secret_type(arg) for arg in get_args(tp))
    return False


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


def _compare(case: str, what: str, got: list[Any], want: list[Any]) -> list[str]:
    if len(got) != len(want):
        return [f"case {case!r}: parse() gave {len(got)} {what}, expected {len(want)}: got {got!r}"]
    problems = []
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if type(g) is not type(w):
            problems.append(f"case {case!r}: {what}[{i}] is a {type(g).__name__}, expected {type(w).__name__}")
            continue
        for name in w.__struct_fields__:
            gv, wv = msgspec.to_builtins(getattr(g, name)), msgspec.to_builtins(getattr(w, name))
            if gv != wv:
                problems.append(f"case {case!r}: {what}[{i}].{name} is {gv!r}, expected {wv!r}")
    return problems


def _io_message(owner: str, attempts: Sequence[str]) -> str:
    return (f"{owner} tried network I/O: {attempts[0]}. parse() must be pure: the gateway calls it on the ack path "
            "before answering the provider. Use only the request; move lookups (profiles, media downloads) to "
            "send() or to a later step")


def _check_provider_id(name: str, provider_id: object) -> None:
    if not isinstance(provider_id, str) or not provider_id:
        pytest.fail(f"{name}.send() returned {provider_id!r}: return the provider's message id (a non-empty str), "
                    "status callbacks are matched by it", pytrace=False)


def _long_text(caps: Capabilities) -> str:
    """Prose over twice the limit, with a non-ASCII word so that bytes and characters differ."""
    sentence = "Your order has shipped and the café will hold it until Friday. "
    text = sentence
    while measure(text, caps.text_unit) <= 2 * caps.max_text_length:
        text += text
    return text.strip()


def _attachments(caps: Capabilities, base_url: str) -> list[Attachment]:
    size = min(caps.max_attachment_bytes, 10_000)
    out = []
    for i in range(caps.max_attachments):
        kind = caps.attachment_kinds[i % len(caps.attachment_kinds)]
        content_type = kind + _SUBTYPE.get(kind, "octet-stream") if kind.endswith("/") else kind
        out.append(Attachment(url=f"{base_url}/conformance/{i}", content_type=content_type,
                              name=f"file-{i}", size=size))
    return out


@contextlib.asynccontextmanager
async def _serving(caps: Capabilities) -> AsyncIterator[list[Attachment]]:
    """The attachments of the send test, served for real on 127.0.0.1: connectors whose channel
    cannot carry links (email) fetch the files; the others hand the URLs to the provider."""
    from aiohttp import web

    from gateway.testing import free_port

    port = free_port()
    files = {a.url.rpartition("/")[2]: a for a in _attachments(caps, f"http://127.0.0.1:{port}")}

    async def serve(request: web.Request) -> web.Response:
        found = files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(body=b"\0" * (found.size or 0), content_type=found.content_type)

    app = web.Application()
    app.router.add_get("/conformance/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield list(files.values())
    finally:
        await runner.cleanup()


_SUBTYPE = {"image/": "png", "video/": "mp4", "audio/": "mpeg", "text/": "plain", "application/": "pdf"}
