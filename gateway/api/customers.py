"""Customers, found by id or by one of their identities."""

from __future__ import annotations

import re

from aiohttp import web
from msgspec import UnsetType

from conversation.activity import agent
from conversation.model import Identity
from conversation.phones import phone_address
from gateway.api.errors import invalid_body, invalid_parameter
from gateway.api.http import allow_query, json_response, principal, read_json, seen
from gateway.api.schemas import CustomerList, CustomerPatch
from gateway.appkeys import CORE, STORE
from gateway.auth import Role

routes = web.RouteTableDef()

# Built-in kinds are normalized below; a plugin's connector may bring its own kind (its provider's
# user ids), which is looked up as given.
_KIND = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
# WhatsApp reaches a phone number: Twilio writes it "whatsapp:+34...", and agents paste that.
_PHONE = re.compile(r"\+[\d\s().\-/]*\d[\d\s().\-/]*")
_ALIASES = {"whatsapp": "phone", "sms": "phone", "tel": "phone", "mailto": "email"}


@routes.get("/customers/{id}")
async def get_customer(request: web.Request) -> web.Response:
    allow_query(request)
    await seen(request, request.match_info["id"])  # a customer is their conversation
    return json_response(await request.config_dict[STORE].threads.get_customer(request.match_info["id"]))


@routes.patch("/customers/{id}")
async def patch_customer(request: web.Request) -> web.Response:
    """Name and locale by any agent; the tier by a supervisor (403 otherwise)."""
    allow_query(request)
    await seen(request, request.match_info["id"])
    body = await read_json(request, CustomerPatch)
    details = {name: getattr(body, name) for name in ("name", "locale", "tier", "account_manager")
               if not isinstance(getattr(body, name), UnsetType)}
    if not details:
        raise invalid_body("give name, locale, tier or account_manager")
    me = principal(request)
    customer = await request.config_dict[CORE].threads.update_customer(
        request.match_info["id"], by=agent(me.name), may_set_tier=me.can(Role.SUPERVISOR), **details)
    return json_response(customer)


@routes.get("/customers")
async def find_customers(request: web.Request) -> web.Response:
    allow_query(request, "identity")
    raw = request.query.get("identity")
    if not raw:
        raise invalid_parameter("give identity=<kind>:<address>, e.g. identity=phone:+34600111222")
    customer = await request.config_dict[STORE].find_customer(parse_identity(raw))
    return json_response(CustomerList(items=[customer] if customer else []))


def parse_identity(raw: str) -> Identity:
    """`kind:address` normalized the way the pipeline stores it (E.164 phones, lowercase emails)."""
    kind, sep, address = raw.partition(":")
    kind = kind.strip().lower()
    kind = _ALIASES.get(kind, kind)
    if not sep or not address.strip():
        raise invalid_parameter("identity must be <kind>:<address>, e.g. phone:+34600111222")
    if kind == "phone":
        return Identity("phone", _phone(address))
    if kind == "email":
        address = address.strip().lower()
        if "@" not in address[1:-1]:
            raise invalid_parameter(f"{address!r} is not an email address")
        return Identity("email", address)
    if not _KIND.fullmatch(kind):
        raise invalid_parameter(f"{kind!r} is not an identity kind (phone, email, slack, webchat, or a plugin's)")
    return Identity(kind, address.strip())


def _phone(raw: str) -> str:
    # An unencoded "+" in a query string arrives as a space ("phone: 34600..."); the user meant "+".
    text = raw.lstrip(" ")
    if text != raw and text[:1].isdigit():
        text = "+" + text
    elif text.startswith("00"):  # the international call prefix most of the world dials
        text = "+" + text[2:]
    if not _PHONE.fullmatch(text.strip()):
        raise invalid_parameter(f"{raw.strip()!r} is not a phone number with its country code (e.g. +34600111222)")
    # The same canonical form the pipeline stores: a number the phone library calls impossible is
    # kept as the provider gave it, and found here as written.
    return phone_address(text)
