-- Runtara schema v8 (SQLite): an instance started by an in-process runtime names the
-- runtime that owns it and the workflow it runs, so that the runtime finds its unfinished
-- instances when it starts again and runs each with the right function.
ALTER TABLE instances ADD COLUMN runtime TEXT;
ALTER TABLE instances ADD COLUMN workflow TEXT;
CREATE INDEX instances_by_runtime ON instances (tenant_id, runtime, created_at_ms)
    WHERE runtime IS NOT NULL AND status IN ('pending', 'running', 'suspended', 'sleeping');
