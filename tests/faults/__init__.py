"""Fault injection, on PostgreSQL: the secret store, Login with Amazon and the database failing under
a running worker, and workers killed at any point. After each fault the next run completes, and
every message is filed exactly once."""
