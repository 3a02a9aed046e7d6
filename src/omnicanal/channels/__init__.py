"""Channel adapters: each one verifies and parses its inbound traffic and delivers outbox items."""
