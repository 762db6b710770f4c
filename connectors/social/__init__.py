"""Social DM channels: WhatsApp Cloud, Messenger, Instagram Direct (Meta's Graph API) and Telegram."""

from connectors.social.messenger import InstagramConnector, MessengerConnector
from connectors.social.telegram import TelegramConnector
from connectors.social.whatsapp import WhatsAppConnector

__all__ = ["InstagramConnector", "MessengerConnector", "TelegramConnector", "WhatsAppConnector"]
