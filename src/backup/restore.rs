//! Restoring a backup: stream it (checksum verified on the way, decrypted,
//! decompressed) into a new scratch database, check that, then swap it with
//! the live database, keeping the old one as `…_pre_…` for rollback. Until
//! the swap nothing touches the live database, and every failure before it
//! drops the scratch database; a failed swap puts the live one back.
//! Also the scratch-database check shared with `verify --restore-test`.
//!
//! # A restore, step by step
//!
//! 1. **Enqueue**: `landlord restore` resolves the backup among the tenant's
//!    complete ones (or imports a seed-format file found in the store,
//!    `backup::import`), asks for confirmation and enqueues `restore` with the
//!    backup id; the API accepts `restore` from admin tokens only. The job
//!    runs under the tenant lock.
//! 2. **Refuse** (fatal): a deleted tenant, one never fully provisioned, a
//!    backup that is not a complete backup of this tenant. Shared tenants
//!    take the row path (`backup::shared`: the tenant's rows replaced in one
//!    transaction).
//! 3. **Recognise its own work** (`completed_earlier`, called by the
//!    handler first): a `complete` restore of this job, or a swap an earlier
//!    attempt finished without recording it (live and pre-restore databases
//!    there, scratch gone: recorded now), is the job's result; nothing is
//!    restored again.
//!    **Clean up earlier attempts** (`clean_leftovers`): for each `running`
//!    restore of this job, put the live database back as it was before that
//!    attempt (whichever rename it was killed between), drop the scratch
//!    database, mark the row `failed`. `Restore::on_dead` runs the same,
//!    then drops the job's scratch database: a restore that ends dead did
//!    not happen, even if its last attempt finished a swap it never
//!    recorded.
//!    Then the job's scratch database is dropped if an attempt that failed
//!    while the server was away could not drop it (`drop_scratch`).
//! 4. **Row**: the `restores` row (`running`) with the job's scratch name
//!    (`{db}_rst_` + the tail of the job id, the same for every attempt and
//!    for the compensation) and a fresh pre-restore name (`{db}_pre_…`).
//! 5. **Scratch** (`restore_into_scratch`): the manifest must name this
//!    backup and its SHA-256; the object is streamed (decrypted, decoded)
//!    into `pg_restore` or `psql` and always read to its end, so size and
//!    checksum are compared even when the loader stops early; then `check`
//!    (tables present, the manifest's schema version). A store read error is
//!    retryable, everything else fatal.
//! 6. **Grant** the tenant's role access to the scratch database; stop here
//!    if the job lost its claim.
//! 7. **Swap** (`swap`, on the server's `postgres` database): the live
//!    database closed to connections (failpoint `restore.after_block`), its
//!    sessions ended and renamed to the pre-restore name (failpoint
//!    `restore.mid_swap`), the scratch renamed in; if that fails, the
//!    pre-restore database is renamed back and reopened. Failpoint
//!    `restore.after_swap`.
//! 8. **Record**, one transaction: the restore `complete` with the
//!    pre-restore database and its `keep_until`, the tenant's schema version,
//!    a `drop_pre_restore` job due at `keep_until`, audit `tenant.restored`;
//!    `restore.completed` goes out with the job's success.
//!
//! A failure in steps 5–7 drops the scratch database, marks the row `failed`
//! and commits `restore.failed` at once. The pre-restore database stays
//! closed to connections until `drop_pre_restore` drops it (the README shows
//! how to swap it back by hand).

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, anyhow, bail};
use chrono::Utc;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    catalog::{self, Backup},
    jobs::DropPreRestore,
    manifest::Manifest,
    pgtool, shared,
    state::BackupFormat,
    store::Store,
    stream::{self, Decoding, Sink},
};
use crate::{
    config::Settings,
    ident::quote_ident,
    runtime::{Job, JobContext, JobError, ResultExt, store as jobs},
    tenant_schema,
    tenants::{Isolation, Tenant},
};

/// A database name derived from `db` with a tag and a short random suffix,
/// within PostgreSQL's 63-byte limit.
pub fn derived_name(db: &str, tag: &str) -> String {
    let suffix = format!("_{tag}_{}", &Uuid::new_v4().simple().to_string()[..8]);
    let keep = 63 - suffix.len();
    let base: String = db.chars().take(keep).collect();
    format!("{base}{suffix}")
}

/// A database name for job `job`: `db` (cut to fit 63 bytes) with a tag and
/// the random tail of the job id, so every attempt of the job, and its
/// compensation, knows the name an earlier attempt used (attempts of one job
/// never overlap).
pub fn job_db_name(db: &str, tag: &str, job: Uuid) -> String {
    let id = job.simple().to_string();
    // The random tail of the id: the head of a v7 id is its creation time.
    let suffix = format!("_{tag}_{}", &id[id.len() - 12..]);
    let base: String = db.chars().take(63 - suffix.len()).collect();
    format!("{base}{suffix}")
}

/// The scratch database of restore job `job` over live database `db`.
pub fn scratch_name(db: &str, job: Uuid) -> String {
    job_db_name(db, "rst", job)
}

/// Drops restore job `job`'s scratch database if an earlier attempt left it
/// (one that failed while the server was away could not drop it then).
pub async fn drop_scratch(settings: &Settings, t: &Tenant, job: Uuid) -> Result<(), JobError> {
    let scratch = scratch_name(&t.db_name, job);
    if scratch == t.db_name {
        return Err(JobError::fatal(format!(
            "the scratch name {scratch} is the live database's name"
        )));
    }
    drop_scratch_db(settings, &t.db_server, &scratch)
        .await
        .retryable_ctx("dropping the scratch database an earlier attempt left")
}

/// The age identities configured for restores.
pub fn identities(settings: &Settings) -> Result<Vec<age::x25519::Identity>, JobError> {
    let Some(path) = &settings.backup.age_identity_file else {
        return Err(JobError::fatal(
            "the backup is encrypted but LANDLORD_BACKUP_AGE_IDENTITY_FILE is not set",
        ));
    };
    crate::keyfile::read_identities(path).map_err(|e| JobError::fatal(format!("{e:#}")))
}

