"""WhatsApp through the Meta Cloud API."""
