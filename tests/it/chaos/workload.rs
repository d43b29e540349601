//! The soak's workload: every tenant runs a script of actions one after the
//! other (backup, restore of a backup it took, verify, maintenance, a held
//! ping, a write of its generated data), with tenant-exclusive pings and
//! maintenance fired beside it so jobs contend for the tenant lock; a global
//! script provisions more tenants and runs one fleet migration.
//!
//! Each tenant's data is a table the harness writes only while none of the
//! script's jobs is live, so the checksum it must have is known at every
//! step: a succeeded restore brings back the backup's, a failed one leaves
//! the live one. A mismatch is recorded as a violation at once.
//!
//! Every job the harness enqueues is recorded by id; this module must never
//! write to the catalog.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use sqlx::{Connection as _, PgConnection, Row};
use uuid::Uuid;

use super::{Run, TenantModel, Uncertain, fleet::Role};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Terminal job statuses (as the catalog spells them).
pub const TERMINAL: [&str; 4] = ["succeeded", "failed", "dead", "cancelled"];

fn slug(run: &Run, i: usize) -> String {
    format!("c{}-{i:02}", run.world.run)
}

/// Processes up, the first tenants provisioned and seeded.
pub async fn setup(run: &Arc<Run>) {
    let slugs: Vec<String> = (0..run.plan.tenants).map(|i| slug(run, i)).collect();
    run.world.write_config(&slugs[..4.min(slugs.len())]);
    {
        let mut procs = run.procs.lock().await;
        for role in super::roles(&run.plan) {
            procs.push(spawn(run, role, None));
        }
    }
    let t0 = std::time::Instant::now();
    let mut handles = Vec::new();
    for i in 0..run.plan.tenants {
        let run = run.clone();
        handles.push(tokio::spawn(async move { provision(&run, i).await }));
    }
    let mut ready = 0;
    for h in handles {
        ready += usize::from(h.await.unwrap_or(false));
    }
    eprintln!(
        "[chaos] setup: {ready}/{} tenants provisioned and seeded in {:.1} s",
        run.plan.tenants,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        ready >= run.plan.tenants * 3 / 4,
        "only {ready} of {} tenants could be provisioned before any fault",
        run.plan.tenants
    );
}

/// Starts a process through the world (which lives behind the run's Arc).
pub fn spawn(run: &Run, role: Role, without: Option<&str>) -> super::Proc {
    run.world.spawn(role, without)
}

/// `tenants create` for tenant `i`, waits for it, seeds its data.
async fn provision(run: &Arc<Run>, i: usize) -> bool {
    let slug = slug(run, i);
    let server = if i.is_multiple_of(2) {
        "default"
    } else {
        "chaos"
    };
    let email = format!("chaos-{}-{i:02}@example.test", run.world.run);
    let name = format!("Chaos {i}");
    let args = [
        "tenants", "create", &slug, "--name", &name, "--plan", "pro", "--owner", &email,
        "--server", server,
    ];
    let Some(ids) = enqueue(run, &args, "provision", Some(&slug)).await else {
        return false;
    };
    let Some(&id) = ids.first() else { return false };
    let status = wait_job(run, id).await;
    if status.as_deref() != Some("succeeded") {
        run.note(format!("provisioning {slug} ended {status:?}"));
        return false;
    }
    let db = format!("t_{}", slug.replace('-', "_"));
    let url = run.world.server_url(server, &db);
    let checksum = match seed_data(&url).await {
        Ok(c) => c,
        Err(e) => {
            run.violation(format!(
                "tenant {slug}: provisioned database {db} not usable: {e}"
            ));
            return false;
        }
    };
    run.tenants.lock().unwrap().insert(
        slug.clone(),
        TenantModel {
            slug,
            server: server.into(),
            db,
            email,
            ready: true,
            checksum: Some(checksum),
            backups: Vec::new(),
        },
    );
    true
}

/// Runs a command that enqueues (its `--json` lines carry `job_id`) and
/// records the ids. A failed command may still have written its job: the
/// catalog is asked for an unknown job of that kind and tenant made since,
/// before the command is tried again.
pub fn enqueue<'a>(
    run: &'a Run,
    args: &[&str],
    kind: &'a str,
    tenant: Option<&'a str>,
) -> BoxFuture<'a, Option<Vec<Uuid>>> {
    let args: Vec<String> = args
        .iter()
        .map(|s| s.to_string())
        .chain(["--json".to_string()])
        .collect();
    Box::pin(enqueue_owned(run, args, kind, tenant))
}

