//! The operator console (`/ui`, issue 15) in a real browser: Debian's
//! headless Chromium driven through WebDriver (`chromedriver`, from the
//! `chromium-driver` package that `ops/services up` installs), against
//! `landlord serve` on the real services. Every test saves screenshots under
//! `target/ui-screenshots/`; the README shows two of them.
//!
//! The CSRF test needs no browser: it posts with the session cookie and
//! without the token, as a forged form would.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use lapin::{
    BasicProperties,
    options::{BasicPublishOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString},
};
use serde_json::json;
use uuid::Uuid;

use crate::common::{TestEnv, WorkerProc, free_port, ms, poll, secs};

const ADMIN: &str = "ui-admin-token-0123456789abcdef";
const TENANT: &str = "ui-tenant-token-0123456789abcdef";
/// A schedule that never fires by itself within a test (January 1st), run by hand.
const SCHEDULE: &str = "[[schedules]]\nname = \"ui-ping\"\ncron = \"0 0 1 1 *\"\nkind = \"ping\"\nspread_seconds = 0\n";

/// `landlord serve` with an admin token and a tenant token for `acme`.
/// Backups go to the real S3 store (Garage), under the test's own prefix
/// (TestEnv's default `LANDLORD_BACKUP_URL`, emptied when the test ends).
fn serve(env: &mut TestEnv) -> (WorkerProc, String) {
    std::fs::write(env.log_dir.join("landlord.toml"), SCHEDULE).unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let w = env.spawn(
        &["serve", "--api-listen", &api],
        &[(
            "LANDLORD_API_TOKENS",
            &format!("admin={ADMIN},tenant:acme={TENANT}"),
        )],
    );
    (w, format!("http://{api}"))
}

