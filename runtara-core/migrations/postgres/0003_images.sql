-- Runtara schema v3 (PostgreSQL): registered workflow images, versioned per tenant and name.
CREATE TABLE images (
    image_id      TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    version       BIGINT NOT NULL,
    description   TEXT,
    sha256        TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (tenant_id, name, version)
);
CREATE INDEX images_by_sha256 ON images (sha256);
CREATE INDEX instances_by_image ON instances (image_id, status);
