-- Runtara schema v1 (PostgreSQL). Times are milliseconds since the Unix epoch.
CREATE TABLE instances (
    instance_id      TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    image_id         TEXT,
    status           TEXT NOT NULL CHECK (status IN
                     ('pending','running','suspended','sleeping','completed','failed','cancelled')),
    epoch            BIGINT NOT NULL DEFAULT 0,
    input            BYTEA,
    output           BYTEA,
    error            TEXT,
    checkpoint_id    TEXT,
    checkpoint_count BIGINT NOT NULL DEFAULT 0,
    resume_from      TEXT,
    created_at_ms    BIGINT NOT NULL,
    started_at_ms    BIGINT,
    finished_at_ms   BIGINT,
    heartbeat_at_ms  BIGINT,
    wake_at_ms       BIGINT
);
CREATE INDEX instances_by_tenant ON instances (tenant_id, created_at_ms DESC);
CREATE INDEX instances_by_status ON instances (status, wake_at_ms);

CREATE TABLE checkpoints (
    seq           BIGSERIAL PRIMARY KEY,
    instance_id   TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    state         BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL,
    wake_at_ms    BIGINT,
    UNIQUE (instance_id, checkpoint_id)
);

CREATE TABLE events (
    event_id      BIGSERIAL PRIMARY KEY,
    instance_id   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    subtype       TEXT,
    payload       BYTEA,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX events_by_instance ON events (instance_id, event_id);

CREATE TABLE signals (
    signal_id     BIGSERIAL PRIMARY KEY,
    instance_id   TEXT NOT NULL,
    signal_type   TEXT NOT NULL CHECK (signal_type IN ('cancel','pause','resume')),
    created_at_ms BIGINT NOT NULL,
    acked_at_ms   BIGINT,
    acknowledged  BOOLEAN
);
CREATE INDEX signals_pending ON signals (instance_id) WHERE acked_at_ms IS NULL;

CREATE TABLE retry_attempts (
    instance_id   TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    error         TEXT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (instance_id, checkpoint_id, attempt)
);
