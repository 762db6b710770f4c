"""/openapi.json describes the API that actually runs: every route, and every answer it gives.

Schemathesis generates requests from the document (valid ones, and invalid ones that must be
refused) and checks each answer against it: status codes, content types, body schemas, auth.
The server listens on a real TCP port; schemathesis calls it from a worker thread.

Every run of the suite generates the same cases (tests/conftest.py loads a derandomized
hypothesis profile), so CI judges the change and not the luck of the draw. To hunt for new
failures, run it wide and random, and pin what it finds with a test of its own:
`OMNI_FUZZ_RANDOM=1 OMNI_FUZZ_EXAMPLES=300 pytest --timeout 0 tests/test_openapi.py`.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import hypothesis
import pytest
import redis.asyncio as aioredis
import schemathesis
from aiohttp import web
from apphelpers import bearer, make_app, seed
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from gateway.api.openapi import document
from gateway.appkeys import STORE
from gateway.testing import GatewayUnderTest

DOMAIN_422 = {"no_channel", "text_too_long", "still_malformed", "unknown_template", "unknown_intent", "unknown_channel",
              "missing_variable", "render_failed"}
# per operation and mode: enough to find shape drift, quick enough for every run
EXAMPLES = int(os.environ.get("OMNI_FUZZ_EXAMPLES", "15"))


def test_the_document_is_openapi_3_1_with_bearer_auth() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    scheme = doc["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert doc["security"] == [{"bearer": []}]
    for name in ("Conversation", "Customer", "Message", "Error", "ReplyRequest"):
        assert name in doc["components"]["schemas"]
    # request bodies refuse unknown fields, as the handlers do
    assert doc["components"]["schemas"]["ReplyRequest"]["additionalProperties"] is False


async def test_every_route_the_gateway_serves_is_documented(redis_url: str, key_prefix: str) -> None:
    # The whole HTTP surface of a gateway with a Twilio and a web chat instance: the inbox API,
    # the webhooks, the web chat, health, metrics, the demo page and the document itself.
    connectors: dict[str, dict[str, object]] = {
        "sms": {"kind": "twilio", "account_sid": "AC" + "1" * 32, "auth_token": "a" * 32,
                "from_number": "+15550001111"},
        "chat": {"kind": "webchat"},
    }
    async with GatewayUnderTest(redis_url, prefix=key_prefix, connectors=connectors, run_workers=False) as gw, \
            aiohttp.ClientSession() as http, http.get(gw.url("/openapi.json")) as resp:
        assert resp.status == 200
        served = await resp.json()
        routes = set()
        for app in (gw.app, *[r.resource._app for r in gw.app.router.routes()  # type: ignore[union-attr]
                              if isinstance(r.resource, web.PrefixedSubAppResource)]):
            for route in app.router.routes():
                if route.resource is None or isinstance(route.resource, web.PrefixedSubAppResource):
                    continue
                prefix = "/v1" if app is not gw.app else ""
                if route.method != "HEAD":  # aiohttp adds HEAD to every GET
                    routes.add((route.method.lower(), prefix + route.resource.canonical))
    documented = {(method, path) for path, ops in served["paths"].items() for method in ops}
    assert {p for _, p in routes} >= {"/v1/conversations", "/webhooks/sms/messages", "/webhooks/sms/status",
                                      "/webchat/chat/ws", "/healthz", "/readyz", "/metrics", "/openapi.json", "/"}
    assert routes == documented
    public = [ops for path, ops in served["paths"].items() if not path.startswith("/v1/")]
    assert all(op["security"] == [] for ops in public for op in ops.values())  # no bearer outside /v1


def _authorize(case: Any, token: str) -> None:
    """Swap the generated bearer for a real one; a case that mangles or drops the header on
    purpose keeps it, and must get its 401."""
    headers = dict(case.headers or {})
    if str(headers.get("Authorization", "")).startswith("Bearer "):
        headers["Authorization"] = f"Bearer {token}"
        case.headers = headers


def _fuzz(doc: dict[str, Any], base_url: str, token: str, cid: str) -> None:
    # The inbox API: the app under test serves /v1 only. The event stream never ends, so it is
    # not fuzzed here (tests/test_events.py reads it as a client does).
    doc = {**doc, "paths": {path: ops for path, ops in doc["paths"].items()
                            if path.startswith("/v1/") and path != "/v1/events"}}
    schema = schemathesis.openapi.from_dict(doc)
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises here, failing the test
        strategies = [operation.as_strategy(mode) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
        if "{id}" in operation.path and "dead-letters" not in operation.path:
            # also aim at a conversation that exists, or only 404s would be checked
            strategies.append(operation.as_strategy(path_parameters={"id": cid}))

        @hypothesis.given(case=st.one_of(strategies))
        @hypothesis.settings(max_examples=EXAMPLES * len(strategies),
                             suppress_health_check=list(hypothesis.HealthCheck))
        def check(case: Any) -> None:
            _authorize(case, token)
            response = case.call(base_url=base_url)
            excluded = []
            # Schema-valid yet rightly refused: a random cursor or identity is a well-formed string
            # but names nothing, and a random `instance` is no configured channel (422 no_channel).
            if (case.query and {"cursor", "identity"} & set(case.query)) or (
                    response.status_code == 422 and response.json()["error"]["code"] in DOMAIN_422):
                excluded.append(positive_data_acceptance)
            case.validate_response(response, excluded_checks=excluded, transport_kwargs={"base_url": base_url})

        check()


async def test_the_running_api_matches_its_document(aiohttp_server: Any, redis_client: aioredis.Redis,
                                                    key_prefix: str) -> None:
    app: web.Application = make_app(redis_client, key_prefix, api_rate_limit_per_minute=1_000_000)
    server = await aiohttp_server(app)
    cid = await seed(app[STORE], "+34600999888", "Hola")
    token = (await bearer(redis_client, key_prefix, "admin"))["Authorization"].removeprefix("Bearer ")
    base_url = str(server.make_url("")).rstrip("/")
    await asyncio.to_thread(_fuzz, document(), base_url, token, cid)


@pytest.mark.parametrize("path", ["/v1/conversations", "/v1/dead-letters"])
async def test_list_pages_match_the_documented_envelope(aiohttp_client: Any, redis_client: aioredis.Redis,
                                                        key_prefix: str, path: str) -> None:
    client = await aiohttp_client(make_app(redis_client, key_prefix))
    body = await (await client.get(path, headers=await bearer(redis_client, key_prefix))).json()
    assert set(body) == {"items", "next_cursor"}
