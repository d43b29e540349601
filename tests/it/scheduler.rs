//! The scheduler against the real catalog: schedules are checked at start,
//! two replicas fire every firing exactly once and hand over when the leader
//! dies, and a fan-out cut short is finished by the next leader with no
//! duplicate and nothing missing.

use crate::common::{TestEnv, WorkerProc, ms, poll, secs};

/// A schedule firing `ping` every 2 s, overlaps allowed.
const TICK: &str = "[[schedules]]\nname = \"tick\"\ncron = \"*/2 * * * * *\"\nkind = \"ping\"\nskip_overlap = false\n";

/// A schedule firing `ping` once a year.
const YEARLY: &str = "[[schedules]]\nname = \"yearly\"\ncron = \"0 0 1 1 *\"\nkind = \"ping\"\n";

/// `n` active tenants `{prefix}{i}-x` as catalog rows only (jobs like ping
/// never touch their databases).
async fn active_tenants(env: &TestEnv, prefix: &str, n: i32) {
    sqlx::query(
        "INSERT INTO tenants (slug, name, plan, status, db_server, db_name) \
         SELECT $2 || g || '-x', initcap($2) || ' ' || g, 'enterprise', 'active', 'default', $1 || '_' || $2 || g \
         FROM generate_series(1, $3) g",
    )
    .bind(&env.catalog_db)
    .bind(prefix)
    .bind(n)
    .execute(&env.catalog)
    .await
    .unwrap();
}

fn write_config(env: &TestEnv, toml: &str) {
    std::fs::write(env.log_dir.join("landlord.toml"), toml).unwrap();
}

/// Three registered tenants and the `tick` schedule.
async fn three_tenants_ticking(env: &mut TestEnv) {
    for t in ["sched-a", "sched-b", "sched-c"] {
        env.tenant(t).await;
    }
    write_config(env, TICK);
}

/// Waits until the catalog count `sql` reaches `at_least`.
async fn wait_count(
    env: &TestEnv,
    sql: &str,
    at_least: i64,
    timeout: std::time::Duration,
    what: impl Fn() -> String,
) {
    poll(timeout, ms(300), || async {
        match env.count(sql).await >= at_least {
            true => Ok(()),
            false => Err(what()),
        }
    })
    .await;
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
        env.refused(&["scheduler"], expect);
    }
    // The seed's defaults are valid and listed with their next fire time.
    std::fs::remove_file(env.log_dir.join("landlord.toml")).unwrap();
    let list = env.ok_json(&["schedule", "list", "--json"]);
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
    // Exactly the seed's table: backup 02:00 keep 7; Sundays 04:00 optimize +
    // cleanup (the seed's default days); the 1st at 03:00 VACUUM; 05:00
    // cleanup of data older than 365 days. All in UTC.
    let expected = [
        (
            "daily-backup",
            "0 2 * * *",
            "backup",
            serde_json::json!({"keep": 7}),
        ),
        (
            "weekly-maintenance",
            "0 4 * * 0",
            "maintenance",
            serde_json::json!({"optimize": true, "cleanup": true}),
        ),
        (
            "monthly-vacuum",
            "0 3 1 * *",
            "maintenance",
            serde_json::json!({"vacuum": true}),
        ),
        (
            "daily-cleanup",
            "0 5 * * *",
            "maintenance",
            serde_json::json!({"cleanup": true, "days": 365}),
        ),
    ];
    for (s, (name, cron, kind, args)) in list.as_array().unwrap().iter().zip(expected) {
        assert_eq!(s["name"], name, "{s:#}");
        assert_eq!(s["cron"], cron, "{s:#}");
        assert_eq!(s["timezone"], "UTC", "{s:#}");
        assert_eq!(s["kind"], kind, "{s:#}");
        assert_eq!(s["args"], args, "{s:#}");
    }
    let next =
        |i: usize| chrono::DateTime::parse_from_rfc3339(list[i]["next"].as_str().unwrap()).unwrap();
    use chrono::{Datelike, Timelike};
    assert_eq!((next(0).hour(), next(0).minute()), (2, 0), "{list:#}");
    assert_eq!(next(1).weekday(), chrono::Weekday::Sun, "{list:#}");
    assert_eq!((next(1).hour(), next(1).minute()), (4, 0), "{list:#}");
    assert_eq!((next(2).day(), next(2).hour()), (1, 3), "{list:#}");
    assert_eq!((next(3).hour(), next(3).minute()), (5, 0), "{list:#}");
}

