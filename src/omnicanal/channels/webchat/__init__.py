"""Web chat: an embeddable widget (``/widget.js``) talking over a WebSocket (``/ws/widget``)."""
