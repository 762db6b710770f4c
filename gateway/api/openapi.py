"""The OpenAPI 3.1 document of the inbox API, served at /openapi.json.

Schemas come from the msgspec Structs the handlers encode and decode (msgspec emits JSON Schema
2020-12, which OpenAPI 3.1 uses as is); only the operations are written here. tests/test_openapi.py
holds the running API against this document and checks that every /v1 route is in it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import msgspec
from aiohttp import web

from conversation.model import Conversation, Customer, Message
from gateway.api.http import API_MAX_BODY, DEFAULT_LIMIT, MAX_IDEMPOTENCY_KEY, MAX_LIMIT, json_response
from gateway.api.schemas import (
    AssignRequest,
    ConversationPage,
    CustomerList,
    DeadLetterPage,
    Error,
    MessagePage,
    ReplyRequest,
    StatusRequest,
)

_COMPONENTS: tuple[type[msgspec.Struct], ...] = (
    Conversation, Customer, Message, ConversationPage, MessagePage, CustomerList, DeadLetterPage,
    ReplyRequest, AssignRequest, StatusRequest, Error,
)

JSON = dict[str, Any]


def _ref(kind: type[msgspec.Struct]) -> JSON:
    return {"$ref": f"#/components/schemas/{kind.__name__}"}


def _json(schema: JSON, description: str, headers: JSON | None = None) -> JSON:
    out: JSON = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _error(description: str) -> JSON:
    return _json(_ref(Error), description)


_COMMON: JSON = {
    "401": _json(_ref(Error), "Missing or invalid bearer token.",
                 {"WWW-Authenticate": {"schema": {"type": "string"}}}),
    "429": _json(_ref(Error), "Rate limit exceeded.",
                 {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}),
}
_BODY_ERRORS: JSON = {
    "400": _error("Invalid JSON, unknown fields or values out of range."),
    "413": _error(f"Body larger than {API_MAX_BODY} bytes (or the gateway's max_body_bytes)."),
}


def _param(name: str, where: str, schema: JSON, description: str, required: bool = False) -> JSON:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema,
            "description": description}


_ID = _param("id", "path", {"type": "string"}, "Conversation id (the customer's id).")
_LIMIT = _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                "Page size.")
_CURSOR = _param("cursor", "query", {"type": "string"}, "The next_cursor of the previous page.")


def _op(op_id: str, summary: str, ok: tuple[str, JSON], *, params: Sequence[JSON] = (),
        body: type[msgspec.Struct] | None = None, errors: JSON | None = None, tag: str) -> JSON:
    responses: JSON = {ok[0]: ok[1], **(errors or {}), **_COMMON}
    op: JSON = {"operationId": op_id, "summary": summary, "tags": [tag],
                "parameters": list(params), "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
        responses.update(_BODY_ERRORS)
    return op


def _paths() -> JSON:
    not_found = {"404": _error("No such conversation.")}
    admin = {"403": _error("Needs the admin role.")}
    return {
        "/v1/conversations": {"get": _op(
            "listConversations", "List conversations",
            ("200", _json(_ref(ConversationPage), "A page of conversations.")),
            params=[
                _param("queue", "query", {"type": "string"}, "Only live threads in this queue, most urgent first."),
                _param("status", "query", {"type": "string", "enum": ["open", "pending", "resolved"]},
                       "Only threads with this status."),
                _param("assignee", "query", {"type": "string"},
                       "Only threads assigned to this name; `me` is the caller."),
                _CURSOR, _LIMIT,
            ],
            errors={"400": _error("A parameter is invalid (code invalid_parameter).")}, tag="conversations",
        )},
        "/v1/conversations/{id}": {"get": _op(
            "getConversation", "Get a conversation",
            ("200", _json(_ref(Conversation), "The conversation.")),
            params=[_ID], errors=not_found, tag="conversations",
        )},
        "/v1/conversations/{id}/messages": {
            "get": _op(
                "listMessages", "List messages",
                ("200", _json(_ref(MessagePage), "Messages, oldest first.")),
                params=[_ID, _CURSOR, _LIMIT],
                errors={"400": _error("A parameter is invalid."), **not_found}, tag="conversations",
            ),
            "post": _op(
                "postMessage", "Reply or add a note",
                ("202", _json(_ref(Message), "The queued reply, or the stored note.")),
                params=[_ID, _param("Idempotency-Key", "header",
                                    {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
                                    "Repeating a request with the same key returns the first message "
                                    "and sends nothing new (kept 24 h).")],
                body=ReplyRequest,
                errors={**not_found,
                        "409": _error("The customer opted out of this channel (code opted_out)."),
                        "422": _error("No channel to send on (no_channel), the text does not fit the "
                                      "channel (text_too_long), or the channel's reply window has closed "
                                      "(window_closed).")},
                tag="conversations",
            ),
        },
        "/v1/conversations/{id}/assign": {"post": _op(
            "assignConversation", "Assign a conversation",
            ("200", _json(_ref(Conversation), "The conversation after the change.")),
            params=[_ID], body=AssignRequest,
            errors={**not_found, "403": _error("Agents may only assign themselves or unassign themselves.")},
            tag="conversations",
        )},
        "/v1/conversations/{id}/status": {"post": _op(
            "setConversationStatus", "Set a conversation's status",
            ("200", _json(_ref(Conversation), "The conversation after the change.")),
            params=[_ID], body=StatusRequest, errors=not_found, tag="conversations",
        )},
        "/v1/customers": {"get": _op(
            "findCustomers", "Find customers by identity",
            ("200", _json(_ref(CustomerList), "The matching customer, if any.")),
            params=[_param("identity", "query", {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_.-]*:.+"},
                           "`kind:address`, e.g. `phone:+34600111222`, `email:ana@example.com`, or a "
                           "plugin connector's own kind; "
                           "phones are matched in E.164 and emails case-insensitively.", required=True)],
            errors={"400": _error("The identity is missing or malformed.")}, tag="customers",
        )},
        "/v1/customers/{id}": {"get": _op(
            "getCustomer", "Get a customer",
            ("200", _json(_ref(Customer), "The customer with its identities.")),
            params=[_param("id", "path", {"type": "string"}, "Customer id.")],
            errors={"404": _error("No such customer.")}, tag="customers",
        )},
        "/v1/attachments/{id}": {"get": _op(
            "getAttachment", "Download a kept file",
            ("200", {"description": "The file, with its type; Content-Disposition carries its name. Email "
                                    "attachments, the sanitized HTML of an email (message.html) and the whole "
                                    "original (original.eml) are kept here.",
                     "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}),
            params=[_param("id", "path", {"type": "string"}, "The id at the end of the attachment's url.")],
            errors={"404": _error("No such file.")}, tag="attachments",
        )},
        "/v1/messages/{message_id}/attachments/{n}": {"get": _op(
            "getMessageAttachment", "Open a message's attachment",
            ("200", {"description": "The file, fetched from the provider with the gateway's credentials "
                                    "(e.g. a file shared on Slack). Files that need none answer 307 to their url.",
                     "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}),
            params=[_param("message_id", "path", {"type": "string"}, "Message id."),
                    _param("n", "path", {"type": "string", "pattern": "^[0-9]+$"},
                           "Position of the attachment in the message's attachments, from 0.")],
            errors={"307": {"description": "The file needs no credentials: open the Location."},
                    "404": _error("No such message or attachment."),
                    "410": _error("The file was not kept (e.g. over the size limit); the message says why."),
                    "502": _error("The provider refused the file or could not be reached.")},
            tag="attachments",
        )},
        "/v1/dead-letters": {"get": _op(
            "listDeadLetters", "List dead letters",
            ("200", _json(_ref(DeadLetterPage), "Inbound payloads and sends given up on.")),
            params=[_CURSOR, _LIMIT], errors={"400": _error("A parameter is invalid."), **admin},
            tag="operations",
        )},
        "/v1/dead-letters/{id}/replay": {"post": _op(
            "replayDeadLetter", "Replay a dead letter",
            ("200", _json({"type": "object", "additionalProperties": True}, "What the replay did.")),
            params=[_param("id", "path", {"type": "string"}, "`<stream>:<entry id>` as listed.")],
            errors={**admin, "404": _error("No such dead letter."),
                    "422": _error("Still unusable (still_malformed) or its channel is gone (no_channel).")},
            tag="operations",
        )},
    }


@functools.cache
def document() -> JSON:
    _, schemas = msgspec.json.schema_components(_COMPONENTS, ref_template="#/components/schemas/{name}")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "omnichannel-gateway inbox API",
            "version": "1",
            "description": "One thread per customer across channels. Errors are "
                           '`{"error": {"code", "message"}}`; lists are `{"items", "next_cursor"}`.',
        },
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A token from `omnigateway token create`."}},
        },
    }


async def serve(request: web.Request) -> web.Response:
    return json_response(document())
