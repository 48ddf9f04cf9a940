"""Background work: the worker that takes inbox items with a lease, and the pollers it runs."""
