CREATE SCHEMA IF NOT EXISTS landlord_tenancy;
CREATE TABLE IF NOT EXISTS landlord_tenancy.secret (
    id int PRIMARY KEY CHECK (id = 1),
    key bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS landlord_tenancy.violations (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    role name DEFAULT current_user,
    application text,
    query text
);
CREATE TABLE IF NOT EXISTS landlord_tenancy.settings (
    id int PRIMARY KEY CHECK (id = 1),
    mode text NOT NULL
);
CREATE TABLE IF NOT EXISTS landlord_tenancy.bypasses (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    role name NOT NULL,
    actor text NOT NULL,
    channel text,
    action text NOT NULL,
    tenant text,
    reason text NOT NULL
);
COMMENT ON TABLE landlord_tenancy.bypasses IS 'superuser bypasses of the tenant isolation (for_tenant, without_tenant), written before the work';
CREATE TABLE IF NOT EXISTS landlord_tenancy.managed (
    rel regclass PRIMARY KEY,
    rls_was_enabled bool NOT NULL,
    rls_was_forced bool NOT NULL,
    since timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE landlord_tenancy.managed IS 'tables landlord protects, with their row-level security switches from before';
COMMENT ON SCHEMA landlord_tenancy IS 'landlord row-level tenancy: signing secret, violation log and the functions the policies call';
COMMENT ON TABLE landlord_tenancy.secret IS 'landlord tenancy signing secret; readable only by its owner and the definer functions';
COMMENT ON TABLE landlord_tenancy.violations IS 'queries run without a tenant context in soft mode';
