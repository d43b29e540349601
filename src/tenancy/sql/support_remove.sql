DROP FUNCTION IF EXISTS landlord_tenancy.current_tenant();
DROP FUNCTION IF EXISTS landlord_tenancy.fill_tenant();
DROP FUNCTION IF EXISTS landlord_tenancy.guard_tenant();
DROP FUNCTION IF EXISTS landlord_tenancy.record_bypass(text, text, text, text, text);
DROP TABLE IF EXISTS landlord_tenancy.secret, landlord_tenancy.settings, landlord_tenancy.managed;
