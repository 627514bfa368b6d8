-- Runtara schema v6 (SQLite): each checkpoint may name the function that produced it
-- (its module path), so that a durable call never takes another function's result.
-- Checkpoints recorded before have none and are taken by any caller of their id.
ALTER TABLE checkpoints ADD COLUMN producer TEXT;
