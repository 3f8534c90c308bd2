-- Member lists land per user (warehouse/landed_reads.py): a landed directory belongs to a member, or to a user.
comment on column ops.landed_loads.member_guid is 'Whose read the directory holds: the member; for table_name members (a user''s member list), the user.';
