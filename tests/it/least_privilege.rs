//! Least privilege in tenant databases (issue 13, items 2, 5 and 6): what a
//! tenant role plants is never run as the server's superuser by a restore,
//! scratch and restored databases are closed to PUBLIC, tenant roles cannot
//! write `_sqlx_migrations` nor keep attributes or memberships a tenant role
//! may not have, `analyze` does not reach other tenants' tables and
//! `record_bypass()` is not PUBLIC's.

use std::time::Duration;

use serde_json::Value;
use sqlx::{Connection as _, PgConnection};

use crate::common::*;

/// Whether a role exists on the local server.
async fn role_exists(role: &str) -> bool {
    scalar_in::<i64>(
        "postgres",
        "SELECT count(*) FROM pg_roles WHERE rolname = $1",
        &[role],
    )
    .await
        == 1
}

/// Drops test roles outside this test's prefix (best effort; the harness
/// drops the roles and databases under the prefix).
async fn drop_roles(roles: &[&str]) {
    let Ok(mut c) = PgConnection::connect(&format!("{PG_SERVER}/postgres")).await else {
        return;
    };
    for r in roles {
        let _ = sqlx::raw_sql(&format!("DROP ROLE IF EXISTS \"{r}\""))
            .execute(&mut c)
            .await;
    }
    c.close().await.ok();
}

/// Connects to `db` as `role` (trust on loopback, or with `password`).
async fn connect_as(role: &str, password: Option<&str>, db: &str) -> Result<PgConnection, String> {
    let auth = match password {
        Some(p) => format!("{role}:{p}"),
        None => role.to_string(),
    };
    PgConnection::connect(&format!("postgres://{auth}@127.0.0.1:5432/{db}"))
        .await
        .map_err(|e| e.to_string())
}

/// The job a `--sync --json` command printed.
fn job_of(out: &std::process::Output) -> Value {
    last_json_line(out)
}

#[track_caller]
fn assert_succeeded(out: &std::process::Output) -> Value {
    let job = job_of(out);
    assert_eq!(job["status"], "succeeded", "{job}\nstderr: {}", stderr(out));
    job
}

/// A tenant on a PostgreSQL 13/14-style database (PUBLIC has CREATE on
/// schema public) whose role planted a function in a CHECK constraint that
/// tries to create a SUPERUSER role: the witness. Neither a restore test nor
/// a restore may run it as the superuser.
#[tokio::test(flavor = "multi_thread")]
async fn a_planted_check_function_never_runs_as_the_superuser_during_a_restore() {
    let mut env = TestEnv::new().await;
    let db = env.tenant("planted").await;
    let tenant_role = format!("{}_tenant", env.catalog_db);
    let witness = format!("{}_evil", env.catalog_db);
    exec_in(
        "postgres",
        &format!("CREATE ROLE {tenant_role} LOGIN NOSUPERUSER"),
    )
    .await;
    // What PostgreSQL 13 and 14 grant by default.
    exec_in(
        &db,
        &format!(
            "GRANT CREATE ON SCHEMA public TO PUBLIC; GRANT CONNECT ON DATABASE {db} TO {tenant_role}"
        ),
    )
    .await;
    let mut t = connect_as(&tenant_role, None, &db).await.unwrap();
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION public.evil(v int) RETURNS boolean LANGUAGE plpgsql SECURITY INVOKER AS $f$
         BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{witness}') THEN
             EXECUTE 'CREATE ROLE {witness} SUPERUSER';
           END IF;
           RETURN true;
         EXCEPTION WHEN insufficient_privilege THEN
           RETURN true;
         END $f$;
         CREATE TABLE public.planted (id int CHECK (public.evil(id)));
         INSERT INTO public.planted SELECT generate_series(1, 3);"
    ))
    .execute(&mut t)
    .await
    .unwrap();
    t.close().await.ok();
    assert!(!role_exists(&witness).await, "the tenant itself cannot");

    assert_succeeded(&env.run(&["backup", "--tenant", "planted", "--sync", "--json"]));
    let verify = env.run(&[
        "backups",
        "verify",
        "--tenant",
        "planted",
        "--restore-test",
        "--sync",
        "--json",
    ]);
    let verified = role_exists(&witness).await;
    let restore = env.run(&[
        "restore", "planted", "--latest", "--yes", "--sync", "--json",
    ]);
    let restored = role_exists(&witness).await;
    assert!(
        !verified,
        "the restore test ran the tenant's function as the superuser: {}",
        stderr(&verify)
    );
    assert!(
        !restored,
        "the restore ran the tenant's function as the superuser: {}",
        stderr(&restore)
    );
    // Both loaded as a role that may not create roles: the function's
    // attempt failed and was caught, so they succeeded.
    assert_succeeded(&verify);
    assert_succeeded(&restore);
    let rows: i64 = scalar_in(&db, "SELECT count(*) FROM public.planted", &[]).await;
    assert_eq!(rows, 3);
    // The restored database is confined again: PUBLIC has no CREATE on
    // public, the loader role is gone and owns nothing.
    let public_create: bool = scalar_in(
        &db,
        "SELECT has_schema_privilege($1, 'public', 'CREATE')",
        &[&tenant_role],
    )
    .await;
    assert!(!public_create);
    let loaders: i64 = scalar_in(
        "postgres",
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'landlord_loader_%' \
         AND rolname IN (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1)",
        &[&db],
    )
    .await;
    assert_eq!(loaders, 0, "the live database is not the loader's");
}

