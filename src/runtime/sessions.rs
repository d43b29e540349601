//! An attempt's footprint on the database servers: its sessions and its child
//! programs, named so that when the attempt stops (finished, timed out, lost
//! its lease or tenant lock, shutdown deadline) they can be found and ended
//! before its outcome is recorded or its tenant lock released. Dropping a
//! handler's future does not stop a statement PostgreSQL is running (VACUUM
//! FULL, REINDEX, DDL, CREATE/DROP DATABASE go on), so without this the next
//! attempt could run beside the last one's leftovers.
//!
//! - **Naming**: [`Scope::run`] sets a task-local around the handler's
//!   future; `tenants::server_options` (which every tenant and server
//!   connection goes through) reads [`application_name`], and
//!   `backup::pgtool` gives child programs the same name as `PGAPPNAME` (and
//!   `LANDLORD_ATTEMPT`). A task the handler spawns keeps the name only if
//!   wrapped in [`inherit`]. Outside attempts the name is [`FALLBACK`].
//! - **Ending** ([`end`]): on every configured server, the backends with the
//!   attempt's exact name are cancelled, then terminated, and polled in
//!   `pg_stat_activity` until gone; children of this process carrying the
//!   name are killed and waited for (Linux, through `/proc`). One query per
//!   server when nothing is left, which is the success path.
//!
//! - **Fencing out** ([`fence_out`]): a tenant lock whose session dies (a
//!   terminated backend, a catalog restart) is free at once, before its
//!   holder can notice; so the next holder, before its handler runs, ends
//!   the sessions on the tenant's own database of attempts of
//!   tenant-exclusive kinds other than its own. They belong to attempts
//!   that lost the lock.
//!
//! This module must never end a session or process that is not the
//! attempt's own (it matches the exact name, never a database or a prefix),
//! except in [`fence_out`], which ends only sessions named for attempts of
//! tenant-exclusive kinds on the database of the tenant whose lock the
//! caller holds; and it never decides an attempt's outcome: it only says
//! whether leftovers are confirmed gone.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use sqlx::{ConnectOptions, Connection, PgConnection, postgres::PgConnectOptions};
use uuid::Uuid;

use crate::config::Settings;

/// The `application_name` of sessions opened outside any attempt.
pub const FALLBACK: &str = "landlord";
/// The name of the sessions this module itself opens to end others.
const SWEEPER: &str = "landlord/sessions";
/// PostgreSQL keeps at most NAMEDATALEN - 1 bytes of an `application_name`.
const MAX_NAME: usize = 63;
/// How long a cancelled statement gets before its session is terminated.
const CANCEL_GRACE: Duration = Duration::from_millis(200);
/// How often `pg_stat_activity` and `/proc` are polled while waiting.
const POLL: Duration = Duration::from_millis(100);

tokio::task_local! {
    static CURRENT: Arc<Scope>;
}

/// One attempt's name, shared by everything the attempt opens.
#[derive(Debug)]
pub struct Scope {
    label: String,
}

impl Scope {
    /// The scope of attempt `attempt` of job `job_id` of kind `kind`.
    pub fn new(kind: &str, job_id: Uuid, attempt: u32) -> Arc<Self> {
        Arc::new(Self {
            label: label(kind, job_id, attempt),
        })
    }

    /// `landlord/{kind}/{job_id}/{attempt}`, at most 63 bytes.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs `f` (the handler) with this scope as the current one.
    pub fn run<F: Future>(self: Arc<Self>, f: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, f)
    }
}

/// `landlord/{kind}/{job_id}/{attempt}`; the kind is shortened if the whole
/// would not fit PostgreSQL's 63 bytes (it would be cut, and then never
/// match exactly). Only ASCII survives in an `application_name`.
pub fn label(kind: &str, job_id: Uuid, attempt: u32) -> String {
    let tail = format!("/{job_id}/{attempt}");
    let room = MAX_NAME - "landlord/".len() - tail.len();
    let kind: String = kind
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(room)
        .collect();
    format!("landlord/{kind}{tail}")
}

/// The name for a session or child program opened now: the current
/// attempt's label, or [`FALLBACK`] outside attempts.
pub fn application_name() -> String {
    CURRENT
        .try_with(|s| s.label.clone())
        .unwrap_or_else(|_| FALLBACK.to_string())
}

/// `f` with the current attempt's scope, for a task the handler spawns
/// (tokio does not carry task-locals into new tasks).
pub fn inherit<F: Future>(f: F) -> futures::future::Either<impl Future<Output = F::Output>, F> {
    match CURRENT.try_with(|s| s.clone()) {
        Ok(scope) => futures::future::Either::Left(CURRENT.scope(scope, f)),
        Err(_) => futures::future::Either::Right(f),
    }
}

