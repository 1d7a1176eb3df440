"""The dry run: input checks (checks), the cost plan (plan) and the table of known models (catalog)."""