async fn enqueue_owned(
    run: &Run,
    args: Vec<String>,
    kind: &str,
    tenant: Option<&str>,
) -> Option<Vec<Uuid>> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for _ in 0..30 {
        if run.give_up() {
            return None;
        }
        let before = chrono::Utc::now() - chrono::Duration::seconds(2);
        let (ok, out, err) = run.world.cli(&args).await;
        let ids: Vec<Uuid> = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["job_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()))
            .collect();
        if ok && !ids.is_empty() {
            for id in &ids {
                run.record(*id, kind, tenant);
            }
            return Some(ids);
        }
        if ok || err.contains("already") || err.contains("has no complete backup") {
            run.note(format!("{args:?} refused: {}", err.trim()));
            return None;
        }
        run.uncertain.lock().unwrap().push(Uncertain {
            kind: kind.to_string(),
            tenant: tenant.map(str::to_string),
            at: before,
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(id) = adopt(run, kind, tenant, before).await {
            return Some(vec![id]);
        }
    }
    run.note(format!("{args:?} kept failing; given up"));
    None
}

/// An unknown job of `kind` for `tenant` created since `since`, once the
/// catalog answers again (recorded as the harness's).
async fn adopt(
    run: &Run,
    kind: &str,
    tenant: Option<&str>,
    since: chrono::DateTime<chrono::Utc>,
) -> Option<Uuid> {
    for _ in 0..60 {
        let rows = sqlx::query(
            "SELECT j.id FROM jobs j LEFT JOIN tenants t ON t.id = j.tenant_id \
             WHERE j.kind = $1 AND t.slug IS NOT DISTINCT FROM $2 AND j.created_at >= $3 \
             ORDER BY j.created_at",
        )
        .bind(kind)
        .bind(tenant)
        .bind(since)
        .fetch_all(&run.world.catalog)
        .await;
        match rows {
            Ok(rows) => {
                let known: Vec<Uuid> = run.jobs.lock().unwrap().iter().map(|j| j.id).collect();
                let id = rows
                    .iter()
                    .map(|r| r.get::<Uuid, _>(0))
                    .find(|id| !known.contains(id))?;
                run.note(format!("adopted job {id} ({kind}) of a failed command"));
                run.record(id, kind, tenant);
                return Some(id);
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    None
}

/// Waits until job `id` is terminal; its status, or `None` if the run gave up.
pub async fn wait_job(run: &Run, id: Uuid) -> Option<String> {
    loop {
        if run.give_up() {
            return None;
        }
        let s: Result<Option<String>, _> =
            sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&run.world.catalog)
                .await;
        if let Ok(Some(s)) = s
            && TERMINAL.contains(&s.as_str())
        {
            return Some(s);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

/// The workload until `stop_work`: tenant scripts, more provisioning, one
/// fleet migration. Returns when every script has finished its last action.
pub async fn run(run: Arc<Run>) {
    let slugs: Vec<String> = run.tenants.lock().unwrap().keys().cloned().collect();
    let mut handles = Vec::new();
    for s in slugs {
        let run = run.clone();
        handles.push(tokio::spawn(async move { script(&run, &s).await }));
    }
    let global = {
        let run = run.clone();
        tokio::spawn(async move { global(&run).await })
    };
    for h in handles {
        let _ = h.await;
    }
    let _ = global.await;
}

/// More tenants over the run (each then runs its own script) and one fleet
/// migration halfway.
async fn global(run: &Arc<Run>) {
    let mut next = run.plan.tenants;
    let mut migrated = false;
    let mut scripts = Vec::new();
    let t0 = std::time::Instant::now();
    let half = Duration::from_secs_f64(run.plan.minutes * 30.0);
    while !run.stop_work.is_cancelled() {
        let wait = Duration::from_secs(run.pick(15..35));
        tokio::select! {
            _ = run.stop_work.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
        if !migrated && t0.elapsed() >= half {
            migrated = true;
            if let Some(ids) = enqueue(run, &["tenants", "migrate", "--all"], "migrate", None).await
            {
                run.note(format!("fleet migration: {} job(s)", ids.len()));
            }
            continue;
        }
        let i = next;
        next += 1;
        let run2 = run.clone();
        scripts.push(tokio::spawn(async move {
            if provision(&run2, i).await {
                script(&run2, &slug(&run2, i)).await;
            }
        }));
    }
    for s in scripts {
        let _ = s.await;
    }
}

/// One tenant's actions, one after the other, until `stop_work`.
async fn script(run: &Arc<Run>, slug: &str) {
    let mut side = Vec::new();
    while !run.stop_work.is_cancelled() {
        if run.chance(0.35) {
            side.push(side_job(run, slug).await);
        }
        let step = run.pick(0..100u32);
        match step {
            0..25 => backup(run, slug).await,
            25..40 => restore(run, slug).await,
            40..50 => verify(run, slug).await,
            50..65 => maintenance(run, slug, true).await,
            65..80 => ping(run, slug, true).await,
            _ => write(run, slug).await,
        }
        let pause = Duration::from_millis(run.pick(300..2500));
        tokio::select! {
            _ = run.stop_work.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    for h in side.into_iter().flatten() {
        let _ = wait_job(run, h).await;
    }
}

/// A ping or maintenance beside the script's own job (not waited for now).
async fn side_job(run: &Arc<Run>, slug: &str) -> Option<Uuid> {
    if run.chance(0.5) {
        let hold = format!("{:.1}", run.pick(0.5..3.0f64));
        enqueue(
            run,
            &["jobs", "ping", "--tenant", slug, "--hold", &hold],
            "ping",
            Some(slug),
        )
        .await
        .and_then(|v| v.first().copied())
    } else {
        maintenance_job(run, slug).await
    }
}

fn model(run: &Run, slug: &str) -> Option<TenantModel> {
    run.tenants.lock().unwrap().get(slug).cloned()
}

async fn backup(run: &Arc<Run>, slug: &str) {
    let Some(m) = model(run, slug) else { return };
    let Some(ids) = enqueue(
        run,
        &["backup", "--tenant", slug, "--keep", "1000"],
        "backup",
        Some(slug),
    )
    .await
    else {
        return;
    };
    let Some(&id) = ids.first() else { return };
    if wait_job(run, id).await.as_deref() != Some("succeeded") {
        return;
    }
    let rows: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM backups WHERE job_id = $1 AND status = 'complete'")
            .bind(id)
            .fetch_all(&run.world.catalog)
            .await
            .unwrap_or_default();
    if let (Some(b), Some(c)) = (rows.first(), m.checksum)
        && let Some(t) = run.tenants.lock().unwrap().get_mut(slug)
    {
        t.backups.push((*b, c));
    }
}

async fn restore(run: &Arc<Run>, slug: &str) {
    let Some(m) = model(run, slug) else { return };
    if m.backups.is_empty() {
        return backup(run, slug).await;
    }
    let (bid, expect) = m.backups[run.pick(0..m.backups.len())].clone();
    let bid_s = bid.to_string();
    let Some(ids) = enqueue(
        run,
        &["restore", slug, "--backup", &bid_s, "--yes"],
        "restore",
        Some(slug),
    )
    .await
    else {
        return;
    };
    let Some(&id) = ids.first() else { return };
    let Some(status) = wait_job(run, id).await else {
        return;
    };
    let url = run.world.server_url(&m.server, &m.db);
    let now = match checksum(&url).await {
        Ok(c) => c,
        Err(e) => {
            run.violation(format!(
                "tenant {slug}: live database {} unusable after restore job {id} ended {status}: {e}",
                m.db
            ));
            return;
        }
    };
    let before = m.checksum.clone().unwrap_or_default();
    if status == "succeeded" {
        if now != expect {
            run.violation(format!(
                "tenant {slug}: restore job {id} of backup {bid} succeeded but the data is not the backup's ({now} ≠ {expect})"
            ));
        }
        set_checksum(run, slug, now);
    } else if now != before {
        let what = if now == expect {
            "the restore happened anyway"
        } else {
            "the data changed"
        };
        run.violation(format!(
            "tenant {slug}: restore job {id} ended {status} but {what} ({before} → {now})"
        ));
        set_checksum(run, slug, now);
    }
}

async fn verify(run: &Arc<Run>, slug: &str) {
    let Some(m) = model(run, slug) else { return };
    let Some((bid, _)) = m.backups.last().cloned() else {
        return;
    };
    let bid = bid.to_string();
    if let Some(ids) = enqueue(
        run,
        &[
            "backups",
            "verify",
            "--tenant",
            slug,
            "--backup",
            &bid,
            "--restore-test",
        ],
        "verify_backup",
        Some(slug),
    )
    .await
        && let Some(&id) = ids.first()
    {
        wait_job(run, id).await;
    }
}

async fn maintenance_job(run: &Arc<Run>, slug: &str) -> Option<Uuid> {
    let mut args = vec!["maintenance", "--tenant", slug, "--analyze"];
    if run.chance(0.5) {
        args.push("--vacuum");
    }
    if run.chance(0.3) {
        args.push("--optimize");
    }
    if run.chance(0.3) {
        args.push("--cleanup");
    }
    enqueue(run, &args, "maintenance", Some(slug))
        .await
        .and_then(|v| v.first().copied())
}

async fn maintenance(run: &Arc<Run>, slug: &str, wait: bool) {
    if let Some(id) = maintenance_job(run, slug).await
        && wait
    {
        wait_job(run, id).await;
    }
}

async fn ping(run: &Arc<Run>, slug: &str, wait: bool) {
    let hold = format!("{:.1}", run.pick(1.0..4.0f64));
    if let Some(ids) = enqueue(
        run,
        &["jobs", "ping", "--tenant", slug, "--hold", &hold],
        "ping",
        Some(slug),
    )
    .await
        && wait
        && let Some(&id) = ids.first()
    {
        wait_job(run, id).await;
    }
}

/// Changes the tenant's generated data (only between the script's jobs).
fn write<'a>(run: &'a Arc<Run>, slug: &'a str) -> BoxFuture<'a, ()> {
    Box::pin(write_inner(run, slug))
}

async fn write_inner(run: &Arc<Run>, slug: &str) {
    let Some(m) = model(run, slug) else { return };
    let url = run.world.server_url(&m.server, &m.db);
    let salt = run.pick(0..1_000_000u32);
    let sql = format!(
        "UPDATE chaos_data SET v = md5(v || '{salt}') WHERE id % 7 = {}; \
         INSERT INTO chaos_data (id, v) SELECT coalesce(max(id), 0) + 1, md5('{salt}') FROM chaos_data",
        salt % 7
    );
    for _ in 0..20 {
        if run.give_up() {
            return;
        }
        if let Ok(mut c) = PgConnection::connect(&url).await {
            if exec(&mut c, &sql).await.is_ok() {
                if let Ok(sum) = checksum_on(&mut c).await {
                    set_checksum(run, slug, sum);
                }
                c.close().await.ok();
                return;
            }
            c.close().await.ok();
        }
        // The chaos cluster may be restarting.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn set_checksum(run: &Run, slug: &str, sum: String) {
    if let Some(t) = run.tenants.lock().unwrap().get_mut(slug) {
        t.checksum = Some(sum);
    }
}

/// Creates and fills the generated-data table; its checksum.
fn seed_data(url: &str) -> BoxFuture<'_, anyhow::Result<String>> {
    Box::pin(seed_data_inner(url))
}

async fn seed_data_inner(url: &str) -> anyhow::Result<String> {
    let mut last = None;
    for _ in 0..20 {
        match PgConnection::connect(url).await {
            Ok(mut c) => {
                exec(
                    &mut c,
                    "CREATE TABLE IF NOT EXISTS chaos_data (id int PRIMARY KEY, v text NOT NULL); \
                     INSERT INTO chaos_data SELECT g, md5(g::text) FROM generate_series(1, 2000) g \
                     ON CONFLICT DO NOTHING",
                )
                .await?;
                let sum = checksum_on(&mut c).await?;
                c.close().await.ok();
                return Ok(sum);
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(anyhow::anyhow!("cannot connect: {last:?}"))
}

/// The checksum of the generated data of the database at `url` (retried
/// while the server restarts).
pub fn checksum(url: &str) -> BoxFuture<'_, anyhow::Result<String>> {
    Box::pin(checksum_inner(url))
}

async fn checksum_inner(url: &str) -> anyhow::Result<String> {
    let mut last = None;
    for _ in 0..30 {
        match PgConnection::connect(url).await {
            Ok(mut c) => {
                let r = checksum_on(&mut c).await;
                c.close().await.ok();
                return r;
            }
            Err(e) => {
                if e.to_string().contains("does not exist") {
                    return Err(e.into());
                }
                last = Some(e);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(anyhow::anyhow!("cannot connect: {last:?}"))
}

fn exec<'a>(c: &'a mut PgConnection, sql: &'a str) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    Box::pin(async move { sqlx::Executor::execute(c, sql).await.map(|_| ()) })
}

fn checksum_on(c: &mut PgConnection) -> BoxFuture<'_, anyhow::Result<String>> {
    Box::pin(async move {
        Ok(sqlx::query_scalar(
            "SELECT md5(coalesce(string_agg(id || ':' || v, ',' ORDER BY id), '')) FROM chaos_data",
        )
        .fetch_one(c)
        .await?)
    })
}
