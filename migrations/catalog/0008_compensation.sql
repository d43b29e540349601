-- Compensation (a kind's `on_dead`) as persisted work. `pending` is written in
-- the transaction that makes a job `dead` (or `failed` under --sync); a worker
-- runs it under the tenant's lock, retrying with backoff, and marks it `done`.
-- NULL: nothing to undo.
ALTER TABLE jobs
    ADD COLUMN compensation       text CHECK (compensation IN ('pending', 'done')),
    -- Why the last try did not finish (an error, a busy tenant); NULL once done.
    ADD COLUMN compensation_error text,
    ADD COLUMN compensated_at     timestamptz,
    -- Tries that failed so far (the backoff); a busy tenant costs none.
    ADD COLUMN compensation_tries integer NOT NULL DEFAULT 0 CHECK (compensation_tries >= 0),
    -- Not before: the backoff, or the lease of the worker running it.
    ADD COLUMN compensate_after   timestamptz,
    -- The worker whose lease `compensate_after` is, while one runs it.
    ADD COLUMN compensation_owner text;

CREATE INDEX jobs_compensation_pending ON jobs (compensate_after)
    WHERE compensation = 'pending';
