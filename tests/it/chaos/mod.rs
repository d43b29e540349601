//! The chaos soak: a mixed workload (provisioning, backups, restores,
//! verifications, maintenance, a fleet migration, tenant-exclusive pings,
//! welcome mails) over 20+ tenants on two database servers, three workers
//! and two schedulers, while faults are injected at random from a printed
//! seed; then a checker that fails on any broken guarantee.
//!
//! `CHAOS_MINUTES` (default 2) and `CHAOS_SEED` (default random) steer it;
//! `ops/chaos --minutes N --seed S` is the wrapper. With
//! `CHAOS_DISRUPT_SHARED=1` (set by `ops/chaos`; only where nothing else
//! uses the services, as `ops/test`'s serial phase) RabbitMQ and Garage
//! are really stopped and started; otherwise their outages are made on the
//! soak's own proxies (connections reset, new ones refused), so the soak
//! can run beside other tests. The PostgreSQL restart is always real: it
//! restarts the soak's own cluster, which holds the catalog.
//!
//! This module must never fix up landlord's state to make a check pass: it
//! only drives the public CLI, injects faults and reads.

mod check;
mod faults;
mod fleet;
mod witness;
mod workload;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use fleet::{Proc, Role, World};

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub minutes: f64,
    pub tenants: usize,
    pub workers: usize,
    pub schedulers: usize,
    pub disrupt_shared: bool,
    /// Longest the fleet may take to finish its work after the last fault.
    pub drain_limit: Duration,
}

impl Plan {
    fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let seed = var("CHAOS_SEED")
            .map(|s| s.parse().expect("CHAOS_SEED is a number"))
            .unwrap_or_else(rand::random);
        Self {
            seed,
            minutes: var("CHAOS_MINUTES")
                .map(|s| s.parse().expect("CHAOS_MINUTES is a number"))
                .unwrap_or(2.0),
            tenants: var("CHAOS_TENANTS")
                .map(|s| s.parse().expect("CHAOS_TENANTS is a number"))
                .unwrap_or(20),
            workers: 3,
            schedulers: 2,
            disrupt_shared: var("CHAOS_DISRUPT_SHARED").is_some_and(|v| v == "1"),
            drain_limit: Duration::from_secs(
                var("CHAOS_DRAIN_SECONDS")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(300),
            ),
        }
    }
}

/// A job the harness enqueued.
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub id: Uuid,
    pub kind: String,
    pub tenant: Option<String>,
}

/// An enqueue whose command failed: a job may or may not exist for it.
#[derive(Debug, Clone)]
pub struct Uncertain {
    pub kind: String,
    pub tenant: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// What the harness knows a tenant's data must be.
#[derive(Debug, Clone)]
pub struct TenantModel {
    pub slug: String,
    pub server: String,
    pub db: String,
    pub email: String,
    /// Provisioned and seeded with data.
    pub ready: bool,
    /// Checksum of the generated data as the harness last left it.
    pub checksum: Option<String>,
    /// Complete backups taken by harness jobs and the checksum they hold.
    pub backups: Vec<(Uuid, String)>,
}

/// Everything the workload, the faults and the checker share.
pub struct Run {
    pub plan: Plan,
    pub world: World,
    pub procs: AsyncMutex<Vec<Proc>>,
    pub jobs: Mutex<Vec<Enqueued>>,
    pub uncertain: Mutex<Vec<Uncertain>>,
    pub tenants: Mutex<BTreeMap<String, TenantModel>>,
    pub faults: Mutex<BTreeMap<&'static str, u32>>,
    pub violations: Mutex<Vec<String>>,
    pub notes: Mutex<Vec<String>>,
    /// Cancelled when the workload stops starting new actions.
    pub stop_work: CancellationToken,
    /// Set when the run is past its deadline: waits give up.
    pub give_up: AtomicBool,
    pub rng: Mutex<StdRng>,
}

impl Run {
    pub fn record(&self, id: Uuid, kind: &str, tenant: Option<&str>) {
        self.jobs.lock().unwrap().push(Enqueued {
            id,
            kind: kind.to_string(),
            tenant: tenant.map(str::to_string),
        });
    }

    pub fn violation(&self, v: String) {
        eprintln!("[chaos] VIOLATION: {v}");
        self.violations.lock().unwrap().push(v);
    }

    pub fn note(&self, n: String) {
        eprintln!("[chaos] {n}");
        self.notes.lock().unwrap().push(n);
    }

    pub fn fault(&self, name: &'static str) {
        eprintln!("[chaos] fault: {name}");
        *self.faults.lock().unwrap().entry(name).or_default() += 1;
    }

    /// A random number in `range` from the run's seeded generator.
    pub fn pick<T: rand::distr::uniform::SampleUniform + PartialOrd>(
        &self,
        range: std::ops::Range<T>,
    ) -> T {
        self.rng.lock().unwrap().random_range(range)
    }

    pub fn chance(&self, p: f64) -> bool {
        self.rng.lock().unwrap().random_bool(p)
    }

