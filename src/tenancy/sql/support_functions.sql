-- The audit record the scoped executor (context.rs) writes before a
-- superuser bypass. It can only append (capped) rows; not PUBLIC's: `apply`
-- grants EXECUTE to the roles that hold privileges on a protected table
-- (the application's roles), see support::grant_recorders.
CREATE OR REPLACE FUNCTION landlord_tenancy.record_bypass(
    actor text, channel text, action text, tenant text, why text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $landlord$
BEGIN
    IF coalesce(actor, '') = '' OR coalesce(action, '') = '' OR coalesce(why, '') = '' THEN
        RAISE EXCEPTION 'landlord tenancy: a bypass needs an actor, an action and a reason'
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO landlord_tenancy.bypasses (role, actor, channel, action, tenant, reason)
    VALUES (CASE WHEN current_setting('role') = 'none' THEN session_user::text
                 ELSE current_setting('role') END,
            left(actor, 200), left(channel, 200), left(action, 100), left(tenant, 200),
            left(why, 2000));
END
$landlord$;
REVOKE ALL ON FUNCTION landlord_tenancy.record_bypass(text, text, text, text, text) FROM PUBLIC;
CREATE OR REPLACE FUNCTION landlord_tenancy.fill_tenant() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $landlord$
BEGIN
    IF TG_NARGS <> 1 THEN
        RAISE EXCEPTION 'landlord tenancy: fill_tenant() takes the tenant column as its one argument';
    END IF;
    IF to_jsonb(NEW) ->> TG_ARGV[0] IS NULL THEN
        NEW := jsonb_populate_record(NEW, jsonb_build_object(TG_ARGV[0], landlord_tenancy.current_tenant()));
    END IF;
    RETURN NEW;
END
$landlord$;
CREATE OR REPLACE FUNCTION landlord_tenancy.guard_tenant() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $landlord$
BEGIN
    IF TG_NARGS <> 1 THEN
        RAISE EXCEPTION 'landlord tenancy: guard_tenant() takes the tenant column as its one argument';
    END IF;
    IF (to_jsonb(NEW) -> TG_ARGV[0]) IS DISTINCT FROM (to_jsonb(OLD) -> TG_ARGV[0]) THEN
        RAISE EXCEPTION 'landlord tenancy: a row''s tenant cannot be changed'
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$landlord$;
