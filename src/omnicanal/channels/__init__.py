"""Channel adapters: configured channel instances, their webhooks, and their outbound transports.

``registry`` declares what each channel type needs; ``service`` stores configured instances (secrets
encrypted); ``inbound`` is what every webhook shares; ``transport`` sends outbox items through the
instance a conversation uses. Each adapter lives in its own module and registers itself.
"""
