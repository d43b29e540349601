//! The checker, after the fleet has drained: every job terminal and none
//! lost or unexplained; each succeeded job's effect exactly once (a complete
//! backup row and its object, a restore row, a welcome mail); no two
//! attempts' sessions overlapping on one tenant (the witness) and no session
//! outliving its job's end; tenant data as the harness left it; no database
//! debris; `backups reconcile` clean; compensation never pending. Prints a
//! table; every failed rule is a violation of the run.
//!
//! This module only reads: the catalog, the servers, the store, maildev.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt::Write as _,
    time::Duration,
};

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{Run, witness, workload};

/// Kinds whose attempts must never overlap on one tenant (`TENANT_EXCLUSIVE`).
const EXCLUSIVE: [&str; 8] = [
    "analyze",
    "backup",
    "drop_tenant",
    "maintenance",
    "migrate",
    "ping",
    "provision",
    "restore",
];

/// Dedupe-key prefixes of jobs landlord enqueues itself.
const SYSTEM_KEYS: [&str; 4] = ["sched:", "welcome:", "drop-pre:", "migrate:"];

/// Waits until every recorded job and every job of the catalog is terminal.
pub async fn wait_terminal(run: &Run) {
    loop {
        let live: Result<i64, _> = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running', 'retrying') \
             AND NOT (kind = 'drop_pre_restore' AND status = 'queued' AND run_at > now() + interval '1 hour')",
        )
        .fetch_one(&run.world.catalog)
        .await;
        if let Ok(0) = live {
            let ids: Vec<Uuid> = run.jobs.lock().unwrap().iter().map(|j| j.id).collect();
            let found: Result<i64, _> =
                sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1)")
                    .bind(&ids)
                    .fetch_one(&run.world.catalog)
                    .await;
            // A lost job never appears: do not wait for it forever.
            if found.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct JobRow {
    id: Uuid,
    kind: String,
    status: String,
    tenant: Option<String>,
    dedupe: Option<String>,
    attempts: i32,
    /// When the job stopped touching databases: its end, or the end of its
    /// compensation, which runs after the job is recorded terminal.
    quiet_at: Option<DateTime<Utc>>,
    lease_expires_at: Option<DateTime<Utc>>,
    run_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

impl JobRow {
    /// A pre-restore copy's drop, due when the rollback window ends: waiting
    /// by design, not stuck.
    fn deferred(&self) -> bool {
        self.kind == "drop_pre_restore"
            && self.status == "queued"
            && self.run_at > Utc::now() + chrono::Duration::hours(1)
    }
}

async fn jobs(run: &Run) -> Vec<JobRow> {
    let rows = sqlx::query(
        "SELECT j.id, j.kind, j.status, t.slug, j.dedupe_key, j.attempts, \
                j.lease_expires_at, j.run_at, j.created_at, \
                greatest(j.finished_at, j.compensated_at) \
         FROM jobs j LEFT JOIN tenants t ON t.id = j.tenant_id",
    )
    .fetch_all(&run.world.catalog)
    .await
    .expect("read the catalog's jobs");
    rows.into_iter()
        .map(|r| JobRow {
            id: r.get(0),
            kind: r.get(1),
            status: r.get(2),
            tenant: r.get(3),
            dedupe: r.get(4),
            attempts: r.get(5),
            lease_expires_at: r.get(6),
            run_at: r.get(7),
            created_at: r.get(8),
            quiet_at: r.get(9),
        })
        .collect()
}

/// Runs every check; records violations on `run`; returns the printed report.
pub async fn check(run: &Run, sessions: &[witness::Session], samples: (u64, u64)) -> String {
    let mut out = String::new();
    let all = jobs(run).await;
    check_jobs(run, &all, &mut out);
    check_effects(run, &all, &mut out).await;
    check_witness(run, &all, sessions, samples, &mut out);
    check_data(run, &mut out).await;
    check_debris(run, &mut out).await;
    check_reconcile(run, &mut out).await;
    check_compensation(run, &mut out).await;
    let _ = writeln!(out, "\nfaults injected:");
    for (f, n) in run.faults.lock().unwrap().iter() {
        let _ = writeln!(out, "  {n:>4}  {f}");
    }
    let v = run.violations.lock().unwrap();
    let _ = writeln!(out, "\nviolations: {}", v.len());
    for x in v.iter() {
        let _ = writeln!(out, "  - {x}");
    }
    out
}

fn check_jobs(run: &Run, all: &[JobRow], out: &mut String) {
    let recorded = run.jobs.lock().unwrap().clone();
    let by_id: HashMap<Uuid, &JobRow> = all.iter().map(|j| (j.id, j)).collect();
    let known: HashSet<Uuid> = recorded.iter().map(|j| j.id).collect();
    for j in &recorded {
        if !by_id.contains_key(&j.id) {
            run.violation(format!(
                "lost: job {} ({}, {:?}) enqueued by the harness is not in the catalog",
                j.id, j.kind, j.tenant
            ));
        }
    }
    let mut uncertain = run.uncertain.lock().unwrap().clone();
    let mut system = 0;
    for j in all {
        if known.contains(&j.id) {
            continue;
        }
        if j.dedupe
            .as_deref()
            .is_some_and(|k| SYSTEM_KEYS.iter().any(|p| k.starts_with(p)))
        {
            system += 1;
            continue;
        }
        if let Some(i) = uncertain
            .iter()
            .position(|u| u.kind == j.kind && u.tenant == j.tenant && j.created_at >= u.at)
        {
            uncertain.remove(i);
            continue;
        }
        run.violation(format!(
            "unexplained: job {} ({}, {:?}) is in the catalog but nobody enqueued it",
            j.id, j.kind, j.tenant
        ));
    }
    let now = Utc::now();
    let deferred = all.iter().filter(|j| j.deferred()).count();
    for j in all {
        if !workload::TERMINAL.contains(&j.status.as_str()) && !j.deferred() {
            let stuck = j.status == "running" && j.lease_expires_at.is_some_and(|l| l < now);
            run.violation(format!(
                "not terminal: job {} ({}, {:?}) is {}{}",
                j.id,
                j.kind,
                j.tenant,
                j.status,
                if stuck { " past its lease" } else { "" }
            ));
        }
    }
    let mut table: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    let mut attempts: BTreeMap<&str, i64> = BTreeMap::new();
    for j in all {
        *table
            .entry(&j.kind)
            .or_default()
            .entry(&j.status)
            .or_default() += 1;
        *attempts.entry(&j.kind).or_default() += i64::from(j.attempts);
    }
    let cols = ["succeeded", "failed", "dead", "cancelled", "other"];
    let _ = writeln!(
        out,
        "\njobs: {} in the catalog ({} enqueued by the harness, {system} by landlord itself; \
         {deferred} pre-restore drops queued for the end of the rollback window)",
        all.len(),
        recorded.len()
    );
    let _ = writeln!(
        out,
        "  {:<16}{:>10}{:>8}{:>6}{:>11}{:>7}{:>10}",
        "kind", cols[0], cols[1], cols[2], cols[3], cols[4], "attempts"
    );
    for (kind, by) in &table {
        let n = |s: &str| by.get(s).copied().unwrap_or(0);
        let other: usize = by
            .iter()
            .filter(|(s, _)| !cols[..4].contains(s))
            .map(|(_, n)| n)
            .sum();
        let _ = writeln!(
            out,
            "  {:<16}{:>10}{:>8}{:>6}{:>11}{:>7}{:>10}",
            kind,
            n("succeeded"),
            n("failed"),
            n("dead"),
            n("cancelled"),
            other,
            attempts[kind]
        );
    }
}

async fn check_effects(run: &Run, all: &[JobRow], out: &mut String) {
    let pool = &run.world.catalog;
    let backups: Vec<(Uuid, Option<Uuid>, String, String)> =
        sqlx::query_as("SELECT id, job_id, status, object_key FROM backups")
            .fetch_all(pool)
            .await
            .expect("backups");
    let restores: Vec<(Uuid, Option<Uuid>, String)> =
        sqlx::query_as("SELECT id, job_id, status FROM restores")
            .fetch_all(pool)
            .await
            .expect("restores");
    let store = run.world.store().await;
    let mut objects_checked = 0;
    for j in all.iter().filter(|j| j.kind == "backup") {
        let complete: Vec<_> = backups
            .iter()
            .filter(|b| b.1 == Some(j.id) && b.2 == "complete")
            .collect();
        let ok = j.status == "succeeded";
        if ok && complete.len() != 1 || !ok && !complete.is_empty() {
            run.violation(format!(
                "backup job {} ({:?}) {}: {} complete backup(s), expected {}",
                j.id,
                j.tenant,
                j.status,
                complete.len(),
                usize::from(ok)
            ));
        }
        for b in complete {
            match &store {
                Ok(s) => match s.head(&b.3).await {
                    Ok(Some(_)) => objects_checked += 1,
                    Ok(None) => run.violation(format!(
                        "backup {} of job {} is complete but its object {} is not in the store",
                        b.0, j.id, b.3
                    )),
                    Err(e) => run.note(format!("store head {}: {e:#}", b.3)),
                },
                Err(e) => run.note(format!("store not readable: {e:#}")),
            }
        }
    }
    for j in all.iter().filter(|j| j.kind == "restore") {
        let complete = restores
            .iter()
            .filter(|r| r.1 == Some(j.id) && r.2 == "complete")
            .count();
        let ok = j.status == "succeeded";
        if ok && complete != 1 || !ok && complete != 0 {
            run.violation(format!(
                "restore job {} ({:?}) {}: {complete} complete restore(s), expected {}",
                j.id,
                j.tenant,
                j.status,
                usize::from(ok)
            ));
        }
    }
    let _ = writeln!(
        out,
        "\neffects: {} backup rows ({} complete, {objects_checked} objects checked in the store), {} restore rows",
        backups.len(),
        backups.iter().filter(|b| b.2 == "complete").count(),
        restores.len()
    );
    check_mail(run, out).await;
}

async fn check_mail(run: &Run, out: &mut String) {
    landlord::tls::install_default_crypto();
    let url =
        std::env::var("LANDLORD_MAILDEV_URL").unwrap_or_else(|_| "http://127.0.0.1:1080".into());
    if reqwest::get(format!("{url}/api/email")).await.is_err() {
        run.note("maildev not reachable: welcome mails not checked".into());
        let _ = writeln!(out, "welcome mails: NOT CHECKED (maildev not reachable)");
        return;
    }
    let tenants: Vec<_> = run.tenants.lock().unwrap().values().cloned().collect();
    let mut one = 0;
    for t in tenants.iter().filter(|t| t.ready) {
        let n = crate::common::mails_to(&t.email).await.len();
        if n == 1 {
            one += 1;
        } else {
            run.violation(format!(
                "tenant {}: {n} welcome mail(s) to {}, expected 1",
                t.slug, t.email
            ));
        }
    }
    let _ = writeln!(
        out,
        "welcome mails: {one} of {} tenants got exactly one",
        tenants.len()
    );
}

fn check_witness(
    run: &Run,
    all: &[JobRow],
    sessions: &[witness::Session],
    (samples, failed): (u64, u64),
    out: &mut String,
) {
    let tenant_of: HashMap<Uuid, String> = all
        .iter()
        .filter_map(|j| Some((j.id, j.tenant.clone()?)))
        .collect();
    let exclusive = |k: &str| EXCLUSIVE.contains(&k);
    let found = witness::overlaps(sessions, &tenant_of, &exclusive);
    for (tenant, a, b) in found.iter().take(20) {
        run.violation(format!(
            "overlap on tenant {tenant} ({}): {}/{}/{} [{} – {}] pid {} db {} and {}/{}/{} [{} – {}] pid {} db {}",
            a.source,
            a.kind,
            a.job,
            a.attempt,
            a.start.format("%H:%M:%S%.3f"),
            a.end.format("%H:%M:%S%.3f"),
            a.pid,
            a.database,
            b.kind,
            b.job,
            b.attempt,
            b.start.format("%H:%M:%S%.3f"),
            b.end.format("%H:%M:%S%.3f"),
            b.pid,
            b.database
        ));
    }
    if found.len() > 20 {
        run.violation(format!("… and {} more overlaps", found.len() - 20));
    }
    // A session of a tenant-exclusive job still open after the job was
    // recorded terminal (and its compensation, if it had one, recorded
    // done). Only those kinds: an attempt of another kind (`verify_backup`)
    // on a process stopped past its lease keeps its idle sessions until the
    // process wakes and fences itself, and such a kind never touches the
    // live database (seed 12089602330168775498 saw one such session 4 s
    // after its job ended).
    let finished: HashMap<Uuid, DateTime<Utc>> = all
        .iter()
        .filter(|j| exclusive(&j.kind))
        .filter_map(|j| Some((j.id, j.quiet_at?)))
        .collect();
    let mut outlived = 0;
    for s in sessions {
        let slack = if s.source == "log" { 250 } else { 50 };
        if let Some(f) = finished.get(&s.job)
            && s.end > *f + chrono::Duration::milliseconds(slack)
        {
            outlived += 1;
            if outlived <= 10 {
                run.violation(format!(
                    "session outlived its job ({}): {}/{}/{} pid {} on {} db {} until {} but the job ended {}",
                    s.source,
                    s.kind,
                    s.job,
                    s.attempt,
                    s.pid,
                    s.server,
                    s.database,
                    s.end.format("%H:%M:%S%.3f"),
                    f.format("%H:%M:%S%.3f")
                ));
            }
        }
    }
    let by_source = |src: &str| sessions.iter().filter(|s| s.source == src).count();
    let attempts: HashSet<(Uuid, u32)> = sessions.iter().map(|s| (s.job, s.attempt)).collect();
    let _ = writeln!(
        out,
        "\nwitness: {} sessions sampled ({samples} samples, {failed} failed), {} from the chaos cluster's log, {} attempts seen; {} overlaps, {outlived} sessions outliving their job",
        by_source("sampled"),
        by_source("log"),
        attempts.len(),
        found.len()
    );
}

async fn check_data(run: &Run, out: &mut String) {
    let tenants: Vec<_> = run.tenants.lock().unwrap().values().cloned().collect();
    let mut intact = 0;
    for t in tenants.iter().filter(|t| t.ready) {
        let url = run.world.server_url(&t.server, &t.db);
        match workload::checksum(&url).await {
            Ok(c) if Some(&c) == t.checksum.as_ref() => intact += 1,
            Ok(c) => run.violation(format!(
                "tenant {}: data checksum {c}, the harness left {:?}",
                t.slug, t.checksum
            )),
            Err(e) => run.violation(format!(
                "tenant {}: database {} unreadable: {e}",
                t.slug, t.db
            )),
        }
    }
    let _ = writeln!(
        out,
        "tenant data: {intact} of {} tenants intact",
        tenants.len()
    );
}

async fn check_debris(run: &Run, out: &mut String) {
    let kept: Vec<String> = sqlx::query_scalar(
        "SELECT pre_restore_db FROM restores WHERE pre_restore_db IS NOT NULL \
         AND dropped_at IS NULL AND keep_until > now()",
    )
    .fetch_all(&run.world.catalog)
    .await
    .expect("read the databases the debris check compares");
    let live: Vec<String> = sqlx::query_scalar("SELECT db_name FROM tenants")
        .fetch_all(&run.world.catalog)
        .await
        .expect("read the databases the debris check compares");
    let mut debris = Vec::new();
    let mut pre = 0;
    for server in ["default", "chaos"] {
        let url = run.world.server_url(server, "postgres");
        let dbs: Vec<String> = match sqlx::PgPool::connect(&url).await {
            Ok(p) => {
                let mut v: Vec<String> =
                    sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
                        .bind(format!("t_c{}%", run.world.run))
                        .fetch_all(&p)
                        .await
                        .expect("read the databases the debris check compares");
                if server == "chaos" {
                    v.extend(
                        sqlx::query_scalar::<_, String>(
                            "SELECT datname FROM pg_database WHERE datname LIKE '%\\_build'",
                        )
                        .fetch_all(&p)
                        .await
                        .expect("read template build databases"),
                    );
                }
                p.close().await;
                v
            }
            // A check that cannot look must not pass.
            Err(e) => panic!("debris check: cannot reach server {server}: {e}"),
        };
        for db in dbs {
            if live.contains(&db) {
                continue;
            }
            if kept.contains(&db) {
                pre += 1;
                continue;
            }
            debris.push(format!("{server}/{db}"));
        }
    }
    for d in &debris {
        run.violation(format!(
            "debris: database {d} belongs to no tenant and no kept pre-restore copy"
        ));
    }
    let _ = writeln!(
        out,
        "databases: {} debris, {pre} pre-restore copies inside the rollback window",
        debris.len()
    );
}

async fn check_reconcile(run: &Run, out: &mut String) {
    let (ok, stdout, stderr) = run.world.cli(&["backups", "reconcile", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
    let n = |k: &str| v[k].as_array().map_or(0, Vec::len);
    let dirty = n("orphan_objects") + n("missing_objects") + n("incomplete_uploads");
    if v.is_null() || dirty > 0 {
        run.violation(format!(
            "backups reconcile not clean (exit ok: {ok}): {} {}",
            stdout.trim(),
            stderr.trim()
        ));
    }
    let _ = writeln!(
        out,
        "backups reconcile: {} objects, {} orphan, {} missing, {} incomplete uploads",
        v["objects"],
        n("orphan_objects"),
        n("missing_objects"),
        n("incomplete_uploads")
    );
}

async fn check_compensation(run: &Run, out: &mut String) {
    let pending: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, kind FROM jobs WHERE compensation = 'pending'")
            .fetch_all(&run.world.catalog)
            .await
            .expect("read pending compensations");
    for (id, kind) in &pending {
        run.violation(format!("compensation pending: job {id} ({kind})"));
    }
    let _ = writeln!(out, "compensation: {} pending", pending.len());
}
