"""`omnigateway simulate`: a customer's message to a running gateway, sent as its provider would.

For a Twilio instance, a correctly signed inbound-SMS webhook. For a web chat instance (what
`make run` has), what the widget does: start a visitor session, then post a message frame. It
says what to do when there is nothing to simulate, or when the gateway does not serve the
instance, instead of printing a bare status.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, NoReturn

from gateway.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, Exit, config_path, load
from gateway.config import Config

KINDS = ("twilio", "webchat")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("simulate", parents=[common],
                            help="send a customer's message to a running gateway, as its provider would "
                                 "(a signed Twilio webhook, or the web chat widget)")
    p.add_argument("--instance", help="connector instance (default: the first twilio, else webchat, instance)")
    p.add_argument("--from", dest="sender", default="+34600111222", help="the customer's number (Twilio)")
    p.add_argument("--text", default="Hello", help="the message body")
    p.add_argument("--url", help="where to send it (default: the gateway's public URL)")
    p.set_defaults(handler=cmd_simulate)


def _pick_instance(config: Config, wanted: str | None, path: str) -> tuple[str, dict[str, Any]]:
    if wanted is not None:
        raw = config.connectors.get(wanted)
        if raw is None:
            _stop(f"{path} has no [connectors.{wanted}] (configured: {', '.join(config.connectors) or 'none'})")
        if raw.get("kind") not in KINDS:
            _stop(f"connectors.{wanted} is kind {raw.get('kind')!r}; simulate sends {' or '.join(KINDS)} messages")
        return wanted, raw
    for kind in KINDS:
        for name, raw in config.connectors.items():
            if raw.get("kind") == kind:
                return name, raw
    _stop(f"{path} has no connector to simulate: add a [connectors.sms] section with kind = \"twilio\" "
          "(account_sid, auth_token, from_number), or [connectors.webchat] with kind = \"webchat\"")


def _stop(message: str) -> NoReturn:
    print(f"simulate: {message}", file=sys.stderr)
    raise Exit(EXIT_CONFIG)


def cmd_simulate(args: argparse.Namespace) -> int:
    config = load(args)
    path = config_path(args)
    instance, raw = _pick_instance(config, args.instance, path)
    base = (args.url or config.gateway.public_base_url).rstrip("/")
    if raw.get("kind") == "twilio":
        return _twilio(config, instance, raw, args, base)
    return _webchat(instance, args.text, base)


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes] | None:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={**headers, "User-Agent": "omnigateway-simulate"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"POST {url} failed: {reason}; is `omnigateway serve` running there?", file=sys.stderr)
        return None


def _not_served(url: str, instance: str, status: int) -> int:
    print(f"POST {url} -> {status}: the gateway there does not serve instance {instance!r}. Add "
          f"[connectors.{instance}] to the configuration it runs with and restart it (or pass --url for "
          "the gateway that has it)", file=sys.stderr)
    return EXIT_FAILED


def _twilio(config: Config, instance: str, raw: dict[str, Any], args: argparse.Namespace, base: str) -> int:
    from twilio.request_validator import RequestValidator

    auth_token = raw.get("auth_token")
    if not isinstance(auth_token, str) or not auth_token:
        _stop(f"connectors.{instance}.auth_token is required to sign the webhook")
    sid = "SM" + uuid.uuid4().hex
    params = {
        "MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid,
        "AccountSid": str(raw.get("account_sid", "AC" + "0" * 32)),
        "From": args.sender, "To": str(raw.get("from_number", "+15005550006")),
        "Body": args.text, "NumMedia": "0", "NumSegments": "1",
        "SmsStatus": "received", "ApiVersion": "2010-04-01",
    }
    # Twilio signs the URL it was told to call, which the gateway rebuilds from public_url; --url
    # only changes where the request travels (a port-forward, a container's address).
    route = f"/webhooks/{instance}/messages"
    signed_url = config.gateway.public_base_url + route
    target = base + route
    signature = RequestValidator(auth_token).compute_signature(signed_url, params)
    answer = _post(target, urllib.parse.urlencode(params).encode(),
                   {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})
    if answer is None:
        return EXIT_FAILED
    status, _ = answer
    if status == 404:
        return _not_served(target, instance, status)
    if status == 403:
        print(f"POST {target} -> 403: the gateway refused the signature; it runs with another auth_token or "
              f"public_url than {config_path(args)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"POST {target} (MessageSid {sid}) -> {status}")
    return EXIT_OK if 200 <= status < 300 else EXIT_FAILED


def _webchat(instance: str, text: str, base: str) -> int:
    session_url = f"{base}/webchat/{instance}/session"
    answer = _post(session_url, b"{}", {"Content-Type": "application/json"})
    if answer is None:
        return EXIT_FAILED
    status, body = answer
    if status == 404:
        return _not_served(session_url, instance, status)
    if status != 200:
        print(f"POST {session_url} -> {status}: {body.decode(errors='replace')[:300]}", file=sys.stderr)
        return EXIT_FAILED
    session = json.loads(body)
    message_url = f"{base}/webchat/{instance}/messages"
    frame = {"type": "message", "text": text, "client_id": uuid.uuid4().hex[:16]}
    answer = _post(message_url, json.dumps(frame).encode(),
                   {"Content-Type": "application/json", "Authorization": f"Bearer {session['visitor_token']}"})
    if answer is None:
        return EXIT_FAILED
    status, body = answer
    print(f"POST {message_url} (web chat visitor, customer {session['customer_id']}) -> {status}")
    return EXIT_OK if 200 <= status < 300 else EXIT_FAILED
