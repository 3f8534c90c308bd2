-- The contract for the tables the product writes, where the product's engineers will look for it.
comment on table ops.category_overrides is 'A category the product pinned on one transaction. Upsert with set_at = now(): the next model run re-categorizes rows whose override is newer than that run. After deleting a row, run the models with full_refresh.';
comment on table ops.merchant_category_overrides is 'A category the product pinned on every transaction of an MX merchant. Upsert with set_at = now(); after deleting a row, run the models with full_refresh.';
comment on table ops.freshness_sla is 'A freshness SLA override for a member, a user or a user tier (ops.end_users.tier), in hours; read on every scheduler tick.';