/// How to decode a backup's object.
pub fn decoding(settings: &Settings, b: &Backup) -> Result<Decoding, JobError> {
    Ok(Decoding {
        codec: b.codec,
        identities: if b.encrypted {
            Some(identities(settings)?)
        } else {
            None
        },
    })
}

/// Reads the manifest and checks it agrees with the catalog row.
pub async fn manifest_of(store: &Store, b: &Backup) -> Result<Option<Manifest>, JobError> {
    let Some(key) = &b.manifest_key else {
        return Ok(None);
    };
    let raw = store
        .get_bytes(key)
        .await
        .retryable_ctx("reading the manifest")?;
    let m: Manifest =
        serde_json::from_slice(&raw).fatal_ctx(format_args!("the manifest {key} is not valid"))?;
    if m.backup_id != b.id || Some(&m.sha256) != b.sha256.as_ref() {
        return Err(JobError::fatal(format!(
            "the manifest {key} does not match the catalog (backup {}, sha256 {:?})",
            b.id, b.sha256
        )));
    }
    Ok(Some(m))
}

/// Streams the backup into `sink` and checks checksum and size.
pub async fn stream_into(
    settings: &Settings,
    store: &Store,
    b: &Backup,
    sink: Sink,
) -> Result<stream::Measured, JobError> {
    let dec = decoding(settings, b)?;
    let object = store.get(&b.object_key).await.retryable()?;
    let (measured, load_error) = match stream::restore_from(object, dec, sink).await {
        Ok(m) => (m, None),
        Err(stream::RestoreFailure::Read(e)) => {
            return Err(JobError::retryable(format!(
                "reading the backup from the store: {e:#}"
            )));
        }
        Err(stream::RestoreFailure::Start(e)) => return Err(JobError::fatal(format!("{e:#}"))),
        Err(stream::RestoreFailure::Load { error, read }) => (*read, Some(error)),
    };
    // The bytes first: a corrupt object usually breaks the decoder or the
    // loader before the end, and the checksum says why.
    let context = load_error
        .as_ref()
        .map(|e| format!(" ({e:#})"))
        .unwrap_or_default();
    if let Some(size) = b.stored_bytes
        && measured.stored_bytes != size as u64
    {
        return Err(JobError::fatal(format!(
            "the object is {} bytes, the backup recorded {size}: truncated or replaced{context}",
            measured.stored_bytes
        )));
    }
    if let Some(sha) = &b.sha256
        && &measured.sha256 != sha
    {
        return Err(JobError::fatal(format!(
            "checksum mismatch: the object's SHA-256 is {}, the backup recorded {sha}{context}",
            measured.sha256
        )));
    }
    if let Some(e) = load_error {
        return Err(JobError::fatal(format!("{e:#}")));
    }
    Ok(measured)
}

/// The command that loads a backup of this format into `db`.
pub fn loader(
    settings: &Settings,
    server: &str,
    db: &str,
    format: BackupFormat,
) -> Result<std::process::Command> {
    match format {
        BackupFormat::Plain => {
            let mut cmd = pgtool::command(settings, server, db, "psql")?;
            cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]);
            Ok(cmd)
        }
        BackupFormat::Custom | BackupFormat::Shared => {
            let mut cmd = pgtool::command(settings, server, db, "pg_restore")?;
            cmd.args(["--exit-on-error", "--no-owner", &format!("--dbname={db}")]);
            Ok(cmd)
        }
    }
}

/// What a restored database looks like.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Checked {
    pub tables: i64,
    pub rows: i64,
    pub schema_version: Option<i64>,
}

/// Checks a freshly restored database: it has tables, and its schema version
/// is the one the manifest recorded.
pub async fn check(
    settings: &Settings,
    server: &str,
    db: &str,
    manifest: Option<&Manifest>,
) -> Result<Checked> {
    let pool = tenant_schema::pool_on(settings, server, db).await?;
    let res: Result<Checked> = async {
        let tables: Vec<(String, String)> = sqlx::query_as(
            "SELECT schemaname::text, relname::text FROM pg_stat_user_tables ORDER BY 1, 2",
        )
        .fetch_all(&pool)
        .await?;
        if tables.is_empty() {
            bail!("the restored database has no tables");
        }
        let mut rows = 0i64;
        for (schema, table) in &tables {
            let n: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {}.{}",
                quote_ident(schema),
                quote_ident(table)
            ))
            .fetch_one(&pool)
            .await?;
            rows += n;
        }
        let has: bool =
            sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
                .fetch_one(&pool)
                .await?;
        let schema_version: Option<i64> = if has {
            sqlx::query_scalar("SELECT max(version) FROM public._sqlx_migrations WHERE success")
                .fetch_one(&pool)
                .await?
        } else {
            None
        };
        if let Some(m) = manifest
            && m.schema_version != schema_version
        {
            bail!(
                "the restored schema version is {schema_version:?}, the manifest says {:?}",
                m.schema_version
            );
        }
        Ok(Checked {
            tables: tables.len() as i64,
            rows,
            schema_version,
        })
    }
    .await;
    pool.close().await;
    res
}

