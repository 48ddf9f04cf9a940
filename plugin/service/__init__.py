"""The service layer: what the CLI and the web pages both call (no Flask here; see docs/architecture.md)."""
