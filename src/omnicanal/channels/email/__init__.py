"""Email: SMTP out, a built-in SMTP/LMTP receiver and IMAP polling in, threaded by headers and reply address."""
