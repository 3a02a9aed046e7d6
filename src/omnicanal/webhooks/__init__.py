"""Outgoing webhooks: integrators subscribe to domain events, delivered signed (Standard Webhooks) from the outbox."""
