//! Fencing under real network faults between one worker and the catalog (a
//! [`Proxy`] in front of PostgreSQL for that worker only): a blackholed
//! catalog must make the attempt stop itself before its lease runs out; an
//! outage while recording must not re-run a finished job; a worker that lacks
//! a kind hands it back; a transaction-mode pooler (a real PgBouncer) is
//! refused at start.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
};

use uuid::Uuid;

use crate::{
    common::{PG_SERVER, TestEnv, WorkerProc, free_port, ms, poll, secs},
    proxy::Proxy,
};

fn pg_addr() -> SocketAddr {
    "127.0.0.1:5432".parse().unwrap()
}

/// The first log line of `w` about `job` that contains `text`.
fn log_line(w: &WorkerProc, job: Uuid, text: &str) -> Option<String> {
    let id = job.to_string();
    w.log_text()
        .lines()
        .find(|l| l.contains(text) && l.contains(&id))
        .map(str::to_string)
}

/// Whether the catalog (by its own clock) still holds `job` under a live
/// lease of `owner`: until then no reaper can re-drive it.
async fn lease_live(env: &TestEnv, job: Uuid, owner: &str) -> bool {
    sqlx::query_scalar::<_, bool>(
        "SELECT status = 'running' AND lease_owner = $2 AND lease_expires_at > now() \
         FROM jobs WHERE id = $1",
    )
    .bind(job)
    .bind(owner)
    .fetch_one(&env.catalog)
    .await
    .unwrap()
}

