-- The landlord catalog: the source of truth for tenants, plans, jobs, the
-- events outbox and the audit log. RabbitMQ only ever carries copies.

CREATE TABLE plans (
    name                   text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
    max_tenants_per_owner  integer CHECK (max_tenants_per_owner IS NULL OR max_tenants_per_owner >= 0),
    description            text NOT NULL DEFAULT '',
    created_at             timestamptz NOT NULL DEFAULT now()
);

-- NULL max_tenants_per_owner means unlimited.
INSERT INTO plans (name, max_tenants_per_owner, description) VALUES
    ('free', 1, 'One tenant per owner'),
    ('pro', 5, 'Up to five tenants per owner'),
    ('business', 25, 'Up to twenty-five tenants per owner'),
    ('enterprise', NULL, 'Unlimited tenants');

CREATE TABLE owners (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 320),
    name        text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenants (
    id              bigserial PRIMARY KEY,
    slug            text NOT NULL UNIQUE CHECK (slug ~ '^[a-z][a-z0-9-]{1,38}[a-z0-9]$'),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    owner_id        bigint REFERENCES owners (id),
    plan            text NOT NULL REFERENCES plans (name),
    status          text NOT NULL CHECK (status IN
                        ('provisioning', 'active', 'inactive', 'suspended', 'failed', 'deleting', 'deleted')),
    status_reason   text CHECK (length(status_reason) <= 1000),
    isolation       text NOT NULL DEFAULT 'database' CHECK (isolation IN ('database', 'shared')),
    db_server       text NOT NULL CHECK (db_server ~ '^[a-z][a-z0-9_-]{0,62}$'),
    db_name         text NOT NULL CHECK (db_name ~ '^[a-z_][a-z0-9_]{0,62}$'),
    settings        jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
    schema_version  bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (db_server, db_name)
);

CREATE TABLE jobs (
    id                uuid PRIMARY KEY,
    kind              text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,62}$'),
    queue             text NOT NULL CHECK (queue IN ('provision', 'backup', 'maintenance', 'mail')),
    tenant_id         bigint REFERENCES tenants (id),
    args              jsonb NOT NULL DEFAULT '{}'::jsonb,
    status            text NOT NULL CHECK (status IN
                          ('queued', 'running', 'retrying', 'succeeded', 'failed', 'dead', 'cancelled')),
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts      integer NOT NULL CHECK (max_attempts >= 1),
    dedupe_key        text CHECK (length(dedupe_key) <= 500),
    lease_owner       text,
    lease_expires_at  timestamptz,
    run_at            timestamptz NOT NULL DEFAULT now(),
    last_error        text,
    result            jsonb,
    progress          jsonb,
    origin            text NOT NULL DEFAULT 'catalog' CHECK (origin IN ('catalog', 'adopted', 'sync')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    last_published_at timestamptz
);

-- At most one live job per dedupe key: a duplicate enqueue returns the live one.
CREATE UNIQUE INDEX jobs_dedupe_live ON jobs (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running', 'retrying');
CREATE INDEX jobs_status_run_at ON jobs (status, run_at);
CREATE INDEX jobs_running_lease ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_tenant ON jobs (tenant_id, created_at DESC);

-- Every message that must reach RabbitMQ is written here in the same
-- transaction as the state it announces; the relay publishes it with
-- publisher confirms and stamps published_at.
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    exchange      text NOT NULL,
    routing_key   text NOT NULL,
    payload       jsonb NOT NULL,
    message_id    text NOT NULL,
    job_id        uuid REFERENCES jobs (id) ON DELETE CASCADE,
    available_at  timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    publish_attempts integer NOT NULL DEFAULT 0,
    last_error    text
);
CREATE INDEX outbox_unpublished ON outbox (available_at, id) WHERE published_at IS NULL;

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    tenant_id   bigint REFERENCES tenants (id),
    job_id      uuid,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, at DESC);
