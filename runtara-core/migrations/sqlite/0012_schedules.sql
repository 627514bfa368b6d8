-- Runtara schema v12 (SQLite): schedules. Each starts an instance of its image at the
-- times its cron expression names in its time zone; `next_fire_ms` is the next of them
-- (NULL while paused), `last_fire_ms` the last one started. A fire's instance id derives
-- from the schedule and the fire time, so no fire starts twice.
CREATE TABLE schedules (
    schedule_id   TEXT PRIMARY KEY NOT NULL,
    tenant_id     TEXT NOT NULL,
    image_id      TEXT NOT NULL,
    cron          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    input         BLOB,
    missed        TEXT NOT NULL CHECK (missed IN ('skip', 'run_once')),
    paused        INTEGER NOT NULL DEFAULT 0,
    next_fire_ms  INTEGER,
    last_fire_ms  INTEGER,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX schedules_by_tenant ON schedules (tenant_id, created_at_ms);
