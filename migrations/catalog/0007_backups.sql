-- Backups and restores. A backup row is `running` while its object is being
-- written, `complete` only after the object and then its manifest exist,
-- `failed` if an attempt gave up (its upload aborted), `deleted` once
-- retention or an operator removed the objects. Only `complete` rows are
-- ever listed or restored.
CREATE TABLE backups (
    id              uuid PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants (id),
    job_id          uuid,
    status          text NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'complete', 'failed', 'deleted')),
    store           text NOT NULL,
    object_key      text NOT NULL,
    manifest_key    text,
    upload_id       text,
    format          text NOT NULL CHECK (format IN ('custom', 'plain', 'shared')),
    codec           text NOT NULL CHECK (codec IN ('zstd', 'gzip')),
    level           integer,
    encrypted       boolean NOT NULL DEFAULT false,
    raw_bytes       bigint,
    stored_bytes    bigint,
    sha256          text,
    schema_version  bigint,
    server_version  text,
    pg_dump_version text,
    held            boolean NOT NULL DEFAULT false,
    held_reason     text,
    imported        boolean NOT NULL DEFAULT false,
    error           text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    duration_ms     bigint,
    deleted_at      timestamptz
);
CREATE INDEX backups_tenant_idx ON backups (tenant_id, completed_at DESC) WHERE status = 'complete';
CREATE INDEX backups_job_idx ON backups (job_id);
CREATE UNIQUE INDEX backups_object_key_idx ON backups (store, object_key) WHERE status <> 'deleted';

CREATE TABLE restores (
    id              uuid PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants (id),
    backup_id       uuid REFERENCES backups (id),
    job_id          uuid,
    status          text NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'complete', 'failed')),
    scratch_db      text NOT NULL,
    pre_restore_db  text,
    keep_until      timestamptz,
    dropped_at      timestamptz,
    error           text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);
CREATE INDEX restores_tenant_idx ON restores (tenant_id, started_at DESC);

-- The backup a deletion waits for before the database is dropped.
ALTER TABLE tenants ADD COLUMN final_backup_job uuid;

-- A shared tenant's value in the tenant column of a shared database
-- (default: its id). Unique per database so two tenants never share rows.
ALTER TABLE tenants ADD COLUMN tenant_key text;
-- Many shared tenants live in one database; a database of its own stays one per tenant.
ALTER TABLE tenants DROP CONSTRAINT tenants_db_server_db_name_key;
CREATE UNIQUE INDEX tenants_own_database ON tenants (db_server, db_name) WHERE isolation = 'database';
CREATE UNIQUE INDEX tenants_shared_key ON tenants (db_server, db_name, (coalesce(tenant_key, id::text)))
    WHERE isolation = 'shared' AND status <> 'deleted';
