-- Runtara schema v12 (PostgreSQL): external events. An instance may be `waiting` for an
-- event (`waiting_for` names it); the events sent to instances are kept in `inbox` until
-- a wait takes them (each once, in the order sent per name); an instance publishes
-- values for the management side in `instance_values`.
ALTER TABLE instances DROP CONSTRAINT instances_status_check;
ALTER TABLE instances ADD CONSTRAINT instances_status_check CHECK (status IN
    ('pending','running','suspended','sleeping','waiting','completed','failed','cancelled'));
ALTER TABLE instances ADD COLUMN waiting_for TEXT;

DROP INDEX instances_by_runtime;
CREATE INDEX instances_by_runtime ON instances (tenant_id, runtime, created_at_ms)
    WHERE runtime IS NOT NULL
      AND status IN ('pending', 'running', 'suspended', 'sleeping', 'waiting');

CREATE TABLE inbox (
    seq             BIGSERIAL PRIMARY KEY,
    instance_id     TEXT NOT NULL,
    name            TEXT NOT NULL,
    payload         BYTEA NOT NULL,
    idempotency_key TEXT,
    created_at_ms   BIGINT NOT NULL,
    consumed_at_ms  BIGINT,
    consumed_by     TEXT
);
CREATE INDEX inbox_unconsumed ON inbox (instance_id, name, seq) WHERE consumed_at_ms IS NULL;
CREATE UNIQUE INDEX inbox_by_key ON inbox (instance_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE instance_values (
    instance_id   TEXT NOT NULL,
    key           TEXT NOT NULL,
    value         BYTEA NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (instance_id, key)
);
