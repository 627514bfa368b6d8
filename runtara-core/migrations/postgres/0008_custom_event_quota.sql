-- Runtara schema v8 (PostgreSQL): each instance keeps the count and payload bytes of the
-- custom events it recorded, so that a quota on them is checked and raised with each
-- insert, under the row's lock (one row read, however many events the instance has).
-- Filled in here from the events already stored.
--
-- Servers older than this schema store custom events without counting them: stop them
-- all before the first newer one starts.
ALTER TABLE instances
    ADD COLUMN custom_events BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN custom_event_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE instances AS i SET custom_events = e.events, custom_event_bytes = e.bytes
FROM (SELECT instance_id, COUNT(*) AS events,
             COALESCE(SUM(octet_length(payload)), 0)::BIGINT AS bytes
      FROM events WHERE kind = 'custom' GROUP BY instance_id) AS e
WHERE i.instance_id = e.instance_id;