/// The role restore job scratch database `scratch` is loaded as: a login
/// role with no attributes, made for that one load (its name follows from
/// the scratch name, so a retry or the compensation drops what an
/// interrupted attempt left). A tenant's functions that the load runs (CHECK
/// constraints, index expressions, defaults, triggers) run as this role,
/// never as the server's superuser.
pub fn loader_role(scratch: &str) -> String {
    let digest = Sha256::digest(scratch.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("landlord_loader_{hex}")
}

/// The loader role of a scratch database and the password it logs in with.
struct LoaderLogin {
    role: String,
    password: String,
}

/// Creates the loader role (dropping one an interrupted attempt left): it
/// can log in with a one-time password, and nothing else.
async fn create_loader(admin: &PgPool, role: &str) -> Result<LoaderLogin> {
    let password = crate::role_password::generate();
    let role_q = quote_ident(role);
    // Only the verifier reaches the server (and its statement log).
    let verifier = crate::role_password::verifier(&password);
    sqlx::raw_sql(&format!(
        "DROP ROLE IF EXISTS {role_q}; \
         CREATE ROLE {role_q} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT \
         NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 4 PASSWORD '{verifier}'"
    ))
    .execute(admin)
    .await
    .with_context(|| format!("creating the loader role {role}"))?;
    // A non-superuser admin must be able to act as the role to give it the
    // scratch database and take its objects back.
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user")
            .fetch_one(admin)
            .await
            .context("reading the admin's attributes")?;
    if !superuser {
        sqlx::raw_sql(&format!("GRANT {role_q} TO CURRENT_USER"))
            .execute(admin)
            .await
            .with_context(|| format!("granting the loader role {role} to the admin"))?;
    }
    Ok(LoaderLogin {
        role: role.to_string(),
        password,
    })
}

/// Drops a scratch database's loader role if it exists.
async fn drop_loader(admin: &PgPool, scratch: &str) -> Result<()> {
    let role = loader_role(scratch);
    sqlx::raw_sql(&format!("DROP ROLE IF EXISTS {}", quote_ident(&role)))
        .execute(admin)
        .await
        .with_context(|| format!("dropping the loader role {role}"))?;
    Ok(())
}

/// Creates scratch database `db` owned by the loader role, closed to
/// PUBLIC from the start (no CONNECT, no TEMPORARY).
async fn create_db(admin: &PgPool, db: &str, owner: &str) -> Result<()> {
    crate::ident::validate_db_name(db).map_err(|e| anyhow!("database name {db:?}: {e}"))?;
    let db_q = quote_ident(db);
    sqlx::raw_sql(&format!(
        "CREATE DATABASE {db_q} OWNER {} TEMPLATE template0",
        quote_ident(owner)
    ))
    .execute(admin)
    .await
    .with_context(|| format!("creating database {db}"))?;
    sqlx::raw_sql(&format!("REVOKE ALL ON DATABASE {db_q} FROM PUBLIC"))
        .execute(admin)
        .await
        .with_context(|| format!("closing database {db} to PUBLIC"))?;
    Ok(())
}

/// Gives the loader role schema `public` of the new scratch database (as
/// PostgreSQL 15 does for a database's owner) and confines the database
/// (`tenant_schema::confine`: no CREATE on it for PUBLIC, which PostgreSQL
/// 13 and 14 grant).
async fn prepare_scratch(settings: &Settings, server: &str, db: &str, role: &str) -> Result<()> {
    let pool = tenant_schema::pool_on(settings, server, db).await?;
    let res: Result<()> = async {
        sqlx::raw_sql(&format!(
            "ALTER SCHEMA public OWNER TO {}",
            quote_ident(role)
        ))
        .execute(&pool)
        .await
        .context("giving the loader schema public")?;
        tenant_schema::confine(&pool).await
    }
    .await;
    pool.close().await;
    res
}

/// Which connection runs an archive entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// `CREATE EXTENSION`, first, as the admin (on an empty database).
    Extensions,
    /// Everything that creates or fills objects, as the loader role.
    Load,
    /// Privileges (`GRANT`, `ALTER DEFAULT PRIVILEGES … FOR ROLE`) and
    /// comments on extensions, last, as the admin: they run no tenant code.
    Privileges,
}

/// The pass of one `pg_restore --list` line (`ID; OID OID DESC …`), or
/// `None` for comments and blank lines. The description is written by
/// pg_dump, never taken from a name.
fn pass_of(line: &str) -> Option<Pass> {
    let line = line.trim_end();
    if line.is_empty() || line.starts_with(';') {
        return None;
    }
    let (_, rest) = line.split_once("; ")?;
    let mut parts = rest.splitn(3, ' ');
    let (_, _, desc) = (parts.next()?, parts.next()?, parts.next()?);
    if desc.starts_with("EXTENSION ") {
        Some(Pass::Extensions)
    } else if desc.starts_with("ACL ")
        || desc.starts_with("DEFAULT ACL ")
        || desc.starts_with("COMMENT - EXTENSION ")
    {
        Some(Pass::Privileges)
    } else {
        Some(Pass::Load)
    }
}

/// A spool directory removed when dropped.
struct Spool(std::path::PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a client program to its end; its stderr's tail is the error.
async fn run_tool(mut cmd: std::process::Command, what: &str) -> Result<Vec<u8>> {
    let what = what.to_string();
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .context("client program thread")?
        .with_context(|| format!("starting {what} (is it installed? see LANDLORD_PG_BIN_DIR)"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{what} failed ({}): {}", out.status, tail.join("\n"));
    }
    Ok(out.stdout)
}

/// Loads a custom-format backup into `scratch`: the object is streamed
/// (checked) into a private spool file, then restored in three passes (see
/// [`Pass`]): extensions and privileges as the admin, everything else as
/// the loader role, connected as that role (a `SET ROLE` could be undone by
/// the code it runs).
async fn load_archive(
    settings: &Settings,
    store: &Store,
    t: &Tenant,
    b: &Backup,
    scratch: &str,
    login: &LoaderLogin,
) -> Result<stream::Measured, JobError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    use tokio::io::AsyncWriteExt;
    let dir = std::env::temp_dir().join(format!("landlord-restore-{scratch}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .retryable_ctx(format_args!(
            "creating the spool directory {}",
            dir.display()
        ))?;
    let spool = Spool(dir);
    let archive = spool.0.join("archive");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&archive)
        .retryable_ctx(format_args!(
            "creating the spool file {}",
            archive.display()
        ))?;
    let mut file = tokio::fs::File::from_std(file);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let writer = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            file.write_all(&chunk).await?;
        }
        file.flush().await
    });
    let streamed = stream_into(settings, store, b, Sink::Channel(tx)).await;
    let written = writer.await.retryable_ctx("spool task")?;
    written.retryable_ctx(format_args!("writing the spool file {}", archive.display()))?;
    let measured = streamed?;

    let mut list = pgtool::offline(settings, "pg_restore");
    list.arg("--list")
        .arg(&archive)
        .stdout(std::process::Stdio::piped());
    let listing = run_tool(list, "pg_restore --list").await.fatal()?;
    let listing = String::from_utf8_lossy(&listing);
    for pass in [Pass::Extensions, Pass::Load, Pass::Privileges] {
        let lines: Vec<&str> = listing
            .lines()
            .filter(|l| pass_of(l) == Some(pass))
            .collect();
        if lines.is_empty() {
            continue;
        }
        let list_file = spool.0.join(format!("{pass:?}.list"));
        std::fs::write(&list_file, lines.join("\n") + "\n")
            .retryable_ctx(format_args!("writing {}", list_file.display()))?;
        let mut cmd = pgtool::command(settings, &t.db_server, scratch, "pg_restore")
            .map_err(JobError::fatal)?;
        cmd.args([
            "--exit-on-error",
            "--no-owner",
            &format!("--dbname={scratch}"),
        ])
        .arg(format!("--use-list={}", list_file.display()))
        .arg(&archive);
        if pass == Pass::Load {
            cmd.env("PGUSER", &login.role)
                .env("PGPASSWORD", &login.password);
        }
        let what = match pass {
            Pass::Extensions => "pg_restore (extensions, as the admin)",
            Pass::Load => "pg_restore (as the loader role)",
            Pass::Privileges => "pg_restore (privileges, as the admin)",
        };
        run_tool(cmd, what).await.fatal()?;
    }
    Ok(measured)
}

