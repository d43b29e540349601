//! Backup retention policy: decides which of one tenant's complete backups may be deleted.
//!
//! This is a pure function of (policy, now, backups). It must never touch storage, the
//! database or the clock itself; the caller does the deleting. Whatever the policy says, it
//! must never choose the newest complete backup or a held backup for deletion.
//!
//! GFS follows restic `forget` semantics: every rule is applied independently to the
//! backups sorted newest-first, and a backup is kept if any rule keeps it.
//! The policy itself (its type, parser and text form) is a setting and lives
//! in [`crate::config::retention`]; it is re-exported here.

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use uuid::Uuid;

pub use crate::config::retention::{Policy, parse};

#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub held: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Kept, with the first rule that keeps it: "held", "newest", "keep-last", "recent",
    /// "daily", "weekly", "monthly" or "yearly".
    Keep(&'static str),
    Prune,
}

/// The ids to delete, newest first. Input order is not assumed (sorted inside).
/// Candidates are complete backups of ONE tenant.
pub fn to_prune(policy: &Policy, now: DateTime<Utc>, backups: &[Candidate]) -> Vec<Uuid> {
    explain(policy, now, backups)
        .into_iter()
        .filter(|(_, v)| *v == Verdict::Prune)
        .map(|(id, _)| id)
        .collect()
}

