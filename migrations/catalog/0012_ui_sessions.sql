-- Sessions of the operator console (`/ui`, `src/ui/session.rs`), in the catalog so
-- every API replica knows them. The cookie carries a random session id; only its
-- SHA-256 is stored, so a read of this table logs nobody in. `scope` is the API
-- token scope the session was opened with (`admin` or `tenant:SLUG`); every form
-- of the session carries `csrf_token`.
CREATE TABLE ui_sessions (
    id_sha256   bytea PRIMARY KEY CHECK (length(id_sha256) = 32),
    scope       text NOT NULL CHECK (scope = 'admin' OR scope ~ '^tenant:[a-z][a-z0-9-]{1,38}[a-z0-9]$'),
    actor       text NOT NULL CHECK (length(actor) <= 200),
    csrf_token  text NOT NULL CHECK (length(csrf_token) BETWEEN 32 AND 128),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires_at);

-- The console's overview counts finished jobs per minute over the last hour.
CREATE INDEX jobs_finished_at ON jobs (finished_at) WHERE finished_at IS NOT NULL;
-- Its backlog per job family: due jobs in run order (counts are capped, the oldest is the first entry).
CREATE INDEX jobs_waiting_queue ON jobs (queue, run_at) WHERE status IN ('queued', 'retrying');
CREATE INDEX jobs_running_queue ON jobs (queue) WHERE status = 'running';
-- Its backup freshness: the complete backups of the last hours, whatever the tenant.
CREATE INDEX backups_completed_at ON backups (completed_at) WHERE status = 'complete';
