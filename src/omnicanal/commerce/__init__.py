"""Commerce: one catalog, prices and promotions on every channel; order, collect and return anywhere."""
