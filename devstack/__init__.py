"""Local development stack: the provider simulator and its test-video renderer (dev-only)."""
