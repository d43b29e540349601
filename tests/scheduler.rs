//! The scheduler against the real catalog: schedules are checked at start,
//! two replicas fire every firing exactly once and hand over when the leader
//! dies, and a fan-out cut short is finished by the next leader with no
//! duplicate and nothing missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TestEnv, secs};

fn write_config(env: &TestEnv, toml: &str) {
    std::fs::write(env.log_dir.join("landlord.toml"), toml).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_schedules_refuse_start_naming_the_schedule() {
    let env = TestEnv::new().await;
    for (toml, expect) in [
        (
            "[[schedules]]\nname = \"nightly\"\ncron = \"61 * * * *\"\nkind = \"analyze\"\n",
            "schedule \"nightly\": bad cron expression",
        ),
        (
            "[[schedules]]\nname = \"tz\"\ncron = \"0 2 * * *\"\ntimezone = \"Mars/Olympus\"\nkind = \"analyze\"\n",
            "schedule \"tz\": unknown time zone",
        ),
        (
            "[[schedules]]\nname = \"kind\"\ncron = \"0 2 * * *\"\nkind = \"launch_rockets\"\n",
            "schedule \"kind\": unknown job kind",
        ),
        (
            "[[schedules]]\nname = \"args\"\ncron = \"0 2 * * *\"\nkind = \"maintenance\"\nargs = { vacuum = \"yes\" }\n",
            "schedule \"args\": invalid arguments",
        ),
    ] {
        write_config(&env, toml);
        let out = env.run(&["scheduler"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml}: {err}");
        assert!(err.contains(expect), "{toml}: expected {expect:?} in {err}");
    }
    // The seed's defaults are valid and listed with their next fire time.
    std::fs::remove_file(env.log_dir.join("landlord.toml")).unwrap();
    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["schedule", "list", "--json"])).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "daily-backup",
            "weekly-maintenance",
            "monthly-vacuum",
            "daily-cleanup"
        ]
    );
    assert!(
        list[0]["next"].as_str().unwrap().contains("T02:00:00"),
        "{list:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_schedulers_fire_each_firing_once_and_hand_over() {
    let mut env = TestEnv::new().await;
    for t in ["sched-a", "sched-b", "sched-c"] {
        env.tenant(t).await;
    }
    write_config(
        &env,
        "[[schedules]]\nname = \"tick\"\ncron = \"*/2 * * * * *\"\nkind = \"ping\"\nskip_overlap = false\n",
    );
    let one = env.spawn(&["scheduler"], &[]);
    let two = env.spawn(&["scheduler"], &[]);
    tokio::time::sleep(secs(7)).await;
    let leader = if one.log_text().contains("became leader") {
        &one
    } else {
        &two
    };
    let follower = if std::ptr::eq(leader, &one) {
        &two
    } else {
        &one
    };
    assert!(
        !follower.log_text().contains("became leader"),
        "only one leader at a time"
    );
    let before = env
        .count("SELECT count(*) FROM schedule_firings WHERE status = 'done'")
        .await;
    assert!(before >= 2, "the leader fired: {before}");
    env.signal(leader, "KILL");
    let killed_at = chrono::Utc::now();
    let deadline = Instant::now() + secs(20);
    loop {
        let after: i64 = env
            .count(&format!(
                "SELECT count(*) FROM schedule_firings WHERE status = 'done' AND fire_at > '{}'",
                killed_at.to_rfc3339()
            ))
            .await;
        if after >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no firing after the leader died\n{}",
            env.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        follower.log_text().contains("became leader"),
        "the follower took over"
    );
    // Every firing fanned out exactly once: one job per tenant and firing, no duplicate key.
    let firings = env
        .count("SELECT count(*) FROM schedule_firings WHERE status = 'done'")
        .await;
    let jobs = env.count("SELECT count(*) FROM jobs").await;
    assert_eq!(
        jobs,
        firings * 3,
        "{jobs} jobs for {firings} firings of 3 tenants"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM (SELECT dedupe_key FROM jobs GROUP BY dedupe_key HAVING count(*) > 1) d").await,
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM schedule_firings WHERE status = 'done' AND jobs <> 3")
            .await,
        0
    );
    // The scheduled jobs are real: a worker runs them.
    env.spawn_worker(&["--concurrency", "4"], &[]);
    let deadline = Instant::now() + secs(60);
    while env
        .count("SELECT count(*) FROM jobs WHERE status = 'succeeded'")
        .await
        < 3
    {
        assert!(
            Instant::now() < deadline,
            "scheduled jobs never ran\n{}",
            env.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_cut_short_is_finished_without_duplicates() {
    let mut env = TestEnv::new().await;
    // 1,000 tenants (ping does not touch their databases, so rows suffice).
    sqlx::query(
        "INSERT INTO tenants (slug, name, plan, status, db_server, db_name) \
         SELECT 'fan' || g || '-x', 'Fan ' || g, 'enterprise', 'active', 'default', $1 || '_fan' || g \
         FROM generate_series(1, 1000) g",
    )
    .bind(&env.catalog_db)
    .execute(&env.catalog)
    .await
    .unwrap();
    write_config(
        &env,
        "[[schedules]]\nname = \"yearly\"\ncron = \"0 0 1 1 *\"\nkind = \"ping\"\n",
    );
    // A firing the previous leader had started.
    let fire_at = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() - 10, 0).unwrap();
    sqlx::query("INSERT INTO schedule_firings (schedule, fire_at, status) VALUES ('yearly', $1, 'fanning_out')")
        .bind(fire_at)
        .execute(&env.catalog)
        .await
        .unwrap();
    // This leader dies after the first chunk.
    let crashing = env.spawn(
        &["scheduler"],
        &[("LANDLORD_FAILPOINTS", "scheduler.mid_fanout")],
    );
    env.wait_exit(&crashing, secs(60));
    let partial = env.count("SELECT count(*) FROM jobs").await;
    assert!(
        partial > 0 && partial < 1000,
        "the crash left a partial fan-out: {partial}"
    );
    env.spawn(&["scheduler"], &[]);
    let deadline = Instant::now() + secs(60);
    while env
        .count("SELECT count(*) FROM schedule_firings WHERE status = 'done'")
        .await
        < 1
    {
        assert!(
            Instant::now() < deadline,
            "the fan-out was never finished\n{}",
            env.worker_logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        env.count("SELECT count(*) FROM jobs").await,
        1000,
        "none missing"
    );
    assert_eq!(
        env.count("SELECT count(DISTINCT tenant_id) FROM jobs")
            .await,
        1000,
        "no duplicates"
    );
    assert_eq!(
        env.count("SELECT jobs::bigint FROM schedule_firings").await,
        1000
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missed_firings_run_once_within_the_deadline_and_overlaps_are_skipped() {
    let mut env = TestEnv::new().await;
    env.tenant("late-a").await;
    write_config(
        &env,
        "[[schedules]]\nname = \"often\"\ncron = \"*/10 * * * * *\"\nkind = \"ping\"\nstarting_deadline_seconds = 30\nspread_seconds = 5\n",
    );
    // The last firing any scheduler made was a minute ago: five or six were missed since.
    let last = chrono::DateTime::from_timestamp((chrono::Utc::now().timestamp() / 10) * 10 - 60, 0)
        .unwrap();
    sqlx::query("INSERT INTO schedule_firings (schedule, fire_at, status, finished_at) VALUES ('often', $1, 'done', now())")
        .bind(last)
        .execute(&env.catalog)
        .await
        .unwrap();
    let s = env.spawn(&["scheduler"], &[]);
    let deadline = Instant::now() + secs(20);
    while env.count("SELECT count(*) FROM schedule_firings WHERE status = 'done' AND fire_at > now() - interval '30 seconds'").await < 1 {
        assert!(Instant::now() < deadline, "no catch-up firing\n{}", s.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let missed = env
        .count("SELECT count(*) FROM schedule_firings WHERE status = 'missed'")
        .await;
    assert!(
        missed >= 4,
        "the older firings are recorded as missed: {missed}"
    );
    assert!(s.log_text().contains("firing missed"));
    // Spread: the job starts within the window after its firing, not before.
    let offset = env
        .count("SELECT extract(epoch FROM j.run_at - f.fire_at)::bigint FROM jobs j JOIN schedule_firings f ON f.status = 'done' AND j.dedupe_key LIKE '%' || to_char(f.fire_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || 'Z' LIMIT 1")
        .await;
    assert!((0..5).contains(&offset), "run_at offset {offset}");
    // No worker runs, so that job stays queued: the next firings skip the tenant (overlap).
    tokio::time::sleep(secs(11)).await;
    assert_eq!(
        env.count("SELECT count(*) FROM jobs").await,
        1,
        "overlapping runs are skipped"
    );
    assert!(
        env.count("SELECT coalesce(sum(skipped), 0)::bigint FROM schedule_firings")
            .await
            >= 1
    );
    // Operators can fire it by hand, with the same rules, and read the history.
    let out = env.ok(&["schedule", "run", "often"]);
    assert!(out.contains("skipped=1"), "{out}");
    let history = env.ok(&["schedule", "history", "often"]);
    assert!(
        history.contains("missed") && history.contains("done"),
        "{history}"
    );
    let out = env.run(&["schedule", "run", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sampled_schedule_fans_out_to_that_many_tenants() {
    let env = TestEnv::new().await;
    sqlx::query(
        "INSERT INTO tenants (slug, name, plan, status, db_server, db_name) \
         SELECT 'drill' || g || '-x', 'Drill ' || g, 'enterprise', 'active', 'default', $1 || '_drill' || g \
         FROM generate_series(1, 50) g",
    )
    .bind(&env.catalog_db)
    .execute(&env.catalog)
    .await
    .unwrap();
    // A restore drill would be kind verify_backup with restore_test; ping
    // keeps this test about the sampling.
    write_config(
        &env,
        "[[schedules]]\nname = \"drill\"\ncron = \"0 6 * * 6\"\nkind = \"ping\"\nsample = 5\n",
    );
    env.ok(&["schedule", "run", "drill"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.ok(&["schedule", "run", "drill"]);
    let per_firing: Vec<i64> = sqlx::query_scalar(
        "SELECT count(DISTINCT tenant_id) FROM jobs GROUP BY substring(dedupe_key from '^sched:drill:[^:]+:(.*)$') ORDER BY 1",
    )
    .fetch_all(&env.catalog)
    .await
    .unwrap();
    assert_eq!(per_firing, vec![5, 5], "five tenants per firing");
    assert_eq!(env.count("SELECT count(*) FROM jobs").await, 10);
}
