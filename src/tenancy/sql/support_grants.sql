GRANT USAGE ON SCHEMA landlord_tenancy TO PUBLIC;
GRANT SELECT ON landlord_tenancy.settings TO PUBLIC;
