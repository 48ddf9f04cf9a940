"""Inbound webhooks (one Flask blueprint); arrives with issue 3. Never imports ``plugin``."""
