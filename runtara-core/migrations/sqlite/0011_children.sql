-- Runtara schema v11 (SQLite): child instances. A child names its parent; when it
-- finishes, its parent's inbox gets the event `child:<child id>` (payload: the child's
-- final status as a JSON string), once, for the parent's `wait_for_child`; the parent's history records
-- it as received.
ALTER TABLE instances ADD COLUMN parent_id TEXT;
CREATE INDEX instances_by_parent ON instances (parent_id) WHERE parent_id IS NOT NULL;

CREATE TRIGGER child_ended AFTER UPDATE OF status ON instances
WHEN NEW.parent_id IS NOT NULL
     AND NEW.status IN ('completed', 'failed', 'cancelled')
     AND OLD.status NOT IN ('completed', 'failed', 'cancelled')
BEGIN
    INSERT OR IGNORE INTO inbox (instance_id, name, payload, idempotency_key, created_at_ms)
    VALUES (NEW.parent_id, 'child:' || NEW.instance_id, CAST('"' || NEW.status || '"' AS BLOB),
            'child-ended:' || NEW.instance_id,
            CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
    INSERT INTO events (instance_id, kind, subtype, payload, created_at_ms)
    SELECT NEW.parent_id, 'received', 'child:' || NEW.instance_id, CAST('"' || NEW.status || '"' AS BLOB),
           CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    WHERE EXISTS (SELECT 1 FROM instances WHERE instance_id = NEW.parent_id);
END;
