"""Fixtures of the frontier tests (built in frontier_run.py)."""

from frontier_run import evaluated_run  # noqa: F401  (the module-scoped fixture)
