-- ops.end_users_left: each MX user guid an end user's id left (a newer registration named another guid), and when.
-- staging.stg_users keeps a row for it with a mapped_at of then: fct_transactions recomputes that guid's rows,
-- whose user id went (or passed to another id of the guid), as it does for the guid the id went to.
create table if not exists ops.end_users_left (
    mx_user_guid varchar not null,
    changed_at   timestamptz not null
);
