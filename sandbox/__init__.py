"""Running untrusted Python: RestrictedPython policy inside confined worker processes."""
