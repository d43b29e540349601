//! Backups of shared tenants: the rows of one tenant, from every table of a
//! shared database that has the tenant column, read in one consistent
//! snapshot and written through the same encoders, store and manifest as a
//! database dump; restored by replacing exactly that tenant's rows in one
//! transaction that commits only after the stream's checksum was verified.
//!
//! The stream is COPY text with control lines. COPY escapes every backslash
//! in data, so a line starting with `\L` is always ours:
//! `\Llandlord-shared v1 {header}`, then per table `\Ltable {…}` followed by
//! its COPY rows, then `\Lend {row counts}`.
//!
//! Runs as the server's admin connection, which must be a superuser or have
//! BYPASSRLS (checked first: row-level security would otherwise hide or
//! refuse the rows); the tenant value reaches SQL only through a
//! transaction-local setting, never spliced into the text. Every name and
//! type spliced into SQL comes from the database's catalog, quoted; nothing
//! from a backup file reaches SQL text except column names that exist in the
//! current table, quoted.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, postgres::PgPoolCopyExt};
use tokio::sync::{mpsc, oneshot};

use crate::{config::Settings, ident::quote_ident, tenant_schema, tenants::Tenant};

/// Which tables hold tenant rows.
#[derive(Debug, Clone)]
pub struct Scope {
    pub column: String,
    /// `table` or `schema.table`.
    pub exempt: Vec<String>,
}

/// One table of a shared database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Table {
    pub schema: String,
    pub table: String,
    pub columns: Vec<String>,
    /// The tenant column's type, as `format_type` prints it.
    pub key_type: String,
}

impl Table {
    fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }
    fn name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    tenant: String,
    key: String,
    column: String,
    tables: Vec<Table>,
}

const MAGIC: &str = "\\Llandlord-shared v1 ";
const TABLE: &str = "\\Ltable ";
const END: &str = "\\Lend ";
const KEY_SETTING: &str = "landlord.shared_key";

fn is_exempt(scope: &Scope, schema: &str, table: &str) -> bool {
    scope
        .exempt
        .iter()
        .any(|e| e == table || *e == format!("{schema}.{table}"))
}

/// Tables with the tenant column, parents before children (foreign keys).
/// `db` must be a one-connection pool: the caller's transaction lives on it.
pub async fn tables(db: &PgPool, scope: &Scope) -> Result<Vec<Table>> {
    crate::ident::validate_db_name(&scope.column)
        .map_err(|e| anyhow!("tenant column {:?}: {e}", scope.column))?;
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT c.oid::bigint, n.nspname::text, c.relname::text, format_type(a.atttypid, a.atttypmod) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $1 AND NOT a.attisdropped \
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'landlord_tenancy') \
           AND n.nspname NOT LIKE 'pg\\_%' \
         ORDER BY 2, 3",
    )
    .bind(&scope.column)
    .fetch_all(db)
    .await
    .context("listing tables with the tenant column")?;
    let mut by_oid: BTreeMap<i64, Table> = BTreeMap::new();
    for (oid, schema, table, key_type) in rows {
        if is_exempt(scope, &schema, &table) {
            continue;
        }
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 \
             AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
        )
        .bind(oid)
        .fetch_all(db)
        .await?;
        by_oid.insert(
            oid,
            Table {
                schema,
                table,
                columns,
                key_type,
            },
        );
    }
    let edges: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT conrelid::bigint, confrelid::bigint FROM pg_constraint WHERE contype = 'f' AND conrelid <> confrelid",
    )
    .fetch_all(db)
    .await?;
    // Kahn's algorithm; a cycle leaves its tables in name order at the end.
    let mut parents: HashMap<i64, HashSet<i64>> = HashMap::new();
    for (child, parent) in edges {
        if by_oid.contains_key(&child) && by_oid.contains_key(&parent) {
            parents.entry(child).or_default().insert(parent);
        }
    }
    let mut order = Vec::new();
    let mut done: HashSet<i64> = HashSet::new();
    loop {
        let ready: Vec<i64> = by_oid
            .keys()
            .filter(|o| !done.contains(o))
            .filter(|o| {
                parents
                    .get(o)
                    .is_none_or(|ps| ps.iter().all(|p| done.contains(p)))
            })
            .copied()
            .collect();
        if ready.is_empty() {
            break;
        }
        for o in ready {
            done.insert(o);
            order.push(o);
        }
    }
    order.extend(
        by_oid
            .keys()
            .filter(|o| !done.contains(o))
            .copied()
            .collect::<Vec<_>>(),
    );
    Ok(order
        .into_iter()
        .filter_map(|o| by_oid.remove(&o))
        .collect())
}