/// After the load: the loader's objects and the database go to the admin,
/// the loader role is dropped, and whatever the load did to the database's
/// settings and privileges is undone (PUBLIC and every other role lose
/// their database privileges; `grant_role` gives the tenant's back), then
/// the database is confined (`tenant_schema::confine`).
async fn hand_over(settings: &Settings, server: &str, db: &str, role: &str) -> Result<()> {
    let pool = tenant_schema::pool_on(settings, server, db).await?;
    let role_q = quote_ident(role);
    let res: Result<()> = async {
        sqlx::raw_sql(&format!(
            "REASSIGN OWNED BY {role_q} TO CURRENT_USER; DROP OWNED BY {role_q}; \
             DO $landlord$ BEGIN \
               IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pg_database_owner') THEN \
                 ALTER SCHEMA public OWNER TO pg_database_owner; \
               END IF; \
             END $landlord$"
        ))
        .execute(&pool)
        .await
        .context("taking the loaded objects from the loader role")?;
        tenant_schema::confine(&pool).await
    }
    .await;
    pool.close().await;
    res?;
    let admin = tenant_schema::admin(settings, server).await?;
    let res: Result<()> = async {
        let db_q = quote_ident(db);
        let mut grantees: Vec<String> = named_grants(&admin, db)
            .await?
            .into_iter()
            .map(|(role, _)| role)
            .collect();
        grantees.dedup();
        let mut sql = format!(
            "ALTER DATABASE {db_q} OWNER TO CURRENT_USER; ALTER DATABASE {db_q} RESET ALL; \
             REVOKE ALL ON DATABASE {db_q} FROM PUBLIC; "
        );
        for g in grantees {
            sql.push_str(&format!(
                "REVOKE ALL ON DATABASE {db_q} FROM {}; ",
                quote_ident(&g)
            ));
        }
        sqlx::raw_sql(&sql)
            .execute(&admin)
            .await
            .context("resetting the database's owner, settings and grants")?;
        sqlx::raw_sql(&format!("DROP ROLE {role_q}"))
            .execute(&admin)
            .await
            .context("dropping the loader role")?;
        Ok(())
    }
    .await;
    admin.close().await;
    res
}

/// Restores `b` into a new database `scratch` on the tenant's server and
/// checks it. The caller owns dropping `scratch` (`drop_scratch_db`, which
/// drops its loader role too).
///
/// The scratch database is closed to PUBLIC from its creation and owned by
/// a loader role with no attributes ([`loader_role`]) that the load
/// connects as, so what the backup runs while it loads runs with no more
/// than that; a plain (seed-format) dump is loaded by `psql` as that role.
pub async fn restore_into_scratch(
    settings: &Settings,
    store: &Store,
    t: &Tenant,
    b: &Backup,
    scratch: &str,
) -> Result<(stream::Measured, Checked), JobError> {
    let manifest = manifest_of(store, b).await?;
    let role = loader_role(scratch);
    let admin = tenant_schema::admin(settings, &t.db_server).await?;
    let created: Result<LoaderLogin> = async {
        let login = create_loader(&admin, &role).await?;
        create_db(&admin, scratch, &role).await?;
        Ok(login)
    }
    .await;
    admin.close().await;
    let login = created?;
    prepare_scratch(settings, &t.db_server, scratch, &role).await?;
    let measured = match b.format {
        BackupFormat::Plain => {
            let mut cmd =
                loader(settings, &t.db_server, scratch, b.format).map_err(JobError::fatal)?;
            cmd.env("PGUSER", &login.role)
                .env("PGPASSWORD", &login.password);
            stream_into(settings, store, b, Sink::Child(cmd)).await?
        }
        BackupFormat::Custom | BackupFormat::Shared => {
            load_archive(settings, store, t, b, scratch, &login).await?
        }
    };
    hand_over(settings, &t.db_server, scratch, &role)
        .await
        .retryable_ctx("handing the restored database over from the loader role")?;
    let checked = check(settings, &t.db_server, scratch, manifest.as_ref())
        .await
        .fatal_ctx("the restored database failed its check")?;
    Ok((measured, checked))
}

/// Drops a scratch database and its loader role, if they exist.
pub async fn drop_scratch_db(settings: &Settings, server: &str, db: &str) -> Result<()> {
    let admin = tenant_schema::admin(settings, server).await?;
    let mut res = tenant_schema::drop_database(&admin, db).await;
    if res.is_ok() {
        res = drop_loader(&admin, db).await;
    }
    admin.close().await;
    res
}

