-- Runtara schema v5 (SQLite): a durable step's final failure (retries exhausted, or an
-- error its type says is not retryable), recorded once under its checkpoint id so that a
-- rerun returns the failure instead of running the step again. An operator clears it to
-- let the step run again.
CREATE TABLE step_failures (
    instance_id   TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    error         TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (instance_id, checkpoint_id)
);
