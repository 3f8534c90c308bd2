"""The Dagster code location: wiring only. Loaded folder by folder by ``mx_pipeline.definitions``."""