/// Drops a database if it exists (best effort is not enough: errors surface).
pub async fn drop_db(settings: &Settings, server: &str, db: &str) -> Result<()> {
    let admin = tenant_schema::admin(settings, server).await?;
    let res = tenant_schema::drop_database(&admin, db).await;
    admin.close().await;
    res
}

async fn exists(admin: &PgPool, db: &str) -> Result<bool> {
    tenant_schema::database_exists(admin, db).await
}

/// Closes `db` to new connections, ends its sessions and renames it `to`.
/// If it cannot be renamed, connections are allowed again.
async fn take_offline(admin: &PgPool, db: &str, to: &str) -> Result<()> {
    let (db_q, to_q) = (quote_ident(db), quote_ident(to));
    sqlx::raw_sql(&format!(
        "ALTER DATABASE {db_q} WITH ALLOW_CONNECTIONS false"
    ))
    .execute(admin)
    .await
    .with_context(|| format!("blocking new connections to {db}"))?;
    crate::failpoint::hit("restore.after_block");
    let mut last_err = None;
    for _ in 0..20 {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(db)
        .execute(admin)
        .await
        .with_context(|| format!("ending the sessions of {db}"))?;
        match sqlx::raw_sql(&format!("ALTER DATABASE {db_q} RENAME TO {to_q}"))
            .execute(admin)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => {
                last_err = Some(e);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    let _ = reopen(admin, db).await;
    bail!(
        "could not take {db} offline: {}",
        last_err.map(|e| e.to_string()).unwrap_or_default()
    )
}

/// Lets `db` accept connections again.
async fn reopen(admin: &PgPool, db: &str) -> Result<()> {
    sqlx::raw_sql(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
        quote_ident(db)
    ))
    .execute(admin)
    .await
    .with_context(|| format!("allowing connections to {db}"))?;
    Ok(())
}

/// Renames `from` to `to` and lets it accept connections.
async fn rename_open(admin: &PgPool, from: &str, to: &str) -> Result<()> {
    sqlx::raw_sql(&format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(from),
        quote_ident(to)
    ))
    .execute(admin)
    .await
    .with_context(|| format!("renaming {from} to {to}"))?;
    reopen(admin, to).await
}

/// Renames `scratch` in as `live`, keeping the old live database as `pre`
/// (not accepting connections). Ends the live database's sessions. On any
/// failure after the live database was renamed, renames it back.
pub async fn swap(
    settings: &Settings,
    server: &str,
    live: &str,
    scratch: &str,
    pre: &str,
) -> Result<bool> {
    for db in [live, scratch, pre] {
        crate::ident::validate_db_name(db).map_err(|e| anyhow!("database name {db:?}: {e}"))?;
    }
    let admin = tenant_schema::admin(settings, server).await?;
    let res: Result<bool> = async {
        let had_live = exists(&admin, live).await?;
        if had_live {
            take_offline(&admin, live, pre)
                .await
                .context("taking the live database offline")?;
        }
        crate::failpoint::hit("restore.mid_swap");
        if let Err(e) = sqlx::raw_sql(&format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(scratch),
            quote_ident(live)
        ))
        .execute(&admin)
        .await
        {
            if had_live {
                rename_open(&admin, pre, live)
                    .await
                    .context("putting the live database back after a failed swap")?;
            }
            return Err(anyhow!("renaming the restored database in: {e}"));
        }
        Ok(had_live)
    }
    .await;
    admin.close().await;
    res
}

/// The database privileges `db` grants to roles by name (not its owner,
/// not PUBLIC), as (role, privilege) sorted by role.
async fn named_grants(admin: &PgPool, db: &str) -> Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT r.rolname::text, a.privilege_type FROM pg_catalog.pg_database d \
         CROSS JOIN LATERAL aclexplode(d.datacl) a \
         JOIN pg_catalog.pg_roles r ON r.oid = a.grantee \
         WHERE d.datname = $1 AND a.grantee <> d.datdba ORDER BY 1, 2",
    )
    .bind(db)
    .fetch_all(admin)
    .await
    .with_context(|| format!("reading the grants of database {db}"))
}

/// Gives the restored database `db` the database-level access the live one
/// has, but never to PUBLIC: the tenant's role CONNECT and TEMPORARY, and
/// every role the live database grants by name (an adopted tenant's
/// applications) what it has there. PUBLIC has nothing from the creation on
/// (`create_db`), so an adopted tenant's database is closed to PUBLIC after
/// a restore even if it was open before.
async fn grant_role(settings: &Settings, t: &Tenant, db: &str) -> Result<()> {
    let admin = tenant_schema::admin(settings, &t.db_server).await?;
    let res: Result<()> = async {
        let live = named_grants(&admin, &t.db_name).await?;
        let db_q = quote_ident(db);
        let mut sql = format!("REVOKE ALL ON DATABASE {db_q} FROM PUBLIC; ");
        if let Some(role) = &t.db_role {
            sql.push_str(&format!(
                "GRANT CONNECT, TEMPORARY ON DATABASE {db_q} TO {}; ",
                quote_ident(role)
            ));
        }
        for (role, privilege) in &live {
            // `privilege` is a database privilege's name as PostgreSQL
            // spells it (CONNECT, TEMPORARY or CREATE), never input.
            sql.push_str(&format!(
                "GRANT {privilege} ON DATABASE {db_q} TO {}; ",
                quote_ident(role)
            ));
        }
        sqlx::raw_sql(&sql)
            .execute(&admin)
            .await
            .context("granting the tenant role its database")?;
        Ok(())
    }
    .await;
    admin.close().await;
    res
}

