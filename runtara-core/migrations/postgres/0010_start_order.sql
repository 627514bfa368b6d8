-- Runtara schema v10 (PostgreSQL): the order instances were created in, so that a server
-- restarted with starts waiting for a slot queues them again first come, first served
-- (two starts in one millisecond included). SQLite orders them by rowid.
ALTER TABLE instances ADD COLUMN start_seq BIGSERIAL;
