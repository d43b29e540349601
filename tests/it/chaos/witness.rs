//! The "no overlap" witness: PostgreSQL's own view of which attempt had
//! sessions open when, never landlord's tables. Every tenant-database session
//! of an attempt carries `application_name = landlord/{kind}/{job}/{attempt}`.
//!
//! Two sources, both giving intervals per session:
//! - **sampling** `pg_stat_activity` on both tenant servers every ~100 ms:
//!   an interval is `[backend_start, last seen]`, so it can only be shorter
//!   than the truth (no false overlaps; a session shorter than a sample can
//!   be missed);
//! - **the chaos cluster's log** (`log_connections`/`log_disconnections`
//!   with `%m [%p] %a` in the prefix): exact start and end of every session.
//!
//! This module must never decide anything from the catalog but which tenant
//! a job belongs to and whether its kind is tenant-exclusive.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::{Connection as _, PgConnection};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One session of one attempt, as seen by one source.
#[derive(Debug, Clone)]
pub struct Session {
    pub server: String,
    pub pid: i32,
    pub kind: String,
    pub job: Uuid,
    pub attempt: u32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub database: String,
    pub source: &'static str,
}

/// `landlord/{kind}/{job}/{attempt}` → (kind, job, attempt).
pub fn parse_label(name: &str) -> Option<(String, Uuid, u32)> {
    let rest = name.strip_prefix("landlord/")?;
    let mut it = rest.rsplitn(3, '/');
    let attempt = it.next()?.parse().ok()?;
    let job = Uuid::parse_str(it.next()?).ok()?;
    let kind = it.next()?.to_string();
    Some((kind, job, attempt))
}

type Key = (String, i32, DateTime<Utc>, String);
/// pid, application_name, datname, backend_start, now.
type ActivityRow = (i32, String, String, DateTime<Utc>, DateTime<Utc>);

/// Sessions seen by sampling, keyed by (server, pid, backend_start, name).
#[derive(Default)]
pub struct Sampled {
    seen: HashMap<Key, (String, DateTime<Utc>)>,
    pub samples: u64,
    pub failed_samples: u64,
}