/// Undoes what earlier, interrupted attempts of this restore job left, so
/// the tenant has its database from before the restore, open to
/// connections, and no scratch copy is left:
/// - killed after closing the live database to connections: reopened;
/// - killed between the two renames: the pre-restore copy is renamed back;
/// - killed after the swap but before it was recorded: the unrecorded
///   restored database is moved aside and dropped, the original renamed back
///   (the next attempt restores again, this time recorded).
pub async fn clean_leftovers(ctx: &JobContext, t: &Tenant) -> Result<usize> {
    let rows = catalog::restore_leftovers(&ctx.catalog, ctx.job_id).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let admin = tenant_schema::admin(&ctx.settings, &t.db_server).await?;
    let res: Result<()> = async {
        for r in &rows {
            // A shared tenant's restore writes into the live shared database:
            // there is nothing to rename or drop.
            if t.isolation == Isolation::Database && r.scratch_db != t.db_name {
                put_back(&admin, t, &r.scratch_db, r.pre_restore_db.as_deref()).await?;
            }
            sqlx::query("UPDATE restores SET status = 'failed', error = 'attempt interrupted', completed_at = now() WHERE id = $1")
                .bind(r.id)
                .execute(&ctx.catalog)
                .await?;
        }
        Ok(())
    }
    .await;
    admin.close().await;
    res.map(|()| rows.len())
}

/// The state before an interrupted restore attempt (see `clean_leftovers`).
async fn put_back(admin: &PgPool, t: &Tenant, scratch: &str, pre: Option<&str>) -> Result<()> {
    let live = t.db_name.as_str();
    let scratch_exists = exists(admin, scratch).await?;
    if let Some(pre) = pre
        && exists(admin, pre).await?
    {
        if exists(admin, live).await? {
            if scratch_exists {
                bail!("{live}, {pre} and {scratch} all exist; leaving them for an operator");
            }
            // The swap finished but was never recorded: the restored copy
            // under the live name goes back to being the scratch database.
            take_offline(admin, live, scratch)
                .await
                .context("moving the unrecorded restore aside")?;
        }
        rename_open(admin, pre, live)
            .await
            .context("putting the live database back")?;
    } else if exists(admin, live).await? {
        // Killed after closing it to connections, before the rename.
        reopen(admin, live)
            .await
            .context("reopening the live database")?;
    }
    tenant_schema::drop_database(admin, scratch).await?;
    drop_loader(admin, scratch).await
}

/// Drops a failed attempt's scratch database. When that fails too (the
/// server went away), the next attempt or the job's compensation drops it:
/// the name is the job's (failpoint `restore.drop_scratch!N`).
async fn drop_scratch_after_failure(settings: &Settings, t: &Tenant, scratch: &str) {
    let res = match crate::failpoint::fail("restore.drop_scratch") {
        true => Err(anyhow!("failpoint: the server is gone")),
        false => drop_scratch_db(settings, &t.db_server, scratch).await,
    };
    if let Err(e) = res {
        tracing::warn!(error = %format!("{e:#}"), scratch, "could not drop the scratch database; the next attempt or the compensation will");
    }
}

