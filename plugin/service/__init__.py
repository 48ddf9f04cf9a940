"""The service layer, no Flask: what the CLI, the web pages and the jobs call (see the README's Layout)."""
