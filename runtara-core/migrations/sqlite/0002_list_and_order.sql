-- Runtara schema v2 (SQLite): list_instances by tenant and status, newest first; retry
-- attempts listed in the order they were recorded.
CREATE INDEX instances_by_tenant_status ON instances (tenant_id, status, created_at_ms DESC);

ALTER TABLE retry_attempts ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
