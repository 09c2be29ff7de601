"""Helpers every layer may use: atomic writes, config-to-object construction, training state."""
