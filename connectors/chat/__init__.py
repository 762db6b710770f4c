"""Chat channels: Slack and the web chat widget."""
