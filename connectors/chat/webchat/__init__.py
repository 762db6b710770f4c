"""The web chat widget channel (kind `webchat`): connector, tokens, frames and the static widget."""

from connectors.chat.webchat.connector import WebchatConnector, WebchatSettings

__all__ = ["WebchatConnector", "WebchatSettings"]
