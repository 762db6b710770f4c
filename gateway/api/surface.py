"""The OpenAPI paths outside the inbox API: health and metrics, and what each configured connector
instance serves (its webhook routes, and its transports: the web chat's sessions, socket,
fallback and widget)."""

from __future__ import annotations

from typing import NamedTuple

from gateway.api.oas import JSON, public_op

_ERROR_BODY: JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_TEXT: JSON = {"text/plain": {"schema": {"type": "string"}}}


class Instance(NamedTuple):
    """What the document needs of one connector instance."""

    name: str
    kind: str
    routes: tuple[tuple[str, str], ...]  # (method, path below /webhooks/<name>/)
    transports: tuple[str, ...]


def _answer(description: str, content: JSON | None = None) -> JSON:
    return {"description": description, **({"content": content} if content else {})}


def _error(description: str) -> JSON:
    return _answer(description, _ERROR_BODY)


def _operations() -> JSON:
    return {
        "/healthz": {"get": public_op(
            "healthz", "Liveness", "The process answers.",
            {"200": _answer("Alive.", {"application/json": {"schema": {"type": "object"}}})}, tag="operations")},
        "/readyz": {"get": public_op(
            "readyz", "Readiness", "The process answers and reaches Redis.",
            {"200": _answer("Ready.", {"application/json": {"schema": {"type": "object"}}}),
             "503": _error("Redis is not reachable.")}, tag="operations")},
        "/metrics": {"get": public_op(
            "metrics", "Prometheus metrics", "This process's counters and histograms, and the queue depths, in "
            "the Prometheus text format.",
            {"200": _answer("The exposition.", _TEXT)}, tag="operations")},
        "/openapi.json": {"get": public_op(
            "openapi", "This document", "The OpenAPI document of this gateway's HTTP surface.",
            {"200": _answer("OpenAPI 3.1.", {"application/json": {"schema": {"type": "object"}}})},
            tag="operations")},
    }


def _webhook(instance: Instance, method: str, path: str) -> JSON:
    return public_op(
        f"webhook_{instance.name}_{path}_{method.lower()}".replace("-", "_").replace("/", "_"),
        f"{instance.kind} webhook of instance {instance.name}",
        "Called by the provider. The provider's signature is verified on the raw body before anything else; "
        "a payload that verifies is recorded durably (deduplicated on the provider's message id) and only "
        "then acknowledged, in the provider's own answer format. An authentic payload no parser can use is "
        "acknowledged and kept as a dead letter.",
        {"200": _answer("Recorded (or a duplicate), in the provider's answer format."),
         "403": _error("The signature does not verify (forged, stale or missing): nothing was stored."),
         "413": _error("The body is larger than the gateway accepts."),
         "429": _error("Too many requests from this address."),
         "503": _error("Redis is unavailable: the provider should retry.")},
        tag="webhooks",
    )


def _webchat(name: str) -> JSON:
    base = f"/webchat/{name}"
    cors = {"204": _answer("CORS preflight: the site's origin is allowed."),
            "403": _error("The site's origin is not in allowed_origins.")}
    token = {"401": _error("The visitor token is missing, expired or another instance's."),
             "403": _error("The site's origin is not allowed."), "429": _error("Rate limited.")}
    session_body = {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False,
        "properties": {"identity_token": {"type": "string", "description": "An HS256 JWT from the site: sub, "
                                                                             "email, name, exp."},
                       "visitor_token": {"type": "string", "description": "A token this gateway gave out."}}}}}}
    frame = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["type", "text", "client_id"], "additionalProperties": False,
        "properties": {"type": {"const": "message"}, "text": {"type": "string"},
                       "client_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}}}}}
    script = {"200": _answer("The file.", {"text/plain": {"schema": {"type": "string"}}}),
              "304": _answer("Not modified (ETag).")}
    return {
        f"{base}/session": {
            "post": public_op(f"webchat_{name}_session", "Start or renew a visitor session",
                              "Answers {visitor_token, customer_id}. An identity token names the visitor after "
                              "the site's user and links a verified email.",
                              {"200": _answer("The session.", {"application/json": {"schema": {"type": "object"}}}),
                               "400": _error("Not a session request."),
                               "403": _error("Origin not allowed, or the identity token does not verify."),
                               "429": _error("Too many sessions from this address."),
                               "503": _error("Storage unavailable.")},
                              body=session_body, tag="webchat"),
            "options": public_op(f"webchat_{name}_session_preflight", "CORS preflight", "", cors, tag="webchat"),
        },
        f"{base}/ws": {"get": public_op(
            f"webchat_{name}_socket", "The live chat socket",
            "A WebSocket (?visitor_token=&cursor=): the thread after the cursor, then every new message; the "
            "visitor sends message frames. Refused frames get an error frame and the socket stays open.",
            {"101": _answer("Switching to the WebSocket protocol."), "403": _error("Origin not allowed."),
             "429": _error("Too many connections from this address.")}, tag="webchat")},
        f"{base}/messages": {
            "post": public_op(f"webchat_{name}_post", "Send a message without the socket",
                              "The HTTP fallback (Authorization: Bearer <visitor token>): one message frame.",
                              {"202": _answer("Recorded.", {"application/json": {"schema": {"type": "object"}}}),
                               "400": _error("Not a message frame."), "413": _error("The message is too long."),
                               "503": _error("Storage unavailable."), **token},
                              body=frame, tag="webchat"),
            "get": public_op(f"webchat_{name}_history", "Read the chat without the socket",
                             "The visitor's messages after ?cursor=, as {items, next_cursor}.",
                             {"200": _answer("A page.", {"application/json": {"schema": {"type": "object"}}}),
                              "400": _error("The cursor is not a message of this conversation."),
                              "503": _error("Storage unavailable."), **token}, tag="webchat"),
            "options": public_op(f"webchat_{name}_messages_preflight", "CORS preflight", "", cors, tag="webchat"),
        },
        f"{base}/widget.js": {"get": public_op(f"webchat_{name}_widget_js", "The embeddable widget",
                                               "<script src=.../widget.js async></script>", script, tag="webchat")},
        f"{base}/widget.css": {"get": public_op(f"webchat_{name}_widget_css", "The widget's styles", "", script,
                                                tag="webchat")},
    }


def surface_paths(instances: tuple[Instance, ...]) -> JSON:
    paths = _operations()
    for instance in instances:
        for method, path in instance.routes:
            paths.setdefault(f"/webhooks/{instance.name}/{path}", {})[method.lower()] = _webhook(instance, method,
                                                                                                    path)
        if "webchat" in instance.transports:
            paths.update(_webchat(instance.name))
    if any("webchat" in i.transports for i in instances):
        paths["/"] = {"get": public_op("demo", "The web chat demo page",
                                       "A page with the widget, to chat as a customer, and a small agent panel.",
                                       {"200": _answer("The page.", {"text/html": {"schema": {"type": "string"}}})},
                                       tag="webchat")}
    return paths


__all__ = ["Instance", "surface_paths"]
