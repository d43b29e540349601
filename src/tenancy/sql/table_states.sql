SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text,
       pg_catalog.format_type(a.atttypid, NULL), pg_catalog.format_type(a.atttypid, a.atttypmod),
       c.relrowsecurity, c.relforcerowsecurity,
       COALESCE((SELECT bool_or(i.indisvalid AND i.indpred IS NULL AND i.indkey[0] = a.attnum)
                   FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid), false),
       pol.oid IS NOT NULL, pg_catalog.obj_description(pol.oid, 'pg_policy'),
       COALESCE(pol.polpermissive AND pol.polcmd = '*' AND pol.polroles = '{0}'::oid[], false),
       ARRAY(SELECT p.polname::text FROM pg_catalog.pg_policy p
              WHERE p.polrelid = c.oid AND p.polname <> $2 ORDER BY 1),
       ARRAY(SELECT p.polname::text FROM pg_catalog.pg_policy p
              WHERE p.polrelid = c.oid AND p.polname <> $2 AND p.polpermissive ORDER BY 1),
       fill.oid IS NOT NULL, COALESCE(fill.tgparentid <> 0, false),
       COALESCE(fill.tgenabled <> 'D' AND fill.tgfoid = pg_catalog.to_regprocedure('landlord_tenancy.fill_tenant()'), false),
       guard.oid IS NOT NULL, COALESCE(guard.tgparentid <> 0, false),
       COALESCE(guard.tgenabled <> 'D' AND guard.tgfoid = pg_catalog.to_regprocedure('landlord_tenancy.guard_tenant()'), false)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attribute a
         ON a.attrelid = c.oid AND a.attname = $1 AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_catalog.pg_policy pol ON pol.polrelid = c.oid AND pol.polname = $2
  LEFT JOIN pg_catalog.pg_trigger fill ON fill.tgrelid = c.oid AND fill.tgname = $3
  LEFT JOIN pg_catalog.pg_trigger guard ON guard.tgrelid = c.oid AND guard.tgname = $4
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('information_schema', 'landlord_tenancy')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
   AND ($5::int8 IS NULL OR c.oid = $5::int8::oid)
 ORDER BY n.nspname, c.relname