/// `tenants register` takes CREATE on schema public from PUBLIC and writes
/// on `_sqlx_migrations` from every role but the owner.
#[tokio::test(flavor = "multi_thread")]
async fn register_confines_an_adopted_database() {
    let env = TestEnv::new().await;
    let db = format!("{}_adopted", env.catalog_db);
    let app = format!("{}_app", env.catalog_db);
    exec_in("postgres", &format!("CREATE DATABASE {db}")).await;
    exec_in("postgres", &format!("CREATE ROLE {app} LOGIN")).await;
    exec_in(
        &db,
        &format!(
            "GRANT CREATE ON SCHEMA public TO PUBLIC;
             CREATE TABLE public._sqlx_migrations (version bigint PRIMARY KEY, success bool NOT NULL DEFAULT true);
             CREATE TABLE public.users (id int);
             GRANT ALL ON ALL TABLES IN SCHEMA public TO {app};
             GRANT INSERT ON public._sqlx_migrations TO PUBLIC;"
        ),
    )
    .await;
    landlord::tenants::register(
        &env.catalog,
        &library_settings(),
        &landlord::tenants::Registration {
            slug: "adopted".into(),
            name: "Adopted".into(),
            plan: "pro".into(),
            server: "default".into(),
            database: db.clone(),
        },
        "test",
    )
    .await
    .unwrap();
    let privileges: (bool, bool, bool, bool, bool) = {
        let mut c = PgConnection::connect(&format!("{PG_SERVER}/{db}"))
            .await
            .unwrap();
        let row = sqlx::query_as(
            "SELECT has_schema_privilege($1, 'public', 'CREATE'), \
                    has_table_privilege($1, 'public._sqlx_migrations', 'INSERT'), \
                    has_table_privilege($1, 'public._sqlx_migrations', 'UPDATE'), \
                    has_table_privilege($1, 'public._sqlx_migrations', 'SELECT'), \
                    has_table_privilege($1, 'public.users', 'INSERT')",
        )
        .bind(&app)
        .fetch_one(&mut c)
        .await
        .unwrap();
        c.close().await.ok();
        row
    };
    exec_in("postgres", &format!("DROP DATABASE {db} WITH (FORCE)")).await;
    assert_eq!(
        privileges,
        (false, false, false, true, true),
        "(CREATE on public, INSERT/UPDATE/SELECT on _sqlx_migrations, INSERT on users)"
    );
}

/// Creates a tenant through the lifecycle (a worker must run) and returns
/// its role, password and database.
fn provisioned(env: &TestEnv, slug: &str) -> (String, String, String) {
    let out = env.ok(&[
        "tenants",
        "create",
        slug,
        "--name",
        "Least Privilege",
        "--plan",
        "pro",
        "--owner",
        &format!("lp-{}@example.test", env.id),
        "--wait",
    ]);
    assert!(out.contains("is active"), "{out}");
    let creds = env.ok_json(&["tenants", "credentials", slug, "--json"]);
    (
        creds["role"].as_str().unwrap().to_string(),
        creds["password"].as_str().unwrap().to_string(),
        creds["database"].as_str().unwrap().to_string(),
    )
}

/// A provisioned tenant's role reads `_sqlx_migrations` but cannot write it.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_role_cannot_write_the_migrations_table() {
    let mut env = TestEnv::new().await;
    env.spawn_worker(&[], &[]);
    let slug = format!("mig-{}", &env.id[..8]);
    let (role, password, db) = provisioned(&env, &slug);
    let mut c = connect_as(&role, Some(&password), &db).await.unwrap();
    let version: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(version, 1);
    for sql in [
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'forged', true, '\\x00', 0)",
        "UPDATE _sqlx_migrations SET success = false",
        "DELETE FROM _sqlx_migrations",
        "TRUNCATE _sqlx_migrations",
    ] {
        let err = sqlx::raw_sql(sql).execute(&mut c).await.err();
        let err = err.unwrap_or_else(|| panic!("the tenant role could run {sql}"));
        assert!(
            err.to_string().contains("permission denied"),
            "{sql}: {err}"
        );
    }
    // Its own tables it still writes.
    sqlx::raw_sql("INSERT INTO users (email) VALUES ('a@example.com')")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.ok();
    env.ok(&[
        "tenants",
        "delete",
        &slug,
        "--no-final-backup",
        "--now",
        "--wait",
    ]);
}