async fn record_failure(ctx: &JobContext, t: &Tenant, restore_id: Uuid, backup: Uuid, error: &str) {
    let res: Result<()> = async {
        sqlx::query("UPDATE restores SET status = 'failed', error = $2, completed_at = now() WHERE id = $1")
            .bind(restore_id)
            .bind(error)
            .execute(&ctx.catalog)
            .await?;
        let mut tx = ctx.catalog.begin().await?;
        jobs::insert_event(
            &mut tx,
            "restore.failed",
            Some(&t.slug),
            Some(ctx.job_id),
            json!({"tenant": t.slug, "backup_id": backup, "attempt": ctx.attempt, "error": error, "live_database": "untouched"}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, "could not record the failed restore");
    }
}

/// Streams a shared tenant's backup into an import of its rows, committed
/// only if `commit` and the whole stream checked out.
pub async fn shared_rows(
    settings: &Settings,
    store: &Store,
    t: &Tenant,
    b: &Backup,
    commit: bool,
) -> Result<(stream::Measured, shared::Imported), JobError> {
    if b.format != BackupFormat::Shared {
        return Err(JobError::fatal(format!(
            "backup {} is a {} dump of a whole database, not a shared tenant's rows",
            b.name(),
            b.format
        )));
    }
    manifest_of(store, b).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let (go, decided) = tokio::sync::oneshot::channel();
    let (s, tenant, scope) = (
        Arc::new(settings.clone()),
        t.clone(),
        shared::scope(settings),
    );
    // The import's sessions belong to this attempt too (`runtime::sessions`).
    let task = tokio::spawn(crate::runtime::sessions::inherit(async move {
        shared::import(&s, &tenant, &scope, rx, decided).await
    }));
    let streamed = stream_into(settings, store, b, Sink::Channel(tx)).await;
    let _ = go.send(commit && streamed.is_ok());
    let imported = task.await.retryable_ctx("import task")?;
    // The import's own error says more than "the import stopped".
    let imported = imported.fatal()?;
    let measured = streamed?;
    Ok((measured, imported))
}

async fn restore_shared(ctx: &JobContext, t: &Tenant, b: &Backup) -> Result<Value, JobError> {
    let store = Store::open(&ctx.settings.backup).await?;
    let restore_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO restores (id, tenant_id, backup_id, job_id, scratch_db) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(restore_id)
    .bind(t.id)
    .bind(b.id)
    .bind(ctx.job_id)
    .bind(&t.db_name)
    .execute(&ctx.catalog)
    .await?;
    let clock = std::time::Instant::now();
    let (measured, imported) = match shared_rows(&ctx.settings, &store, t, b, true).await {
        Ok(v) => v,
        Err(e) => {
            record_failure(ctx, t, restore_id, b.id, &e.to_string()).await;
            return Err(e);
        }
    };
    let mut tx = ctx.catalog.begin().await?;
    sqlx::query("UPDATE restores SET status = 'complete', completed_at = now() WHERE id = $1")
        .bind(restore_id)
        .execute(&mut *tx)
        .await?;
    jobs::audit(
        &mut tx,
        "landlord:restore",
        "tenant.restored",
        Some(t.id),
        Some(ctx.job_id),
        json!({"backup_id": b.id, "shared_database": t.db_name, "rows": imported.rows}),
    )
    .await?;
    tx.commit().await?;
    let result = json!({
        "tenant": t.slug,
        "backup_id": b.id,
        "backup": b.name(),
        "restore_id": restore_id,
        "isolation": "shared",
        "database": t.db_name,
        "deleted_rows": imported.deleted,
        "rows": imported.rows,
        "stored_bytes": measured.stored_bytes,
        "sha256": measured.sha256,
        "duration_ms": clock.elapsed().as_millis() as i64,
    });
    ctx.emit("restore.completed", result.clone());
    Ok(result)
}

/// A swap that is done, to be recorded.
struct Swapped {
    restore_id: Uuid,
    backup_id: Uuid,
    pre_db: Option<String>,
    /// How long the pre-restore copy is kept; the deadline itself is taken
    /// from the catalog's clock when the swap is recorded.
    keep_for: std::time::Duration,
    schema_version: Option<i64>,
}

/// Records a finished swap in one transaction: the restore `complete`, the
/// tenant's schema version, the `drop_pre_restore` job, the audit entry.
/// Returns `keep_until`, computed on the catalog's clock (the drop compares
/// it there too), so hosts with skewed clocks agree on the rollback window.
async fn record_complete(
    ctx: &JobContext,
    t: &Tenant,
    s: &Swapped,
) -> Result<chrono::DateTime<Utc>, JobError> {
    let mut tx = ctx.catalog.begin().await?;
    let keep_until: chrono::DateTime<Utc> = sqlx::query_scalar(
        "UPDATE restores SET status = 'complete', pre_restore_db = $2, \
         keep_until = now() + make_interval(secs => $3), completed_at = now() \
         WHERE id = $1 RETURNING keep_until",
    )
    .bind(s.restore_id)
    .bind(&s.pre_db)
    .bind(s.keep_for.as_secs_f64())
    .fetch_one(&mut *tx)
    .await?;
    if let Some(v) = s.schema_version {
        sqlx::query("UPDATE tenants SET schema_version = $2, updated_at = now() WHERE id = $1")
            .bind(t.id)
            .bind(v)
            .execute(&mut *tx)
            .await?;
    }
    if s.pre_db.is_some() {
        let restore_id = s.restore_id;
        DropPreRestore { restore_id }
            .enqueue_in(
                &mut tx,
                Some(&t.slug),
                Some(crate::runtime::store::DedupeKey::internal(format!(
                    "drop-pre:{restore_id}"
                ))),
                Some(keep_until),
            )
            .await
            .retryable_ctx("scheduling the pre-restore drop")?;
    }
    jobs::audit(
        &mut tx,
        "landlord:restore",
        "tenant.restored",
        Some(t.id),
        Some(ctx.job_id),
        json!({"backup_id": s.backup_id, "pre_restore_database": s.pre_db}),
    )
    .await?;
    tx.commit().await?;
    Ok(keep_until)
}

/// What an earlier attempt of this job already restored, as the job's
/// result (and its `restore.completed` event, which went out with no
/// recorded success): a `complete` restore of this job (its success was not
/// recorded: the worker died before, or the write was lost), or a swap that
/// finished but was never recorded, which is recorded now. Restoring again
/// instead would move what the tenant wrote since into a pre-restore copy.
pub async fn completed_earlier(ctx: &JobContext, t: &Tenant) -> Result<Option<Value>, JobError> {
    let done: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM restores WHERE job_id = $1 AND status = 'complete' \
         ORDER BY completed_at DESC LIMIT 1",
    )
    .bind(ctx.job_id)
    .fetch_optional(&ctx.catalog)
    .await?;
    let restore_id = match done {
        Some(id) => id,
        None => match finish_unrecorded_swap(ctx, t).await? {
            Some(id) => id,
            None => return Ok(None),
        },
    };
    let r = catalog::get_restore(&ctx.catalog, restore_id)
        .await?
        .ok_or_else(|| JobError::retryable(format!("restore {restore_id} vanished")))?;
    let backup = match r.backup_id {
        Some(id) => catalog::get(&ctx.catalog, id).await?,
        None => None,
    };
    tracing::warn!(
        restore_id = %r.id,
        "an earlier attempt of this job completed the restore; not restoring again"
    );
    let result = json!({
        "tenant": t.slug,
        "backup_id": r.backup_id,
        "backup": backup.as_ref().map(|b| b.name()),
        "restore_id": r.id,
        "pre_restore_database": r.pre_restore_db,
        "keep_until": r.keep_until,
        "completed_at": r.completed_at,
        "completed_by_earlier_attempt": true,
    });
    ctx.emit("restore.completed", result.clone());
    Ok(Some(result))
}

/// Records the swap an earlier attempt of this job finished but did not
/// record (killed after `restore.after_swap`): the live name holds the
/// restored database, the pre-restore copy exists and the scratch name is
/// gone. Returns that restore's id.
async fn finish_unrecorded_swap(ctx: &JobContext, t: &Tenant) -> Result<Option<Uuid>, JobError> {
    if t.isolation != Isolation::Database {
        return Ok(None);
    }
    let rows = catalog::restore_leftovers(&ctx.catalog, ctx.job_id).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let admin = tenant_schema::admin(&ctx.settings, &t.db_server).await?;
    let mut found = None;
    let res: Result<()> = async {
        for r in &rows {
            let Some(pre) = r.pre_restore_db.as_deref() else {
                continue;
            };
            if r.scratch_db != t.db_name
                && exists(&admin, &t.db_name).await?
                && exists(&admin, pre).await?
                && !exists(&admin, &r.scratch_db).await?
            {
                found = Some(r);
                break;
            }
        }
        Ok(())
    }
    .await;
    admin.close().await;
    res?;
    let Some(r) = found else {
        return Ok(None);
    };
    let checked = check(&ctx.settings, &t.db_server, &t.db_name, None)
        .await
        .retryable_ctx("reading the restored database")?;
    let swapped = Swapped {
        restore_id: r.id,
        backup_id: r.backup_id.unwrap_or_default(),
        pre_db: r.pre_restore_db.clone(),
        keep_for: ctx.settings.backup.keep_pre_restore,
        schema_version: checked.schema_version,
    };
    record_complete(ctx, t, &swapped).await?;
    tracing::warn!(restore_id = %r.id, "recorded the swap an interrupted attempt finished");
    Ok(Some(r.id))
}