    pub fn give_up(&self) -> bool {
        self.give_up.load(Ordering::SeqCst)
    }
}

/// Kills the run's processes, brings the shared services back and removes
/// what the run made, however the test ends.
struct Cleanup(Option<Arc<Run>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(run) = self.0.take() else { return };
        let failed = std::thread::panicking();
        faults::restore_services(&run);
        let _ = std::thread::Builder::new()
            .stack_size(16 * 1024 * 1024)
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("rt");
                rt.block_on(async {
                    let mut procs = run.procs.lock().await;
                    for p in procs.iter_mut() {
                        let _ = nix_kill(p.pid, "CONT");
                        let _ = p.child.start_kill();
                        let _ = p.child.wait().await;
                    }
                    procs.clear();
                    drop(procs);
                    if failed {
                        eprintln!(
                            "[chaos] logs kept in {} (seed {})",
                            run.world.log_dir.display(),
                            run.plan.seed
                        );
                    }
                    run.world.cleanup(failed).await;
                });
            })
            .map(|h| h.join());
    }
}

/// `kill -SIG pid`.
pub fn nix_kill(pid: u32, sig: &str) -> bool {
    std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak() {
    let plan = Plan::from_env();
    eprintln!(
        "[chaos] seed {} · {} min · {} tenants · {} workers · {} schedulers · shared services {}",
        plan.seed,
        plan.minutes,
        plan.tenants,
        plan.workers,
        plan.schedulers,
        if plan.disrupt_shared {
            "really stopped"
        } else {
            "cut at the soak's proxies"
        }
    );
    let wall = Instant::now();
    let run_id = Uuid::new_v4().simple().to_string()[..6].to_string();
    let world = World::new(&run_id).await;
    let log_from = std::fs::metadata(fleet::cluster_log())
        .map(|m| m.len())
        .unwrap_or(0);
    let run = Arc::new(Run {
        rng: Mutex::new(StdRng::seed_from_u64(plan.seed)),
        plan,
        world,
        procs: AsyncMutex::new(Vec::new()),
        jobs: Mutex::new(Vec::new()),
        uncertain: Mutex::new(Vec::new()),
        tenants: Mutex::new(BTreeMap::new()),
        faults: Mutex::new(BTreeMap::new()),
        violations: Mutex::new(Vec::new()),
        notes: Mutex::new(Vec::new()),
        stop_work: CancellationToken::new(),
        give_up: AtomicBool::new(false),
    });
    let _cleanup = Cleanup(Some(run.clone()));
    witness::enable_logging(&run.world.chaos_url("postgres")).await;
    let stop_sampler = CancellationToken::new();
    let (sampled, sampler) = witness::start_sampler(
        vec![
            (
                "default".into(),
                format!("{}/postgres", crate::common::PG_SERVER),
            ),
            ("chaos".into(), run.world.chaos_url("postgres")),
        ],
        stop_sampler.clone(),
    );

    workload::setup(&run).await;
    let started = Instant::now();
    let run_for = Duration::from_secs_f64(run.plan.minutes * 60.0);
    let work = tokio::spawn(workload::run(run.clone()));
    let chaos = tokio::spawn(faults::run(run.clone(), started + run_for));
    chaos.await.expect("fault task");
    let last_fault = Instant::now();
    run.stop_work.cancel();
    eprintln!("[chaos] faults over; the fleet drains");
    faults::heal_all(&run).await;
    // No new scheduled work while the fleet drains.
    faults::stop_schedulers(&run).await;
    let drained = tokio::time::timeout(run.plan.drain_limit, async {
        let _ = work.await;
        check::wait_terminal(&run).await;
    })
    .await
    .is_ok();
    let drain = last_fault.elapsed();
    run.give_up.store(true, Ordering::SeqCst);
    if !drained {
        run.violation(format!(
            "the fleet did not drain within {:?} of the last fault",
            run.plan.drain_limit
        ));
    }
    // Let the witness see the last sessions end, then stop it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_sampler.cancel();
    let _ = sampler.await;
    let log_text = std::fs::read(fleet::cluster_log())
        .map(|b| String::from_utf8_lossy(&b[(log_from as usize).min(b.len())..]).into_owned())
        .unwrap_or_default();
    let mut sessions = sampled.lock().unwrap().sessions();
    let sample_stats = {
        let s = sampled.lock().unwrap();
        (s.samples, s.failed_samples)
    };
    sessions.extend(witness::from_log(&log_text, chrono::Utc::now()));
    let report = check::check(&run, &sessions, sample_stats).await;
    eprintln!("{report}");
    eprintln!(
        "[chaos] seed {} · drain {:.1} s · wall {:.1} s",
        run.plan.seed,
        drain.as_secs_f64(),
        wall.elapsed().as_secs_f64()
    );
    let v = run.violations.lock().unwrap().clone();
    assert!(
        v.is_empty(),
        "{} violation(s) with seed {}:\n{}",
        v.len(),
        run.plan.seed,
        v.join("\n")
    );
}

/// Worker slots and scheduler slots, for the fault picker.
pub fn roles(plan: &Plan) -> Vec<Role> {
    (0..plan.workers)
        .map(Role::Worker)
        .chain((0..plan.schedulers).map(Role::Scheduler))
        .collect()
}
