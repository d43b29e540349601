//! The faults, picked at random from the run's seed, one at a time, until the
//! deadline: `kill -9` of a worker or scheduler (respawned), SIGSTOP of a
//! worker for longer than two leases then SIGCONT (the zombie),
//! `pg_terminate_backend` of landlord's lock and heartbeat sessions, a TCP
//! blackhole between worker 0 and the catalog, a broker outage, a restart of
//! the chaos cluster (the catalog and half the tenants), a Garage outage, a
//! rolling restart of the workers onto a build that lacks one job kind (and
//! back).
//!
//! Whatever a fault takes away it gives back: `heal_all` after the last
//! fault, `restore_services` from the soak's drop guard however the test ends.

use std::{
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use sqlx::Connection as _;

use super::{
    Run,
    fleet::{self, Role},
    nix_kill, workload,
};

/// Set while the soak has RabbitMQ's app stopped (real mode).
static BROKER_STOPPED: AtomicBool = AtomicBool::new(false);
/// Set while the soak has Garage stopped (real mode).
static GARAGE_STOPPED: AtomicBool = AtomicBool::new(false);

/// Kinds a rolling restart may leave out of the workers' registry.
const KINDS: [&str; 6] = [
    "backup",
    "restore",
    "maintenance",
    "ping",
    "verify_backup",
    "welcome_mail",
];

/// Injects faults until `until`.
pub async fn run(run: std::sync::Arc<Run>, until: Instant) {
    tokio::time::sleep(Duration::from_secs(3)).await;
    while Instant::now() < until {
        let which = run.pick(0..100u32);
        match which {
            0..16 => kill_one(&run, true).await,
            16..24 => kill_one(&run, false).await,
            24..36 => stop_worker(&run).await,
            36..50 => terminate_sessions(&run).await,
            50..62 => blackhole(&run).await,
            62..70 => broker_outage(&run).await,
            70..80 => pg_restart(&run).await,
            80..88 => garage_outage(&run).await,
            _ => rolling_restart(&run).await,
        }
        let pause = Duration::from_millis(run.pick(2000..7000));
        tokio::time::sleep(pause.min(until.saturating_duration_since(Instant::now()))).await;
    }
}

fn lease() -> Duration {
    Duration::from_secs(fleet::lease_seconds())
}

/// `kill -9` of a random worker (or scheduler), respawned after a moment.
async fn kill_one(run: &Run, worker: bool) {
    let roles: Vec<Role> = super::roles(&run.plan)
        .into_iter()
        .filter(|r| matches!(r, Role::Worker(_)) == worker)
        .collect();
    let role = roles[run.pick(0..roles.len())];
    run.fault(if worker {
        "kill -9 worker"
    } else {
        "kill -9 scheduler"
    });
    let mut procs = run.procs.lock().await;
    let Some(i) = procs.iter().position(|p| p.role == role) else {
        return;
    };
    nix_kill(procs[i].pid, "KILL");
    let _ = procs[i].child.wait().await;
    let without = procs[i].without.clone();
    drop(procs);
    tokio::time::sleep(Duration::from_millis(run.pick(300..3000))).await;
    let mut procs = run.procs.lock().await;
    procs[i] = workload::spawn(run, role, without.as_deref());
}

/// SIGSTOP of a random worker for two leases and more, then SIGCONT.
async fn stop_worker(run: &Run) {
    run.fault("SIGSTOP worker > lease");
    let slot = run.pick(0..run.plan.workers);
    let pid = {
        let procs = run.procs.lock().await;
        procs
            .iter()
            .find(|p| p.role == Role::Worker(slot))
            .map(|p| p.pid)
    };
    let Some(pid) = pid else { return };
    nix_kill(pid, "STOP");
    tokio::time::sleep(lease() * 2 + Duration::from_millis(run.pick(0..3000))).await;
    nix_kill(pid, "CONT");
}

/// `pg_terminate_backend` of landlord's lock and heartbeat sessions on the
/// catalog (by what they run; else some of its catalog sessions).
async fn terminate_sessions(run: &Run) {
    run.fault("pg_terminate_backend lock/heartbeat");
    let Ok(mut c) = sqlx::PgConnection::connect(&run.world.chaos_url("postgres")).await else {
        return;
    };
    let n: Result<i64, _> = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend' \
           AND (query ILIKE '%advisory%' OR query ILIKE '%lease_expires_at%' \
                OR application_name ILIKE '%lock%' OR application_name ILIKE '%heartbeat%' \
                OR random() < 0.25)",
    )
    .bind(&run.world.catalog_db)
    .fetch_one(&mut c)
    .await;
    c.close().await.ok();
    if let Ok(n) = n {
        eprintln!("[chaos]   terminated {n} catalog session(s)");
    }
}