/// A role of the tenant's name that existed before provisioning loses what
/// no tenant role may have: landlord strips it (documented in the README).
#[tokio::test(flavor = "multi_thread")]
async fn a_pre_existing_tenant_role_is_stripped_on_adoption() {
    let mut env = TestEnv::new().await;
    let slug = format!("pre-{}", &env.id[..8]);
    let role = format!("t_{}_app", slug.replace('-', "_"));
    let group = format!("{}_group", env.catalog_db);
    exec_in(
        "postgres",
        &format!(
            "CREATE ROLE {group} NOLOGIN;
             CREATE ROLE {role} LOGIN SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS;
             GRANT {group} TO {role}; GRANT pg_read_all_data TO {role};"
        ),
    )
    .await;
    env.spawn_worker(&[], &[]);
    provisioned(&env, &slug);
    let flags: (bool, bool, bool, bool, bool, i64) = {
        let mut c = PgConnection::connect(&format!("{PG_SERVER}/postgres"))
            .await
            .unwrap();
        let row = sqlx::query_as(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, \
                    (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) \
               FROM pg_roles r WHERE rolname = $1",
        )
        .bind(&role)
        .fetch_one(&mut c)
        .await
        .unwrap();
        c.close().await.ok();
        row
    };
    env.ok(&[
        "tenants",
        "delete",
        &slug,
        "--no-final-backup",
        "--now",
        "--wait",
    ]);
    drop_roles(&[&role]).await;
    assert_eq!(
        flags,
        (false, false, false, false, false, 0),
        "(superuser, createdb, createrole, replication, bypassrls, memberships)"
    );
}

/// The scratch database of a restore test is closed to PUBLIC while it
/// holds the tenant's data; after a restore, an adopted tenant's live
/// database is closed to PUBLIC too, and roles it granted by name keep
/// their access.
#[tokio::test(flavor = "multi_thread")]
async fn scratch_and_restored_databases_are_closed_to_public() {
    let mut env = TestEnv::new().await;
    let db = env.tenant("closed").await;
    let other = format!("{}_other", env.catalog_db);
    let friend = format!("{}_friend", env.catalog_db);
    exec_in(
        "postgres",
        &format!(
            "CREATE ROLE {other} LOGIN; CREATE ROLE {friend} LOGIN; \
             GRANT CONNECT ON DATABASE {db} TO {friend}"
        ),
    )
    .await;
    exec_in(&db, "INSERT INTO users (email) VALUES ('x@example.com')").await;
    assert_succeeded(&env.run(&["backup", "--tenant", "closed", "--sync", "--json"]));

    let mut verify = env
        .command(&[
            "backups",
            "verify",
            "--tenant",
            "closed",
            "--restore-test",
            "--sync",
            "--json",
        ])
        .env("LANDLORD_FAILPOINTS", "verify.scratch_loaded=6000")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pattern = format!("{db}_vfy_%");
    let scratch: String = poll(secs(30), ms(100), || {
        let pattern = pattern.clone();
        async move {
            let found: Vec<String> = scalars_in(
                "postgres",
                "SELECT datname::text FROM pg_database WHERE datname LIKE $1",
                &[&pattern],
            )
            .await;
            found
                .into_iter()
                .next()
                .ok_or("no scratch database yet".to_string())
        }
    })
    .await;
    // Whenever it exists, from its creation on, another role cannot enter.
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let mut tries = 0;
    while std::time::Instant::now() < deadline {
        match connect_as(&other, None, &scratch).await {
            Ok(c) => {
                c.close().await.ok();
                let _ = verify.kill();
                let _ = verify.wait();
                panic!("role {other} connected to the scratch database {scratch}");
            }
            Err(e) if e.contains("does not exist") => break,
            Err(e) => {
                assert!(e.contains("permission denied"), "{e}");
                tries += 1;
            }
        }
        tokio::time::sleep(ms(200)).await;
    }
    assert!(tries > 0, "the scratch database was never tried");
    let out = verify.wait_with_output().unwrap();
    assert_succeeded(&out);

    assert_succeeded(&env.run(&["restore", "closed", "--latest", "--yes", "--sync", "--json"]));
    let access: (bool, bool) = {
        let mut c = PgConnection::connect(&format!("{PG_SERVER}/postgres"))
            .await
            .unwrap();
        let row = sqlx::query_as(
            "SELECT has_database_privilege($1, $3, 'CONNECT'), has_database_privilege($2, $3, 'CONNECT')",
        )
        .bind(&other)
        .bind(&friend)
        .bind(&db)
        .fetch_one(&mut c)
        .await
        .unwrap();
        c.close().await.ok();
        row
    };
    assert_eq!(
        access,
        (false, true),
        "(PUBLIC's other role, the named friend)"
    );
}