/// Defect 1: a catalog socket that blackholes (no RST, no FIN) must not stop
/// the fencing checks. Worker A reaches the catalog through a proxy; it runs
/// two long pings, one holding a tenant lock and one without (so only the
/// lease deadline can fence it). The proxy then blackholes. A must stop both
/// attempts while the catalog itself still shows their leases live, i.e.
/// before worker B (direct connection) may re-drive them; afterwards each job
/// succeeds on a later attempt, the first attempt's result never recorded.
#[tokio::test]
async fn a_blackholed_catalog_fences_attempts_before_their_lease_ends() {
    let mut env = TestEnv::new().await;
    env.tenant("fenced").await;
    let proxy = Proxy::start(pg_addr()).await;
    let via_proxy = proxy.url_for(&format!("{PG_SERVER}/{}", env.catalog_db));
    env.set_env(&[("LANDLORD_LEASE_SECONDS", "9")]);
    let a = env.spawn_worker(
        &[],
        &[
            ("LANDLORD_DATABASE_URL", &via_proxy),
            ("LANDLORD_WORKER_CONCURRENCY", "2"),
        ],
    );
    let locked = env.enqueue(&["jobs", "ping", "--hold", "15", "--tenant", "fenced"]);
    let unlocked = env.enqueue(&["jobs", "ping", "--hold", "15"]);
    let mut owners = Vec::new();
    for job in [locked, unlocked] {
        let row = env.wait_status(job, "running", secs(60)).await;
        owners.push(row["lease_owner"].as_str().unwrap().to_string());
    }
    // B only re-drives what A loses: it starts after A took both jobs.
    let _b = env.spawn_worker(&[], &[]);

    proxy.blackhole();
    // Watch both at once: each must be fenced while its lease is still live.
    let jobs = [locked, unlocked];
    let mut fenced = [false, false];
    let deadline = std::time::Instant::now() + secs(30);
    while fenced.contains(&false) {
        for i in 0..2 {
            if fenced[i] {
                continue;
            }
            let live = lease_live(&env, jobs[i], &owners[i]).await;
            match log_line(&a, jobs[i], "attempt lost the job") {
                Some(_) if live => fenced[i] = true,
                None if live => {}
                line => panic!(
                    "the lease of {} ran out while its attempt still ran on the blackholed \
                     worker (fence: {line:?})\n{}",
                    jobs[i],
                    env.worker_logs()
                ),
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not fenced within 30 s"
        );
        tokio::time::sleep(ms(100)).await;
    }
    proxy.heal();
    for job in [locked, unlocked] {
        let done = env.wait_job(job, secs(90)).await;
        assert_eq!(done["status"], "succeeded", "{done:#}");
        assert!(done["attempts"].as_i64().unwrap() >= 2, "{done:#}");
        assert_ne!(
            done["result"]["attempt"], 1,
            "the fenced attempt was recorded: {done:#}"
        );
    }
}

/// Defect 4 (first half): the catalog goes away for longer than half a lease
/// (but less than the lease) just as the handler finishes. The success must
/// still be recorded by that attempt: one attempt, not a re-run.
#[tokio::test]
async fn a_success_is_recorded_through_an_outage_longer_than_half_a_lease() {
    let mut env = TestEnv::new().await;
    let proxy = Proxy::start(pg_addr()).await;
    let via_proxy = proxy.url_for(&format!("{PG_SERVER}/{}", env.catalog_db));
    // Lease 24 s: the old code gave up 12 s into recording; the heartbeat
    // keeps the lease for at least 16 s after the outage starts.
    let w = env.spawn_worker(
        &[],
        &[
            ("LANDLORD_DATABASE_URL", &via_proxy),
            ("LANDLORD_LEASE_SECONDS", "24"),
            ("LANDLORD_FAILPOINTS", "job.after_handler=500"),
        ],
    );
    let job = env.enqueue(&["jobs", "ping", "--hold", "1"]);
    poll(secs(60), ms(20), || async {
        match w.log_text().contains("failpoint hit: pausing") {
            true => Ok(()),
            false => Err(format!("handler not finished\n{}", env.worker_logs())),
        }
    })
    .await;
    proxy.cut_and_refuse();
    // Hold the outage (this sleep makes the fault; nothing is asserted on it).
    tokio::time::sleep(secs(14)).await;
    proxy.heal();
    let done = env.wait_job(job, secs(90)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["attempts"], 1, "the finished job ran again: {done:#}");
}

/// Defect 6: during a rolling deploy a worker meets a kind it does not know.
/// It must hand the job back (delayed, no attempt spent) instead of burying
/// it; a worker that knows the kind then runs it.
#[tokio::test]
async fn a_worker_that_lacks_a_kind_hands_the_job_back() {
    let mut env = TestEnv::new().await;
    env.set_env(&[("LANDLORD_UNKNOWN_KIND_DELAY_MS", "1000")]);
    let old = env.spawn_worker(&[], &[("LANDLORD_FAILPOINTS", "registry.without.ping")]);
    let job = env.enqueue(&["jobs", "ping"]);
    let row = poll(secs(60), ms(100), || async {
        let j = env.job(job).await;
        match j["last_error"].as_str() {
            Some(e) if e.contains("does not know job kind") => Ok(j),
            _ => Err(format!("not refused yet: {j:#}\n{}", env.worker_logs())),
        }
    })
    .await;
    assert_ne!(
        row["status"], "dead",
        "a rolling deploy buried the job: {row:#}"
    );
    assert!(
        old.log_text().contains("handed it back"),
        "{}",
        old.log_text()
    );
    let _new = env.spawn_worker(&[], &[]);
    let done = env.wait_job(job, secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["attempts"], 1, "hand-backs spent attempts: {done:#}");
}

/// A PgBouncer of this test's own, on a free port, in front of the local server.
struct Bouncer {
    child: Child,
    port: u16,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bouncer {
    /// Starts PgBouncer with `pool_mode`; it refuses to run as root, so it
    /// runs as the `postgres` user when the test is root.
    async fn start(env: &TestEnv, pool_mode: &str) -> Bouncer {
        let port = free_port();
        let dir = env.log_dir.join(format!("pgbouncer-{pool_mode}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n").unwrap();
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host=127.0.0.1 port=5432\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}\npool_mode = {pool_mode}\n\
                 max_client_conn = 200\ndefault_pool_size = 40\n\
                 ignore_startup_parameters = extra_float_digits\n",
                dir.join("userlist.txt").display()
            ),
        )
        .unwrap();
        set_world_readable(&dir);
        let bin = "/usr/sbin/pgbouncer";
        assert!(
            std::path::Path::new(bin).exists(),
            "pgbouncer is not installed (ops/services installs it)"
        );
        let log = std::fs::File::create(dir.join("pgbouncer.log")).unwrap();
        let mut cmd = if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=postgres", "--regid=postgres", "--init-groups", bin]);
            c
        } else {
            Command::new(bin)
        };
        let child = cmd
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start pgbouncer");
        let b = Bouncer { child, port };
        poll(secs(20), ms(100), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map(|_| ())
                .map_err(|e| format!("pgbouncer not listening on {port}: {e}"))
        })
        .await;
        b
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn set_world_readable(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut p = dir.to_path_buf();
    // The test's folders, so the postgres user can read its configuration.
    while p.starts_with(std::env::temp_dir()) && p != std::env::temp_dir() {
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777));
        if !p.pop() {
            break;
        }
    }
    for f in std::fs::read_dir(dir).unwrap().flatten() {
        let _ = std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o666));
    }
}

/// Defect 9: session advisory locks break silently behind a transaction-mode
/// pooler. A worker pointed at PgBouncer `pool_mode = transaction` must refuse
/// to start, saying why; `pool_mode = session` works, tenant locks included.
#[tokio::test]
async fn a_transaction_pooler_is_refused_and_a_session_pooler_accepted() {
    let mut env = TestEnv::new().await;
    env.tenant("pooled").await;

    let tx = Bouncer::start(&env, "transaction").await;
    let refused = env.spawn_worker(&[], &[("LANDLORD_DATABASE_URL", &tx.url(&env.catalog_db))]);
    let code = env.wait_exit(&refused, secs(60));
    assert_ne!(code, Some(0), "{}", refused.log_text());
    assert!(
        refused
            .log_text()
            .contains("the catalog URL goes through a transaction-mode pooler"),
        "{}",
        refused.log_text()
    );

    let session = Bouncer::start(&env, "session").await;
    let _w = env.spawn_worker(
        &[],
        &[("LANDLORD_DATABASE_URL", &session.url(&env.catalog_db))],
    );
    let job = env.enqueue(&["jobs", "ping", "--tenant", "pooled"]);
    let done = env.wait_job(job, secs(60)).await;
    assert_eq!(
        done["status"],
        "succeeded",
        "{done:#}\n{}",
        env.worker_logs()
    );
}
