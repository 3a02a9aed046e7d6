"""Meta's webhook conventions, shared by WhatsApp, Messenger and Instagram."""
