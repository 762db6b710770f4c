"""Meta's Graph API as the social connectors use it: one aiohttp session per instance, the
access token as a bearer header, and Graph's error bodies read into send errors.

Graph answers errors as ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``
(WhatsApp adds ``error_data.details``). What to do is decided by the code, not the HTTP status:
throttling arrives as 400 or 403 as often as 429.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from connectors.base import (
    FileUnavailable,
    PermanentSendError,
    ProviderFile,
    SendError,
    TransientSendError,
    retry_after_seconds,
)

# Rate limits of the app, the account, the page or the business number: try again later.
THROTTLED = frozenset({4, 17, 32, 613, 80007, 130429, 131056})
# Graph's own "temporarily unavailable" family.
TEMPORARY = frozenset({1, 2, 131000, 131016, 133004})
# Free text refused outside the customer-service window: WhatsApp re-engagement, and
# Messenger's "sent outside of allowed window" (code 10 with this subcode, or 551 for Instagram).
OUTSIDE_WINDOW_CODES = frozenset({131047})
OUTSIDE_WINDOW_SUBCODES = frozenset({2018278, 2534022})
# What an agent may open through the gateway (WhatsApp's own limit is 100 MB for documents).
MAX_FILE_BYTES = 100 * 1024 * 1024


class GraphError(Exception):
    """A Graph answer that is not a success, as Meta wrote it."""

    def __init__(self, status: int, code: int | None, subcode: int | None, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.subcode = subcode
        self.message = message
        self.retry_after = retry_after

    def as_send_error(self) -> SendError:
        label = f"{self.code}" + (f"/{self.subcode}" if self.subcode else "") if self.code is not None else "HTTP"
        reason = f"{label}: {self.message}" if self.code is not None else f"HTTP {self.status}: {self.message}"
        code = str(self.code) if self.code is not None else str(self.status)
        if self.code in OUTSIDE_WINDOW_CODES or self.subcode in OUTSIDE_WINDOW_SUBCODES:
            return PermanentSendError(reason, code=code, window_closed=True)
        if (self.code in THROTTLED or self.code in TEMPORARY or self.status == 429 or self.status >= 500):
            return TransientSendError(reason, code=code, retry_after=self.retry_after)
        return PermanentSendError(reason, code=code)


def read_error(status: int, body: Any, headers: Mapping[str, str]) -> GraphError:
    error = body.get("error") if isinstance(body, Mapping) else None
    retry_after = retry_after_seconds(headers.get("Retry-After"))
    if not isinstance(error, Mapping):
        return GraphError(status, None, None, "the Graph API answered without an error body", retry_after)
    message = str(error.get("message") or error.get("error_user_msg") or "no message")
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, Mapping) else None
    if details and details not in message:
        message = f"{message} ({details})"
    code = error.get("code")
    subcode = error.get("error_subcode")
    return GraphError(status, code if isinstance(code, int) else None,
                      subcode if isinstance(subcode, int) else None, message, retry_after)


class GraphClient:
    """Requests to `base_url`/`version`/..., bearing `token`. Opened on first use."""

    def __init__(self, base_url: str, version: str, token: str, *, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.version = version
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def url(self, path: str) -> str:
        return f"{self.base_url}/{self.version}/{path.lstrip('/')}"

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def post(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON answer to a POST; GraphError when Graph refuses. Connection errors and
        timeouts raise TransientSendError: the dispatcher retries."""
        return await self._call("POST", self.url(path), json=payload)

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self._call("GET", self.url(quote(path, safe="/")), params=params)

    async def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            async with self._open().request(method, url, headers=self._auth, **kwargs) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                if resp.status >= 400 or not isinstance(body, dict):
                    raise read_error(resp.status, body, resp.headers)
                return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise TransientSendError(f"the Graph API could not be reached: {detail}") from None

    async def download(self, url: str, *, allowed_hosts: frozenset[str]) -> ProviderFile:
        """A media file behind `url`, which needs the token. The token goes only to Meta's
        hosts (or the configured API's, for a proxy or a test)."""
        host = (urlsplit(url).hostname or "").lower()
        api_host = (urlsplit(self.base_url).hostname or "").lower()
        if not (host == api_host or any(host == h or host.endswith("." + h) for h in allowed_hosts)):
            raise FileUnavailable(f"not a Meta media URL (host {host!r}); the access token is not sent there")
        try:
            async with self._open().get(url, headers=self._auth) as resp:
                if resp.status != 200:
                    raise FileUnavailable(f"Meta answered HTTP {resp.status} for the file")
                data = await resp.content.read(MAX_FILE_BYTES + 1)
                if len(data) > MAX_FILE_BYTES:
                    raise FileUnavailable(f"the file is over {MAX_FILE_BYTES // (1024 * 1024)} MB")
                return ProviderFile(data, resp.headers.get("Content-Type", "application/octet-stream"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FileUnavailable(f"Meta could not be reached for the file: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


__all__ = ["GraphClient", "GraphError", "read_error"]
