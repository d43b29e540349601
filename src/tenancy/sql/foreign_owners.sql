SELECT o.kind, o.name, r.rolname::text
  FROM (SELECT 'schema' AS kind, n.nspname::text AS name, n.nspowner AS owner
          FROM pg_catalog.pg_namespace n WHERE n.nspname = 'landlord_tenancy'
        UNION ALL
        SELECT 'relation', c.relname::text, c.relowner
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'landlord_tenancy'
        UNION ALL
        SELECT 'function', p.proname::text, p.proowner
          FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'landlord_tenancy'
        UNION ALL
        SELECT 'type', t.typname::text, t.typowner
          FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = 'landlord_tenancy') o
  JOIN pg_catalog.pg_roles r ON r.oid = o.owner
 WHERE NOT (r.rolsuper OR r.rolname = current_user)
 ORDER BY 1, 2
