-- Tenant roles live on the same servers as the catalog, and PostgreSQL lets
-- PUBLIC connect to a new database by default. The catalog holds every
-- tenant's credentials: only its owner (and superusers) may connect.
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$$;
