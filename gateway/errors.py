"""The one error shape of the HTTP surface: {"error": {"code": ..., "message": ...}}."""

from __future__ import annotations

from aiohttp import web


def error_response(status: int, code: str, message: str, *, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)
