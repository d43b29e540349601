//! Observability (issue 14): the Grafana dashboard and the Prometheus alert
//! rules under `ops/observability/`, checked with Debian's `promtool`
//! (`apt-get install prometheus`): every role's `/metrics` passes `promtool
//! check metrics` once jobs ran; the rules pass `promtool check rules` and
//! their unit tests (each alert firing and not firing); every dashboard
//! query parses; every `landlord_*` name the dashboard and the rules use is
//! one the code registers (a renamed metric fails here); and a worker's
//! `/metrics` carries the backup monitor's gauges, per tenant.

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::common::{TestEnv, WorkerProc, free_port, ms, poll, secs};

const TICK: &str = "[[schedules]]\nname = \"tick\"\ncron = \"*/2 * * * * *\"\nkind = \"ping\"\nskip_overlap = false\n";
const TOKEN: &str = "observability-admin-token-0123456789";

fn ops_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/observability")
}

fn alerts_file() -> PathBuf {
    ops_dir().join("prometheus/alerts.yml")
}

/// `promtool`, or a failure that says how to get it.
fn promtool() -> Command {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "promtool is not installed: these tests need Debian's prometheus package \
         (`apt-get install -y prometheus`, which ops/test should install)"
    );
    Command::new("promtool")
}

/// Runs promtool with `args` (and `stdin`), which must succeed; returns its output.
fn promtool_ok(args: &[&str], stdin: Option<&str>) -> String {
    let mut c = promtool();
    c.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("start promtool");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {args:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// Every `expr` of the dashboard, recursively (panels, rows, targets).
fn dashboard_exprs() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(ops_dir().join("grafana/landlord.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut out = Vec::new();
    walk(&dash, &mut out);
    out
}

/// A Grafana query as plain PromQL: its interval variables made durations.
fn as_promql(expr: &str) -> String {
    let mut e = expr.to_string();
    for var in ["$__rate_interval", "$__interval", "$__range"] {
        e = e.replace(var, "5m");
    }
    assert!(
        !e.contains('$'),
        "unknown Grafana variable in dashboard query: {expr}"
    );
    e
}

/// The `expr:` of every rule of alerts.yml (one line each), with its alert.
fn alert_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(alerts_file()).unwrap();
    let mut out = Vec::new();
    let mut alert = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert:") {
            alert = Some(name.trim().to_string());
        } else if let Some(expr) = line.strip_prefix("expr:") {
            let name = alert.take().expect("an expr belongs to an alert");
            out.push((name, expr.trim().to_string()));
        }
    }
    out
}

/// The `landlord_*` names a PromQL expression uses.
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("landlord_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if before_ok {
            into.insert(expr[start..end].to_string());
        }
        i = end;
    }
}

/// The registered name a used series belongs to (histograms' `_bucket`,
/// `_sum`, `_count` series belong to the histogram).
fn registered_as<'a>(name: &'a str, registered: &[String]) -> Option<&'a str> {
    if registered.iter().any(|r| r == name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        name.strip_suffix(suffix)
            .filter(|base| registered.iter().any(|r| r == base))
    })
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = ops_dir().join("prometheus");
    let checked = promtool_ok(&["check", "rules", alerts_file().to_str().unwrap()], None);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let mut c = promtool();
    let out = c
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool test rules");
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Each alert is tested firing (a non-empty exp_alerts) and not firing
    // (`exp_alerts: []`).
    let tests = std::fs::read_to_string(dir.join("alerts_test.yml")).unwrap();
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("alertname:") else {
            continue;
        };
        let name = name.trim().to_string();
        match lines.get(i + 1).copied() {
            Some("exp_alerts: []") => quiet.insert(name),
            Some("exp_alerts:") => firing.insert(name),
            other => panic!("alertname {name} not followed by exp_alerts: {other:?}"),
        };
    }
    let alerts = alert_exprs();
    assert!(alerts.len() >= 7, "alerts.yml has its alerts: {alerts:?}");
    for (alert, _) in &alerts {
        assert!(firing.contains(alert), "no test shows {alert} firing");
        assert!(quiet.contains(alert), "no test shows {alert} not firing");
    }
    for wanted in [
        "LandlordDeadJobs",
        "LandlordBackupsStale",
        "LandlordQueueGrowing",
        "LandlordNoSchedulerLeader",
        "LandlordOutboxBacklog",
        "LandlordHeavySlotsSaturated",
        "LandlordRelayFailing",
    ] {
        assert!(
            alerts.iter().any(|(a, _)| a == wanted),
            "alerts.yml lacks {wanted}"
        );
    }
}

