"""The kit's tests of send(): long text and attachments by the capabilities, provider errors as
transient or permanent send errors, an unreachable provider, aclose."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import pytest

from connectors.base import (
    OverflowRule,
    PermanentSendError,
    TransientSendError,
)
from connectors.capabilities import TextTooLong, fit_text, measure

if TYPE_CHECKING:
    pass
from connectors.testing._kit_base import KitBase
from connectors.testing._kit_helpers import _check_provider_id, _long_text, _serving


class SendTests(KitBase):
    # --- sending --------------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_long_text_follows_capabilities(self) -> None:
        cls = self._cls()
        caps = cls.capabilities
        text = _long_text(caps)
        try:
            parts = fit_text(caps, text)
        except TextTooLong:
            if caps.overflow is not OverflowRule.REFUSE:
                raise
            pytest.skip("overflow is REFUSE: the core refuses over-long text before send(); nothing to send")
        limit = caps.max_text_length
        for part in parts:
            size = measure(part, caps.text_unit)
            assert size <= limit, (f"a part measures {size} {caps.text_unit.value}, over max_text_length {limit}")
        if caps.overflow is OverflowRule.SPLIT:
            assert len(parts) > 1, "SPLIT must give several parts for a text over the limit"
        longest = max(parts, key=lambda p: measure(p, caps.text_unit))
        provider = self._need_provider("the parts fit; sending one")
        async with provider:
            connector = self.build(self.provider_settings(provider.base_url))
            try:
                before = len(provider.messages)
                try:
                    provider_id = await connector.send(self._outbound(longest))
                except (TransientSendError, PermanentSendError) as exc:
                    pytest.fail(
                        f"the provider refused a text of {measure(longest, caps.text_unit)} {caps.text_unit.value}, "
                        f"within the declared max_text_length {limit}: {exc.reason}. Declare the limit the "
                        "provider really has (the core splits text by it)", pytrace=False)
                _check_provider_id(self.connector_name, provider_id)
                assert len(provider.messages) > before, "send() returned an id but the provider received nothing"
            finally:
                await connector.aclose()

    @pytest.mark.asyncio
    async def test_attachments_follow_capabilities(self) -> None:
        caps = self._cls().capabilities
        if not caps.attachment_kinds:
            pytest.skip("no attachment_kinds declared: the core turns attachments into links, send() sees none")
        provider = self._need_provider("attachments within the declared limits")
        async with _serving(caps) as attachments, provider:
            connector = self.build(self.provider_settings(provider.base_url))
            try:
                try:
                    provider_id = await connector.send(self._outbound("Here are the files", attachments))
                except (TransientSendError, PermanentSendError) as exc:
                    pytest.fail(f"sending {len(attachments)} attachment(s) of the declared kinds and size was "
                                f"refused: {exc.reason}. Declare what the provider really accepts "
                                "(attachment_kinds, max_attachments, max_attachment_bytes)", pytrace=False)
                _check_provider_id(self.connector_name, provider_id)
            finally:
                await connector.aclose()

    @pytest.mark.asyncio
    async def test_provider_errors_map_to_send_errors(self) -> None:
        provider = self._need_provider("429/5xx/4xx mapping")
        retry_after = 7.0
        problems: list[str] = []
        async with provider:
            connector = self.build(self.provider_settings(provider.base_url))
            try:
                for status in [*self.transient_statuses, *self.permanent_statuses]:
                    transient = status in self.transient_statuses
                    provider.fail_next(status, retry_after=retry_after if status == 429 else None)
                    want = TransientSendError if transient else PermanentSendError
                    why = ("so the dispatcher retries it with backoff" if transient
                           else "so the reply fails at once with the provider's reason instead of retrying")
                    try:
                        provider_id = await connector.send(self._outbound("Error mapping check"))
                    except want as exc:
                        if not exc.reason:
                            problems.append(f"HTTP {status}: {want.__name__} without a reason; pass the "
                                            "provider's error message, agents read it")
                        if status == 429 and (exc.retry_after is None or abs(exc.retry_after - retry_after) > 1):
                            problems.append(f"HTTP 429 with Retry-After: {retry_after:g}: retry_after is "
                                            f"{exc.retry_after!r}; read the Retry-After header")
                    except (TransientSendError, PermanentSendError) as exc:
                        problems.append(f"HTTP {status}: send() raised {type(exc).__name__} ({exc.reason}); "
                                        f"it must raise {want.__name__} {why}")
                    except Exception as exc:
                        problems.append(f"HTTP {status}: send() let {type(exc).__name__}: {exc} escape; catch it "
                                        f"and raise {want.__name__} {why}")
                    else:
                        problems.append(f"HTTP {status}: send() returned {provider_id!r} although the provider "
                                        f"answered {status}; raise {want.__name__} {why}")
                # The connector must still work after errors (no poisoned client).
                try:
                    _check_provider_id(self.connector_name, await connector.send(self._outbound("After errors")))
                except (TransientSendError, PermanentSendError) as exc:
                    problems.append(f"after the scripted errors, a normal send failed: {exc.reason}")
            finally:
                await connector.aclose()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)

    @pytest.mark.asyncio
    async def test_unreachable_provider_is_transient(self) -> None:
        from gateway.testing import free_port

        # Gated on the fake provider like every send test: without one, send() is not built yet.
        self._need_provider("send() against an unreachable provider")
        outbound = self._outbound("Is anyone there?")
        connector = self.build(self.provider_settings(f"http://127.0.0.1:{free_port()}"))
        try:
            try:
                async with asyncio.timeout(30):
                    await connector.send(outbound)
            except TransientSendError:
                return
            except TimeoutError:
                pytest.fail("with nothing listening at api_base_url, send() was still trying after 30 s; give up "
                            "on connection errors at once with TransientSendError (the dispatcher retries)",
                            pytrace=False)
            except Exception as exc:
                pytest.fail(f"with nothing listening at api_base_url, send() raised {type(exc).__name__}: {exc}; "
                            "connection errors and timeouts must raise TransientSendError so the dispatcher "
                            "retries", pytrace=False)
            pytest.fail("with nothing listening at api_base_url, send() returned normally: does it use "
                        "api_base_url?", pytrace=False)
        finally:
            await connector.aclose()

    @pytest.mark.asyncio
    async def test_aclose_can_run_twice(self) -> None:
        provider = self.fake_provider()
        if provider is None:
            connector = self.build()
            await connector.aclose()
            await connector.aclose()
            return
        async with provider:
            connector = self.build(self.provider_settings(provider.base_url))
            # One send first, so that aclose has open clients to release.
            with contextlib.suppress(TransientSendError, PermanentSendError):
                await connector.send(self._outbound("Before closing"))
            await connector.aclose()
            await connector.aclose()