/// Refuses a connection that row-level security would filter: shared-tenant
/// backups, restores and deletions must see (and delete) exactly the
/// tenant's rows, whatever the policies of the database say.
async fn require_bypass(db: &PgPool, what: &str) -> Result<()> {
    let (role, bypasses): (String, Option<bool>) = sqlx::query_as(
        "SELECT current_user::text, \
                (SELECT rolsuper OR rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user)",
    )
    .fetch_one(db)
    .await
    .context("checking the connecting role's attributes")?;
    if bypasses != Some(true) {
        bail!(
            "{what} needs a connection that bypasses row-level security, but role {role:?} is \
             neither a superuser nor BYPASSRLS; configure the server's admin URL with such a role \
             (ALTER ROLE {} BYPASSRLS)",
            quote_ident(&role)
        );
    }
    Ok(())
}

/// The pool must have one connection: the raw BEGIN/COMMIT below rely on
/// every statement running on the same connection.
fn require_one_connection(db: &PgPool) -> Result<()> {
    if db.options().get_max_connections() != 1 {
        bail!("shared-tenant transfers need a pool of exactly one connection");
    }
    Ok(())
}

async fn set_key(db: &PgPool, key: &str) -> Result<()> {
    sqlx::query("SELECT set_config($1, $2, true)")
        .bind(KEY_SETTING)
        .bind(key)
        .execute(db)
        .await?;
    Ok(())
}

/// `column = setting::type`. `t` must come from [`tables`] (the catalog),
/// never from a backup file: its `key_type` is spliced as a type name.
fn filter(t: &Table, column: &str) -> String {
    // The setting is cast to the column's type; the column is never cast.
    format!(
        "{} = current_setting('{KEY_SETTING}')::{}",
        quote_ident(column),
        t.key_type
    )
}

fn line(prefix: &str, json: &impl Serialize) -> Result<Bytes> {
    let mut s = String::from(prefix);
    s.push_str(&serde_json::to_string(json)?);
    s.push('\n');
    Ok(Bytes::from(s))
}

/// Writes tenant `t`'s rows to `out`; returns rows per table.
pub async fn export(
    settings: &Settings,
    t: &Tenant,
    scope: &Scope,
    out: mpsc::Sender<Bytes>,
) -> Result<BTreeMap<String, u64>> {
    let pool = tenant_schema::pool_on(settings, &t.db_server, &t.db_name).await?;
    let res = export_on(&pool, t, scope, out).await;
    // Closing the only connection also ends a transaction left open by an error.
    pool.close().await;
    res
}