#[test]
fn every_dashboard_query_parses() {
    let exprs = dashboard_exprs();
    assert!(
        exprs.len() >= 20,
        "the dashboard has its queries: {exprs:?}"
    );
    // Each query as a recording rule: `promtool check rules` parses it.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&as_promql(e)).unwrap()
        ));
    }
    let dir = std::env::temp_dir().join(format!("landlord-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dashboard_rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = promtool_ok(&["check", "rules", file.to_str().unwrap()], None);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).ok();

    // A query that does not parse is caught: the check is not hollow.
    let bad = dir.with_extension("bad.yml");
    std::fs::write(
        &bad,
        "groups:\n  - name: d\n    rules:\n      - record: x\n        expr: \"sum by (kind (landlord_jobs_total)\"\n",
    )
    .unwrap();
    let st = promtool()
        .args(["check", "rules", bad.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    std::fs::remove_file(&bad).ok();
    assert!(!st.success(), "promtool accepts a broken query");
}

#[test]
fn the_dashboard_and_the_alerts_use_only_metrics_landlord_registers() {
    let registered = &landlord::metrics::get().names;
    assert!(
        registered.iter().all(|n| n.starts_with("landlord_")),
        "{registered:?}"
    );
    let mut used = BTreeSet::new();
    for e in dashboard_exprs() {
        metric_names(&e, &mut used);
    }
    let dashboard_used = used.len();
    for (_, e) in alert_exprs() {
        metric_names(&e, &mut used);
    }
    assert!(dashboard_used >= 20, "names found: {used:?}");
    let unknown: Vec<&String> = used
        .iter()
        .filter(|n| registered_as(n, registered).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "the dashboard or the alerts use metrics landlord does not register: {unknown:?}\nregistered: {registered:?}"
    );
    // The checker itself sees a renamed metric.
    let mut renamed = BTreeSet::new();
    metric_names(
        "rate(landlord_jobz_total[5m]) + landlord_job_duration_seconds_bucket",
        &mut renamed,
    );
    assert_eq!(renamed.len(), 2);
    assert!(registered_as("landlord_jobz_total", registered).is_none());
    assert_eq!(
        registered_as("landlord_job_duration_seconds_bucket", registered),
        Some("landlord_job_duration_seconds")
    );
    // What the issue asks the dashboard to draw is there.
    for wanted in [
        "landlord_jobs_total",
        "landlord_job_duration_seconds_bucket",
        "landlord_queue_depth_messages",
        "landlord_queue_oldest_job_age_seconds",
        "landlord_job_retries_total",
        "landlord_outbox_backlog_messages",
        "landlord_scheduler_leader",
        "landlord_backup_newest_timestamp_seconds",
        "landlord_backup_tenant_stored_bytes",
        "landlord_restore_drills_total",
    ] {
        let mut d = BTreeSet::new();
        dashboard_exprs()
            .iter()
            .for_each(|e| metric_names(e, &mut d));
        assert!(d.contains(wanted), "the dashboard does not draw {wanted}");
    }
}

async fn scrape(w: &WorkerProc) -> String {
    let url = format!("{}/metrics", w.metrics);
    poll(secs(30), ms(200), || async {
        match reqwest::get(&url).await {
            Ok(r) if r.status().is_success() => r.text().await.map_err(|e| e.to_string()),
            Ok(r) => Err(format!("{url}: {}", r.status())),
            Err(e) => Err(format!("{url}: {e}")),
        }
    })
    .await
}

/// The names of the series families a scrape carries.
fn families(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_role_metrics_pass_promtool_check_metrics_after_jobs_ran() {
    promtool();
    let mut env = TestEnv::new().await;
    env.tenant("obs-one").await;
    std::fs::write(env.log_dir.join("landlord.toml"), TICK).unwrap();

    // A worker that ran a ping, a backup (a heavy slot) and a restore drill.
    let worker = env.spawn_worker(&["--concurrency", "2"], &[]);
    let ping = env.enqueue(&["jobs", "ping"]);
    assert_eq!(env.wait_job(ping, secs(60)).await["status"], "succeeded");
    let backup = env.enqueue(&["backup", "--tenant", "obs-one"]);
    assert_eq!(env.wait_job(backup, secs(120)).await["status"], "succeeded");
    let drill = env.enqueue(&["backups", "verify", "--tenant", "obs-one", "--restore-test"]);
    let done = env.wait_job(drill, secs(120)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");

    // A scheduler that leads and fires.
    let scheduler = env.spawn(&["scheduler"], &[]);
    poll(secs(30), ms(300), || async {
        let n = env
            .count("SELECT count(*) FROM jobs WHERE kind = 'ping' AND status = 'succeeded' AND dedupe_key LIKE 'sched:tick:%'")
            .await;
        if n >= 1 { Ok(()) } else { Err("no scheduled ping ran yet".to_string()) }
    })
    .await;

    let w = scrape(&worker).await;
    promtool_ok(&["check", "metrics"], Some(&w));
    let got = families(&w);
    for name in [
        "landlord_jobs_total",
        "landlord_job_duration_seconds",
        "landlord_queue_depth_messages",
        "landlord_queue_oldest_job_age_seconds",
        "landlord_outbox_published_total",
        "landlord_outbox_backlog_messages",
        "landlord_relay_failures_total",
        "landlord_heavy_slots_in_use",
        "landlord_heavy_slots_per_server",
        "landlord_restore_drills_total",
        "landlord_backup_monitor_tenants",
        "landlord_backup_newest_timestamp_seconds",
        "landlord_backup_tenant_stored_bytes",
        "landlord_backup_monitor_refreshed_timestamp_seconds",
        "landlord_backup_stored_bytes_total",
    ] {
        assert!(
            got.contains(name),
            "the worker's /metrics lacks {name}:\n{w}"
        );
    }
    assert!(
        w.contains("landlord_restore_drills_total{outcome=\"passed\"} 1"),
        "{w}"
    );
    assert!(
        w.contains("landlord_heavy_slots_in_use{server=\"default\"} 0"),
        "the slot was given back: {w}"
    );
    assert!(w.contains("landlord_heavy_slots_per_server "), "{w}");

    let s = scrape(&scheduler).await;
    promtool_ok(&["check", "metrics"], Some(&s));
    assert!(s.contains("landlord_scheduler_leader 1"), "{s}");
    assert!(
        s.contains("landlord_schedule_firings_total{outcome=\"fired\",schedule=\"tick\"}"),
        "{s}"
    );
    env.signal(&scheduler, "TERM");
    assert_eq!(env.wait_exit(&scheduler, secs(20)), Some(0));

    // `landlord serve`: one /metrics for its three roles, after a job ran.
    env.signal(&worker, "TERM");
    assert_eq!(env.wait_exit(&worker, secs(30)), Some(0));
    let api = format!("127.0.0.1:{}", free_port());
    let serve = env.spawn(
        &["serve", "--api-listen", &api, "--no-scheduler"],
        &[("LANDLORD_API_TOKENS", &format!("admin={TOKEN}"))],
    );
    let ping = env.enqueue(&["jobs", "ping"]);
    assert_eq!(env.wait_job(ping, secs(60)).await["status"], "succeeded");
    let text = scrape(&serve).await;
    promtool_ok(&["check", "metrics"], Some(&text));
    assert!(
        text.contains("landlord_jobs_total{kind=\"ping\",outcome=\"succeeded\"} "),
        "{text}"
    );
    assert!(
        families(&text).contains("landlord_backup_newest_timestamp_seconds"),
        "serve's worker refreshes the backup monitor: {text}"
    );
    // `landlord api` serves no /metrics (the health listener does).
    let r = reqwest::get(format!("http://{api}/metrics")).await.unwrap();
    assert_ne!(r.status().as_u16(), 200);
    env.signal(&serve, "TERM");
    assert_eq!(env.wait_exit(&serve, secs(30)), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_exports_the_backup_monitor_gauges_per_tenant() {
    let mut env = TestEnv::new().await;
    env.tenant("obs-fresh").await;
    env.tenant("obs-bare").await;
    let out = env.run(&["backup", "--tenant", "obs-fresh", "--sync", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (completed, bytes): (i64, i64) = sqlx::query_as(
        "SELECT floor(extract(epoch FROM max(b.completed_at)))::bigint, sum(b.stored_bytes)::bigint \
         FROM backups b JOIN tenants t ON t.id = b.tenant_id \
         WHERE t.slug = 'obs-fresh' AND b.status = 'complete'",
    )
    .fetch_one(&env.catalog)
    .await
    .unwrap();
    assert!(bytes > 0);

    let w = env.spawn_worker(&[], &[]);
    scrape(&w).await; // listening
    let metric = |series: &'static str| {
        let (env, w) = (&env, &w);
        async move { env.metric(w, series).await }
    };
    poll(secs(30), ms(200), || async {
        match metric("landlord_backup_monitor_refreshed_timestamp_seconds").await {
            v if v > 0.0 => Ok(()),
            _ => Err("the worker has not refreshed the backup monitor gauges".to_string()),
        }
    })
    .await;
    let first_refresh = std::time::Instant::now();
    // The fresh tenant: its newest backup's completion (floored to the
    // second) and its stored bytes; the bare one: 0 and 0, and it is stale.
    assert_eq!(
        metric("landlord_backup_newest_timestamp_seconds{tenant=\"obs-fresh\"}").await as i64,
        completed
    );
    assert_eq!(
        metric("landlord_backup_tenant_stored_bytes{tenant=\"obs-fresh\"}").await as i64,
        bytes
    );
    let body = scrape(&w).await;
    assert!(
        body.contains("landlord_backup_newest_timestamp_seconds{tenant=\"obs-bare\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("landlord_backup_tenant_stored_bytes{tenant=\"obs-bare\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("landlord_backup_monitor_tenants{check=\"stale\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("landlord_backup_monitor_tenants{check=\"healthy\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("landlord_backup_monitor_tenants{check=\"oversize\"} 0"),
        "{body}"
    );

    // A backup this worker completes refreshes the gauges at once, well
    // before the next interval (due a REFRESH_EVERY after the first refresh).
    let job = env.enqueue(&["backup", "--tenant", "obs-bare"]);
    assert_eq!(env.wait_job(job, secs(60)).await["status"], "succeeded");
    poll(secs(20), ms(200), || async {
        let healthy = metric("landlord_backup_monitor_tenants{check=\"healthy\"}").await;
        let bare = metric("landlord_backup_newest_timestamp_seconds{tenant=\"obs-bare\"}").await;
        if healthy == 2.0 && bare > 0.0 {
            Ok(())
        } else {
            Err(format!("healthy {healthy}, obs-bare newest {bare}"))
        }
    })
    .await;
    assert!(
        first_refresh.elapsed() + secs(5) < landlord::backup::monitor::REFRESH_EVERY,
        "refreshed by the backup, not by the interval"
    );
    assert_eq!(
        metric("landlord_backup_monitor_tenants{check=\"stale\"}").await,
        0.0
    );
    env.signal(&w, "TERM");
    assert_eq!(env.wait_exit(&w, secs(30)), Some(0));
}