/// What [`end`] found and did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ended {
    /// Backends that had to be cancelled/terminated, as `server:pid`.
    pub sessions: Vec<String>,
    /// Child processes that had to be killed.
    pub children: Vec<u32>,
    /// Whether everything is confirmed gone (false: a server could not be
    /// asked, or something outlived the bound).
    pub clear: bool,
}

/// Ends what the attempt named `label` left running: its sessions on every
/// configured server and, with `programs`, this process's children carrying
/// the name. Waits at most about `bound` for them to be gone.
pub async fn end(settings: &Settings, label: &str, bound: Duration, programs: bool) -> Ended {
    let deadline = Instant::now() + bound;
    let mut out = Ended {
        clear: true,
        ..Ended::default()
    };
    let children = if programs {
        children::kill(label)
    } else {
        Vec::new()
    };
    for (server, url) in &settings.servers {
        let opts = match sweeper_options(url.expose()) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(server, error = %format!("{e:#}"), "cannot end the attempt's sessions");
                out.clear = false;
                continue;
            }
        };
        match end_on(opts, label, deadline).await {
            Ok((pids, gone)) => {
                out.sessions
                    .extend(pids.iter().map(|pid| format!("{server}:{pid}")));
                out.clear &= gone;
            }
            Err(e) => {
                tracing::error!(server, error = %format!("{e:#}"), "cannot end the attempt's sessions");
                out.clear = false;
            }
        }
    }
    out.clear &= children::wait_gone(&children, deadline).await;
    out.children = children;
    out
}

/// Labels whose leftovers [`end_attempt`] could not confirm gone; the
/// executor keeps the tenant lock until [`before_release`] can.
static UNCONFIRMED: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// How long [`end_attempt`] waits for the leftovers to go.
pub const END_BOUND: Duration = Duration::from_secs(10);

/// [`end`] for an attempt whose handler has stopped (`aborted`: it did not
/// finish by itself), logged; remembered if not confirmed.
pub async fn end_attempt(settings: &Settings, label: &str, aborted: bool) -> Ended {
    // A handler that finished by itself reaped its programs (`/proc` is
    // read only after an abort); its sessions cost one query per server.
    let ended = end(settings, label, END_BOUND, aborted).await;
    let found = !ended.sessions.is_empty() || !ended.children.is_empty();
    if !ended.clear {
        tracing::error!(
            sessions = ?ended.sessions,
            children = ?ended.children,
            application_name = label,
            "the attempt's sessions or programs could not be confirmed gone; keeping the tenant lock"
        );
        if let Ok(mut u) = UNCONFIRMED.lock() {
            u.insert(label.to_string());
        }
    } else if found && aborted {
        tracing::warn!(
            sessions = ?ended.sessions,
            children = ?ended.children,
            application_name = label,
            "ended the stopped attempt's sessions and programs"
        );
    } else if found {
        tracing::info!(
            sessions = ?ended.sessions,
            children = ?ended.children,
            application_name = label,
            "ended sessions the finished attempt left open"
        );
    }
    ended
}

