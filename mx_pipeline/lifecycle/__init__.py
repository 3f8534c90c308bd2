"""Member connection lifecycle: status routes, notification episodes. Pure Python (no Dagster, no DuckDB)."""
