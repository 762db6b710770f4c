"""The OpenAPI 3.1 document of the whole HTTP surface, served at /openapi.json.

Schemas come from the msgspec Structs the handlers encode and decode (msgspec emits JSON Schema
2020-12, which OpenAPI 3.1 uses as is); only the operations are written here: the inbox API
below, and the webhook, web chat, health and metrics routes of this deployment's instances in
gateway.api.surface. tests/test_openapi.py holds the running gateway against this document and
checks that every route it serves is in it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

from connectors.base import Connector
from conversation.activity import ActivityPage
from conversation.agents import Agent, AgentView
from conversation.model import Conversation, Customer, Message
from gateway.api.agents import AgentList, AgentPatch, PresenceRequest, QueueList
from gateway.api.http import MAX_IDEMPOTENCY_KEY, json_response
from gateway.api.oas import ACCEPT_LANGUAGE, CURSOR, ID, JSON, LIMIT, error, json_body, op, param, ref
from gateway.api.schemas import (
    AssignRequest,
    ConversationPage,
    CustomerList,
    CustomerPatch,
    DeadLetterPage,
    Error,
    MessagePage,
    PreviewPage,
    PreviewRequest,
    ReplyAccepted,
    ReplyRequest,
    StatusRequest,
    TransferRequest,
    VoiceReloaded,
    VoiceTemplateList,
)
from gateway.api.surface import Instance, surface_paths
from gateway.appkeys import CONNECTORS

_COMPONENTS: tuple[type[msgspec.Struct], ...] = (
    Conversation, Customer, Message, ConversationPage, MessagePage, CustomerList, DeadLetterPage,
    ReplyRequest, AssignRequest, StatusRequest, Error, ActivityPage, ReplyAccepted, CustomerPatch, PreviewRequest,
    PreviewPage, VoiceTemplateList, VoiceReloaded, Agent, AgentPatch, AgentView, AgentList, PresenceRequest,
    QueueList, TransferRequest,
)


AGENT = param("name", "path", {"type": "string"}, "The agent's name; `me` is the caller.")


def api_paths() -> JSON:
    not_found = {"404": error("No such conversation.")}
    admin = {"403": error("Needs the admin role.")}
    return {
        "/v1/conversations": {"get": op(
            "listConversations", "List conversations",
            ("200", json_body(ref(ConversationPage), "A page of conversations.")),
            params=[
                param("queue", "query", {"type": "string"}, "Only live threads in this queue, most urgent first."),
                param("status", "query", {"type": "string", "enum": ["open", "pending", "resolved"]},
                       "Only threads with this status."),
                param("assignee", "query", {"type": "string"},
                       "Only threads assigned to this name; `me` is the caller."),
                CURSOR, LIMIT,
            ],
            errors={"400": error("A parameter is invalid (code invalid_parameter).")}, tag="conversations",
        )},
        "/v1/conversations/{id}": {"get": op(
            "getConversation", "Get a conversation",
            ("200", json_body(ref(Conversation), "The conversation.")),
            params=[ID], errors=not_found, tag="conversations",
        )},
        "/v1/conversations/{id}/messages": {
            "get": op(
                "listMessages", "List messages",
                ("200", json_body(ref(MessagePage), "Messages, oldest first.")),
                params=[ID, CURSOR, LIMIT],
                errors={"400": error("A parameter is invalid."), **not_found}, tag="conversations",
            ),
            "post": op(
                "postMessage", "Reply or add a note",
                ("202", json_body(ref(ReplyAccepted), "The queued reply (as the voice rendered it for the channel: "
                                                      "`text` is what the customer receives, `composed` what was "
                                                      "typed), or the stored note; `warnings` are the tone lint's, "
                                                      "in the caller's Accept-Language.")),
                params=[ID, ACCEPT_LANGUAGE, param("Idempotency-Key", "header",
                                    {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
                                    "Repeating a request with the same key returns the first message "
                                    "and sends nothing new (kept 24 h).")],
                body=ReplyRequest,
                errors={**not_found,
                        "409": error("The customer opted out of this channel (code opted_out), or the channel's "
                                     "reply window has closed (code window_closed; `error.templates` names the "
                                     "approved templates that may still be sent)."),
                        "422": error("No channel to send on (no_channel), the text does not fit the "
                                     "channel (text_too_long), the template is not configured on the "
                                     "instance (unknown_template; `error.templates` names those that are), the "
                                     "voice has no such intent (unknown_intent; `error.intents` names those it "
                                     "has), or the intent needs a variable the request did not give "
                                     "(missing_variable) or failed on one it gave (render_failed).")},
                tag="conversations",
            ),
        },
        "/v1/conversations/{id}/activity": {"get": op(
            "listActivity", "List a conversation's activity",
            ("200", json_body(ref(ActivityPage), "Who did what to the conversation, and when: messages in and "
                              "out, routing, assignments, status changes, identity links.")),
            params=[ID, param("order", "query", {"type": "string", "enum": ["asc", "desc"], "default": "asc"},
                              "Oldest first (asc) or newest first (desc)."), CURSOR, LIMIT],
            errors={"400": error("A parameter is invalid."), **not_found}, tag="conversations",
        )},
        "/v1/conversations/{id}/assign": {"post": op(
            "assignConversation", "Assign a conversation",
            ("200", json_body(ref(Conversation), "The conversation after the change.")),
            params=[ID], body=AssignRequest,
            errors={**not_found, "403": error("Agents may only assign themselves or unassign themselves.")},
            tag="conversations",
        )},
        "/v1/conversations/{id}/transfer": {"post": op(
            "transferConversation", "Transfer a conversation",
            ("200", json_body(ref(Conversation), "The conversation after it (logged as transferred).")),
            params=[ID], body=TransferRequest,
            errors={**not_found, "409": error("The agent has no room for it (at_capacity).")},
            tag="conversations",
        )},
        "/v1/conversations/{id}/status": {"post": op(
            "setConversationStatus", "Set a conversation's status",
            ("200", json_body(ref(Conversation), "The conversation after the change.")),
            params=[ID], body=StatusRequest, errors=not_found, tag="conversations",
        )},
        "/v1/conversations/{id}/reroute": {"post": op(
            "rerouteConversation", "Route a conversation again",
            ("200", json_body(ref(Conversation), "The conversation in the queue the rules now pick (logged as "
                                                 "rerouted, with the rule).")),
            params=[ID], errors={**not_found, "422": error("The customer wrote nothing to route by (no_channel).")},
            tag="conversations",
        )},
        "/v1/customers": {"get": op(
            "findCustomers", "Find customers by identity",
            ("200", json_body(ref(CustomerList), "The matching customer, if any.")),
            params=[param("identity", "query", {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_.-]*:.+"},
                           "`kind:address`, e.g. `phone:+34600111222`, `email:ana@example.com`, or a "
                           "plugin connector's own kind; "
                           "phones are matched in E.164 and emails case-insensitively.", required=True)],
            errors={"400": error("The identity is missing or malformed.")}, tag="customers",
        )},
        "/v1/customers/{id}": {
            "get": op(
                "getCustomer", "Get a customer",
                ("200", json_body(ref(Customer), "The customer with its identities.")),
                params=[param("id", "path", {"type": "string"}, "Customer id.")],
                errors={"404": error("No such customer.")}, tag="customers",
            ),
            "patch": op(
                "updateCustomer", "Set a customer's name, locale or tier",
                ("200", json_body(ref(Customer), "The customer after the change (logged on the conversation's "
                                                 "activity as customer_updated).")),
                params=[param("id", "path", {"type": "string"}, "Customer id.")], body=CustomerPatch,
                errors={"403": error("Setting the tier needs a supervisor."), "404": error("No such customer.")},
                tag="customers",
            ),
        },
        "/v1/voice/preview": {"post": op(
            "previewVoice", "Preview a message on each channel",
            ("200", json_body(ref(PreviewPage), "What the customer would read on each channel asked for, with "
                                                "the SMS segment count and the tone lint's warnings. Nothing is "
                                                "stored or sent.")),
            params=[ACCEPT_LANGUAGE], body=PreviewRequest,
            errors={"404": error("No such conversation."),
                    "422": error("No such channel (unknown_channel) or intent (unknown_intent), or a variable "
                                 "is missing (missing_variable).")},
            tag="voice",
        )},
        "/v1/voice/templates": {"get": op(
            "listVoiceTemplates", "List the voice's intents",
            ("200", json_body(ref(VoiceTemplateList), "Every intent with its locales, the channels with a text "
                                                      "of their own, and the template it goes as outside a "
                                                      "reply window.")),
            tag="voice",
        )},
        "/v1/voice/reload": {"post": op(
            "reloadVoice", "Reload the voice file",
            ("200", json_body(ref(VoiceReloaded), "The new voice is in use, in every process of `serve`.")),
            errors={**admin, "409": error("No voice file is configured: the neutral voice is in use "
                                          "(no_voice_file)."),
                    "422": error("The file is not usable (invalid_voice): the running voice stays; "
                                 "the message says where and why.")},
            tag="voice",
        )},
        "/v1/agents": {
            "get": op("listAgents", "List agents",
                      ("200", json_body(ref(AgentList), "Every agent: presence, queues, capacity and load per "
                                                        "channel.")), tag="agents"),
            "post": op("createAgent", "Create an agent",
                       ("201", json_body(ref(AgentView), "The new agent, offline.")), body=Agent,
                       errors={**admin, "409": error("An agent of that name exists (agent_exists).")}, tag="agents"),
        },
        "/v1/agents/{name}": {
            "get": op("getAgent", "Get an agent", ("200", json_body(ref(AgentView), "The agent.")),
                      params=[AGENT], errors={"404": error("No such agent.")}, tag="agents"),
            "patch": op("updateAgent", "Change an agent", ("200", json_body(ref(AgentView), "The agent after it.")),
                        params=[AGENT], body=AgentPatch, errors={**admin, "404": error("No such agent.")},
                        tag="agents"),
            "delete": op("deleteAgent", "Delete an agent", ("204", {"description": "Deleted."}),
                         params=[AGENT], errors={**admin, "404": error("No such agent.")}, tag="agents"),
        },
        "/v1/agents/{name}/presence": {"put": op(
            "setAgentPresence", "Set an agent's presence",
            ("200", json_body(ref(AgentView), "The agent with its presence. An agent online whose heartbeats stop "
                                              "for presence_timeout seconds reads as away.")),
            params=[AGENT], body=PresenceRequest,
            errors={"403": error("Agents set only their own presence."), "404": error("No such agent.")},
            tag="agents",
        )},
        "/v1/agents/me/heartbeat": {"post": op(
            "agentHeartbeat", "Keep the caller online",
            ("200", json_body(ref(AgentView), "The caller as an agent.")),
            errors={"404": error("The caller is no agent.")}, tag="agents",
        )},
        "/v1/events": {"get": op(
            "streamEvents", "Live events (Server-Sent Events)",
            ("200", {"description": "A text/event-stream of what changes in the conversations the token may see: "
                                    "`event:` is message.created, message.status, message.updated, "
                                    "conversation.assigned, conversation.transferred, conversation.status or "
                                    "conversation.updated; `id:` resumes on any gateway process through "
                                    "Last-Event-ID; `data:` is JSON with conversation_id and the message or "
                                    "conversation.",
                     "content": {"text/event-stream": {"schema": {"type": "string"}}}}),
            params=[param("Last-Event-ID", "header", {"type": "string"},
                          "Resume after this event (as the stream gave it); without it, from now.")],
            tag="agents",
        )},
        "/v1/queues/{name}/next": {"post": op(
            "claimNext", "Claim the next thread of a queue",
            ("200", json_body(ref(Conversation), "The most urgent thread the caller may take (priority, then "
                                                 "age), now assigned to them.")),
            params=[param("name", "path", {"type": "string"}, "Queue name.")],
            errors={"204": {"description": "Nothing the caller may take is waiting."},
                    "403": error("The caller is not a member of the queue, or lacks its skills."),
                    "409": error("The caller is at capacity (at_capacity) or not online (not_online).")},
            tag="agents",
        )},
        "/v1/queues": {"get": op(
            "listQueues", "List queues",
            ("200", json_body(ref(QueueList), "Every configured queue and every queue a thread is in: its "
                                              "assignment mode, how many open threads nobody holds, the oldest "
                                              "wait, and the agents online in it.")),
            tag="agents",
        )},
        "/v1/attachments/{id}": {"get": op(
            "getAttachment", "Download a kept file",
            ("200", {"description": "The file, with its type; Content-Disposition carries its name. Email "
                                    "attachments, the sanitized HTML of an email (message.html) and the whole "
                                    "original (original.eml) are kept here.",
                     "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}),
            params=[param("id", "path", {"type": "string"}, "The id at the end of the attachment's url.")],
            errors={"404": error("No such file.")}, tag="attachments",
        )},
        "/v1/messages/{message_id}/attachments/{n}": {"get": op(
            "getMessageAttachment", "Open a message's attachment",
            ("200", {"description": "The file, fetched from the provider with the gateway's credentials "
                                    "(e.g. a file shared on Slack). Files that need none answer 307 to their url.",
                     "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}),
            params=[param("message_id", "path", {"type": "string"}, "Message id."),
                    param("n", "path", {"type": "string", "pattern": "^[0-9]+$"},
                           "Position of the attachment in the message's attachments, from 0.")],
            errors={"307": {"description": "The file needs no credentials: open the Location."},
                    "404": error("No such message or attachment."),
                    "410": error("The file was not kept (e.g. over the size limit); the message says why."),
                    "502": error("The provider refused the file or could not be reached.")},
            tag="attachments",
        )},
        "/v1/dead-letters": {"get": op(
            "listDeadLetters", "List dead letters",
            ("200", json_body(ref(DeadLetterPage), "Inbound payloads and sends given up on.")),
            params=[CURSOR, LIMIT], errors={"400": error("A parameter is invalid."), **admin},
            tag="operations",
        )},
        "/v1/dead-letters/{id}/replay": {"post": op(
            "replayDeadLetter", "Replay a dead letter",
            ("200", json_body({"type": "object", "additionalProperties": True}, "What the replay did.")),
            params=[param("id", "path", {"type": "string"}, "`<stream>:<entry id>` as listed.")],
            errors={**admin, "404": error("No such dead letter."),
                    "422": error("Still unusable (still_malformed) or its channel is gone (no_channel).")},
            tag="operations",
        )},
    }


def instances_of(connectors: Mapping[str, Connector[Any]]) -> tuple[Instance, ...]:
    return tuple(Instance(name, c.kind, tuple((r.method, r.path) for r in c.routes()), tuple(c.transports))
                 for name, c in sorted(connectors.items()))


@functools.lru_cache(maxsize=8)
def document(instances: tuple[Instance, ...] = ()) -> JSON:
    """The document for a gateway serving these connector instances (none: the API alone)."""
    _, schemas = msgspec.json.schema_components(_COMPONENTS, ref_template="#/components/schemas/{name}")
    # A reply is text (a note, maybe), a template or an intent (with its variables), one of them:
    # what msgspec cannot say alone.
    private: JSON = {"required": ["private"], "properties": {"private": {"const": True}}}
    no_variables: JSON = {"variables": {"maxProperties": 0}}  # variables go with an intent only
    schemas["ReplyRequest"]["oneOf"] = [
        {"required": ["text"], "properties": no_variables,
         "not": {"anyOf": [{"required": ["template"]}, {"required": ["intent"]}]}},
        {"required": ["template"], "properties": no_variables,
         "not": {"anyOf": [{"required": ["text"]}, {"required": ["intent"]}, private]}},
        {"required": ["intent"], "not": {"anyOf": [{"required": ["text"]}, {"required": ["template"]}, private]}},
    ]
    schemas["CustomerPatch"]["minProperties"] = 1
    schemas["AgentPatch"]["minProperties"] = 1
    # A transfer names a queue, an agent, or both.
    schemas["TransferRequest"]["anyOf"] = [{"required": ["queue"], "properties": {"queue": {"type": "string"}}},
                                           {"required": ["agent"], "properties": {"agent": {"type": "string"}}}]
    schemas["PreviewRequest"]["oneOf"] = [
        {"required": ["text"], "properties": no_variables, "not": {"required": ["intent"]}},
        {"required": ["intent"], "not": {"required": ["text"]}},
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "omnichannel-gateway",
            "version": "1",
            "description": "One thread per customer across channels. The inbox API is under /v1 (bearer "
                           'tokens); errors are `{"error": {"code", "message"}}`; lists are '
                           '`{"items", "next_cursor"}`. Webhooks, the web chat and the health and metrics '
                           "endpoints take no bearer token.",
        },
        "security": [{"bearer": []}],
        "paths": {**api_paths(), **surface_paths(instances)},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A token from `omnigateway token create`."}},
        },
    }


async def serve(request: web.Request) -> web.Response:
    connectors: dict[str, Connector[Any]] = request.config_dict[CONNECTORS]
    return json_response(document(instances_of(connectors)))