/// Before an attempt's tenant lock is released: if [`end_attempt`] could not
/// confirm its leftovers gone, keeps trying for up to `bound` (the lock stays
/// held meanwhile: better the next job waits than runs beside them).
pub async fn before_release(settings: &Settings, label: &str, bound: Duration) {
    let pending = UNCONFIRMED
        .lock()
        .map(|mut u| u.remove(label))
        .unwrap_or(false);
    if !pending {
        return;
    }
    let deadline = Instant::now() + bound;
    loop {
        let ended = end(settings, label, END_BOUND, true).await;
        if ended.clear {
            tracing::warn!(
                application_name = label,
                "the attempt's leftovers are gone now"
            );
            return;
        }
        if Instant::now() + END_BOUND > deadline {
            tracing::error!(
                application_name = label,
                "the attempt's leftovers are still not confirmed gone; releasing the tenant lock"
            );
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What [`fence_out`] looks at: the tenant's own database on its server,
/// the caller's own attempt, and the kinds that hold the tenant lock.
#[derive(Debug, Clone)]
pub struct Fence {
    pub server: String,
    pub database: String,
    pub own: String,
    pub exclusive_kinds: Vec<&'static str>,
}

/// Whether `name` is the label of an attempt of one of `kinds` (whose kind
/// part may have been shortened to fit, see [`label`]).
fn names_exclusive_attempt(name: &str, kinds: &[&str]) -> bool {
    let Some(rest) = name.strip_prefix("landlord/") else {
        return false;
    };
    let mut parts = rest.split('/');
    let (Some(kind), Some(job), Some(attempt), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if Uuid::parse_str(job).is_err() || attempt.parse::<u32>().is_err() {
        return false;
    }
    let shortened = name.len() == MAX_NAME;
    kinds
        .iter()
        .any(|k| *k == kind || (shortened && !kind.is_empty() && k.starts_with(kind)))
}

/// Run by the holder of a tenant's lock before its handler: ends the
/// sessions on the tenant's own database of other attempts of
/// tenant-exclusive kinds (attempts that lost the lock without noticing
/// yet) and waits, up to [`END_BOUND`], for them to be gone. Returns their
/// names; an error when they could not be confirmed gone.
pub async fn fence_out(settings: &Settings, fence: &Fence) -> Result<Vec<String>> {
    let url = settings
        .servers
        .get(&fence.server)
        .with_context(|| format!("server {:?} is not configured", fence.server))?;
    let deadline = Instant::now() + END_BOUND;
    let mut conn =
        tokio::time::timeout_at(deadline.into(), sweeper_options(url.expose())?.connect())
            .await
            .context("connecting to the tenant's server timed out")?
            .context("connecting to the tenant's server")?;
    let res = async {
        let mut ended = Vec::new();
        loop {
            let others: Vec<(i32, String)> = sqlx::query_as(
                "SELECT pid, application_name FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name LIKE 'landlord/%' \
                 AND application_name <> $2 AND pid <> pg_backend_pid()",
            )
            .bind(&fence.database)
            .bind(&fence.own)
            .fetch_all(&mut conn)
            .await
            .context("looking for sessions of attempts that lost the tenant lock")?;
            let stale: Vec<(i32, String)> = others
                .into_iter()
                .filter(|(_, n)| names_exclusive_attempt(n, &fence.exclusive_kinds))
                .collect();
            if stale.is_empty() {
                return Ok(ended);
            }
            if Instant::now() + POLL > deadline {
                anyhow::bail!(
                    "sessions of attempts that lost the tenant lock are still on {}: {:?}",
                    fence.database,
                    stale.iter().map(|(_, n)| n).collect::<Vec<_>>()
                );
            }
            for (pid, name) in stale {
                // Only if the pid still carries that name (pids are reused).
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE pid = $1 AND application_name = $2 AND datname = $3",
                )
                .bind(pid)
                .bind(&name)
                .bind(&fence.database)
                .execute(&mut conn)
                .await
                .context("ending a session of an attempt that lost the tenant lock")?;
                if !ended.contains(&name) {
                    ended.push(name);
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
    .await;
    let _ = conn.close().await;
    res
}

/// A session on a server's `postgres` database under this module's own
/// name (so it never matches the attempt's).
fn sweeper_options(url: &str) -> Result<PgConnectOptions> {
    use std::str::FromStr;
    Ok(PgConnectOptions::from_str(url)
        .context("parsing the server URL")?
        .database("postgres")
        .application_name(SWEEPER))
}

/// Ends `label`'s backends on one server; returns their pids and whether
/// they are confirmed gone by `deadline`.
async fn end_on(
    opts: PgConnectOptions,
    label: &str,
    deadline: Instant,
) -> Result<(Vec<i32>, bool)> {
    let mut conn = tokio::time::timeout_at(deadline.into(), opts.connect())
        .await
        .context("connecting to the server timed out")?
        .context("connecting to the server")?;
    let res = async {
        let pids = signal(&mut conn, label, Signal::Cancel).await?;
        if pids.is_empty() {
            return Ok((pids, true));
        }
        tokio::time::sleep(CANCEL_GRACE).await;
        signal(&mut conn, label, Signal::Terminate).await?;
        loop {
            let left = remaining(&mut conn, label).await?;
            if left == 0 {
                return Ok((pids, true));
            }
            if Instant::now() + POLL > deadline {
                return Ok((pids, false));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    .await;
    let _ = conn.close().await;
    res
}

/// What [`signal`] sends.
#[derive(Debug, Clone, Copy)]
enum Signal {
    /// `pg_cancel_backend`: stop the running statement.
    Cancel,
    /// `pg_terminate_backend`: end the session.
    Terminate,
}

/// Sends `sig` to every backend named `label` but this one; returns their pids.
async fn signal(conn: &mut PgConnection, label: &str, sig: Signal) -> Result<Vec<i32>> {
    // The signal goes only to the rows the name matched (a materialised
    // CTE: in one WHERE the planner may call the function first).
    let sql = match sig {
        Signal::Cancel => {
            "WITH mine AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()) \
             SELECT pid FROM mine, LATERAL pg_cancel_backend(pid)"
        }
        Signal::Terminate => {
            "WITH mine AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()) \
             SELECT pid FROM mine, LATERAL pg_terminate_backend(pid)"
        }
    };
    sqlx::query_scalar(sql)
        .bind(label)
        .fetch_all(&mut *conn)
        .await
        .with_context(|| format!("{sig:?} of the attempt's sessions"))
}

async fn remaining(conn: &mut PgConnection, label: &str) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(label)
    .fetch_one(&mut *conn)
    .await
    .context("looking for the attempt's sessions")
}

/// This process's child programs that carry an attempt's name
/// (`LANDLORD_ATTEMPT`, set by `backup::pgtool`). Linux only: elsewhere
/// the children are left to their owners' kill-on-drop guards.
mod children {
    use std::time::Instant;

    use super::POLL;

    /// Pids of our children whose environment names `label`; SIGKILL sent.
    pub fn kill(label: &str) -> Vec<u32> {
        let found = find(label);
        for pid in &found {
            // No unsafe code here (no libc): kill(1) sends the signal.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        found
    }

    /// Whether `pids` are gone (exited; their owners reap them) by `deadline`.
    pub async fn wait_gone(pids: &[u32], deadline: Instant) -> bool {
        loop {
            if pids.iter().all(|p| !running(*p)) {
                return true;
            }
            if Instant::now() + POLL > deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether `pid` still runs (not gone, not a zombie waiting for its owner).
    fn running(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat_fields(&stat).is_some_and(|(state, _)| !has_exited(state)),
            Err(_) => false,
        }
    }

    /// Whether a `/proc` state letter says the program no longer runs: `Z`
    /// (exited, waiting for its owner to reap it) or `X` (dead). The one
    /// place the letters are read.
    fn has_exited(state: &str) -> bool {
        matches!(state, "Z" | "X")
    }

    /// (state, ppid) of a `/proc/<pid>/stat` line (the name may hold spaces).
    fn stat_fields(stat: &str) -> Option<(&str, u32)> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut it = rest.split_whitespace();
        let state = it.next()?;
        let ppid = it.next()?.parse().ok()?;
        Some((state, ppid))
    }

    fn find(label: &str) -> Vec<u32> {
        let me = std::process::id();
        let marker = format!("LANDLORD_ATTEMPT={label}");
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| {
                        stat_fields(&s).map(|(state, ppid)| ppid == me && !has_exited(state))
                    })
                    .unwrap_or(false)
            })
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .map(|env| env.split(|b| *b == 0).any(|v| v == marker.as_bytes()))
                    .unwrap_or(false)
            })
            .collect()
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn stat_lines() {
            assert_eq!(
                super::stat_fields("42 (pg dump) S 7 42 42 0"),
                Some(("S", 7))
            );
            assert_eq!(super::stat_fields("garbage"), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    #[test]
    fn only_attempts_of_exclusive_kinds_are_fenced_out() {
        let id = Uuid::now_v7();
        let kinds = ["backup", "drop_pre_restore"];
        assert!(super::names_exclusive_attempt(
            &super::label("backup", id, 1),
            &kinds
        ));
        let long = super::label("drop_pre_restore", id, 123);
        assert!(long.len() == super::MAX_NAME && !long.contains("drop_pre_restore/"));
        assert!(super::names_exclusive_attempt(&long, &kinds));
        assert!(!super::names_exclusive_attempt(
            &super::label("verify_backup", id, 1),
            &kinds
        ));
        assert!(!super::names_exclusive_attempt("landlord", &kinds));
        assert!(!super::names_exclusive_attempt("landlord/sessions", &kinds));
        assert!(!super::names_exclusive_attempt(
            "landlord/backup/x/1",
            &kinds
        ));
        assert!(!super::names_exclusive_attempt(
            &format!("landlord/backup/{id}/1/x"),
            &kinds
        ));
    }

    #[test]
    fn labels_fit_namedatalen() {
        let id = Uuid::new_v4();
        assert_eq!(
            super::label("maintenance", id, 2),
            format!("landlord/maintenance/{id}/2")
        );
        let long = super::label("drop_pre_restore", id, 123);
        assert!(long.len() <= 63, "{long}");
        assert!(long.ends_with(&format!("/{id}/123")), "{long}");
    }

    #[tokio::test]
    async fn the_name_follows_the_scope() {
        assert_eq!(super::application_name(), super::FALLBACK);
        let scope = super::Scope::new("analyze", Uuid::nil(), 1);
        let label = scope.label().to_string();
        let (inside, spawned) = scope
            .run(async {
                let spawned = tokio::spawn(super::inherit(async { super::application_name() }));
                (super::application_name(), spawned.await.ok())
            })
            .await;
        assert_eq!(inside, label);
        assert_eq!(spawned.as_deref(), Some(label.as_str()));
    }
}
