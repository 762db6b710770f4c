"""Visitor and identity tokens for the web chat: pure signing and verification, no I/O.

Two kinds of token, both JWTs signed with HS256 (PyJWT):

- The **identity token** is minted by the site that embeds the widget, for a user it knows, with
  the instance's `identity_secret`: ``sub`` (the site's user id), ``email``, ``name``, ``exp``.
  A verified token's email links the visitor to the customer who already has that email. A site
  that has not verified the address itself says so with ``"email_verified": false``, and then the
  email is kept as an unverified claim: it never links to an existing customer.
- The **visitor token** is minted by the gateway (POST /webchat/{instance}/session) and carried by
  the widget on every request. It is stateless, so any gateway process accepts it, and it expires.
  Its key is per instance and never leaves the gateway (see `visitor_key`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from typing import Any

import jwt
import msgspec

ALGORITHM = "HS256"
_ISSUER = "omnigateway-webchat"
# Clock skew tolerated between the site that signs identity tokens and the gateway.
LEEWAY_SECONDS = 30
# A site's user id is kept readable in the identity address when it is plain; anything else
# (braces would break Redis hash tags, spaces and control characters our logs) is hashed.
_PLAIN_SUB = re.compile(r"^[A-Za-z0-9._@+-]{1,128}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
MAX_NAME = 200


class TokenError(ValueError):
    """A token is missing, malformed, forged, expired or for another instance."""


class Visitor(msgspec.Struct, frozen=True):
    """Who holds a verified visitor token."""

    id: str
    name: str | None = None
    expires_at: int = 0


class VerifiedIdentity(msgspec.Struct, frozen=True):
    """What a valid identity token proves: `email` is set only when it may link customers."""

    sub: str
    email: str | None
    name: str | None
    unverified_email: str | None = None


def visitor_key(instance: str, *, visitor_secret: str | None, identity_secret: str | None) -> bytes | None:
    """The key that signs this instance's visitor tokens, when the configuration determines one.

    Derived (HMAC) from the configured secret and the instance name, so tokens of one instance are
    worthless on another and the identity secret itself never signs anything the gateway hands out.
    None when neither secret is configured: the gateway then keeps a generated key in Redis,
    shared by all its processes.
    """
    secret = visitor_secret or identity_secret
    if not secret:
        return None
    purpose = b"visitor" if visitor_secret else b"visitor-from-identity"
    return hmac.new(secret.encode(), b"omnigateway/webchat/" + purpose + b"/" + instance.encode(),
                    hashlib.sha256).digest()


def new_anonymous_id() -> str:
    # 100 random bits in lowercase base32: unguessable, and safe in Redis keys and URLs.
    return "a:" + base64.b32encode(secrets.token_bytes(15)).decode().lower()


def identified_id(instance: str, sub: str) -> str:
    """The visitor id of a site's user: stable across browsers and devices, scoped to the instance
    (two sites' user "42" are different people)."""
    if not _PLAIN_SUB.match(sub):
        sub = "h" + hashlib.sha256(sub.encode()).hexdigest()[:40]
    return f"u:{instance}:{sub}"


def issue_visitor_token(key: bytes, instance: str, visitor: Visitor, *, ttl_seconds: int,
                        now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"iss": _ISSUER, "aud": instance, "sub": visitor.id, "typ": "visitor",
                              "iat": issued, "exp": issued + ttl_seconds}
    if visitor.name:
        claims["name"] = visitor.name
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify_visitor_token(key: bytes, instance: str, token: str | None) -> Visitor:
    if not token:
        raise TokenError("no visitor token")
    try:
        claims = jwt.decode(
            token, key, algorithms=[ALGORITHM], audience=instance, issuer=_ISSUER,
            options={"require": ["exp", "sub", "aud", "iss"], "verify_iat": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("the visitor token has expired") from None
    except jwt.PyJWTError as exc:
        raise TokenError(f"invalid visitor token: {exc}") from None
    if claims.get("typ") != "visitor" or not isinstance(claims.get("sub"), str):
        raise TokenError("invalid visitor token: not a visitor token")
    name = claims.get("name")
    return Visitor(id=claims["sub"], name=name if isinstance(name, str) else None, expires_at=int(claims["exp"]))


def verify_identity_token(secret: str, token: str) -> VerifiedIdentity:
    """Check a site's identity token; raises TokenError when it is forged, expired or incomplete."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], leeway=LEEWAY_SECONDS,
                            options={"require": ["exp", "sub"], "verify_aud": False})
    except jwt.ExpiredSignatureError:
        raise TokenError("the identity token has expired") from None
    except jwt.PyJWTError as exc:
        raise TokenError(f"invalid identity token: {exc}") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise TokenError("invalid identity token: sub must be a non-empty string")
    name = claims.get("name")
    name = name.strip()[:MAX_NAME] or None if isinstance(name, str) else None
    email = claims.get("email")
    if email is not None and (not isinstance(email, str) or not _EMAIL.match(email.strip())):
        raise TokenError("invalid identity token: email is not an email address")
    email = email.strip().lower() if isinstance(email, str) else None
    if email and claims.get("email_verified") is False:
        return VerifiedIdentity(sub=sub, email=None, name=name, unverified_email=email)
    return VerifiedIdentity(sub=sub, email=email, name=name)


def sign_identity_token(secret: str, *, sub: str, email: str | None = None, name: str | None = None,
                        ttl_seconds: int = 600, email_verified: bool | None = None) -> str:
    """What a site's backend does to identify its user to the widget (also used by tests)."""
    claims: dict[str, Any] = {"sub": sub, "exp": int(time.time()) + ttl_seconds}
    if email is not None:
        claims["email"] = email
    if name is not None:
        claims["name"] = name
    if email_verified is not None:
        claims["email_verified"] = email_verified
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


__all__ = [
    "TokenError",
    "VerifiedIdentity",
    "Visitor",
    "identified_id",
    "issue_visitor_token",
    "new_anonymous_id",
    "sign_identity_token",
    "verify_identity_token",
    "verify_visitor_token",
    "visitor_key",
]