/// Worker 0's catalog path hangs (no RST) for two to four leases.
async fn blackhole(run: &Run) {
    run.fault("catalog blackhole (worker 0)");
    run.world.catalog_proxy.blackhole();
    let l = fleet::lease_seconds() * 1000;
    tokio::time::sleep(Duration::from_millis(run.pick(2 * l..4 * l))).await;
    run.world.catalog_proxy.heal();
}

async fn broker_outage(run: &Run) {
    run.fault("RabbitMQ stop/start");
    let down = Duration::from_millis(run.pick(3000..8000));
    if run.plan.disrupt_shared {
        BROKER_STOPPED.store(true, Ordering::SeqCst);
        let _ = Command::new("rabbitmqctl").args(["stop_app"]).output();
        tokio::time::sleep(down).await;
        start_broker();
    } else {
        run.world.amqp_proxy.cut_and_refuse();
        tokio::time::sleep(down).await;
        run.world.amqp_proxy.heal();
    }
}

fn start_broker() {
    let _ = Command::new("rabbitmqctl").args(["start_app"]).output();
    let _ = Command::new("rabbitmqctl")
        .args(["await_startup", "--timeout", "120"])
        .output();
    BROKER_STOPPED.store(false, Ordering::SeqCst);
}

async fn pg_restart(run: &Run) {
    run.fault("PostgreSQL restart (catalog + chaos server)");
    let ok = tokio::task::spawn_blocking(fleet::restart_cluster)
        .await
        .unwrap_or(false);
    if !ok {
        run.note("pg_ctlcluster restart failed; starting the cluster".into());
        fleet::start_cluster();
    }
}

fn services_dir() -> std::path::PathBuf {
    std::env::var_os("LANDLORD_SERVICES_DIR")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".local/share/landlord-services")
        })
}

async fn garage_outage(run: &Run) {
    run.fault("Garage stop/start");
    let down = Duration::from_millis(run.pick(3000..8000));
    let pidfile = services_dir().join("garage/garage.pid");
    let pid = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    match (run.plan.disrupt_shared, pid) {
        (true, Some(pid)) => {
            GARAGE_STOPPED.store(true, Ordering::SeqCst);
            nix_kill(pid, "TERM");
            // Garage drains its connections before it exits; `ops/services
            // up` run while it still lives would reuse it, and then it is gone.
            if !gone_within(pid, Duration::from_secs(20)).await {
                nix_kill(pid, "KILL");
                gone_within(pid, Duration::from_secs(10)).await;
            }
            tokio::time::sleep(down).await;
            start_garage();
        }
        _ => {
            run.world.s3_proxy.cut_and_refuse();
            tokio::time::sleep(down).await;
            run.world.s3_proxy.heal();
        }
    }
}

/// Whether process `pid` exits within `limit`.
async fn gone_within(pid: u32, limit: Duration) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        if std::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// Starts Garage again through `ops/services up`; a soak whose S3 cannot
/// come back would only measure the outage, so this insists.
fn start_garage() {
    for _ in 0..3 {
        let up = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/services"))
            .arg("up")
            .output();
        if up.as_ref().is_ok_and(|o| o.status.success()) {
            GARAGE_STOPPED.store(false, Ordering::SeqCst);
            return;
        }
        eprintln!("[chaos]   ops/services up failed; trying again: {up:?}");
        std::thread::sleep(Duration::from_secs(2));
    }
    panic!("Garage did not come back after the soak stopped it");
}

