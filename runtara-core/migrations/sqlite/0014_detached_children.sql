-- Runtara schema v14 (SQLite): detached children. A detached child still tells its parent
-- when it ends, but is not cancelled with it.
ALTER TABLE instances ADD COLUMN detached INTEGER NOT NULL DEFAULT 0;
