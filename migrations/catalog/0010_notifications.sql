-- Operator notifications (`crate::notify`). One row per event and subject (a tenant's slug,
-- or '' for the fleet): when the last notice went out and how many were held back since,
-- so at most one notice per LANDLORD_NOTIFY_EVERY_SECONDS goes out, whatever the number of
-- workers.
CREATE TABLE notifications (
    event         text NOT NULL CHECK (event IN
                      ('backup_failed', 'backups_stale', 'job_dead', 'restore_drill_failed')),
    subject       text NOT NULL,
    last_sent_at  timestamptz NOT NULL,
    held_back     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (event, subject)
);

-- Dead jobs already considered for a notice (sent or held back), so each is considered once.
CREATE TABLE notified_jobs (
    job_id       uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    notified_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_dead_finished ON jobs (finished_at) WHERE status = 'dead';
