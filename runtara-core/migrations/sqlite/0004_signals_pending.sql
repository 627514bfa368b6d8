-- Runtara schema v4 (SQLite): the number of unacknowledged cancel and pause signals, kept
-- on the instance row by triggers. A checkpoint reads it from the UPDATE it makes anyway
-- (RETURNING) and looks the signal up only when there is one: a read of its own costs a
-- fifth of a commit on the hot path.
ALTER TABLE instances ADD COLUMN signals_pending INTEGER NOT NULL DEFAULT 0;

UPDATE instances SET signals_pending = (
    SELECT count(*) FROM signals AS s
    WHERE s.instance_id = instances.instance_id
      AND s.acked_at_ms IS NULL AND s.signal_type IN ('cancel', 'pause'));

CREATE TRIGGER signals_pending_on_insert AFTER INSERT ON signals
WHEN NEW.acked_at_ms IS NULL AND NEW.signal_type IN ('cancel', 'pause')
BEGIN
    UPDATE instances SET signals_pending = signals_pending + 1
    WHERE instance_id = NEW.instance_id;
END;

CREATE TRIGGER signals_pending_on_ack AFTER UPDATE OF acked_at_ms ON signals
WHEN OLD.acked_at_ms IS NULL AND NEW.acked_at_ms IS NOT NULL
     AND OLD.signal_type IN ('cancel', 'pause')
BEGIN
    UPDATE instances SET signals_pending = signals_pending - 1
    WHERE instance_id = OLD.instance_id;
END;

CREATE TRIGGER signals_pending_on_delete AFTER DELETE ON signals
WHEN OLD.acked_at_ms IS NULL AND OLD.signal_type IN ('cancel', 'pause')
BEGIN
    UPDATE instances SET signals_pending = signals_pending - 1
    WHERE instance_id = OLD.instance_id;
END;
