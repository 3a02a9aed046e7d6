"""The signed API channel: apps, POS terminals and other systems post messages, events and push tokens."""
