-- Runtara schema v16 (PostgreSQL): detached children. A detached child still tells its
-- parent when it ends, but is not cancelled with it.
ALTER TABLE instances ADD COLUMN detached BOOLEAN NOT NULL DEFAULT FALSE;