/// Every backup with its verdict, newest first (ties broken by id), for
/// `landlord backups prune --dry-run`. A kept backup reports the first rule that keeps it.
pub fn explain(policy: &Policy, now: DateTime<Utc>, backups: &[Candidate]) -> Vec<(Uuid, Verdict)> {
    let mut sorted: Vec<&Candidate> = backups.iter().collect();
    sorted.sort_by_key(|b| std::cmp::Reverse((b.created_at, b.id)));

    // Rules in reason-priority order: (reason, how many buckets, bucket of the i-th newest).
    // KeepLast gives every backup its own bucket.
    type Bucket = fn(usize, &DateTime<Utc>) -> i64;
    let rules: Vec<(&'static str, u32, Bucket)> = match *policy {
        Policy::KeepLast(n) => vec![("keep-last", n, |i, _| i as i64)],
        Policy::Gfs {
            daily,
            weekly,
            monthly,
            yearly,
            ..
        } => vec![
            ("daily", daily, |_, t| {
                i64::from(t.year()) * 1000 + i64::from(t.ordinal())
            }),
            ("weekly", weekly, |_, t| {
                let w = t.iso_week();
                i64::from(w.year()) * 100 + i64::from(w.week())
            }),
            ("monthly", monthly, |_, t| {
                i64::from(t.year()) * 100 + i64::from(t.month())
            }),
            ("yearly", yearly, |_, t| i64::from(t.year())),
        ],
    };
    let recent_since = match *policy {
        // 0 days disables the window; a window reaching before chrono's range covers everything.
        Policy::Gfs { all_days, .. } if all_days > 0 => Some(
            TimeDelta::try_days(i64::from(all_days))
                .and_then(|d| now.checked_sub_signed(d))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        ),
        _ => None,
    };

    let mut verdicts = vec![Verdict::Prune; sorted.len()];
    for (i, b) in sorted.iter().enumerate() {
        if b.held {
            verdicts[i] = Verdict::Keep("held");
        } else if i == 0 {
            verdicts[i] = Verdict::Keep("newest");
        } else if recent_since.is_some_and(|since| b.created_at >= since) {
            verdicts[i] = Verdict::Keep("recent");
        }
    }
    for (reason, count, bucket) in rules {
        let mut left = count;
        let mut last = None;
        for (i, b) in sorted.iter().enumerate().filter(|(_, b)| !b.held) {
            if left == 0 {
                break;
            }
            let key = bucket(i, &b.created_at);
            if last != Some(key) {
                last = Some(key);
                left -= 1;
                if verdicts[i] == Verdict::Prune {
                    verdicts[i] = Verdict::Keep(reason);
                }
            }
        }
    }
    sorted.iter().map(|b| b.id).zip(verdicts).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn cand(t: DateTime<Utc>, held: bool) -> Candidate {
        Candidate {
            id: Uuid::new_v4(),
            created_at: t,
            held,
        }
    }

    /// `n` backups, one per hour going back from `newest`, returned oldest-first (unsorted input).
    fn hourly(newest: DateTime<Utc>, n: i64) -> Vec<Candidate> {
        (0..n)
            .rev()
            .map(|i| cand(newest - TimeDelta::hours(i), false))
            .collect()
    }

    #[test]
    fn keep_last_without_held() {
        let now = at(2025, 1, 1, 12);
        let bs = hourly(now, 5);
        let pruned = to_prune(&Policy::KeepLast(3), now, &bs);
        // Oldest two pruned, newest first.
        assert_eq!(pruned, vec![bs[1].id, bs[0].id]);
    }

    #[test]
    fn keep_last_with_held() {
        let now = at(2025, 1, 1, 12);
        let mut bs = hourly(now, 6);
        bs[4].held = true; // second newest
        bs[0].held = true; // oldest
        let ex = explain(&Policy::KeepLast(2), now, &bs);
        let verdicts: Vec<Verdict> = ex.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(
            verdicts,
            vec![
                Verdict::Keep("newest"),
                Verdict::Keep("held"),
                Verdict::Keep("keep-last"), // held ones do not count toward N
                Verdict::Prune,
                Verdict::Prune,
                Verdict::Keep("held"),
            ]
        );
        assert_eq!(
            to_prune(&Policy::KeepLast(2), now, &bs),
            vec![bs[2].id, bs[1].id]
        );
    }

    #[test]
    fn never_prunes_newest() {
        let now = at(2025, 1, 1, 12);
        let bs = hourly(now, 3);
        assert_eq!(
            to_prune(&Policy::KeepLast(0), now, &bs),
            vec![bs[1].id, bs[0].id]
        );
        let zero = Policy::Gfs {
            all_days: 0,
            daily: 0,
            weekly: 0,
            monthly: 0,
            yearly: 0,
        };
        assert_eq!(to_prune(&zero, now, &bs), vec![bs[1].id, bs[0].id]);

        // Newest is held: it stays (as held) and nothing else is forced to stay.
        let mut bs = bs;
        bs[2].held = true;
        let ex = explain(&Policy::KeepLast(0), now, &bs);
        assert_eq!(ex[0], (bs[2].id, Verdict::Keep("held")));
        assert_eq!(
            to_prune(&Policy::KeepLast(0), now, &bs),
            vec![bs[1].id, bs[0].id]
        );

        // A single backup is never pruned.
        assert!(to_prune(&Policy::KeepLast(0), now, &bs[..1]).is_empty());
    }

    #[test]
    fn empty_input() {
        let now = at(2025, 1, 1, 0);
        assert!(to_prune(&Policy::KeepLast(0), now, &[]).is_empty());
        assert!(explain(&parse("gfs:daily=1").unwrap(), now, &[]).is_empty());
    }

    #[test]
    fn gfs_over_400_daily_backups() {
        // 2025-06-15 is a Sunday; one backup at 12:00 on each of the 400 days up to it.
        let now = at(2025, 6, 15, 13);
        let bs: Vec<Candidate> = (0..400)
            .map(|i| cand(at(2025, 6, 15, 12) - TimeDelta::days(i), false))
            .collect();
        let policy = parse("gfs:days=3,daily=7,weekly=4,monthly=12,yearly=2").unwrap();
        let ex = explain(&policy, now, &bs);
        let day = |id: Uuid| {
            bs.iter()
                .find(|b| b.id == id)
                .unwrap()
                .created_at
                .date_naive()
        };
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        let kept: Vec<(NaiveDate, &'static str)> = ex
            .iter()
            .filter_map(|(id, v)| match v {
                Verdict::Keep(r) => Some((day(*id), *r)),
                Verdict::Prune => None,
            })
            .collect();
        let expected = vec![
            (d(2025, 6, 15), "newest"),
            (d(2025, 6, 14), "recent"), // within 3 days of 06-15 13:00 (also daily)
            (d(2025, 6, 13), "recent"),
            (d(2025, 6, 12), "daily"), // 12:00 is just before now - 3 days
            (d(2025, 6, 11), "daily"),
            (d(2025, 6, 10), "daily"),
            (d(2025, 6, 9), "daily"),  // 7th day
            (d(2025, 6, 8), "weekly"), // Sundays: 06-15 and 06-08 already counted
            (d(2025, 6, 1), "weekly"),
            (d(2025, 5, 25), "weekly"),
            (d(2025, 5, 31), "monthly"),
            (d(2025, 4, 30), "monthly"),
            (d(2025, 3, 31), "monthly"),
            (d(2025, 2, 28), "monthly"),
            (d(2025, 1, 31), "monthly"),
            (d(2024, 12, 31), "monthly"), // also the 2nd yearly
            (d(2024, 11, 30), "monthly"),
            (d(2024, 10, 31), "monthly"),
            (d(2024, 9, 30), "monthly"),
            (d(2024, 8, 31), "monthly"),
            (d(2024, 7, 31), "monthly"), // 12th month (June 2025 counted first)
        ];
        let mut sorted_expected = expected.clone();
        sorted_expected.sort_by_key(|e| std::cmp::Reverse(e.0));
        assert_eq!(kept, sorted_expected);
        assert_eq!(kept.len(), 21);
        assert_eq!(to_prune(&policy, now, &bs).len(), 400 - 21);
    }

    #[test]
    fn gfs_buckets_take_newest_non_held_of_each_day() {
        let now = at(2025, 3, 2, 23);
        let mut bs = vec![
            cand(at(2025, 3, 2, 10), false),
            cand(at(2025, 3, 1, 22), true), // held: does not use up March 1st's bucket
            cand(at(2025, 3, 1, 20), false),
            cand(at(2025, 3, 1, 8), false),
            cand(at(2025, 2, 28, 9), false),
        ];
        bs.reverse();
        let pruned = to_prune(&parse("gfs:daily=2").unwrap(), now, &bs);
        let pruned_times: Vec<_> = pruned
            .iter()
            .map(|id| bs.iter().find(|b| b.id == *id).unwrap().created_at)
            .collect();
        assert_eq!(pruned_times, vec![at(2025, 3, 1, 8), at(2025, 2, 28, 9)]);
    }

    #[test]
    fn ties_are_deterministic() {
        let now = at(2025, 1, 1, 12);
        let t = at(2025, 1, 1, 0);
        let a = Candidate {
            id: Uuid::from_u128(1),
            created_at: t,
            held: false,
        };
        let b = Candidate {
            id: Uuid::from_u128(2),
            created_at: t,
            held: false,
        };
        let p = Policy::KeepLast(1);
        assert_eq!(to_prune(&p, now, &[a.clone(), b.clone()]), vec![a.id]);
        assert_eq!(to_prune(&p, now, &[b, a.clone()]), vec![a.id]);
    }
}
