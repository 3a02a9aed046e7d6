"""Loyalty: one wallet of point lots across every channel, earning rules, tiers and rewards."""
