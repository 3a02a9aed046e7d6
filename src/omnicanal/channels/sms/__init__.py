"""SMS through a Twilio-compatible provider: Messages REST API out, signed form webhooks in."""