/// Two schedulers firing `tick` every 2 s for three tenants; the leader is
/// killed once it has fired twice, and the follower fires twice more.
struct Handover {
    one: WorkerProc,
    two: WorkerProc,
    leader_is_one: bool,
    killed_at: chrono::DateTime<chrono::Utc>,
    /// Whether the follower's log showed leadership before the kill.
    follower_led_before: bool,
}

impl Handover {
    fn follower(&self) -> &WorkerProc {
        if self.leader_is_one {
            &self.two
        } else {
            &self.one
        }
    }
}

async fn handover(env: &mut TestEnv) -> Handover {
    three_tenants_ticking(env).await;
    let one = env.spawn(&["scheduler"], &[]);
    let two = env.spawn(&["scheduler"], &[]);
    tokio::time::sleep(secs(7)).await;
    let leader_is_one = one.log_text().contains("became leader");
    let (leader, follower) = if leader_is_one {
        (&one, &two)
    } else {
        (&two, &one)
    };
    let follower_led_before = follower.log_text().contains("became leader");
    let before = env
        .count("SELECT count(*) FROM schedule_firings WHERE status = 'done'")
        .await;
    assert!(before >= 2, "the leader fired: {before}");
    env.signal(leader, "KILL");
    let killed_at = chrono::Utc::now();
    let after = format!(
        "SELECT count(*) FROM schedule_firings WHERE status = 'done' AND fire_at > '{}'",
        killed_at.to_rfc3339()
    );
    wait_count(env, &after, 2, secs(20), || {
        format!("no firing after the leader died\n{}", env.worker_logs())
    })
    .await;
    Handover {
        one,
        two,
        leader_is_one,
        killed_at,
        follower_led_before,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_follower_takes_over_when_the_leader_dies() {
    let mut env = TestEnv::new().await;
    let h = handover(&mut env).await;
    assert!(!h.follower_led_before, "only one leader at a time");
    assert!(
        h.follower().log_text().contains("became leader"),
        "the follower took over"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_firing_fans_out_exactly_once_across_a_handover() {
    let mut env = TestEnv::new().await;
    let h = handover(&mut env).await;
    // Stop the follower, then count: nothing fires between the queries.
    env.signal(h.follower(), "TERM");
    env.wait_exit(h.follower(), secs(30));
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
    env.assert_count("SELECT count(*) FROM (SELECT dedupe_key FROM jobs GROUP BY dedupe_key HAVING count(*) > 1) d", 0).await;
    env.assert_count(
        "SELECT count(*) FROM schedule_firings WHERE status = 'done' AND jobs <> 3",
        0,
    )
    .await;
    // No fire time skipped across the handover: every 2 s from the first to
    // the last, each one fired (none missed, none left half done).
    let times: Vec<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT fire_at FROM schedule_firings ORDER BY fire_at")
            .fetch_all(&env.catalog)
            .await
            .unwrap();
    assert_eq!(times.len() as i64, firings, "only done firings: {times:?}");
    for pair in times.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_seconds(),
            2,
            "a fire time was skipped: {times:?}"
        );
    }
    assert!(
        times.first().unwrap() < &h.killed_at && times.last().unwrap() > &h.killed_at,
        "{times:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_jobs_are_run_by_a_worker() {
    let mut env = TestEnv::new().await;
    three_tenants_ticking(&mut env).await;
    env.spawn(&["scheduler"], &[]);
    env.spawn_worker(&["--concurrency", "4"], &[]);
    let succeeded = "SELECT count(*) FROM jobs WHERE status = 'succeeded'";
    wait_count(&env, succeeded, 3, secs(60), || {
        format!("scheduled jobs never ran\n{}", env.worker_logs())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_cut_short_is_finished_without_duplicates() {
    let mut env = TestEnv::new().await;
    // 1,000 tenants (ping does not touch their databases, so rows suffice).
    active_tenants(&env, "fan", 1000).await;
    write_config(&env, YEARLY);
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
    let done = "SELECT count(*) FROM schedule_firings WHERE status = 'done'";
    wait_count(&env, done, 1, secs(60), || {
        format!("the fan-out was never finished\n{}", env.worker_logs())
    })
    .await;
    // None missing, no duplicates.
    env.assert_count("SELECT count(*) FROM jobs", 1000).await;
    env.assert_count("SELECT count(DISTINCT tenant_id) FROM jobs", 1000)
        .await;
    env.assert_count("SELECT jobs::bigint FROM schedule_firings", 1000)
        .await;
}

/// 20 tenants and a schedule `often` every 10 s (deadline 30 s, spread 5 s)
/// whose last firing was a minute ago; a scheduler starts and catches up
/// (no worker runs). Returns the last old firing's time and the scheduler.
async fn caught_up(env: &mut TestEnv) -> (chrono::DateTime<chrono::Utc>, WorkerProc) {
    // 20 tenants (ping does not touch their databases, so rows suffice).
    active_tenants(env, "late", 20).await;
    write_config(
        env,
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
    let recent = "SELECT count(*) FROM schedule_firings WHERE status = 'done' AND fire_at > now() - interval '30 seconds'";
    wait_count(env, recent, 1, secs(20), || {
        format!("no catch-up firing\n{}", s.log_text())
    })
    .await;
    (last, s)
}

#[tokio::test(flavor = "multi_thread")]
async fn firings_missed_past_the_starting_deadline_are_recorded_as_missed() {
    let mut env = TestEnv::new().await;
    let (_, s) = caught_up(&mut env).await;
    let missed = env
        .count("SELECT count(*) FROM schedule_firings WHERE status = 'missed'")
        .await;
    assert!(
        missed >= 4,
        "the older firings are recorded as missed: {missed}"
    );
    assert!(s.log_text().contains("firing missed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_firings_jobs_are_spread_over_its_window() {
    let mut env = TestEnv::new().await;
    let (last, _) = caught_up(&mut env).await;
    // Each tenant's job starts within the window after its firing, not
    // before, and not all in the same instant.
    let offsets: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM j.run_at - f.fire_at)::float8 FROM jobs j \
         JOIN schedule_firings f ON f.status = 'done' AND f.fire_at > $1 \
          AND j.dedupe_key LIKE '%' || to_char(f.fire_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || 'Z'",
    )
    .bind(last)
    .fetch_all(&env.catalog)
    .await
    .unwrap();
    assert_eq!(offsets.len(), 20, "one job per tenant: {offsets:?}");
    assert!(
        offsets.iter().all(|o| (0.0..5.0).contains(o)),
        "run_at offsets outside the 5 s window: {offsets:?}"
    );
    let distinct: std::collections::BTreeSet<i64> = offsets
        .iter()
        .map(|o| (o * 1000.0).round() as i64)
        .collect();
    assert_eq!(distinct.len(), 20, "run_at offsets not spread: {offsets:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_firing_skips_tenants_whose_last_run_is_still_live() {
    let mut env = TestEnv::new().await;
    caught_up(&mut env).await;
    // No worker runs, so those jobs stay queued: the next firings skip every tenant (overlap).
    tokio::time::sleep(secs(11)).await;
    // Overlapping runs are skipped.
    env.assert_count("SELECT count(*) FROM jobs", 20).await;
    assert!(
        env.count("SELECT coalesce(sum(skipped), 0)::bigint FROM schedule_firings")
            .await
            >= 20
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_run_fires_by_hand_under_the_same_rules() {
    let mut env = TestEnv::new().await;
    caught_up(&mut env).await;
    // Not at a fire time of `often` (every 10 s): a run in that very second
    // would be that firing itself (jobs=20), not a firing of its own (CI).
    while !(2..=7).contains(&(chrono::Utc::now().timestamp() % 10)) {
        tokio::time::sleep(ms(200)).await;
    }
    // The caught-up firing's jobs are still queued: all 20 are skipped.
    let out = env.ok(&["schedule", "run", "often"]);
    assert!(out.contains("jobs=0\tskipped=20"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_history_lists_missed_beside_done_firings() {
    let mut env = TestEnv::new().await;
    caught_up(&mut env).await;
    let history = env.ok(&["schedule", "history", "often"]);
    assert!(
        history.contains("missed") && history.contains("done"),
        "{history}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_run_refuses_an_unknown_schedule() {
    let env = TestEnv::new().await;
    env.refused(&["schedule", "run", "nope"], "");
    env.assert_count("SELECT count(*) FROM schedule_firings", 0)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sampled_schedule_fans_out_to_that_many_free_tenants() {
    let env = TestEnv::new().await;
    active_tenants(&env, "drill", 50).await;
    // 40 of the 50 still have a live run of the schedule from an old firing.
    sqlx::query(
        "INSERT INTO jobs (id, kind, queue, tenant_id, status, max_attempts, dedupe_key) \
         SELECT gen_random_uuid(), 'ping', 'maintenance', id, 'queued', 1, 'sched:drill:' || slug || ':2000-01-01T00:00:00Z' \
         FROM tenants ORDER BY id LIMIT 40",
    )
    .execute(&env.catalog)
    .await
    .unwrap();
    // A restore drill would be kind verify_backup with restore_test; ping
    // keeps this test about the sampling. Overlaps are skipped (the default).
    write_config(
        &env,
        "[[schedules]]\nname = \"drill\"\ncron = \"0 6 * * 6\"\nkind = \"ping\"\nsample = 5\n\
         [[schedules]]\nname = \"dril_\"\ncron = \"0 6 * * 6\"\nkind = \"ping\"\n",
    );
    // The sample is taken from the free tenants: 5 jobs, nobody skipped.
    let out = env.ok(&["schedule", "run", "drill"]);
    assert!(out.contains("jobs=5\tskipped=0"), "{out}");
    tokio::time::sleep(ms(1100)).await;
    // Those 5 are busy now: the next firing takes the other 5 free ones.
    let out = env.ok(&["schedule", "run", "drill"]);
    assert!(out.contains("jobs=5\tskipped=0"), "{out}");
    let per_firing: Vec<i64> = sqlx::query_scalar(
        "SELECT count(DISTINCT tenant_id) FROM jobs WHERE dedupe_key NOT LIKE '%:2000-01-01T00:00:00Z' \
         GROUP BY substring(dedupe_key from '^sched:drill:[^:]+:(.*)$') ORDER BY 1",
    )
    .fetch_all(&env.catalog)
    .await
    .unwrap();
    assert_eq!(per_firing, vec![5, 5], "five tenants per firing");
    // Each free tenant got exactly one of the two firings.
    env.assert_count("SELECT count(DISTINCT tenant_id) FROM jobs", 50)
        .await;
    // `schedule list` counts the last firing's jobs by their keys; the `_`
    // of "dril_" must not match the "l" of "drill" (a firing of "dril_" at
    // the same time, with no jobs of its own).
    sqlx::query(
        "INSERT INTO schedule_firings (schedule, fire_at, status) \
         SELECT 'dril_', max(fire_at), 'done' FROM schedule_firings WHERE schedule = 'drill'",
    )
    .execute(&env.catalog)
    .await
    .unwrap();
    let list = env.ok_json(&["schedule", "list", "--json"]);
    assert_eq!(
        list[0]["last_outcomes"],
        serde_json::json!({"queued": 5}),
        "{list:#}"
    );
    assert_eq!(list[1]["name"], "dril_");
    assert_eq!(list[1]["last_outcomes"], serde_json::json!({}), "{list:#}");
    tokio::time::sleep(ms(1100)).await;
    // Nobody is free: the sample's 5 are skipped.
    let out = env.ok(&["schedule", "run", "drill"]);
    assert!(out.contains("jobs=0\tskipped=5"), "{out}");
    env.assert_count("SELECT count(*) FROM jobs", 50).await;
}

/// 1,000 active tenants as catalog rows only (ping does not touch their databases).
async fn thousand_tenants(env: &TestEnv) {
    active_tenants(env, "fan", 1000).await;
}

/// Each of the 1,000 tenants has exactly one job (and one message) of the one firing.
async fn one_job_each(env: &TestEnv, what: &str) {
    for (sql, expected) in [
        ("SELECT count(*) FROM jobs", 1000),
        ("SELECT count(DISTINCT tenant_id) FROM jobs", 1000),
        // One message per job.
        ("SELECT count(*) FROM outbox WHERE job_id IS NOT NULL", 1000),
        (
            "SELECT count(*) FROM schedule_firings WHERE status = 'done' AND jobs = 1000",
            1,
        ),
    ] {
        assert_eq!(env.count(sql).await, expected, "{what}: {sql}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_fan_outs_of_one_firing_make_each_job_once() {
    use landlord::{
        config::ScheduleSpec,
        scheduler::{IfBusy, Schedule, fan_out},
    };
    let env = TestEnv::new().await;
    thousand_tenants(&env).await;
    let registry = landlord::workers::registry();
    let spec: ScheduleSpec = toml::from_str(YEARLY.trim_start_matches("[[schedules]]\n")).unwrap();
    let schedule = Schedule::parse(&spec, &registry).unwrap();
    let fire_at = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp(), 0).unwrap();
    // Four processes' worth at once: three wait their turn, one would rather skip.
    let run = |who: &'static str, if_busy| {
        fan_out(&env.catalog, &registry, &schedule, fire_at, who, if_busy)
    };
    let (a, b, c, d) = tokio::join!(
        run("a", IfBusy::Wait),
        run("b", IfBusy::Wait),
        run("c", IfBusy::Wait),
        run("d", IfBusy::Skip),
    );
    for f in [a, b, c] {
        assert_eq!(f.unwrap().unwrap().jobs, 1000);
    }
    if let Some(f) = d.unwrap() {
        assert_eq!(f.jobs, 1000);
    }
    one_job_each(&env, "concurrent fan-outs").await;
    // Even a key whose job has finished is not written again.
    sqlx::query("UPDATE jobs SET status = 'succeeded'")
        .execute(&env.catalog)
        .await
        .unwrap();
    sqlx::query("UPDATE schedule_firings SET status = 'fanning_out'")
        .execute(&env.catalog)
        .await
        .unwrap();
    let f = fan_out(
        &env.catalog,
        &registry,
        &schedule,
        fire_at,
        "e",
        IfBusy::Wait,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        f,
        landlord::scheduler::FanOut {
            jobs: 1000,
            skipped: 0
        }
    );
    one_job_each(&env, "a fan-out over finished jobs").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scheduler_leaves_a_firing_that_schedule_run_is_fanning_out() {
    let mut env = TestEnv::new().await;
    thousand_tenants(&env).await;
    write_config(&env, YEARLY);
    let scheduler = env.spawn(&["scheduler"], &[]);
    poll(secs(30), ms(100), || async {
        let log = scheduler.log_text();
        match log.contains("became leader") {
            true => Ok(()),
            false => Err(log),
        }
    })
    .await;
    // `schedule run` stops for 3 s after its first chunk: the firing sits
    // half done, marked fanning_out, while the leader ticks six times.
    let run = env.spawn(
        &["schedule", "run", "yearly"],
        &[("LANDLORD_FAILPOINTS", "scheduler.fanout_pause=3000")],
    );
    assert_eq!(env.wait_exit(&run, secs(60)), Some(0), "{}", run.log_text());
    assert!(run.log_text().contains("jobs=1000"), "{}", run.log_text());
    assert!(
        !scheduler
            .log_text()
            .contains("finished an interrupted fan-out"),
        "the leader fanned out a firing schedule run held\n{}",
        scheduler.log_text()
    );
    one_job_each(&env, "schedule run while a scheduler leads").await;
}
