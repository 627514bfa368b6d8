-- Runtara schema v5 (PostgreSQL): a checkpoint no longer writes its instance's row. That
-- write (the last checkpoint's id, the count, the heartbeat) cost a third of every
-- checkpoint statement; reads now derive the three from the instance's checkpoints, the
-- last one found by this index (whose upkeep measured nothing per insert).
--
-- Servers older than this schema read the dropped columns: stop them all before the
-- first newer one starts (the index is built while checkpoint writes wait).
CREATE INDEX checkpoints_by_seq ON checkpoints (instance_id, seq);
ALTER TABLE instances DROP COLUMN checkpoint_id, DROP COLUMN checkpoint_count;
