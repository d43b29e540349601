CREATE OR REPLACE FUNCTION landlord_tenancy.current_tenant() RETURNS text
LANGUAGE plpgsql {attributes} SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $landlord$
DECLARE
    -- After a transaction that set them locally, the settings read as ''.
    tenant text := nullif(current_setting('landlord.tenant_id', true), '');
    sig text := nullif(current_setting('landlord.tenant_sig', true), '');
    secret bytea;
BEGIN
    IF tenant IS NULL THEN
{unscoped}
    END IF;
    SELECT s.key INTO secret FROM landlord_tenancy.secret s WHERE s.id = 1;
    IF secret IS NULL
       OR sig IS NULL
       OR sig <> encode(sha256(secret || sha256(convert_to(tenant, 'UTF8'))), 'hex') THEN
        RAISE EXCEPTION 'landlord tenancy: the tenant context is not signed by landlord'
            USING ERRCODE = '42501';
    END IF;
    RETURN tenant;
END
$landlord$;
COMMENT ON FUNCTION landlord_tenancy.current_tenant() IS
    'the verified tenant of the current transaction (landlord.tenant_id signed in landlord.tenant_sig); mode={mode}';
REVOKE ALL ON FUNCTION landlord_tenancy.current_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION landlord_tenancy.current_tenant() TO PUBLIC;
