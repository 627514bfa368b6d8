-- Runtara schema v7 (SQLite): each instance keeps the count and payload bytes of the
-- custom events it recorded, so that a quota on them is checked and raised with each
-- insert (one row read, however many events the instance has). Filled in here from the
-- events already stored.
--
-- Servers older than this schema store custom events without counting them: stop them
-- all before the first newer one starts.
ALTER TABLE instances ADD COLUMN custom_events INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN custom_event_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE instances SET
    custom_events = (SELECT COUNT(*) FROM events AS e
                     WHERE e.instance_id = instances.instance_id AND e.kind = 'custom'),
    custom_event_bytes = (SELECT COALESCE(SUM(length(e.payload)), 0) FROM events AS e
                          WHERE e.instance_id = instances.instance_id AND e.kind = 'custom')
WHERE instance_id IN (SELECT instance_id FROM events WHERE kind = 'custom');
