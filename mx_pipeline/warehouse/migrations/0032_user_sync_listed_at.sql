-- ops.user_sync.listed_at: when the user's member list, last read whole, began. A status the status step takes from
-- that list is stamped with it, so a fresher status another run read meanwhile is never overwritten by it.
alter table ops.user_sync add column if not exists listed_at timestamptz;