/// [`export`] on `pool`, a one-connection pool on the shared database as a
/// role that bypasses row-level security.
pub async fn export_on(
    pool: &PgPool,
    t: &Tenant,
    scope: &Scope,
    out: mpsc::Sender<Bytes>,
) -> Result<BTreeMap<String, u64>> {
    require_one_connection(pool)?;
    require_bypass(pool, "a shared-tenant backup").await?;
    // One connection (the pool has exactly one), so these statements share
    // the transaction: one snapshot for every table.
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(pool)
        .await?;
    let key = t.key();
    set_key(pool, &key).await?;
    let tables = tables(pool, scope).await?;
    if tables.is_empty() {
        bail!(
            "database {} has no table with the tenant column {:?}",
            t.db_name,
            scope.column
        );
    }
    let send = |b: Bytes| {
        let out = out.clone();
        async move {
            out.send(b)
                .await
                .map_err(|_| anyhow!("the backup stream stopped"))
        }
    };
    send(line(
        MAGIC,
        &Header {
            tenant: t.slug.clone(),
            key: key.clone(),
            column: scope.column.clone(),
            tables: tables.clone(),
        },
    )?)
    .await?;
    let mut counts = BTreeMap::new();
    for table in &tables {
        send(line(TABLE, table)?).await?;
        let sql = format!(
            "COPY (SELECT {} FROM {} WHERE {}) TO STDOUT",
            table.column_list(),
            table.qualified(),
            filter(table, &scope.column)
        );
        let mut rows = 0u64;
        let mut stream = pool.copy_out_raw(&sql).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            rows += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            send(chunk).await?;
        }
        drop(stream);
        counts.insert(table.name(), rows);
    }
    send(line(END, &counts)?).await?;
    sqlx::raw_sql("COMMIT").execute(pool).await?;
    Ok(counts)
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    pub deleted: u64,
    pub rows: BTreeMap<String, u64>,
    pub committed: bool,
}

/// Replaces tenant `t`'s rows with the stream from `input`, in one
/// transaction, committed only if `commit` says so after the whole stream
/// arrived and checked out (a verify sends `false`: a dry run).
pub async fn import(
    settings: &Settings,
    t: &Tenant,
    scope: &Scope,
    input: mpsc::Receiver<Bytes>,
    commit: oneshot::Receiver<bool>,
) -> Result<Imported> {
    let pool = tenant_schema::pool_on(settings, &t.db_server, &t.db_name).await?;
    let res = import_on(&pool, t, scope, input, commit).await;
    // Closing the only connection rolls back whatever an error left open.
    pool.close().await;
    res
}

/// Splits a byte stream into lines (each with its `\n`).
struct Lines {
    input: mpsc::Receiver<Bytes>,
    buf: Vec<u8>,
    eof: bool,
}

impl Lines {
    async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let rest = self.buf.split_off(pos + 1);
                return Some(std::mem::replace(&mut self.buf, rest));
            }
            if self.eof {
                return (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf));
            }
            match self.input.recv().await {
                Some(b) => self.buf.extend_from_slice(&b),
                None => self.eof = true,
            }
        }
    }
}

fn control<'a>(line: &'a [u8], prefix: &str) -> Option<&'a [u8]> {
    line.strip_prefix(prefix.as_bytes())
}

/// [`import`] on `pool`, a one-connection pool on the shared database as a
/// role that bypasses row-level security.
pub async fn import_on(
    pool: &PgPool,
    t: &Tenant,
    scope: &Scope,
    input: mpsc::Receiver<Bytes>,
    commit: oneshot::Receiver<bool>,
) -> Result<Imported> {
    require_one_connection(pool)?;
    require_bypass(pool, "a shared-tenant restore").await?;
    let mut lines = Lines {
        input,
        buf: Vec::new(),
        eof: false,
    };
    let header = read_header(&mut lines, t, scope).await?;
    sqlx::raw_sql("BEGIN").execute(pool).await?;
    set_key(pool, &t.key()).await?;
    let now = tables(pool, scope).await?;
    let current = match_tables(&header, &now)?;
    let deleted = delete_tenant_rows(pool, &now, &scope.column)
        .await?
        .values()
        .sum();
    let (rows, expected) = load_sections(pool, &mut lines, &current).await?;
    let expected = expected.context("the backup ends before its trailer (truncated?)")?;
    if expected != rows {
        bail!("the backup announced {expected:?} rows but held {rows:?}");
    }
    require_only_tenant_rows(pool, &current, &scope.column, &rows).await?;
    let go = commit.await.unwrap_or(false);
    if go {
        sqlx::raw_sql("COMMIT")
            .execute(pool)
            .await
            .context("committing the restore")?;
    } else {
        sqlx::raw_sql("ROLLBACK").execute(pool).await?;
    }
    Ok(Imported {
        deleted,
        rows,
        committed: go,
    })
}

