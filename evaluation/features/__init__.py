"""Feature networks behind one registry."""