/// Restores backup `b` over tenant `t`'s live database.
pub async fn restore(ctx: &JobContext, t: &Tenant, b: &Backup) -> Result<Value, JobError> {
    if t.has_shared_rows() && b.tenant_id == t.id && b.status.is_complete() {
        return restore_shared(ctx, t, b).await;
    }
    if !t.has_own_database() {
        return Err(JobError::fatal(format!(
            "tenant {} cannot be restored (status {}, isolation {}, provisioning step {})",
            t.slug, t.status, t.isolation, t.provision_step
        )));
    }
    if b.tenant_id != t.id || !b.status.is_complete() {
        return Err(JobError::fatal(format!(
            "backup {} is not a complete backup of tenant {}",
            b.id, t.slug
        )));
    }
    let settings = &ctx.settings;
    let store = Store::open(&settings.backup).await?;
    let cleaned = clean_leftovers(ctx, t).await?;
    drop_scratch(settings, t, ctx.job_id).await?;
    let restore_id = Uuid::now_v7();
    let scratch = scratch_name(&t.db_name, ctx.job_id);
    let pre = derived_name(&t.db_name, "pre");
    sqlx::query(
        "INSERT INTO restores (id, tenant_id, backup_id, job_id, scratch_db, pre_restore_db) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(restore_id)
    .bind(t.id)
    .bind(b.id)
    .bind(ctx.job_id)
    .bind(&scratch)
    .bind(&pre)
    .execute(&ctx.catalog)
    .await?;
    ctx.progress(0, 3, "restoring into a scratch database")
        .await;
    let clock = std::time::Instant::now();
    let mut loaded = restore_into_scratch(settings, &store, t, b, &scratch).await;
    if loaded.is_ok() && crate::failpoint::fail("restore.scratch_loaded") {
        loaded = Err(JobError::retryable(
            "failpoint: the server went away after the load",
        ));
    }
    let (measured, checked) = match loaded {
        Ok(v) => v,
        Err(e) => {
            let msg = e.to_string();
            drop_scratch_after_failure(settings, t, &scratch).await;
            record_failure(ctx, t, restore_id, b.id, &msg).await;
            return Err(e);
        }
    };
    if let Err(e) = grant_role(settings, t, &scratch).await {
        drop_scratch_after_failure(settings, t, &scratch).await;
        record_failure(ctx, t, restore_id, b.id, &format!("{e:#}")).await;
        return Err(e.into());
    }
    ctx.progress(2, 3, "swapping the restored database in")
        .await;
    if ctx.cancel.is_cancelled() || !ctx.owns_job(settings.worker.lease / 3).await? {
        drop_scratch_after_failure(settings, t, &scratch).await;
        record_failure(ctx, t, restore_id, b.id, "cancelled before the swap").await;
        return Err(JobError::retryable(
            "the job lost its claim before the swap",
        ));
    }
    let had_live = match swap(settings, &t.db_server, &t.db_name, &scratch, &pre).await {
        Ok(h) => h,
        Err(e) => {
            let msg = format!("{e:#}");
            drop_scratch_after_failure(settings, t, &scratch).await;
            record_failure(ctx, t, restore_id, b.id, &msg).await;
            return Err(JobError::retryable(msg));
        }
    };
    crate::failpoint::hit("restore.after_swap");
    let pre_db = had_live.then(|| pre.clone());
    let swapped = Swapped {
        restore_id,
        backup_id: b.id,
        pre_db: pre_db.clone(),
        keep_for: settings.backup.keep_pre_restore,
        schema_version: checked.schema_version,
    };
    let keep_until = record_complete(ctx, t, &swapped).await?;
    let result = json!({
        "tenant": t.slug,
        "backup_id": b.id,
        "backup": b.name(),
        "restore_id": restore_id,
        "pre_restore_database": pre_db,
        "keep_until": keep_until,
        "tables": checked.tables,
        "rows": checked.rows,
        "schema_version": checked.schema_version,
        "stored_bytes": measured.stored_bytes,
        "raw_bytes": measured.raw_bytes,
        "sha256": measured.sha256,
        "duration_ms": clock.elapsed().as_millis() as i64,
        "cleaned_interrupted_attempts": cleaned,
    });
    ctx.emit("restore.completed", result.clone());
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::{Pass, loader_role, pass_of};

    #[test]
    fn archive_entries_go_to_their_pass() {
        let cases = [
            (";     dbname: t", None),
            ("", None),
            (
                "2; 3079 58875 EXTENSION - pgcrypto ",
                Some(Pass::Extensions),
            ),
            (
                "3383; 0 0 COMMENT - EXTENSION pgcrypto ",
                Some(Pass::Privileges),
            ),
            ("215; 1259 58913 TABLE public t postgres", Some(Pass::Load)),
            (
                "3384; 0 0 ACL public TABLE t postgres",
                Some(Pass::Privileges),
            ),
            (
                "3376; 0 58913 TABLE DATA public t postgres",
                Some(Pass::Load),
            ),
            (
                "2071; 826 58916 DEFAULT ACL public DEFAULT PRIVILEGES FOR TABLES postgres",
                Some(Pass::Privileges),
            ),
            // A name that looks like an ACL entry is still the table's.
            (
                "216; 1259 58914 TABLE public ACL postgres",
                Some(Pass::Load),
            ),
            ("217; 0 0 COMMENT public TABLE x postgres", Some(Pass::Load)),
        ];
        for (line, pass) in cases {
            assert_eq!(pass_of(line), pass, "{line:?}");
        }
    }

    #[test]
    fn loader_roles_follow_the_scratch_name() {
        let a = loader_role("t_acme_rst_0123456789ab");
        assert_eq!(a, loader_role("t_acme_rst_0123456789ab"));
        assert_ne!(a, loader_role("t_acme_vfy_0123456789ab"));
        assert!(a.starts_with("landlord_loader_") && a.len() == 32, "{a}");
    }
}