/// Samples `servers` (name, admin URL) until `stop`.
pub fn start_sampler(
    servers: Vec<(String, String)>,
    stop: CancellationToken,
) -> (Arc<Mutex<Sampled>>, tokio::task::JoinHandle<()>) {
    let state = Arc::new(Mutex::new(Sampled::default()));
    let st = state.clone();
    let handle = tokio::spawn(async move {
        let mut conns: Vec<Option<PgConnection>> = servers.iter().map(|_| None).collect();
        while !stop.is_cancelled() {
            for (i, (name, url)) in servers.iter().enumerate() {
                if conns[i].is_none() {
                    conns[i] = PgConnection::connect(url).await.ok();
                }
                let Some(c) = conns[i].as_mut() else {
                    st.lock().unwrap().failed_samples += 1;
                    continue;
                };
                let rows: Result<Vec<ActivityRow>, _> = sqlx::query_as(
                    "SELECT pid, application_name, coalesce(datname::text, ''), backend_start, \
                         clock_timestamp() FROM pg_stat_activity \
                         WHERE application_name LIKE 'landlord/%/%/%'",
                )
                .fetch_all(&mut *c)
                .await;
                match rows {
                    Ok(rows) => {
                        let mut s = st.lock().unwrap();
                        s.samples += 1;
                        for (pid, app, db, start, now) in rows {
                            s.seen
                                .entry((name.clone(), pid, start, app))
                                .and_modify(|e| e.1 = now)
                                .or_insert((db, now));
                        }
                    }
                    Err(_) => {
                        st.lock().unwrap().failed_samples += 1;
                        conns[i] = None;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (state, handle)
}

impl Sampled {
    pub fn sessions(&self) -> Vec<Session> {
        self.seen
            .iter()
            .filter_map(|((server, pid, start, app), (db, end))| {
                let (kind, job, attempt) = parse_label(app)?;
                Some(Session {
                    server: server.clone(),
                    pid: *pid,
                    kind,
                    job,
                    attempt,
                    start: *start,
                    end: *end,
                    database: db.clone(),
                    source: "sampled",
                })
            })
            .collect()
    }
}

/// Turns on connection logging on the chaos cluster (ALTER SYSTEM + reload).
pub async fn enable_logging(admin_url: &str) {
    let mut c = PgConnection::connect(admin_url)
        .await
        .expect("chaos cluster");
    for sql in [
        "ALTER SYSTEM SET log_connections = on",
        "ALTER SYSTEM SET log_disconnections = on",
        "ALTER SYSTEM SET log_timezone = 'UTC'",
        "ALTER SYSTEM SET log_line_prefix = '%m [%p] app=%a db=%d: '",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::raw_sql(sql)
            .execute(&mut c)
            .await
            .expect("enable connection logging");
    }
    c.close().await.ok();
}

/// Sessions the chaos cluster's log shows from byte `from` of the log on,
/// the intervals of connections still open at a shutdown closed there, and
/// those open at the end of the log closed at `now`.
pub fn from_log(text: &str, now: DateTime<Utc>) -> Vec<Session> {
    // pid → (start, name, db)
    let mut open: BTreeMap<i32, (DateTime<Utc>, String, String)> = BTreeMap::new();
    let mut out = Vec::new();
    let close = |out: &mut Vec<Session>, pid: i32, start, app: &str, db: &str, end| {
        if let Some((kind, job, attempt)) = parse_label(app) {
            out.push(Session {
                server: "chaos".into(),
                pid,
                kind,
                job,
                attempt,
                start,
                end,
                database: db.to_string(),
                source: "log",
            });
        }
    };
    for line in text.lines() {
        let Some((ts, pid, app, db, msg)) = parse_line(line) else {
            continue;
        };
        if msg.starts_with("connection authorized") || msg.starts_with("connection received") {
            if msg.starts_with("connection received") {
                open.insert(pid, (ts, String::new(), String::new()));
            } else {
                let start = open.get(&pid).map(|o| o.0).unwrap_or(ts);
                open.insert(pid, (start, app_from(msg).unwrap_or(app), db));
            }
        } else if msg.starts_with("disconnection") {
            if let Some((start, name, db0)) = open.remove(&pid) {
                let name = if app.is_empty() { name } else { app };
                let db = if db.is_empty() { db0 } else { db };
                close(&mut out, pid, start, &name, &db, ts);
            }
        } else if msg.contains("database system is shut down")
            || msg.contains("terminating any other active server processes")
        {
            for (pid, (start, name, db)) in std::mem::take(&mut open) {
                close(&mut out, pid, start, &name, &db, ts);
            }
        } else if !app.is_empty()
            && let Some(o) = open.get_mut(&pid)
        {
            // A later line shows the name the session set after connecting.
            o.1 = app;
        }
    }
    for (pid, (start, name, db)) in open {
        close(&mut out, pid, start, &name, &db, now);
    }
    out
}

/// `2025-01-01 12:00:00.123 UTC [1234] app=NAME db=DB: MESSAGE`
fn parse_line(line: &str) -> Option<(DateTime<Utc>, i32, String, String, &str)> {
    let (ts, rest) = line.split_at_checked(23)?;
    let ts = NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S%.3f")
        .ok()?
        .and_utc();
    let rest = rest.trim_start().strip_prefix("UTC ")?;
    let rest = rest.strip_prefix('[')?;
    let (pid, rest) = rest.split_once("] app=")?;
    let (app, rest) = rest.split_once(" db=")?;
    let (db, msg) = rest.split_once(": ")?;
    let msg = msg.trim_start_matches("LOG:").trim_start();
    Some((ts, pid.parse().ok()?, app.to_string(), db.to_string(), msg))
}

fn app_from(msg: &str) -> Option<String> {
    let i = msg.find("application_name=")?;
    let v = &msg[i + "application_name=".len()..];
    Some(v.split_whitespace().next()?.to_string())
}

/// Pairs of sessions of different attempts of tenant-exclusive kinds that
/// overlap in time on one tenant: (tenant, a, b).
pub fn overlaps(
    sessions: &[Session],
    tenant_of: &HashMap<Uuid, String>,
    exclusive: &dyn Fn(&str) -> bool,
) -> Vec<(String, Session, Session)> {
    let mut by_tenant: BTreeMap<String, Vec<&Session>> = BTreeMap::new();
    for s in sessions {
        if !exclusive(&s.kind) {
            continue;
        }
        if let Some(t) = tenant_of.get(&s.job) {
            by_tenant.entry(t.clone()).or_default().push(s);
        }
    }
    let mut found = Vec::new();
    for (tenant, mut v) in by_tenant {
        v.sort_by_key(|s| s.start);
        for i in 0..v.len() {
            for j in i + 1..v.len() {
                if v[j].start >= v[i].end {
                    break;
                }
                if (v[i].job, v[i].attempt) != (v[j].job, v[j].attempt) {
                    found.push((tenant.clone(), v[i].clone(), v[j].clone()));
                }
            }
        }
    }
    found
}

#[test]
fn labels_and_log_lines_parse() {
    let id = Uuid::new_v4();
    assert_eq!(
        parse_label(&format!("landlord/verify_backup/{id}/2")),
        Some(("verify_backup".to_string(), id, 2))
    );
    assert_eq!(parse_label("landlord/sessions"), None);
    let log = format!(
        "2025-01-01 12:00:00.100 UTC [42] app=[unknown] db=[unknown]: LOG:  connection received: host=127.0.0.1 port=1\n\
         2025-01-01 12:00:00.110 UTC [42] app=landlord/backup/{id}/1 db=t_x: LOG:  connection authorized: user=postgres database=t_x application_name=landlord/backup/{id}/1\n\
         2025-01-01 12:00:02.000 UTC [42] app=landlord/backup/{id}/1 db=t_x: LOG:  disconnection: session time: 0:00:01.900\n"
    );
    let s = from_log(&log, Utc::now());
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].job, id);
    assert_eq!(s[0].database, "t_x");
    assert_eq!((s[0].end - s[0].start).num_milliseconds(), 1900);
}
