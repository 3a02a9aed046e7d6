"""Telegram through the Bot API: a webhook checked with the secret-token header, sendMessage out."""
