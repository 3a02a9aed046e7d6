"""The answers library: one voice on every channel (canned answers, variables, suggestions)."""