/// `analyze` of a shared tenant is refused: ANALYZE would read every
/// tenant's rows in the shared database.
#[tokio::test(flavor = "multi_thread")]
async fn analyze_of_a_shared_tenant_is_refused() {
    let mut env = TestEnv::new().await;
    let db = format!("{}_shared", env.catalog_db);
    exec_in("postgres", &format!("CREATE DATABASE {db}")).await;
    exec_in(
        &db,
        "CREATE TABLE customers (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL, name text);
         INSERT INTO customers (tenant_id, name) SELECT g % 5, 'c' FROM generate_series(1, 100) g;",
    )
    .await;
    env.set_env(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_CONTEXT_SECRET", SECRET),
    ]);
    env.ok(&["tenancy", "apply", "--database", &db]);
    let slug = format!("sh-{}", &env.id[..8]);
    env.ok(&[
        "tenants",
        "create",
        &slug,
        "--name",
        "Shared",
        "--plan",
        "enterprise",
        "--owner",
        &format!("sh-{}@example.test", env.id),
        "--shared",
        &db,
        "--sync",
    ]);
    let before: i64 = scalar_in(
        &db,
        "SELECT coalesce(analyze_count + autoanalyze_count, 0) FROM pg_stat_user_tables WHERE relname = 'customers'",
        &[],
    )
    .await;
    let out = env.run(&[
        "jobs", "enqueue", "analyze", "--tenant", &slug, "--sync", "--json",
    ]);
    let job = job_of(&out);
    let after: i64 = scalar_in(
        &db,
        "SELECT coalesce(analyze_count + autoanalyze_count, 0) FROM pg_stat_user_tables WHERE relname = 'customers'",
        &[],
    )
    .await;
    exec_in("postgres", &format!("DROP DATABASE {db} WITH (FORCE)")).await;
    assert_ne!(job["status"], "succeeded", "{job}");
    let err = job["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("shares database"), "{err}");
    assert_eq!(after, before, "the shared tables were not analyzed");
}

const SECRET: &str = "4c616e646c6f72642074656e616e637920746573742073656372657420212121";

/// `record_bypass()` writes the bypass audit: only the roles of the
/// protected tables may call it, not every role that can connect.
#[tokio::test(flavor = "multi_thread")]
async fn record_bypass_is_not_executable_by_public() {
    let mut env = TestEnv::new().await;
    let db = format!("{}_rb", env.catalog_db);
    let app = format!("{}_app", env.catalog_db);
    let stranger = format!("{}_stranger", env.catalog_db);
    exec_in("postgres", &format!("CREATE DATABASE {db}")).await;
    exec_in(
        "postgres",
        &format!("CREATE ROLE {app} LOGIN; CREATE ROLE {stranger} LOGIN"),
    )
    .await;
    exec_in(
        &db,
        &format!(
            "CREATE TABLE customers (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL, name text);
             GRANT SELECT, INSERT ON customers TO {app};"
        ),
    )
    .await;
    env.set_env(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_CONTEXT_SECRET", SECRET),
    ]);
    env.ok(&["tenancy", "apply", "--database", &db]);
    let call = "SELECT landlord_tenancy.record_bypass('ops@example.com', 'admin', 'for_tenant', '1', 'forged')";
    let as_stranger = {
        let mut c = connect_as(&stranger, None, &db).await.unwrap();
        let r = sqlx::raw_sql(call).execute(&mut c).await.map(|_| ());
        c.close().await.ok();
        r
    };
    let as_app = {
        let mut c = connect_as(&app, None, &db).await.unwrap();
        let r = sqlx::raw_sql(call).execute(&mut c).await.map(|_| ());
        c.close().await.ok();
        r
    };
    let audited: i64 = scalar_in(&db, "SELECT count(*) FROM landlord_tenancy.bypasses", &[]).await;
    exec_in("postgres", &format!("DROP DATABASE {db} WITH (FORCE)")).await;
    let err = as_stranger.expect_err("a stranger wrote the bypass audit");
    assert!(err.to_string().contains("permission denied"), "{err}");
    as_app.expect("the application role records its bypasses");
    assert_eq!(audited, 1);
}
