"""Building blocks of the OpenAPI document (gateway.api.openapi): responses, parameters, operations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from gateway.api.http import API_MAX_BODY, DEFAULT_LIMIT, MAX_LIMIT
from gateway.api.schemas import Error

JSON = dict[str, Any]


def ref(kind: type[msgspec.Struct]) -> JSON:
    return {"$ref": f"#/components/schemas/{kind.__name__}"}


def json_body(schema: JSON, description: str, headers: JSON | None = None) -> JSON:
    out: JSON = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def error(description: str) -> JSON:
    return json_body(ref(Error), description)


COMMON: JSON = {
    "401": json_body(ref(Error), "Missing or invalid bearer token.",
                 {"WWW-Authenticate": {"schema": {"type": "string"}}}),
    "429": json_body(ref(Error), "Rate limit exceeded.",
                 {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}),
}
BODY_ERRORS: JSON = {
    "400": error("Invalid JSON, unknown fields or values out of range."),
    "413": error(f"Body larger than {API_MAX_BODY} bytes (or the gateway's max_body_bytes)."),
}


def param(name: str, where: str, schema: JSON, description: str, required: bool = False) -> JSON:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema,
            "description": description}


ID = param("id", "path", {"type": "string"}, "Conversation id (the customer's id).")
LIMIT = param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                "Page size.")
CURSOR = param("cursor", "query", {"type": "string"}, "The next_cursor of the previous page.")
ACCEPT_LANGUAGE = param("Accept-Language", "header", {"type": "string"},
                        "The language of the tone lint's warnings (es or en; default the brand's). Read "
                        "leniently: a value naming no language the brand speaks means the brand's default.")


def op(op_id: str, summary: str, ok: tuple[str, JSON], *, params: Sequence[JSON] = (),
       body: type[msgspec.Struct] | None = None, errors: JSON | None = None, tag: str) -> JSON:
    """An operation of the inbox API: bearer auth and the per-principal rate limit apply."""
    responses: JSON = {ok[0]: ok[1], **(errors or {}), **COMMON}
    operation: JSON = {"operationId": op_id, "summary": summary, "tags": [tag],
                       "parameters": list(params), "responses": responses}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body)}}}
        responses.update(BODY_ERRORS)
    return operation


def public_op(op_id: str, summary: str, description: str, responses: JSON, *, params: Sequence[JSON] = (),
              body: JSON | None = None, tag: str) -> JSON:
    """An operation outside /v1: no bearer token (webhooks carry their provider's signature)."""
    operation: JSON = {"operationId": op_id, "summary": summary, "description": description, "tags": [tag],
                       "security": [], "parameters": list(params), "responses": responses}
    if body is not None:
        operation["requestBody"] = body
    return operation
