"""The SDK's view of channel limits: declared by connectors, enforced by the core.

The definitions live in the core (conversation.capabilities), which enforces them once for every
connector; connectors and plugins import them from here or from connectors.base.
"""

from __future__ import annotations

from conversation.capabilities import (
    MEASURES,
    Capabilities,
    OverflowRule,
    TextFormat,
    TextTooLong,
    TextUnit,
    WindowClosed,
    check_window,
    fit_attachments,
    fit_text,
    measure,
    window_closes_at_ms,
    window_open,
)

__all__ = [
    "MEASURES",
    "Capabilities",
    "OverflowRule",
    "TextFormat",
    "TextTooLong",
    "TextUnit",
    "WindowClosed",
    "check_window",
    "fit_attachments",
    "fit_text",
    "measure",
    "window_closes_at_ms",
    "window_open",
]
