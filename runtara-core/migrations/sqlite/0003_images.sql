-- Runtara schema v3 (SQLite): registered workflow images, versioned per tenant and name.
CREATE TABLE images (
    image_id      TEXT PRIMARY KEY NOT NULL,
    tenant_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    description   TEXT,
    sha256        TEXT NOT NULL,
    size_bytes    INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (tenant_id, name, version)
);
CREATE INDEX images_by_sha256 ON images (sha256);
CREATE INDEX instances_by_image ON instances (image_id, status);