async fn wait_up(base: &str) {
    poll(secs(30), ms(200), || async {
        match reqwest::get(format!("{base}/healthz")).await {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target")));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A chromedriver on a port of its own and a headless Chromium session.
struct Browser {
    driver: Child,
    c: Client,
    base: String,
}

impl Browser {
    async fn start(base: &str, env: &TestEnv) -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver (apt-get install chromium chromium-driver; ops/services up does)",
            );
        let profile = env.log_dir.join("chromium-profile");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1366,900", format!("--user-data-dir={}", profile.display())],
            }
        });
        let caps: serde_json::Map<String, serde_json::Value> = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + secs(20);
        let c = loop {
            let conn = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(conn)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(ms(200)).await;
                }
                Err(e) => panic!("no WebDriver session on {url}: {e}"),
            }
        };
        Self {
            driver,
            c,
            base: base.to_string(),
        }
    }

    async fn go(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    async fn path(&self) -> String {
        self.c.current_url().await.unwrap().path().to_string()
    }

    async fn text(&self, css: &str) -> String {
        self.c
            .wait()
            .at_most(secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn click(&self, css: &str) {
        self.c
            .wait()
            .at_most(secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn fill(&self, css: &str, text: &str) {
        let el = self
            .c
            .wait()
            .at_most(secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap();
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// Waits for the page a click leads to: its path is `want`, or starts
    /// with it when `want` ends with `/`; `query` must be in the query string.
    async fn wait_path(&self, want: &str, query: &str) {
        let deadline = Instant::now() + secs(15);
        loop {
            let url = self.c.current_url().await.unwrap();
            let path = url.path();
            let ok = path == want || (want.ends_with('/') && path.starts_with(want));
            if ok && url.query().unwrap_or("").contains(query) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still on {url}, waiting for {want}?{query}"
            );
            tokio::time::sleep(ms(100)).await;
        }
    }

    async fn body(&self) -> String {
        self.text("body").await
    }

    async fn login(&self, token: &str) {
        self.go("/ui").await;
        assert_eq!(self.path().await, "/ui/login", "no session: the login page");
        self.fill("#token", token).await;
        self.click("form button[type=submit]").await;
    }

    /// Waits until `css`'s text contains `want` (the page updating itself).
    async fn wait_text(&self, css: &str, want: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.c.find(Locator::Css(css)).await;
            let now = match t {
                Ok(el) => el.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if now.contains(want) {
                return now;
            }
            if Instant::now() > deadline {
                panic!("{css} never showed {want:?} within {timeout:?}; it shows {now:?}");
            }
            tokio::time::sleep(ms(250)).await;
        }
    }

    /// A mark in the page's JavaScript state: it survives live updates and
    /// is gone after any reload.
    async fn mark(&self) {
        self.c
            .execute("window.__landlordMark = 42; return true;", vec![])
            .await
            .unwrap();
    }

    async fn still_marked(&self) -> bool {
        self.c
            .execute("return window.__landlordMark === 42;", vec![])
            .await
            .unwrap()
            .as_bool()
            .unwrap_or(false)
    }

    async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
    }

    async fn close(mut self) {
        let _ = self.c.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver ends its browsers when it is asked to stop.
        let _ = Command::new("kill")
            .args(["-TERM", &self.driver.id().to_string()])
            .status();
        std::thread::sleep(ms(300));
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn tenant_status(env: &TestEnv, slug: &str) -> String {
    sqlx::query_scalar("SELECT status FROM tenants WHERE slug = $1")
        .bind(slug)
        .fetch_one(&env.catalog)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_finds_suspends_backs_up_and_restores_a_tenant_in_the_browser() {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    env.tenant("globex").await;
    let (_w, base) = serve(&mut env);
    wait_up(&base).await;
    let b = Browser::start(&base, &env).await;

    b.login(ADMIN).await;
    b.wait_path("/ui", "").await;
    let body = b.body().await;
    for part in [
        "Tenants",
        "Backup freshness",
        "Jobs finished per minute",
        "Job families",
        "Dead jobs, last 24 h",
        "Scheduler",
        "Heavy slots in use",
    ] {
        assert!(body.contains(part), "overview lacks {part}: {body}");
    }
    b.shot("overview").await;

    // Find a tenant.
    b.click("nav a[href='/ui/tenants']").await;
    b.fill("#q", "acm").await;
    b.click("form.filters button[type=submit]").await;
    b.wait_path("/ui/tenants", "q=acm").await;
    let table = b.text("#tenants").await;
    assert!(
        table.contains("acme") && !table.contains("globex"),
        "{table}"
    );
    b.click("#tenants a[href='/ui/tenants/acme']").await;
    b.wait_path("/ui/tenants/acme", "").await;

    // Suspend and reactivate.
    b.fill("#reason", "unpaid invoice").await;
    b.click("#suspend").await;
    b.wait_text("main", "status was changed", secs(15)).await;
    assert_eq!(tenant_status(&env, "acme").await, "suspended");
    assert!(b.text("#h-status + p").await.contains("suspended"));
    b.click("#reactivate").await;
    poll(secs(15), ms(100), || async {
        match tenant_status(&env, "acme").await.as_str() {
            "active" => Ok(()),
            s => Err(s.to_string()),
        }
    })
    .await;
    b.wait_text("#history", "suspended → active", secs(15))
        .await;
    assert!(
        b.text("#history").await.contains("suspended → active"),
        "status history"
    );
    env.assert_count(
        "SELECT count(*) FROM audit_log WHERE actor = 'ui:admin' AND action = 'tenant.status_changed'",
        2,
    )
    .await;

    // Take a backup and watch its job finish on the page, without a reload.
    b.click("#backup-now").await;
    b.wait_path("/ui/jobs/", "done=backup").await; // the job's page follows it
    b.mark().await;
    b.wait_text("#job-status", "succeeded", secs(90)).await;
    assert!(
        b.still_marked().await,
        "the status arrived by a live update, not a reload"
    );
    b.shot("backup-job").await;

    // Restore it: a wrong confirmation changes nothing; the slug restores.
    b.go("/ui/tenants/acme").await;
    b.click("#backups details.restore summary").await;
    b.fill("#backups details.restore input[name=confirm]", "acme-typo")
        .await;
    b.click("#backups details.restore button[type=submit]")
        .await;
    b.wait_text("body", "not confirmed", secs(15)).await;
    env.assert_count("SELECT count(*) FROM jobs WHERE kind = 'restore'", 0)
        .await;
    b.go("/ui/tenants/acme").await;
    b.click("#backups details.restore summary").await;
    b.fill("#backups details.restore input[name=confirm]", "acme")
        .await;
    b.click("#backups details.restore button[type=submit]")
        .await;
    b.wait_path("/ui/jobs/", "done=restore").await;
    b.mark().await;
    b.wait_text("#job-status", "succeeded", secs(120)).await;
    assert!(b.still_marked().await);
    env.assert_count(
        "SELECT count(*) FROM audit_log WHERE actor = 'ui:admin' AND action = 'job.enqueued'",
        2,
    )
    .await;
    b.go("/ui/tenants/acme").await;
    b.shot("tenant").await;
    b.c.execute(
        "document.getElementById('h-backups').scrollIntoView(); return true;",
        vec![],
    )
    .await
    .unwrap();
    b.shot("tenant-backups").await;
    // The overview again, now with finished jobs in its chart.
    b.go("/ui").await;
    b.shot("overview-after").await;

    // Log out: the session is gone from the catalog and the console asks again.
    b.click(".who button").await;
    b.wait_path("/ui/login", "").await;
    env.assert_count("SELECT count(*) FROM ui_sessions", 0)
        .await;
    b.go("/ui/tenants").await;
    assert_eq!(b.path().await, "/ui/login");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_retries_a_dead_job_and_runs_a_schedule_now() {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    let (_w, base) = serve(&mut env);
    wait_up(&base).await;
    let dead = env.enqueue(&["jobs", "ping", "--fail", "fatal"]);
    let before = env.wait_job(dead, secs(60)).await;
    assert_eq!(before["status"], "dead", "{before:#}");
    let b = Browser::start(&base, &env).await;
    b.login(ADMIN).await;

    b.go("/ui/jobs?status=dead").await;
    b.click(&format!("input[name=ids][value='{dead}']")).await;
    b.shot("dead-jobs").await;
    b.click("#bulk-retry").await;
    b.wait_text("body", "queued again", secs(15)).await;
    poll(secs(60), ms(200), || async {
        let j = env.job(dead).await;
        // It ran again (and, failing on purpose, died again).
        if j["finished_at"] != before["finished_at"] && j["status"] == "dead" {
            Ok(())
        } else {
            Err(format!("{j}"))
        }
    })
    .await;
    env.assert_count(
        &format!("SELECT count(*) FROM audit_log WHERE actor = 'ui:admin' AND action = 'job.retried' AND job_id = '{dead}'"),
        1,
    )
    .await;
    // The job's own page retries it too.
    b.go(&format!("/ui/jobs/{dead}")).await;
    b.click("#retry").await;
    b.wait_text("body", "queued again", secs(15)).await;
    env.assert_count(
        &format!(
            "SELECT count(*) FROM audit_log WHERE action = 'job.retried' AND job_id = '{dead}'"
        ),
        2,
    )
    .await;

    // Run a schedule now: one job per active tenant, run by the worker.
    b.go("/ui/schedules").await;
    assert!(
        b.text("#schedules").await.contains("every year")
            || b.text("#schedules").await.contains("0 0 1 1 *")
    );
    b.click("tr[data-schedule='ui-ping'] form button").await;
    b.wait_path("/ui/schedules/ui-ping", "done=fired").await;
    assert!(b.body().await.contains("The schedule fired"));
    poll(secs(60), ms(300), || async {
        let n = env.count("SELECT count(*) FROM jobs WHERE kind = 'ping' AND status = 'succeeded' AND dedupe_key LIKE 'sched:ui-ping:acme:%'").await;
        if n == 1 { Ok(()) } else { Err(format!("{n} scheduled pings done")) }
    })
    .await;
    b.go("/ui/schedules/ui-ping").await;
    assert!(
        b.text("#firings").await.contains("succeeded"),
        "{}",
        b.text("#firings").await
    );
    env.assert_count(
        "SELECT count(*) FROM audit_log WHERE actor = 'ui:admin' AND action = 'schedule.run'",
        1,
    )
    .await;
    b.shot("schedule").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_login_sees_only_its_tenant() {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    env.tenant("globex").await;
    let (_w, base) = serve(&mut env);
    wait_up(&base).await;
    let b = Browser::start(&base, &env).await;
    b.login(TENANT).await;
    b.wait_path("/ui/tenants/acme", "").await; // a tenant lands on its tenant
    let nav = b.text("nav").await;
    assert!(
        nav.contains("My tenant") && !nav.contains("Overview") && !nav.contains("Schedules"),
        "{nav}"
    );
    assert!(b.text("main").await.contains("Take a backup now"));
    assert!(
        b.c.find(Locator::Css("#suspend")).await.is_err(),
        "no status actions for a tenant"
    );
    b.shot("tenant-scoped").await;
    for path in [
        "/ui/tenants/globex",
        "/ui/tenants",
        "/ui/schedules",
        "/ui/fragments/overview",
    ] {
        b.go(path).await;
        let body = b.body().await;
        assert!(body.contains("Not allowed"), "{path}: {body}");
        assert!(!body.contains("Tenant globex"), "{path}: {body}");
    }
    b.go("/ui").await;
    assert_eq!(b.path().await, "/ui/tenants/acme");
    b.go("/ui/jobs?tenant=globex").await;
    assert!(b.body().await.contains("Not allowed"));
    b.close().await;
}

/// The session cookie of a fresh login.
async fn login_cookie(http: &reqwest::Client, base: &str) -> String {
    let r = http
        .post(format!("{base}/ui/login"))
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(flag), "{set}");
    }
    set.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_without_the_csrf_token_is_refused() {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    let (_w, base) = serve(&mut env);
    wait_up(&base).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = login_cookie(&http, &base).await;
    let post = |form: Vec<(&'static str, String)>| {
        http.post(format!("{base}/ui/tenants/acme/status"))
            .header("cookie", &cookie)
            .form(&form)
            .send()
    };
    let suspend = || {
        vec![
            ("status", "suspended".to_string()),
            ("reason", "forged".to_string()),
        ]
    };
    let r = post(suspend()).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("CSRF"));
    let mut wrong = suspend();
    wrong.push(("csrf", "not-the-token-of-this-session-0123456789".into()));
    assert_eq!(post(wrong).await.unwrap().status(), 403);
    assert_eq!(
        tenant_status(&env, "acme").await,
        "active",
        "nothing changed"
    );
    env.assert_count(
        "SELECT count(*) FROM audit_log WHERE action = 'tenant.status_changed'",
        0,
    )
    .await;

    // The same request with the session's token works (the refusal above is the token's doing).
    let page = http
        .get(format!("{base}/ui/tenants/acme"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let mut right = suspend();
    right.push(("csrf", csrf));
    assert_eq!(post(right).await.unwrap().status(), 303);
    assert_eq!(tenant_status(&env, "acme").await, "suspended");

    // Without a session, a page sends to the login; an unknown page is an HTML 404.
    let r = http.get(format!("{base}/ui/tenants")).send().await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["location"].to_str().unwrap()
        ),
        (303, "/ui/login")
    );
    let r = http
        .get(format!("{base}/ui/no-such-page"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    // A wrong token gets the form again.
    let r = http
        .post(format!("{base}/ui/login"))
        .form(&[("token", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Messages ready in the test's dead-letter queue (a passive declare).
async fn dead_ready(env: &TestEnv, ch: &lapin::Channel) -> u32 {
    ch.queue_declare(
        env.topology.dead_queue().into(),
        QueueDeclareOptions {
            passive: true,
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
    .message_count()
}

fn short(id: Uuid) -> String {
    let s = id.to_string();
    s[s.len() - 8..].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_filters_jobs_by_time_reads_a_tenants_events_and_peeks_at_dead_letters() {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    let (_w, base) = serve(&mut env);
    wait_up(&base).await;
    let (_conn, ch) = env.channel().await;
    // Two finished jobs of acme; one of them, by the catalog, created two days ago.
    let old = env.enqueue(&["jobs", "ping", "--tenant", "acme"]);
    assert_eq!(env.wait_job(old, secs(60)).await["status"], "succeeded");
    let new = env.enqueue(&["jobs", "ping", "--tenant", "acme"]);
    assert_eq!(env.wait_job(new, secs(60)).await["status"], "succeeded");
    sqlx::query("UPDATE jobs SET created_at = now() - interval '2 days' WHERE id = $1")
        .bind(old)
        .execute(&env.catalog)
        .await
        .unwrap();
    // A forged message a worker dead-letters (a kind foreign producers may not
    // ask for, markup in its body), and one the broker dead-lettered (x-death).
    let forged = Uuid::new_v4();
    let body = json!({"v": 1, "job_id": forged, "kind": "restore", "tenant": "acme",
                      "args": {"note": "<b id=injected>bold</b>"}});
    ch.basic_publish(
        env.topology.work_exchange().into(),
        "backup".into(),
        BasicPublishOptions::default(),
        body.to_string().as_bytes(),
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(forged.to_string().into()),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let mut death = FieldTable::default();
    death.insert(
        "reason".into(),
        AMQPValue::LongString(LongString::from("delivery_limit")),
    );
    death.insert("count".into(), AMQPValue::LongLongInt(3));
    death.insert(
        "queue".into(),
        AMQPValue::LongString(LongString::from(env.topology.queue("mail"))),
    );
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("x-death"),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
    );
    ch.basic_publish(
        env.topology.dead_exchange().into(),
        "".into(),
        BasicPublishOptions::default(),
        b"not json \x00\xff at all",
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id("ui-broker-dead".into())
            .with_headers(headers),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    poll(secs(30), ms(200), || async {
        match dead_ready(&env, &ch).await {
            2 => Ok(()),
            n => Err(format!("{n} dead letters\n{}", env.worker_logs())),
        }
    })
    .await;

    let b = Browser::start(&base, &env).await;
    b.login(ADMIN).await;
    b.wait_path("/ui", "").await;

    // Jobs by creation time: the last 24 h hold the new job only, 7 days both,
    // and "until a day ago" the old one only.
    b.go("/ui/jobs").await;
    b.click("#f-within option[value='24h']").await;
    b.click("form.filters button[type=submit]").await;
    b.wait_path("/ui/jobs", "within=24h").await;
    let t = b.text("main").await;
    assert!(t.contains(&short(new)) && !t.contains(&short(old)), "{t}");
    assert!(
        b.text("#window").await.contains("from"),
        "the window is shown"
    );
    b.shot("jobs-last-24h").await;
    b.go("/ui/jobs?within=7d").await;
    let t = b.text("table.jobs").await;
    assert!(t.contains(&short(new)) && t.contains(&short(old)), "{t}");
    let day_ago = (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%S");
    b.go(&format!("/ui/jobs?until={day_ago}")).await;
    let t = b.text("table.jobs").await;
    assert!(!t.contains(&short(new)) && t.contains(&short(old)), "{t}");
    b.go("/ui/jobs?since=yesterday").await;
    assert!(
        b.body().await.contains("must be a time"),
        "a bad time is refused"
    );

    // The tenant's events, newest first, each linked to its job.
    b.go("/ui/tenants/acme").await;
    let events = b.text("#events").await;
    assert!(events.contains("job.succeeded"), "{events}");
    let newest = b.text("#events tbody tr:first-child").await;
    assert!(newest.contains(&short(new)), "newest first: {events}");
    b.click(&format!("#events a[href='/ui/jobs/{old}']")).await;
    b.wait_path(&format!("/ui/jobs/{old}"), "").await;

    // The dead letters, read twice: looking loses none of them.
    for _ in 0..2 {
        b.go("/ui/dead-letters").await;
        let letters = b.text("#letters").await;
        for part in [
            forged.to_string().as_str(),
            "restore",
            "acme",
            "not accepted from foreign producers",
            "from backup",
            "ui-broker-dead",
            "x-death: delivery_limit ×3",
            "<b id=injected>bold</b>",
        ] {
            assert!(letters.contains(part), "{part} missing: {letters}");
        }
        assert!(b.text("#dead-count").await.starts_with("2 "));
        assert!(b.text("#peek-note").await.contains("requeue"));
        assert!(
            b.c.find(Locator::Css("#injected")).await.is_err(),
            "the body is text, not markup"
        );
    }
    b.shot("dead-letters").await;
    assert_eq!(
        dead_ready(&env, &ch).await,
        2,
        "peeking requeued every message"
    );

    // The overview counts them too, and the broker's queues beside the catalog's jobs.
    b.go("/ui").await;
    assert!(
        b.text("#dead-letters").await.contains("2 message(s)"),
        "{}",
        b.text("#overview").await
    );
    let families = b.text("#families").await;
    assert!(
        families.contains("Queued jobs") && families.contains("In broker"),
        "{families}"
    );
    for td in
        b.c.find_all(Locator::Css("#families td.broker"))
            .await
            .unwrap()
    {
        let n = td.text().await.unwrap();
        assert!(n.parse::<u32>().is_ok(), "a broker count, not {n:?}");
    }

    // A tenant session sees its events but may not peek.
    b.click(".who button").await;
    b.wait_path("/ui/login", "").await;
    b.login(TENANT).await;
    b.wait_path("/ui/tenants/acme", "").await;
    assert!(b.text("#events").await.contains("job.succeeded"));
    b.go("/ui/dead-letters").await;
    assert!(b.body().await.contains("Not allowed"));
    b.close().await;
}
