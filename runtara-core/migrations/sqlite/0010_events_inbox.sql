-- Runtara schema v10 (SQLite): external events. An instance may be `waiting` for an
-- event (`waiting_for` names it); the events sent to instances are kept in `inbox` until
-- a wait takes them (each once, in the order sent per name); an instance publishes
-- values for the management side in `instance_values`.
--
-- SQLite cannot change a CHECK constraint in place: the instances table is built again
-- with `waiting` allowed, keeping every row and its rowid (the order of starts). The
-- signal triggers name the table, so they are dropped first and made again after.
DROP TRIGGER signals_pending_on_insert;
DROP TRIGGER signals_pending_on_ack;
DROP TRIGGER signals_pending_on_delete;

CREATE TABLE instances_v10 (
    instance_id        TEXT PRIMARY KEY NOT NULL,
    tenant_id          TEXT NOT NULL,
    image_id           TEXT,
    status             TEXT NOT NULL CHECK (status IN
                       ('pending','running','suspended','sleeping','waiting',
                        'completed','failed','cancelled')),
    epoch              INTEGER NOT NULL DEFAULT 0,
    input              BLOB,
    output             BLOB,
    error              TEXT,
    checkpoint_id      TEXT,
    checkpoint_count   INTEGER NOT NULL DEFAULT 0,
    resume_from        TEXT,
    created_at_ms      INTEGER NOT NULL,
    started_at_ms      INTEGER,
    finished_at_ms     INTEGER,
    heartbeat_at_ms    INTEGER,
    wake_at_ms         INTEGER,
    signals_pending    INTEGER NOT NULL DEFAULT 0,
    custom_events      INTEGER NOT NULL DEFAULT 0,
    custom_event_bytes INTEGER NOT NULL DEFAULT 0,
    runtime            TEXT,
    workflow           TEXT,
    waiting_for        TEXT
);
INSERT INTO instances_v10 (rowid, instance_id, tenant_id, image_id, status, epoch, input,
    output, error, checkpoint_id, checkpoint_count, resume_from, created_at_ms,
    started_at_ms, finished_at_ms, heartbeat_at_ms, wake_at_ms, signals_pending,
    custom_events, custom_event_bytes, runtime, workflow)
SELECT rowid, instance_id, tenant_id, image_id, status, epoch, input,
    output, error, checkpoint_id, checkpoint_count, resume_from, created_at_ms,
    started_at_ms, finished_at_ms, heartbeat_at_ms, wake_at_ms, signals_pending,
    custom_events, custom_event_bytes, runtime, workflow
FROM instances;
DROP TABLE instances;
ALTER TABLE instances_v10 RENAME TO instances;

CREATE INDEX instances_by_tenant ON instances (tenant_id, created_at_ms DESC);
CREATE INDEX instances_by_status ON instances (status, wake_at_ms);
CREATE INDEX instances_by_tenant_status ON instances (tenant_id, status, created_at_ms DESC);
CREATE INDEX instances_by_image ON instances (image_id, status);
CREATE INDEX instances_by_runtime ON instances (tenant_id, runtime, created_at_ms)
    WHERE runtime IS NOT NULL
      AND status IN ('pending', 'running', 'suspended', 'sleeping', 'waiting');

CREATE TRIGGER signals_pending_on_insert AFTER INSERT ON signals
WHEN NEW.acked_at_ms IS NULL AND NEW.signal_type IN ('cancel', 'pause')
BEGIN
    UPDATE instances SET signals_pending = signals_pending + 1
    WHERE instance_id = NEW.instance_id;
END;

CREATE TRIGGER signals_pending_on_ack AFTER UPDATE OF acked_at_ms ON signals
WHEN OLD.acked_at_ms IS NULL AND NEW.acked_at_ms IS NOT NULL
     AND OLD.signal_type IN ('cancel', 'pause')
BEGIN
    UPDATE instances SET signals_pending = signals_pending - 1
    WHERE instance_id = OLD.instance_id;
END;

CREATE TRIGGER signals_pending_on_delete AFTER DELETE ON signals
WHEN OLD.acked_at_ms IS NULL AND OLD.signal_type IN ('cancel', 'pause')
BEGIN
    UPDATE instances SET signals_pending = signals_pending - 1
    WHERE instance_id = OLD.instance_id;
END;

CREATE TABLE inbox (
    seq             INTEGER PRIMARY KEY,
    instance_id     TEXT NOT NULL,
    name            TEXT NOT NULL,
    payload         BLOB NOT NULL,
    idempotency_key TEXT,
    created_at_ms   INTEGER NOT NULL,
    consumed_at_ms  INTEGER,
    consumed_by     TEXT
);
CREATE INDEX inbox_unconsumed ON inbox (instance_id, name, seq) WHERE consumed_at_ms IS NULL;
CREATE UNIQUE INDEX inbox_by_key ON inbox (instance_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE instance_values (
    instance_id   TEXT NOT NULL,
    key           TEXT NOT NULL,
    value         BLOB NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (instance_id, key)
) WITHOUT ROWID;
