"""Session recording and replay through the same engine (docs/session-format.md)."""
