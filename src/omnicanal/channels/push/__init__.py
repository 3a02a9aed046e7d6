"""Push notifications as an outbound channel, through an FCM-compatible HTTP provider."""
