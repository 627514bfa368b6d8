-- Runtara schema v13 (PostgreSQL): child instances. A child names its parent; when it
-- finishes, its parent's inbox gets the event `child:<child id>` (payload: the child's
-- final status as a JSON string), once, for the parent's `wait_for_child`; the parent's history records
-- it as received.
ALTER TABLE instances ADD COLUMN parent_id TEXT;
CREATE INDEX instances_by_parent ON instances (parent_id) WHERE parent_id IS NOT NULL;

CREATE FUNCTION runtara_child_ended() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    now_ms BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
BEGIN
    INSERT INTO inbox (instance_id, name, payload, idempotency_key, created_at_ms)
    VALUES (NEW.parent_id, 'child:' || NEW.instance_id, convert_to('"' || NEW.status || '"', 'UTF8'),
            'child-ended:' || NEW.instance_id, now_ms)
    ON CONFLICT (instance_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING;
    INSERT INTO events (instance_id, kind, subtype, payload, created_at_ms)
    SELECT NEW.parent_id, 'received', 'child:' || NEW.instance_id,
           convert_to('"' || NEW.status || '"', 'UTF8'), now_ms
    WHERE EXISTS (SELECT 1 FROM instances WHERE instance_id = NEW.parent_id);
    RETURN NEW;
END
$$;

CREATE TRIGGER child_ended AFTER UPDATE OF status ON instances FOR EACH ROW
WHEN (NEW.parent_id IS NOT NULL
      AND NEW.status IN ('completed', 'failed', 'cancelled')
      AND OLD.status NOT IN ('completed', 'failed', 'cancelled'))
EXECUTE FUNCTION runtara_child_ended();
