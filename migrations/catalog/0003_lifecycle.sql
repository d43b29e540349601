-- Tenant lifecycle: provisioning progress, credentials, templates, mail receipts.

-- Where a provisioning saga stands; each step is idempotent and a retry resumes here.
ALTER TABLE tenants
    ADD COLUMN provision_step text NOT NULL DEFAULT 'done'
        CHECK (provision_step IN ('pending', 'database', 'migrated', 'role', 'done')),
    ADD COLUMN db_role text CHECK (db_role ~ '^[a-z_][a-z0-9_]{0,62}$'),
    ADD COLUMN provisioned_at timestamptz;

-- Credentials of each tenant's own login role, for the application to fetch.
-- Never logged; printed only by `tenants credentials`.
CREATE TABLE tenant_credentials (
    tenant_id   bigint PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    role_name   text NOT NULL,
    password    text NOT NULL,
    rotated_at  timestamptz NOT NULL DEFAULT now()
);

-- Template databases, one per server and tenant schema version.
CREATE TABLE tenant_templates (
    db_server       text NOT NULL,
    schema_version  bigint NOT NULL,
    db_name         text NOT NULL,
    built_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (db_server, schema_version)
);

-- Mail already handed to the SMTP server, so a retried job never sends twice.
CREATE TABLE mail_receipts (
    dedupe_key   text PRIMARY KEY,
    tenant_id    bigint REFERENCES tenants (id) ON DELETE CASCADE,
    recipient    text NOT NULL,
    message_id   text NOT NULL,
    sent_at      timestamptz NOT NULL DEFAULT now()
);
