"""The chat screen's widgets, one module each."""