/// The stream's first line, which must be a header for tenant `t`'s key in
/// the configured column.
async fn read_header(lines: &mut Lines, t: &Tenant, scope: &Scope) -> Result<Header> {
    let first = lines.next().await.context("the backup is empty")?;
    let header: Header = control(&first, MAGIC)
        .context("not a landlord shared-tenant backup")
        .and_then(|j| serde_json::from_slice(j).context("reading the backup header"))?;
    let key = t.key();
    if header.key != key || header.column != scope.column {
        bail!(
            "the backup holds tenant key {:?} in column {:?}; tenant {} has key {key:?} in {:?}",
            header.key,
            header.column,
            t.slug,
            scope.column
        );
    }
    Ok(header)
}

/// The backup's tables, each paired with the database's own description of
/// it (`now`, from [`tables`]): only the latter's names and key type ever
/// reach SQL. Refuses a table or column that no longer exists, a changed key
/// type, and a table listed twice.
fn match_tables<'a>(header: &'a Header, now: &'a [Table]) -> Result<Vec<(&'a Table, &'a Table)>> {
    let mut current: Vec<(&Table, &Table)> = Vec::with_capacity(header.tables.len());
    for h in &header.tables {
        let Some(cur) = now
            .iter()
            .find(|c| c.schema == h.schema && c.table == h.table)
        else {
            bail!("table {} of the backup no longer exists", h.name());
        };
        if h.key_type != cur.key_type {
            bail!(
                "the backup says the tenant column of {} has type {:?}, but it has type {:?}; \
                 nothing was changed",
                h.name(),
                h.key_type,
                cur.key_type
            );
        }
        if let Some(missing) = h.columns.iter().find(|c| !cur.columns.contains(c)) {
            bail!("column {missing} of {} no longer exists", h.name());
        }
        if current.iter().any(|(seen, _)| seen.name() == h.name()) {
            bail!("table {} is twice in the backup header", h.name());
        }
        current.push((h, cur));
    }
    Ok(current)
}

/// Deletes the tenant's rows (the key set by [`set_key`]) from `tables`
/// (parents first, as [`tables`] returns them), children first so foreign
/// keys never see a missing parent; returns rows deleted per table.
async fn delete_tenant_rows(
    pool: &PgPool,
    tables: &[Table],
    column: &str,
) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for table in tables.iter().rev() {
        let n = sqlx::query(&format!(
            "DELETE FROM {} WHERE {}",
            table.qualified(),
            filter(table, column)
        ))
        .execute(pool)
        .await
        .with_context(|| format!("deleting the tenant's rows of {}", table.name()))?
        .rows_affected();
        out.insert(table.name(), n);
    }
    Ok(out)
}

/// Loads every table section after the header; returns rows loaded per
/// table and the trailer's announced counts (`None`: the stream ended
/// before its trailer).
async fn load_sections(
    pool: &PgPool,
    lines: &mut Lines,
    current: &[(&Table, &Table)],
) -> Result<(BTreeMap<String, u64>, Option<BTreeMap<String, u64>>)> {
    let mut rows: BTreeMap<String, u64> = BTreeMap::new();
    let mut pending = lines.next().await;
    while let Some(l) = pending.take() {
        if let Some(j) = control(&l, END) {
            let expected = serde_json::from_slice(j).context("reading the backup trailer")?;
            return Ok((rows, Some(expected)));
        }
        let Some(j) = control(&l, TABLE) else {
            bail!("unexpected data outside a table section");
        };
        let table: Table = serde_json::from_slice(j).context("reading a table header")?;
        let Some((_, cur)) = current.iter().find(|(h, _)| **h == table) else {
            bail!("table {} is not in the backup header", table.name());
        };
        if rows.contains_key(&table.name()) {
            bail!("table {} has two sections in the backup", table.name());
        }
        let (n, next) = copy_section(pool, lines, &table, cur).await?;
        pending = next;
        rows.insert(table.name(), n);
    }
    Ok((rows, None))
}

