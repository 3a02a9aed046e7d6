"""Voice through Twilio-compatible call webhooks: screen-pop, call log, missed-call callbacks."""
