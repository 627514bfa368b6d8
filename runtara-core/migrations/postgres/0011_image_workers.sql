-- Runtara schema v11 (PostgreSQL): an image may run its instances in worker processes,
-- each hosting many of them; these say how many workers at least and at most, and how
-- many instances per worker. NULL: one process per instance.
ALTER TABLE images
    ADD COLUMN worker_min INTEGER,
    ADD COLUMN worker_max INTEGER,
    ADD COLUMN worker_instances INTEGER;
