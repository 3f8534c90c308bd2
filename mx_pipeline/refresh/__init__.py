"""The stale-data refresh scheduler: which members to refresh, and refreshing them politely. No Dagster."""
