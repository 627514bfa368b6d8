-- Runtara schema v15 (PostgreSQL): schedules of an in-process runtime. `runtime` names the
-- runtime that fires the schedule (its `image_id` then holds a workflow name); NULL for a
-- server's schedule, which starts an image.
ALTER TABLE schedules ADD COLUMN runtime TEXT;
