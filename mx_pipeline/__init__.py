"""mx_pipeline: MX Platform API -> Dagster -> DuckDB."""
