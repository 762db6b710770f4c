"""Slack: Events API and Socket Mode in, chat.postMessage out (see connector.py)."""

from connectors.chat.slack.connector import SlackConnector, SlackSettings

__all__ = ["SlackConnector", "SlackSettings"]