/// COPYs one section's rows into `cur`, up to the next control line, which
/// it returns (`None` at the end of the stream) with the number of rows.
async fn copy_section(
    pool: &PgPool,
    lines: &mut Lines,
    table: &Table,
    cur: &Table,
) -> Result<(u64, Option<Vec<u8>>)> {
    // The backup's columns (each checked by `match_tables` to exist in the
    // current table), quoted, on the current table's name.
    let mut copy = pool
        .copy_in_raw(&format!(
            "COPY {} ({}) FROM STDIN",
            cur.qualified(),
            table.column_list()
        ))
        .await?;
    let mut n = 0u64;
    let mut next = None;
    let mut batch = Vec::with_capacity(1 << 20);
    loop {
        match lines.next().await {
            Some(row) if row.starts_with(b"\\L") => {
                next = Some(row);
                break;
            }
            Some(row) => {
                n += 1;
                batch.extend_from_slice(&row);
                if batch.len() >= 1 << 20 {
                    copy.send(std::mem::take(&mut batch)).await?;
                }
            }
            None => break,
        }
    }
    if !batch.is_empty() {
        copy.send(batch).await?;
    }
    copy.finish()
        .await
        .with_context(|| format!("loading {}", table.name()))?;
    Ok((n, next))
}

/// Every row loaded must belong to this tenant: each table holds exactly as
/// many rows of the key as were loaded into it. The filter's type is the
/// database's (`cur`), never the backup file's.
async fn require_only_tenant_rows(
    pool: &PgPool,
    current: &[(&Table, &Table)],
    column: &str,
    rows: &BTreeMap<String, u64>,
) -> Result<()> {
    for (table, cur) in current {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {} WHERE {}",
            cur.qualified(),
            filter(cur, column)
        ))
        .fetch_one(pool)
        .await?;
        if n as u64 != rows.get(&table.name()).copied().unwrap_or(0) {
            bail!(
                "{} holds rows of another tenant key; nothing was changed",
                table.name()
            );
        }
    }
    Ok(())
}

/// The scope configured for shared tenants (tenancy's column and exempt tables).
pub fn scope(settings: &Settings) -> Scope {
    Scope {
        column: settings.tenancy.tenant_column.value.clone(),
        exempt: settings.tenancy.exempt_tables.value.clone(),
    }
}

/// Deletes every row of tenant `t` from the shared database, children first,
/// in one transaction; returns rows deleted per table. Other tenants' rows
/// are never touched.
pub async fn delete_rows(
    settings: &Settings,
    t: &Tenant,
    scope: &Scope,
) -> Result<BTreeMap<String, u64>> {
    let pool = tenant_schema::pool_on(settings, &t.db_server, &t.db_name).await?;
    let res = delete_on(&pool, &t.key(), scope).await;
    pool.close().await;
    res
}

/// [`delete_rows`] on `pool`, a one-connection pool on the shared database as
/// a role that bypasses row-level security.
pub async fn delete_on(pool: &PgPool, key: &str, scope: &Scope) -> Result<BTreeMap<String, u64>> {
    require_one_connection(pool)?;
    require_bypass(pool, "deleting a shared tenant's rows").await?;
    sqlx::raw_sql("BEGIN").execute(pool).await?;
    set_key(pool, key).await?;
    let out = delete_tenant_rows(pool, &tables(pool, scope).await?, &scope.column).await?;
    sqlx::raw_sql("COMMIT").execute(pool).await?;
    Ok(out)
}
