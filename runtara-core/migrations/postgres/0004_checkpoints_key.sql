-- Runtara schema v4 (PostgreSQL): checkpoints are keyed by UNIQUE (instance_id,
-- checkpoint_id) alone. The `seq` column stays (it orders an instance's checkpoints), but
-- its primary-key index goes: nothing looks a checkpoint up by `seq`, and every save paid
-- for inserting into it. The unique key identifies rows for logical replication.
ALTER TABLE checkpoints DROP CONSTRAINT checkpoints_pkey;
ALTER TABLE checkpoints REPLICA IDENTITY USING INDEX checkpoints_instance_id_checkpoint_id_key;
