"""`omnigateway new-connector`: the skeleton installs, passes the conformance kit, is listed by
`omnigateway connectors`, and a gateway configured with it takes its webhooks into customer threads.

The package is really pip-installed into this environment (and uninstalled at the end), because
that is what an integrator does; nothing is downloaded when the environment's setuptools can build
wheels itself, else pip builds in isolation from its configured index.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from packaging.version import Version

from connectors.base import WebhookRequest
from connectors.scaffold import Names, write_skeleton
from connectors.testing import HmacSha256Signer
from conversation.model import Identity
from gateway.cli import main
from gateway.testing import GatewayUnderTest

KIND = "scaffold_probe"
NAMES = Names.of(KIND)
SECRET = "whsec-scaffold-test"
BIN = Path(sys.executable).parent


def _pip_can_build_offline() -> bool:
    """Whether `--no-build-isolation` works here: setuptools builds wheels by itself from 70.1,
    before that only with the `wheel` package beside it."""
    try:
        setuptools = Version(version("setuptools"))
    except PackageNotFoundError:
        return False
    return setuptools >= Version("70.1") or importlib.util.find_spec("wheel") is not None


def _run(args: list[str], cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def installed_skeleton(tmp_path: Path) -> Iterator[Path]:
    """The skeleton for KIND, written by the CLI and pip-installed; uninstalled afterwards."""
    target = tmp_path / NAMES.dist
    assert main(["new-connector", KIND, "--dir", str(target)]) == 0
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", str(target)]
    if _pip_can_build_offline():
        install.insert(-1, "--no-build-isolation")
    try:
        done = _run(install)
        assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
        importlib.invalidate_caches()
        yield target
    finally:
        _run([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", NAMES.dist])
        for module in [m for m in sys.modules if m == NAMES.package or m.startswith(NAMES.package + ".")]:
            del sys.modules[module]
        importlib.invalidate_caches()


def test_new_connector_refuses_bad_names_and_non_empty_directories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["new-connector", "Acme-Chat", "--dir", str(tmp_path / "a")]) == 2
    assert "use lowercase letters, digits and '_'" in capsys.readouterr().err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    assert main(["new-connector", "acme", "--dir", str(tmp_path / "b")]) == 2
    assert "not an empty directory" in capsys.readouterr().err
    assert (tmp_path / "b" / "keep.txt").read_text() == "mine"
    # A kind that is already installed would disable both packages: said before anything is written.
    assert main(["new-connector", "twilio", "--dir", str(tmp_path / "c")]) == 0
    assert "already provided by omnichannel-gateway" in capsys.readouterr().err


def test_skeleton_layout_names_the_kind_everywhere(tmp_path: Path) -> None:
    files = {p.relative_to(tmp_path).as_posix() for p in write_skeleton("acme_chat", tmp_path)}
    assert files == {
        "pyproject.toml", "README.md", "tests/test_conformance.py",
        "src/omnigateway_acme_chat/__init__.py", "src/omnigateway_acme_chat/connector.py",
        "src/omnigateway_acme_chat/testing.py", "src/omnigateway_acme_chat/py.typed",
    }
    pyproject = (tmp_path / "pyproject.toml").read_text()
    assert '[project.entry-points."omnigateway.connectors"]\nacme_chat = ' \
           '"omnigateway_acme_chat.connector:AcmeChatConnector"' in pyproject
    assert '"omnichannel-gateway' in pyproject
    connector = (tmp_path / "src/omnigateway_acme_chat/connector.py").read_text()
    assert 'kind = "acme_chat"' in connector and "webhook_secret: Secret" in connector
    assert "TODO" not in connector
    assert "${ACME_CHAT_WEBHOOK_SECRET}" in (tmp_path / "README.md").read_text()


async def test_scaffold_installs_passes_the_kit_and_takes_webhooks_into_threads(
    installed_skeleton: Path, redis_url: str, key_prefix: str, redis_client: Any, tmp_path: Path
) -> None:
    # 1. The kit, run by pytest in the skeleton as its author would (pytest-asyncio strict mode).
    kit = await asyncio.to_thread(
        _run, [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"], installed_skeleton)
    assert kit.returncode == 0, f"the kit failed on the fresh skeleton:\n{kit.stdout}\n{kit.stderr}"
    assert " passed" in kit.stdout and "failed" not in kit.stdout
    # What the kit skipped is said, with the reason.
    assert "no PayloadCase with handshake=True" in kit.stdout

    # 2. `omnigateway connectors` lists the new kind and a configured instance of it.
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[gateway]\npublic_url = "https://gw.example.com"\n'
        f'[connectors.desk]\nkind = "{KIND}"\napi_token = "t0k"\nwebhook_secret = "{SECRET}"\n'
    )
    listing = await asyncio.to_thread(_run, [str(BIN / "omnigateway"), "connectors", "--config", str(config)])
    assert listing.returncode == 0, listing.stdout + listing.stderr
    installed, configured = listing.stdout.split("Configured instances")
    assert KIND in installed and f"{NAMES.dist} 0.1.0" in installed
    assert f"kind {KIND}" in configured and "https://gw.example.com/webhooks/desk/events" in configured

    # 3. A gateway configured with an instance of it puts a signed webhook into a customer thread.
    gw = GatewayUnderTest(
        redis_url, prefix=key_prefix, partitions=2, lease_ttl=2.0, shutdown_grace=1.0,
        connectors={"desk": {"kind": KIND, "api_token": "t0k", "webhook_secret": SECRET,
                             "api_base_url": "http://127.0.0.1:9"}},
    )
    async with gw:
        body = json.dumps({"type": "message", "id": "evt-1", "sender": {"id": "user-7", "name": "Grace"},
                           "text": "Is the scaffold alive?"}).encode()
        url = gw.url("/webhooks/desk/events")
        signed = HmacSha256Signer(SECRET, header="X-Signature-256").headers(
            WebhookRequest(method="POST", url=url, path="events", headers={}, query={}, body=body), now=time.time())
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=body, headers={**signed, "Content-Type": "application/json"}) as resp:
                assert resp.status == 200, await resp.text()
            async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 403  # unsigned: refused, nothing stored

        customer = None
        deadline = time.monotonic() + 10
        while customer is None and time.monotonic() < deadline:
            customer = await gw.store.find_customer(Identity(KIND, "user-7"))
            await asyncio.sleep(0.05)
        assert customer is not None, "the webhook never reached a customer"
        token = await gw.token("agent")
        status, page = await gw.api("GET", f"/v1/conversations/{customer.id}/messages", token)
        assert status == 200 and isinstance(page, dict)
        [message] = page["items"]
        assert message["text"] == "Is the scaffold alive?"
        assert message["channel"] == KIND and message["direction"] == "inbound" and message["instance"] == "desk"
        status, conversation = await gw.api("GET", f"/v1/conversations/{customer.id}", token)
        assert status == 200 and isinstance(conversation, dict)
        assert conversation["customer"]["name"] == "Grace"
        assert {"kind": KIND, "address": "user-7"} in [
            {"kind": i["kind"], "address": i["address"]} for i in conversation["customer"]["identities"]]
