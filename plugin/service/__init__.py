"""Services without Flask: what the CLI, the web pages and the jobs call (see docs/architecture.md).

So far: the economic model (``economics``), statistics for the holdout (``stats``) and the replay of a
ticket export through the engine before go-live (``replay``).
"""
