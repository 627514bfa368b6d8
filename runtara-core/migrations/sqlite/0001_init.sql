-- Runtara schema v1 (SQLite). Times are milliseconds since the Unix epoch.
CREATE TABLE instances (
    instance_id      TEXT PRIMARY KEY NOT NULL,
    tenant_id        TEXT NOT NULL,
    image_id         TEXT,
    status           TEXT NOT NULL CHECK (status IN
                     ('pending','running','suspended','sleeping','completed','failed','cancelled')),
    epoch            INTEGER NOT NULL DEFAULT 0,
    input            BLOB,
    output           BLOB,
    error            TEXT,
    checkpoint_id    TEXT,
    checkpoint_count INTEGER NOT NULL DEFAULT 0,
    resume_from      TEXT,
    created_at_ms    INTEGER NOT NULL,
    started_at_ms    INTEGER,
    finished_at_ms   INTEGER,
    heartbeat_at_ms  INTEGER,
    wake_at_ms       INTEGER
);
CREATE INDEX instances_by_tenant ON instances (tenant_id, created_at_ms DESC);
CREATE INDEX instances_by_status ON instances (status, wake_at_ms);

CREATE TABLE checkpoints (
    seq           INTEGER PRIMARY KEY,
    instance_id   TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    state         BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    wake_at_ms    INTEGER,
    UNIQUE (instance_id, checkpoint_id)
);

CREATE TABLE events (
    event_id      INTEGER PRIMARY KEY,
    instance_id   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    subtype       TEXT,
    payload       BLOB,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX events_by_instance ON events (instance_id, event_id);

CREATE TABLE signals (
    signal_id     INTEGER PRIMARY KEY,
    instance_id   TEXT NOT NULL,
    signal_type   TEXT NOT NULL CHECK (signal_type IN ('cancel','pause','resume')),
    created_at_ms INTEGER NOT NULL,
    acked_at_ms   INTEGER,
    acknowledged  INTEGER
);
CREATE INDEX signals_pending ON signals (instance_id) WHERE acked_at_ms IS NULL;

CREATE TABLE retry_attempts (
    instance_id   TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    error         TEXT,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (instance_id, checkpoint_id, attempt)
) WITHOUT ROWID;
