-- When a deleting tenant's database may be dropped (end of the grace period).
-- drop_tenant waits for it, however the job was enqueued.
ALTER TABLE tenants ADD COLUMN delete_after timestamptz;
