"""The DuckDB warehouse: connections, migrations, raw-table loads, quarantine and the ops tables. No Dagster."""

from mx_pipeline.warehouse.api_calls import ApiCallLog
from mx_pipeline.warehouse.connection import Warehouse, WarehouseBusy, connect
from mx_pipeline.warehouse.upsert import UpsertCounts, upsert

__all__ = ["ApiCallLog", "UpsertCounts", "Warehouse", "WarehouseBusy", "connect", "upsert"]