/// Onto a build without one kind (or, if the fleet is on one, back): each
/// worker in turn gets SIGTERM, is waited for and started again.
async fn rolling_restart(run: &Run) {
    let degraded = run.procs.lock().await.iter().any(|p| p.without.is_some());
    let without = if degraded {
        run.fault("rolling restart back to the full build");
        None
    } else {
        run.fault("rolling restart onto a build without a kind");
        Some(KINDS[run.pick(0..KINDS.len())])
    };
    if let Some(k) = without {
        eprintln!("[chaos]   workers lose kind {k}");
    }
    for slot in 0..run.plan.workers {
        roll(run, Role::Worker(slot), without).await;
        tokio::time::sleep(Duration::from_millis(run.pick(500..2000))).await;
    }
}

/// SIGTERM, wait (kill -9 after the shutdown grace), start again.
async fn roll(run: &Run, role: Role, without: Option<&str>) {
    let mut procs = run.procs.lock().await;
    let Some(i) = procs.iter().position(|p| p.role == role) else {
        return;
    };
    nix_kill(procs[i].pid, "CONT");
    nix_kill(procs[i].pid, "TERM");
    if tokio::time::timeout(Duration::from_secs(15), procs[i].child.wait())
        .await
        .is_err()
    {
        nix_kill(procs[i].pid, "KILL");
        let _ = procs[i].child.wait().await;
    }
    procs[i] = workload::spawn(run, role, without);
}

/// After the last fault: proxies healed, services up, every role running
/// the full build.
pub async fn heal_all(run: &Run) {
    run.world.catalog_proxy.heal();
    run.world.amqp_proxy.heal();
    run.world.s3_proxy.heal();
    tokio::task::spawn_blocking(|| {
        if BROKER_STOPPED.load(Ordering::SeqCst) {
            start_broker();
        }
        if GARAGE_STOPPED.load(Ordering::SeqCst) {
            start_garage();
        }
        fleet::start_cluster();
    })
    .await
    .ok();
    for role in super::roles(&run.plan) {
        let (dead, degraded) = {
            let mut procs = run.procs.lock().await;
            match procs.iter_mut().find(|p| p.role == role) {
                Some(p) => {
                    nix_kill(p.pid, "CONT");
                    (!matches!(p.child.try_wait(), Ok(None)), p.without.is_some())
                }
                None => (true, false),
            }
        };
        if degraded {
            roll(run, role, None).await;
        } else if dead {
            let mut procs = run.procs.lock().await;
            let p = workload::spawn(run, role, None);
            match procs.iter().position(|p| p.role == role) {
                Some(i) => procs[i] = p,
                None => procs.push(p),
            }
            run.note(format!("{role:?} had exited; started again"));
        }
    }
}

/// SIGTERM to the schedulers (they fire nothing more) and wait for them.
pub async fn stop_schedulers(run: &Run) {
    let mut procs = run.procs.lock().await;
    for p in procs
        .iter_mut()
        .filter(|p| matches!(p.role, Role::Scheduler(_)))
    {
        nix_kill(p.pid, "TERM");
        if tokio::time::timeout(Duration::from_secs(15), p.child.wait())
            .await
            .is_err()
        {
            nix_kill(p.pid, "KILL");
            let _ = p.child.wait().await;
        }
    }
}

/// From the drop guard: the shared services back however the test ended.
pub fn restore_services(run: &Run) {
    run.world.catalog_proxy.heal();
    run.world.amqp_proxy.heal();
    run.world.s3_proxy.heal();
    if BROKER_STOPPED.load(Ordering::SeqCst) {
        start_broker();
    }
    if GARAGE_STOPPED.load(Ordering::SeqCst) {
        start_garage();
    }
}
